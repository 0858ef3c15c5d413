/* spectral.c -- spectral norm: power iteration (one pass over w per iteration), the
 * normalisation w / sigma and its backward, and a certified upper bound of sigma.
 *
 * Dimension letters: w is (N, K) = (out, in), u is (N,), v is (K,); m = min(N, K).
 * Semantics: torch.nn.utils.parametrizations.spectral_norm with dim=0 (see pybackprop.h and
 * pybackprop/reference.py). What this file holds:
 *   - the portable kernels (_ref) and, through spectral_simd.inc, the AVX2 and AVX-512
 *     kernels (per-function target attributes; arch/cpu_configs.c picks a table at run time);
 *   - the drivers of both dtypes (spectral_driver.inc): blocking, threads, normalisation;
 *   - the float64 squaring chain of the certified upper bound, with its rounding analysis.
 * Assumes IEEE-754 binary32/binary64 with round-to-nearest (no -ffast-math). Does not
 * handle overflow of norms past the dtype's range (sigma > ~1e19 in float32 computations of
 * ||s||^2 are done in double, so only float64 values past ~1e154 can overflow).
 */
#include <float.h>

#include "arch/arch.h"
#include "ops/spectral.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd/vec_avx2.h"
#include "simd/vec_avx512.h"
#endif

/* Row blocks of the power-iteration pass: about PB_SPEC_BLOCK_ELEMS entries of w each, at
 * most PB_SPEC_MAX_BLOCKS blocks (the partials cost nb*K, at most 1/(rows per block) of a
 * pass), at most one per row. Depends on N and K only: never on the thread count. */
#define PB_SPEC_BLOCK_ELEMS 16384
#define PB_SPEC_MAX_BLOCKS 32
/* Below this many entries of w, one thread: a parallel region costs more than it saves. */
#define PB_SPEC_PAR_MIN 32768
/* Fixed element chunks of the elementwise passes and of the backward's <G, W>. */
#define PB_SPEC_CHUNK 8192
/* Column chunk of the sum of the blocks' partials r_b (a chunk of every r_b stays in L1). */
#define PB_SPEC_RCOLS 512

static ptrdiff_t spec_blocks(ptrdiff_t N, ptrdiff_t K) {
    if (N <= 1) return 1;
    ptrdiff_t nb = N * K / PB_SPEC_BLOCK_ELEMS;
    nb = PB_MIN(nb, PB_MIN(N, (ptrdiff_t)PB_SPEC_MAX_BLOCKS));
    return PB_MAX(nb, (ptrdiff_t)1);
}

static int spec_threads(ptrdiff_t n, ptrdiff_t nb) {
    if (n < PB_SPEC_PAR_MIN) return 1;
    const int nt = pb_threads();
    return (ptrdiff_t)nt < nb ? nt : (int)nb;
}

/* ---- the scale of the r accumulation ----------------------------------------------------
 * s_i ~ sigma, so the products s_i w_i of the one-pass iteration are ~ sigma |w| (PyTorch's
 * w^T u is ~ |w|): unscaled they overflow float32 once sigma > ~1e19 and underflow for tiny
 * sigma. Each block therefore accumulates r at a power-of-two scale 2^-e (exact): a group
 * of rows whose largest |s_j| is m = f 2^em, f in [1/2, 1), sets e = em when the block has
 * no scale yet or em > e + PB_SPEC_SCALE_SLACK (the r so far is multiplied by 2^(old - e)).
 * e >= emin keeps 2^-e finite in the dtype. m == 0, inf or NaN: no change (they propagate).
 * Returns 1 if e changed. The scales depend on the s values in row order only. */
#define PB_SPEC_SCALE_SLACK 8
static inline int spec_scale_update(double m, int *e, int *have, int emin) {
    if (!(m > 0.0) || isinf(m)) return 0;
    int em;
    (void)frexp(m, &em);
    if (em < emin) em = emin;
    if (*have && em <= *e + PB_SPEC_SCALE_SLACK) return 0;
    *e = em;
    *have = 1;
    return 1;
}

/* ---- portable kernels ----------------------------------------------------------------------
 * Plain C with 8 explicit partial sums per dot product (vectorisable by the compiler for the
 * build's baseline ISA without reassociation flags); same contracts as the SIMD kernels. */
#define PB_DEFINE_SPEC_REF(T, SFX, EMIN)                                                        \
    static T spec_dot8_##SFX(const T *a, const T *b, ptrdiff_t n) {                         \
        T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
        ptrdiff_t i = 0;                                                                    \
        for (; i + 8 <= n; i += 8)                                                          \
            for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];                      \
        for (; i < n; ++i) acc[i & 7] += a[i] * b[i];                                       \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
    }                                                                                       \
    int pb_spec_rows_##SFX##_ref(T *s, T *r, const T *w, const T *v, ptrdiff_t rows,         \
                                 ptrdiff_t K) {                                             \
        if (r != NULL)                                                                      \
            for (ptrdiff_t k = 0; k < K; ++k) r[k] = (T)0;                                  \
        int e = 0, have = 0;                                                                \
        T c = (T)1;                                                                         \
        for (ptrdiff_t i = 0; i < rows; ++i) {                                              \
            const T *wi = w + i * K;                                                        \
            const T si = spec_dot8_##SFX(wi, v, K);                                         \
            s[i] = si;                                                                      \
            if (r == NULL) continue;                                                        \
            const int old = e;                                                              \
            if (spec_scale_update(fabs((double)si), &e, &have, EMIN)) {                     \
                c = (T)ldexp(1.0, -e);                                                      \
                const T f = (T)ldexp(1.0, old - e);                                         \
                for (ptrdiff_t k = 0; k < K; ++k) r[k] *= f;                                \
            }                                                                               \
            const T sc = si * c;                                                            \
            for (ptrdiff_t k = 0; k < K; ++k) r[k] += sc * wi[k];                           \
        }                                                                                   \
        return e;                                                                           \
    }                                                                                       \
    T pb_spec_dot_##SFX##_ref(const T *a, const T *b, ptrdiff_t n) {                        \
        return spec_dot8_##SFX(a, b, n);                                                    \
    }                                                                                       \
    void pb_spec_bwd_##SFX##_ref(T *out, const T *g, const T *v, T b, T inv, ptrdiff_t K) { \
        for (ptrdiff_t k = 0; k < K; ++k) out[k] = (g[k] - b * v[k]) * inv;                 \
    }                                                                                       \
    void pb_spec_div_##SFX##_ref(T *out, const T *w, T sigma, ptrdiff_t n) {                \
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = w[i] / sigma;                            \
    }

PB_DEFINE_SPEC_REF(float, f32, -100)
PB_DEFINE_SPEC_REF(double, f64, -1000)

/* ---- the certified upper bound: float64 chain ----------------------------------------------
 * Input: wd = w 2^-e0 (N x K, float64, max |entry| in [1/2, 1)), rounded only where an
 * entry fell below 2^-1022: ||wd - w 2^-e0||_F <= sqrt(NK) eta, eta = 2^-1074.
 * u = 2^-53 (unit roundoff), gamma_n = n u / (1 - n u)  [Higham, ASNA 2nd ed., Lemma 3.1].
 *
 *   A_0 = fl(wd^T wd) (K <= N) or fl(wd wd^T) (K > N), m x m, n0 = max(N, K) products per
 *         entry, made exactly symmetric by copying its upper triangle (each entry is still a
 *         computed value of the true symmetric Gram entry). Any summation order, with or
 *         without FMA: |A_0 - G| <= gamma_n0 |wd|^T |wd| + n0 eta (underflow) entrywise, so
 *         ||A_0 - G||_2 <= ||A_0 - G||_F <= gamma_n0 ||wd||_F^2 + m n0 eta =: E0.
 *   A_{j+1} = fl(A_j A_j) 2^-e_j (symmetrised, scaled to max |entry| in [1/2, 1); the
 *         scaling is exact up to underflow, <= m eta in Frobenius norm). With B = A_j^2:
 *         ||A_j||_2^2 = ||B||_2 <= ||fl(B)||_2 + gamma_m || |A_j| |A_j| ||_F + m^2 eta
 *                    <= 2^e_j (||A_{j+1}||_2 + m eta) + gamma_m ||A_j||_F^2 + m^2 eta.
 *   Last level: ||A_J||_2 <= ||A_J||_F (A_J symmetric: this is sigma <= ||G^(2^J)||_F^(1/2^(J+1))
 *         up to the scalings).
 *   Frobenius norms: a computed sum of squares S of n terms satisfies
 *         ||X||_F^2 <= S / (1 - gamma_{n+1}) + n eta.
 *   Then sigma(wd)^2 = ||G||_2 <= ||A_0||_2 + E0 and sigma(w) <= 2^e0 (sigma(wd) + sqrt(NK) eta).
 * The chain itself (about 15 roundings per level, 40 more outside the loop) is evaluated in
 * round-to-nearest on positive quantities with +, *, /, sqrt (and 1 - gamma >= 1/2, which
 * rounds to within 3u): the computed value is within a factor (1 - 3u)^R of the exact one,
 * R = 15 J + 40 roundings, so it is multiplied by 1 + 8 R u >= (1 - 3u)^-R (and that product
 * rounded up once more, included in R). Tightness: the bound exceeds sigma by at most a
 * factor m^(1/2^(J+2)) (plus the O(gamma) terms): J = 4 gives <= 1.30 for m = 4096.
 */
static double spec_gamma(double n) {
    const double u = DBL_EPSILON / 2;
    return n * u < 0.5 ? n * u / (1.0 - n * u) : INFINITY;
}

/* upper bound of ||X||_F^2 for an n-entry X, from its computed sum of squares */
static double spec_fro2_upper(const double *x, ptrdiff_t n) {
    double s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) s += x[i] * x[i];
    return s / (1.0 - spec_gamma((double)n + 1.0)) + (double)n * DBL_TRUE_MIN;
}

static void spec_symmetrize(double *a, ptrdiff_t m) {
    for (ptrdiff_t i = 0; i < m; ++i)
        for (ptrdiff_t j = 0; j < i; ++j) a[i * m + j] = a[j * m + i];
}

/* a *= 2^-e with max |a| = f 2^e, f in [1/2, 1); returns e (0 for a zero matrix) */
static int spec_rescale(double *a, ptrdiff_t n) {
    double mx = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) mx = PB_MAX(mx, fabs(a[i]));
    if (mx == 0.0 || isinf(mx) || mx != mx) return 0;
    int e;
    (void)frexp(mx, &e);
    for (ptrdiff_t i = 0; i < n; ++i) a[i] = ldexp(a[i], -e);
    return e;
}

static int spec_upper_chain(double *upper, const double *wd, ptrdiff_t N, ptrdiff_t K,
                            int J, int e0) {
    const double eta = DBL_TRUE_MIN, u = DBL_EPSILON / 2;
    const ptrdiff_t m = PB_MIN(N, K), n0 = PB_MAX(N, K), mm = m * m;
    double *a = pb_alloc((size_t)mm * sizeof(double));
    double *b = pb_alloc((size_t)mm * sizeof(double));
    if (a == NULL || b == NULL) {
        pb_free(a);
        pb_free(b);
        return PB_ERR_NOMEM;
    }
    double f2[31];
    int ex[31];
    const double fw2 = spec_fro2_upper(wd, N * K);
    const pb_arch_t *arch = pb_arch(); /* every product of the chain on one path */
    /* a = wd^T wd, or wd wd^T */
    int st = K <= N ? pb_gemm_epi_f64(arch, a, m, wd, 1, K, wd, K, 1, m, m, N, 0, NULL)
                    : pb_gemm_epi_f64(arch, a, m, wd, K, 1, wd, 1, K, m, m, K, 0, NULL);
    if (st != PB_OK) goto done;
    spec_symmetrize(a, m);
    const double e0err = spec_gamma((double)n0) * fw2 + (double)m * (double)n0 * eta;
    for (int j = 0; j < J; ++j) {
        f2[j] = spec_fro2_upper(a, mm);
        st = pb_gemm_epi_f64(arch, b, m, a, m, 1, a, m, 1, m, m, m, 0, NULL);
        if (st != PB_OK) goto done;
        spec_symmetrize(b, m);
        ex[j] = spec_rescale(b, mm);
        double *t = a;
        a = b;
        b = t;
    }
    double ub = sqrt(spec_fro2_upper(a, mm)); /* >= ||A_J||_2 */
    for (int j = J - 1; j >= 0; --j)
        ub = sqrt(ldexp(ub + (double)m * eta, ex[j]) + spec_gamma((double)m) * f2[j] +
                  (double)mm * eta);
    /* ub >= ||A_0||_2;  sigma(wd) <= sqrt(ub + E0) */
    const double R = 15.0 * J + 40.0;
    double sig = sqrt(ub + e0err) + sqrt((double)(N * K)) * eta;
    sig = ldexp(sig * (1.0 + 8.0 * R * u), e0);
    *upper = sig;
done:
    pb_free(a);
    pb_free(b);
    return st;
}

/* ---- drivers -------------------------------------------------------------------------------- */
#define T float
#define SFX f32
#include "ops/spectral_driver.inc"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "ops/spectral_driver.inc"
#undef T
#undef SFX

/* ---- SIMD kernels --------------------------------------------------------------------------- */
#if defined(__x86_64__) || defined(__i386__)

/* ---- AVX2 + FMA ---- */
#define TARGET PB_TARGET_AVX2
#define T float
#include "simd/vec_avx2_f32.h"
#define ROWS_NAME pb_spec_rows_f32_avx2
#define DOT_NAME pb_spec_dot_f32_avx2
#define BWD_NAME pb_spec_bwd_f32_avx2
#define DIV_NAME pb_spec_div_f32_avx2
#include "ops/spectral_simd.inc"
#include "simd/vec_end.h"
#define T double
#include "simd/vec_avx2_f64.h"
#define ROWS_NAME pb_spec_rows_f64_avx2
#define DOT_NAME pb_spec_dot_f64_avx2
#define BWD_NAME pb_spec_bwd_f64_avx2
#define DIV_NAME pb_spec_div_f64_avx2
#include "ops/spectral_simd.inc"
#include "simd/vec_end.h"
#undef TARGET

/* ---- AVX-512 ---- */
#define TARGET PB_TARGET_AVX512
#define T float
#include "simd/vec_avx512_f32.h"
#define ROWS_NAME pb_spec_rows_f32_avx512
#define DOT_NAME pb_spec_dot_f32_avx512
#define BWD_NAME pb_spec_bwd_f32_avx512
#define DIV_NAME pb_spec_div_f32_avx512
#include "ops/spectral_simd.inc"
#include "simd/vec_end.h"
#define T double
#include "simd/vec_avx512_f64.h"
#define ROWS_NAME pb_spec_rows_f64_avx512
#define DOT_NAME pb_spec_dot_f64_avx512
#define BWD_NAME pb_spec_bwd_f64_avx512
#define DIV_NAME pb_spec_div_f64_avx512
#include "ops/spectral_simd.inc"
#include "simd/vec_end.h"
#undef TARGET

#endif
