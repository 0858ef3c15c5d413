/* pb_internal.h -- what the C sources share and the Python layer never sees.
 *
 * Holds the GEMM layer contracts (BLIS style: packing, macro-kernel, micro-kernel), the
 * per-ISA kernel table filled once by dispatch.c, the scalar activation functions that
 * every path must agree with, and the OpenMP shims. Not part of the public contract.
 */
#ifndef PB_INTERNAL_H
#define PB_INTERNAL_H
#include <math.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pybackprop.h"

#ifndef PB_NO_OPENMP
#include <omp.h>
#define PB_OMP 1
#else
#define PB_OMP 0
#endif

/* The calling thread's number in the current OpenMP team, the team's size, and whether we
 * already run inside a parallel region (kernels called from one then stay on their thread). */
static inline int pb_thread_id(void) {
#if PB_OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int pb_team_size(void) { /* threads of the current team (1 outside) */
#if PB_OMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
/* Whether the current team has the nt threads its region asked for: OpenMP may give fewer
 * (OMP_THREAD_LIMIT, OMP_DYNAMIC, a nested region). A region that splits its work by thread
 * number then does nothing (all threads of a team see the same answer) and its caller runs
 * the work on one thread: shares left to absent threads would never be computed. */
static inline int pb_team_is(int nt) { return pb_team_size() == nt; }
static inline int pb_in_parallel(void) {
#if PB_OMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

/* ---- opt-in flush of subnormals (pb_set_flush_denormal, pybackprop.set_flush_denormal) ----
 * Every thread that does a kernel's work runs it with MXCSR's FTZ (a result below the
 * smallest normal number becomes 0) and DAZ (a subnormal operand reads as 0) bits as the
 * mode says -- the SSE control register governs AVX and AVX-512 arithmetic too: both set
 * when on, both clear when off (the default: subnormals computed exactly), whatever the
 * thread held before, and when it leaves it puts its control bits back exactly; exception
 * flags raised meanwhile stay raised (feupdateenv's semantics). Off therefore also undoes,
 * inside the kernels only, a flush the caller set up itself (torch.set_flush_denormal(True)
 * sets the calling thread's MXCSR for good): otherwise the calling thread would flush and
 * the OpenMP workers would not, and the results would depend on the thread count.
 *
 * `PB_FP_SCOPE;` opens such a scope until the end of the enclosing block (the cleanup
 * attribute restores on every path out of it). It is the first statement of every public
 * compute kernel (the calling thread) and of every OpenMP parallel-region body (each thread
 * of the team; a `parallel for` is written `parallel { PB_FP_SCOPE; for nowait }`). A nested
 * scope -- a kernel calling a kernel, the master thread inside its own region -- finds the
 * bits as the mode wants them and writes nothing; so does, with the mode off, every thread
 * whose MXCSR nobody changed (one read of MXCSR per scope). Where MXCSR does not govern the
 * arithmetic (non-x86 builds, x87 maths) there is no mode: pb_set_flush_denormal(1) reports
 * it unsupported. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2_MATH__)
#include <xmmintrin.h>
#define PB_HAVE_MXCSR 1
#define PB_MXCSR_FTZ_DAZ 0x8040u    /* bit 15 flush-to-zero, bit 6 denormals-are-zero */
#define PB_MXCSR_FLAGS 0x003Fu      /* the sticky exception flags */
#define PB_FP_UNTOUCHED 0xFFFFFFFFu /* never a saved MXCSR (its bits 16-31 are reserved 0) */
static inline unsigned pb_fp_enter(void) {
    const unsigned want = pb_get_flush_denormal() ? PB_MXCSR_FTZ_DAZ : 0u;
    const unsigned old = _mm_getcsr();
    if ((old & PB_MXCSR_FTZ_DAZ) == want) return PB_FP_UNTOUCHED;
    _mm_setcsr((old & ~PB_MXCSR_FTZ_DAZ) | want);
    return old;
}
static inline void pb_fp_leave(const unsigned *saved) {
    if (*saved != PB_FP_UNTOUCHED) _mm_setcsr(*saved | (_mm_getcsr() & PB_MXCSR_FLAGS));
}
#define PB_FP_SCOPE \
    const unsigned pb_fp_saved_ __attribute__((cleanup(pb_fp_leave), unused)) = pb_fp_enter()
#else
#define PB_HAVE_MXCSR 0
#define PB_FP_SCOPE (void)0
#endif

#define PB_ALIGN 64
#define PB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PB_CAT_(a, b) a##b
#define PB_CAT(a, b) PB_CAT_(a, b)

/* ---- work lists: static shares, and stealing at the end ----------------------------------
 * A static split waits for its slowest thread, and on a shared host one core often runs
 * slower than the other for a while: two threads timing the same ~250 us of FMAs in 2000
 * regions on the Zen 4 VM, the slower took on average 10 % longer than their mean, more
 * than 10 % longer than the faster in over half of the regions. So a region that splits
 * independent units of work gives each thread a list -- its static share, in the order it
 * would run it -- which it takes from the front; once its own is empty, a thread takes from
 * the back of the others' lists. A unit is taken exactly once (one compare-and-swap of the
 * list's front and back), and a unit's results never depend on the thread that computes it
 * (K is never split and the tiles follow from the shape), so no result depends on who took
 * what. Each round (a K panel, say) the owner opens its list (pb_wlist_open, a release)
 * once everything a thief needs is ready; a thief skips lists that are empty, including
 * those not yet opened, whose last round the owner drained itself. Rounds must be
 * separated by a barrier. Lists live in the caller's frame, PB_WLIST_MAX of them, each on
 * its own cache line; regions with more threads keep the static split. */
#define PB_WLIST_MAX 64
typedef struct {
    _Alignas(PB_ALIGN) _Atomic uint64_t fb; /* front | back << 32: units [front, back) */
    _Atomic unsigned gen;                    /* times opened (the test mode waits on it) */
} pb_wlist_t;
/* The test mode (pb_steal_test in pybackprop.h): thread 0 leaves its own list to the others
 * and waits until they have emptied it; units taken from another's list are counted. */
extern _Atomic int pb_steal_test_on;
extern _Atomic long pb_steal_test_count;

static inline void pb_wlist_init(pb_wlist_t *l, int nt) { /* before the region: all empty */
    for (int t = 0; t < nt; ++t) {
        atomic_init(&l[t].fb, 0);
        atomic_init(&l[t].gen, 0);
    }
}
static inline void pb_wlist_open(pb_wlist_t *l, ptrdiff_t len) { /* units [0, len) */
    atomic_store_explicit(&l->fb, (uint64_t)len << 32, memory_order_release);
    atomic_fetch_add_explicit(&l->gen, 1u, memory_order_release);
}
/* The next unit of list l, from its front (the owner) or its back (a thief); -1 if none. */
static inline ptrdiff_t pb_wlist_take(pb_wlist_t *l, int back) {
    uint64_t v = atomic_load_explicit(&l->fb, memory_order_acquire);
    for (;;) {
        const uint64_t f = v & 0xffffffffu, b = v >> 32;
        if (f >= b) return -1;
        const uint64_t nv = back ? (b - 1) << 32 | f : b << 32 | (f + 1);
        if (atomic_compare_exchange_weak_explicit(&l->fb, &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (ptrdiff_t)(back ? b - 1 : f);
    }
}
static inline int pb_wlist_empty(pb_wlist_t *l) {
    const uint64_t v = atomic_load_explicit(&l->fb, memory_order_acquire);
    return (v & 0xffffffffu) >= v >> 32;
}
/* Thread me of nt (> 1) in round `round` (1, 2, ...: the lists' openings so far) runs BODY
 * with (o, u) for every unit u of list o it takes: its own list first, then the others'.
 * Lists hold fewer than 2^32 units. */
#define PB_WLIST_RUN(lists, nt, me, round, o, u, BODY)                                      \
    do {                                                                                    \
        const int test_ = atomic_load_explicit(&pb_steal_test_on, memory_order_relaxed);    \
        for (int v_ = 0; v_ < (nt); ++v_) {                                                 \
            const int o = ((me) + v_) % (nt);                                               \
            if (test_ && o == 0 && v_ == 0) continue; /* thread 0: its list to the others */ \
            if (test_ && o == 0) /* the others: wait until thread 0 has opened it */        \
                while (atomic_load_explicit(&(lists)[0].gen, memory_order_acquire) <        \
                       (unsigned)(round)) {                                                 \
                }                                                                           \
            ptrdiff_t u;                                                                    \
            while ((u = pb_wlist_take(&(lists)[o], v_ != 0)) >= 0) {                        \
                if (test_ && v_ != 0)                                                       \
                    atomic_fetch_add_explicit(&pb_steal_test_count, 1, memory_order_relaxed); \
                BODY;                                                                       \
            }                                                                               \
        }                                                                                   \
        if (test_ && (me) == 0) /* until the others have taken all of list 0 */             \
            while (!pb_wlist_empty(&(lists)[0])) {                                          \
            }                                                                               \
    } while (0)

/* ---- micro-kernel contract ----------------------------------------------------------------
 * One register tile of C (MR x NR, row-major with row stride ldc):
 *     C[i, j] = beta * C[i, j] + sum_{p<k} Ap[p*MR + i] * Bp[p*NR + j]
 * for 0 <= i < m <= MR and 0 <= j < n <= NR; the rest of the tile is neither read nor
 * written. Ap is a packed A micro-panel (k columns of MR values, zero-padded past m), Bp a
 * packed B micro-panel (k rows of NR values, zero-padded past n); both PB_ALIGN-aligned.
 * beta is 0 or 1, and beta == 0 never reads C (C may hold NaN or garbage). k may be 0.
 * epi == NULL: plain store. epi != NULL (only on the last K panel): before the one store,
 * add epi->bias[j] (if bias != NULL; bias points at the tile's first column) and apply
 * epi->act with epi->slope, in registers, with the scalar semantics of pb_act_*() below.
 */
typedef struct {
    const float *bias;
    int act;
    float slope;
} pb_epi_f32_t;
typedef struct {
    const double *bias;
    int act;
    double slope;
} pb_epi_f64_t;

typedef void (*pb_ukr_f32_t)(ptrdiff_t k, const float *ap, const float *bp, float *c,
                             ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                             const pb_epi_f32_t *epi);
typedef void (*pb_ukr_f64_t)(ptrdiff_t k, const double *ap, const double *bp, double *c,
                             ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                             const pb_epi_f64_t *epi);
/* The micro-kernel with A read in place (optional per ISA; NULL: A is always packed): the
 * contract above with A(i, p) at a[i*lda + p] (rows contiguous; only rows i < m are read)
 * instead of a packed micro-panel, the same products in the same order, so the same bits.
 * For a thread whose slice of the B panel is one or two micro-panels (a layer with few
 * outputs), where each element of A is used once or twice and packing it costs more than
 * it saves. */
typedef void (*pb_ukr_a_f32_t)(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *bp,
                               float *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                               const pb_epi_f32_t *epi);
typedef void (*pb_ukr_a_f64_t)(ptrdiff_t k, const double *a, ptrdiff_t lda, const double *bp,
                               double *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                               const pb_epi_f64_t *epi);

/* ---- GEMV contract (m == 1, no packing) ----------------------------------------------------
 * dot form:  y[j] = epi(beta y[j] + sum_p x[p] w[j*ldw + p])        (x, w rows contiguous)
 * axpy form: y[j] = epi(beta y[j] + sum_p x[p*incx] w[p*ldw + j])   (w rows contiguous in j)
 * for 0 <= j < n; epi as in the micro-kernel with epi->bias pointing at y[0]'s column; beta
 * 0 never reads y. Each y[j] is summed in an order that depends only on k. */
typedef void (*pb_gemv_dot_f32_t)(ptrdiff_t n, ptrdiff_t k, const float *x, const float *w,
                                  ptrdiff_t ldw, float *y, int beta, const pb_epi_f32_t *epi);
typedef void (*pb_gemv_dot_f64_t)(ptrdiff_t n, ptrdiff_t k, const double *x, const double *w,
                                  ptrdiff_t ldw, double *y, int beta, const pb_epi_f64_t *epi);
typedef void (*pb_gemv_axpy_f32_t)(ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t incx,
                                   const float *w, ptrdiff_t ldw, float *y, int beta,
                                   const pb_epi_f32_t *epi);
typedef void (*pb_gemv_axpy_f64_t)(ptrdiff_t n, ptrdiff_t k, const double *x, ptrdiff_t incx,
                                   const double *w, ptrdiff_t ldw, double *y, int beta,
                                   const pb_epi_f64_t *epi);

/* ---- dot-product kernel (optional per ISA; NULL: the packed path) -------------------------
 * c[i*ldc + j] = epi(beta c[i*ldc + j] + sum_p a[i*lda + p] b[j*ldb + p]) for i < m, j < n:
 * the forward's layout (rows of x and of w both contiguous in p), without packing, for
 * problems with few rows of A. epi as in the micro-kernel with epi->bias pointing at column
 * 0 of c; beta 0 never reads c. Every c element is summed in an order that depends only on
 * k (not on m, n, the operands' alignment or the split of the columns between threads).
 * ws: 64-byte aligned scratch of ((copy_a ? m : 0) + 8) * PB_DOT_KP(k) elements (aligned
 * copies of rows that are not: of B always, of A only with copy_a, which pays when each row
 * of A is read for many groups of 8 columns; without it A is read in place). */
#define PB_DOT_KP(k) (((k) + 15) / 16 * 16)
typedef void (*pb_gemm_dot_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                                  ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws,
                                  int copy_a);
typedef void (*pb_gemm_dot_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *a,
                                  ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *c,
                                  ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws,
                                  int copy_a);

/* ---- transposed-tile kernel (optional per ISA; NULL: not used) ---------------------------
 * c[i*ldc + j] = epi(beta c[i*ldc + j] + sum_{p<k} a[i, p] b[p*rsb + j*csb]) for i < m,
 * j < n, where B is column-major (rsb == 1: the forward's w) or row-major (csb == 1: w in
 * the backward's dx = dz w) and read in place, and A is given transposed and packed by the
 * ISA's pack_t in panels of W = blk.tw rows: panel i0/W at at + i0*k, at[i0*k + p*W + r] =
 * a[i0 + r, p], zero rows past m. Every element is one FMA chain over p in order,
 * fma(b, a, acc) from 0: the packed micro-kernel's operations for a panel of depth k, so the
 * two give the same bits. epi as in the micro-kernel with epi->bias pointing at column 0 of
 * c; beta 0 never reads c. ws: scratch of blk.tj * k elements. */
typedef void (*pb_gemm_tt_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *at,
                                 const float *b, ptrdiff_t rsb, ptrdiff_t csb, float *c,
                                 ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws);
typedef void (*pb_gemm_tt_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *at,
                                 const double *b, ptrdiff_t rsb, ptrdiff_t csb, double *c,
                                 ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws);

/* ---- A^T B kernel (optional per ISA; NULL: not used) ------------------------------------
 * One block of q rows p of C = A^T B, for an A^T given row-major (a[p*lda + i], i < m: the
 * backward's dz, or its block formed into scratch) and a row-major B read in place
 * (b[p*ldb + j], j < n: the backward's x), for C with few rows (pb_use_atb_):
 *   acc(i, j) = (first ? 0 : s[i*n + j]) + sum_{p<q} a[p*lda + i] b[p*ldb + j],
 * one FMA chain per element in p order, fma(a, b, acc); then, if last,
 * c[i*ldc + j] = beta ? c[i*ldc + j] + acc : acc (beta 0 never reads c), else
 * s[i*n + j] = acc. The driver runs the blocks of each KC panel with first on its first
 * block and last on its last: per panel one chain from zero, then added to C, which is what
 * the packed micro-kernel computes, so the two paths give the same bits. s: m*n elements
 * (the partial sums between the blocks of a panel). */
typedef void (*pb_gemm_atb_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const float *a,
                                  ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *s,
                                  int first, float *c, ptrdiff_t ldc, int last, int beta);
typedef void (*pb_gemm_atb_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const double *a,
                                  ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *s,
                                  int first, double *c, ptrdiff_t ldc, int last, int beta);

/* Vector activation forward (optional per ISA and dtype; NULL: act.c's scalar loops):
 * y[i] = act(z[i]) for 0 <= i < n by the GEMM epilogue's code (the same function as the
 * fused forward's, e.g. vmath_f32.inc's sigmoid/tanh); y may be z. act.c uses it for every
 * activation. */
typedef void (*pb_act_fwd_f32_t)(float *y, const float *z, ptrdiff_t n, int act, float slope);
typedef void (*pb_act_fwd_f64_t)(double *y, const double *z, ptrdiff_t n, int act,
                                 double slope);

/* Vector activation backward (optional per ISA and dtype; NULL: the scalar pb_dact loops):
 * dz[i] = dy[i] * act'(y[i]) for 0 <= i < n (y the activation's OUTPUT), pb_dact's
 * operations in vector form (softplus' -expm1(-y) with the vmath expm1), so the same bits;
 * dz may be dy or y. Used by act.c for every activation and by pb_dz_rows_* (the dense
 * backward) for softplus. */
typedef void (*pb_act_bwd_f32_t)(float *dz, const float *dy, const float *y, ptrdiff_t n,
                                 int act, float slope);
typedef void (*pb_act_bwd_f64_t)(double *dz, const double *dy, const double *y, ptrdiff_t n,
                                 int act, double slope);

/* Transposing pack (optional per ISA; NULL: the driver's portable loops):
 * dst[p*W + r] = src[r*ld + p] for 0 <= r < rows <= W, 0 <= p < kc; dst[p*W + r] = 0 for
 * rows <= r < W. Packs an A micro-panel of a row-major A (W = MR) or a B micro-panel of a
 * column-major B (W = NR). Pure data movement: packed values are bitwise the source's. */
typedef void (*pb_pack_t_f32_t)(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t rows,
                                ptrdiff_t kc, int W);
typedef void (*pb_pack_t_f64_t)(double *dst, const double *src, ptrdiff_t ld, ptrdiff_t rows,
                                ptrdiff_t kc, int W);
/* Loss kernels of one ISA path; the contracts are written once in losses.c. */
typedef float (*pb_xent_row_f32_t)(float *d, const float *x, ptrdiff_t C, ptrdiff_t label,
                                   const float *t, float scale);
typedef double (*pb_xent_row_f64_t)(double *d, const double *x, ptrdiff_t C,
                                    ptrdiff_t label, const double *t, double scale);
typedef double (*pb_bce_block_f32_t)(float *d, const float *z, const float *t, ptrdiff_t n,
                                     float scale);
typedef double (*pb_bce_block_f64_t)(double *d, const double *z, const double *t,
                                     ptrdiff_t n, double scale);
typedef double (*pb_mse_block_f32_t)(float *d, const float *p, const float *q, ptrdiff_t n,
                                     float k2);
typedef double (*pb_mse_block_f64_t)(double *d, const double *p, const double *q,
                                     ptrdiff_t n, double k2);

/* Block sizes of one ISA path: register tile MR x NR, cache blocks MC (A block rows, L2),
 * KC (panel depth, B micro-panel in L1), NC (B panel columns, L3). MC is a multiple of MR,
 * NC of NR. */
typedef struct {
    int mr, nr;
    ptrdiff_t mc, kc, nc;
    int tw, tj; /* transposed-tile kernel: A^T panel width, rows of B per tile */
    int tm;     /* ... and the largest m its rule (pb_use_tt_) takes */
    int atb_copy; /* A^T B path: copy blocks of B whose row stride (bytes) is a multiple of
                   * this, which alias in L1 (0: never; pb_atb_ldq_ in gemm_driver.inc) */
    /* Path crossovers (gemm_driver.inc): the largest m of the dot-product kernel's rule
     * (pb_use_dot_; taller A: pb_use_dot_tall_) and of the A^T B kernel's (pb_use_atb_), and
     * the most bytes of B for which two threads split the transposed-tile path by rows
     * (pb_tt_msplit_). */
    int dot_m, atb_m;
    double tt_msplit;
} pb_blocks_t;
/* The crossovers every ISA table starts from (a CPU configuration may override them). */
#define PB_XOVER_DEFAULT .dot_m = 64, .atb_m = 64, .tt_msplit = 262144.0

/* ---- spectral norm kernels (one per ISA and dtype; drivers in spectral.c) --------------
 * rows: s[i] = w_i . v for the `rows` rows w_i of w (row stride K), and, if r != NULL,
 *       r[k] = 2^-e sum_i s[i] * w[i*K + k] (r is overwritten; zeros when rows == 0), each
 *       row re-read for r right after its dot product, while it is still in cache; returns
 *       e (0 when r == NULL). The power-of-two scale keeps s_i w_i near the range of w
 *       (s ~ sigma, so unscaled products ~ sigma^2 would overflow float32 past 1.8e19):
 *       e follows spec_scale_update() (spectral.c), a function of the s values in row
 *       order only.
 * dot:  sum_{i<n} a[i] * b[i] in the dtype's arithmetic (n is at most a few 10^4).
 * bwd:  out[k] = (g[k] - b * v[k]) * inv for k < K  (one row of the spectral-norm backward).
 * div:  out[i] = w[i] / sigma for i < n, exact IEEE division (out may be w). */
typedef int (*pb_spec_rows_f32_t)(float *s, float *r, const float *w, const float *v,
                                  ptrdiff_t rows, ptrdiff_t K);
typedef int (*pb_spec_rows_f64_t)(double *s, double *r, const double *w, const double *v,
                                  ptrdiff_t rows, ptrdiff_t K);
typedef float (*pb_spec_dot_f32_t)(const float *a, const float *b, ptrdiff_t n);
typedef double (*pb_spec_dot_f64_t)(const double *a, const double *b, ptrdiff_t n);
typedef void (*pb_spec_bwd_f32_t)(float *out, const float *g, const float *v, float b,
                                  float inv, ptrdiff_t K);
typedef void (*pb_spec_bwd_f64_t)(double *out, const double *g, const double *v, double b,
                                  double inv, ptrdiff_t K);
typedef void (*pb_spec_div_f32_t)(float *out, const float *w, float sigma, ptrdiff_t n);
typedef void (*pb_spec_div_f64_t)(double *out, const double *w, double sigma, ptrdiff_t n);
/* ---- optimizers (optim.c): per-ISA range kernels ------------------------------------------
 * One Adam or AdaMax step over one contiguous range of n elements, with the scalars of the
 * step already formed (in double, rounded once to T) by the drivers in optim.c. Every path
 * reproduces the scalar element functions of optim.c bit for bit (same IEEE operations in
 * the same order, no FMA). wd_mode: PB_WD_NONE, PB_WD_COUPLED (g += wd*p), PB_WD_DECOUPLED
 * (p *= decay). lerp: m = (lerp_small ? m : g) + lerp_coef * (g - m), torch.lerp's two
 * branches. neg_step = -(lr / (1 - beta1^t)). */
enum { PB_WD_NONE = 0, PB_WD_COUPLED = 1, PB_WD_DECOUPLED = 2 };
#define PB_DEFINE_OPTIM_COEF(T, SFX)                                                         \
    typedef struct {                                                                        \
        T wd, decay, lerp_coef, b2, c2, bc2_sqrt, eps, neg_step;                           \
        int wd_mode, lerp_small, amsgrad, maximize;                                        \
    } pb_optim_coef_##SFX##_t;                                                             \
    typedef void (*pb_adam_range_##SFX##_t)(T *p, T *m, T *v, T *v_max, const T *g,      \
                                             ptrdiff_t n, const pb_optim_coef_##SFX##_t *c); \
    typedef void (*pb_adamax_range_##SFX##_t)(T *p, T *m, T *u, const T *g, ptrdiff_t n,  \
                                               const pb_optim_coef_##SFX##_t *c);
PB_DEFINE_OPTIM_COEF(float, f32)
PB_DEFINE_OPTIM_COEF(double, f64)

/* The kernel table of one ISA path. dispatch.c starts every entry from the _ref kernels and
 * overrides what the CPU supports; exactly one table is active at a time. */
typedef struct {
    const char *name; /* the ISA: "ref", "avx2", "avx512" (a configuration's highest) */
    const char *cpu;  /* the CPU configuration (cpu_configs.c); NULL in an ISA's own table */
    pb_blocks_t blk_f32, blk_f64;
    pb_ukr_f32_t ukr_f32;
    pb_ukr_f64_t ukr_f64;
    pb_ukr_a_f32_t ukr_a_f32;
    pb_ukr_a_f64_t ukr_a_f64;
    pb_gemv_dot_f32_t gemv_dot_f32;
    pb_gemv_dot_f64_t gemv_dot_f64;
    pb_gemv_axpy_f32_t gemv_axpy_f32;
    pb_gemv_axpy_f64_t gemv_axpy_f64;
    pb_pack_t_f32_t pack_t_f32;
    pb_pack_t_f64_t pack_t_f64;
    pb_gemm_dot_f32_t dot_f32;
    pb_gemm_dot_f64_t dot_f64;
    pb_gemm_tt_f32_t tt_f32;
    pb_gemm_tt_f64_t tt_f64;
    pb_gemm_atb_f32_t atb_f32;
    pb_gemm_atb_f64_t atb_f64;
    pb_act_fwd_f32_t act_fwd_f32;
    pb_act_fwd_f64_t act_fwd_f64;
    pb_act_bwd_f32_t act_bwd_f32;
    pb_act_bwd_f64_t act_bwd_f64;
    /* losses (losses.c) */
    pb_xent_row_f32_t xent_row_f32;
    pb_xent_row_f64_t xent_row_f64;
    pb_bce_block_f32_t bce_block_f32;
    pb_bce_block_f64_t bce_block_f64;
    pb_mse_block_f32_t mse_block_f32;
    pb_mse_block_f64_t mse_block_f64;
    /* spectral norm (spectral.c): contracts at pb_spec_*_t below */
    pb_spec_rows_f32_t spec_rows_f32;
    pb_spec_rows_f64_t spec_rows_f64;
    pb_spec_dot_f32_t spec_dot_f32;
    pb_spec_dot_f64_t spec_dot_f64;
    pb_spec_bwd_f32_t spec_bwd_f32;
    pb_spec_bwd_f64_t spec_bwd_f64;
    pb_spec_div_f32_t spec_div_f32;
    pb_spec_div_f64_t spec_div_f64;
    pb_adam_range_f32_t adam_f32; /* optimizers (optim.c) */
    pb_adam_range_f64_t adam_f64;
    pb_adamax_range_f32_t adamax_f32;
    pb_adamax_range_f64_t adamax_f64;
} pb_arch_t;

const pb_arch_t *pb_arch(void);      /* the active table */
int pb_threads(void);                /* threads a kernel may use */
int pb_flush_supported(void);        /* MXCSR has FTZ and DAZ here (dispatch.c) */

/* The per-ISA tables, defined together in dispatch.c. */
extern const pb_arch_t pb_arch_ref;
extern const pb_arch_t pb_arch_avx2;
extern const pb_arch_t pb_arch_avx512;

/* ---- the CPU (cpu_detect.c) ----------------------------------------------------------------
 * One cache level as cpuid describes it; size == 0 where it is unknown. */
typedef struct {
    ptrdiff_t size;
    int ways, line, sets;
} pb_cache_t;
typedef struct {
    char vendor[13];  /* "GenuineIntel", "AuthenticAMD", ...; "" without cpuid */
    int family, model, stepping; /* the display family and model (base + extended) */
    pb_cache_t l1d, l2, l3;
    int caches_known; /* 1 if the caches came from cpuid, 0 if assumed (pb_cache_assumed) */
} pb_cpuinfo_t;
const pb_cpuinfo_t *pb_cpuinfo(void); /* read once */
/* Block sizes mc, kc, nc of a register tile mr x nr (already in *b) for elements of elem
 * bytes and these caches, by the analytical model of Low et al. (cpu_detect.c). */
void pb_blocks_model(pb_blocks_t *b, int elem, const pb_cache_t *l1d, const pb_cache_t *l2,
                     const pb_cache_t *l3);

/* Kernels the tables point at (one source file per ISA). */
#define PB_REF_MR 4
#define PB_REF_NR_F32 16
#define PB_REF_NR_F64 8
void pb_gemm_ukr_f32_ref(ptrdiff_t k, const float *ap, const float *bp, float *c,
                         ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                         const pb_epi_f32_t *epi);
void pb_gemm_ukr_f64_ref(ptrdiff_t k, const double *ap, const double *bp, double *c,
                         ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                         const pb_epi_f64_t *epi);
#if defined(__x86_64__) || defined(__i386__)
void pb_gemm_ukr_f32_avx2_6x16(ptrdiff_t k, const float *ap, const float *bp, float *c,
                               ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                               const pb_epi_f32_t *epi);
void pb_gemm_ukr_f64_avx2_6x8(ptrdiff_t k, const double *ap, const double *bp, double *c,
                              ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                              const pb_epi_f64_t *epi);
void pb_gemm_ukr_a_f32_avx2_6x16(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *bp,
                                 float *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                                 const pb_epi_f32_t *epi);
void pb_gemm_ukr_a_f64_avx2_6x8(ptrdiff_t k, const double *a, ptrdiff_t lda, const double *bp,
                                double *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                                const pb_epi_f64_t *epi);
void pb_gemm_ukr_f32_avx512_12x32(ptrdiff_t k, const float *ap, const float *bp, float *c,
                                  ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                                  const pb_epi_f32_t *epi);
void pb_gemm_ukr_f64_avx512_12x16(ptrdiff_t k, const double *ap, const double *bp,
                                  double *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n,
                                  int beta, const pb_epi_f64_t *epi);
#endif

/* The GEMVs of one ISA (both dtypes, both forms); types as pb_gemv_*_t above. */
#define PB_DECLARE_GEMV(ISA)                                                                  \
    void pb_gemv_dot_f32_##ISA(ptrdiff_t n, ptrdiff_t k, const float *x, const float *w,      \
                               ptrdiff_t ldw, float *y, int beta, const pb_epi_f32_t *epi);   \
    void pb_gemv_dot_f64_##ISA(ptrdiff_t n, ptrdiff_t k, const double *x, const double *w,    \
                               ptrdiff_t ldw, double *y, int beta, const pb_epi_f64_t *epi);  \
    void pb_gemv_axpy_f32_##ISA(ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t incx,     \
                                const float *w, ptrdiff_t ldw, float *y, int beta,            \
                                const pb_epi_f32_t *epi);                                     \
    void pb_gemv_axpy_f64_##ISA(ptrdiff_t n, ptrdiff_t k, const double *x, ptrdiff_t incx,    \
                                const double *w, ptrdiff_t ldw, double *y, int beta,          \
                                const pb_epi_f64_t *epi);
PB_DECLARE_GEMV(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_GEMV(avx2)
PB_DECLARE_GEMV(avx512)
#endif
#if defined(__x86_64__) || defined(__i386__)
void pb_pack_t_f32_avx512(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t rows,
                          ptrdiff_t kc, int W);
void pb_pack_t_f64_avx512(double *dst, const double *src, ptrdiff_t ld, ptrdiff_t rows,
                          ptrdiff_t kc, int W);
void pb_gemm_dot_f32_avx512(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                            ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                            ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws,
                            int copy_a);
void pb_gemm_dot_f64_avx512(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *a,
                            ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *c,
                            ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws,
                            int copy_a);
/* The AVX-512 transposed-tile kernels' A^T panel width (tw) and tile columns (tj): the
 * kernels' register tiles (gemm_avx512.c) and the driver's packing (dispatch.c's table) both
 * take them from here. */
#define PB_TT_TW_F32_AVX512 32
#define PB_TT_TJ_F32_AVX512 12
#define PB_TT_TW_F64_AVX512 16
#define PB_TT_TJ_F64_AVX512 8
/* The AVX2 transposed-tile kernels': float32 16 rows of A^T (2 ymm) times 6 columns (12
 * accumulators, the micro-kernel's count; at most VL = 8 columns fit one 8 x 8 transpose);
 * float64 8 rows (2 ymm) times 4 columns (8 accumulators: the 4 x 4 transpose's limit). */
#define PB_TT_TW_F32_AVX2 16
#define PB_TT_TJ_F32_AVX2 6
void pb_gemm_tt_f32_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *at,
                         const float *b, ptrdiff_t rsb, ptrdiff_t csb, float *c, ptrdiff_t ldc,
                         int beta, const pb_epi_f32_t *epi, float *ws);
#define PB_TT_TW_F64_AVX2 8
#define PB_TT_TJ_F64_AVX2 4
void pb_gemm_tt_f64_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *at,
                         const double *b, ptrdiff_t rsb, ptrdiff_t csb, double *c,
                         ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws);
void pb_pack_t_f32_avx2(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t rows,
                        ptrdiff_t kc, int W);
void pb_pack_t_f64_avx2(double *dst, const double *src, ptrdiff_t ld, ptrdiff_t rows,
                        ptrdiff_t kc, int W);
void pb_gemm_tt_f32_avx512(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *at,
                           const float *b, ptrdiff_t rsb, ptrdiff_t csb, float *c,
                           ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws);
void pb_gemm_tt_f64_avx512(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *at,
                           const double *b, ptrdiff_t rsb, ptrdiff_t csb, double *c,
                           ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws);
#define PB_DECLARE_ATB(ISA)                                                                  \
    void pb_gemm_atb_f32_##ISA(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const float *a,          \
                               ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *s,         \
                               int first, float *c, ptrdiff_t ldc, int last, int beta);        \
    void pb_gemm_atb_f64_##ISA(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const double *a,         \
                               ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *s,       \
                               int first, double *c, ptrdiff_t ldc, int last, int beta);
PB_DECLARE_ATB(avx2)
PB_DECLARE_ATB(avx512)
void pb_act_fwd_f32_avx512(float *y, const float *z, ptrdiff_t n, int act, float slope);
void pb_act_fwd_f64_avx512(double *y, const double *z, ptrdiff_t n, int act, double slope);
void pb_act_fwd_f32_avx2(float *y, const float *z, ptrdiff_t n, int act, float slope);
void pb_act_fwd_f64_avx2(double *y, const double *z, ptrdiff_t n, int act, double slope);
void pb_act_bwd_f32_avx512(float *dz, const float *dy, const float *y, ptrdiff_t n, int act,
                           float slope);
void pb_act_bwd_f64_avx512(double *dz, const double *dy, const double *y, ptrdiff_t n, int act,
                           double slope);
void pb_act_bwd_f32_avx2(float *dz, const float *dy, const float *y, ptrdiff_t n, int act,
                         float slope);
void pb_act_bwd_f64_avx2(double *dz, const double *dy, const double *y, ptrdiff_t n, int act,
                         double slope);
#endif

/* Loss kernels the tables point at: losses.c (ref), losses_avx2.c, losses_avx512.c. */
#define PB_DECLARE_LOSS_KERNELS(ISA)                                                        \
    float pb_xent_row_f32_##ISA(float *d, const float *x, ptrdiff_t C, ptrdiff_t label,    \
                                const float *t, float scale);                              \
    double pb_xent_row_f64_##ISA(double *d, const double *x, ptrdiff_t C, ptrdiff_t label, \
                                 const double *t, double scale);                           \
    double pb_bce_block_f32_##ISA(float *d, const float *z, const float *t, ptrdiff_t n,   \
                                  float scale);                                            \
    double pb_bce_block_f64_##ISA(double *d, const double *z, const double *t,             \
                                  ptrdiff_t n, double scale);                              \
    double pb_mse_block_f32_##ISA(float *d, const float *p, const float *q, ptrdiff_t n,   \
                                  float k2);                                               \
    double pb_mse_block_f64_##ISA(double *d, const double *p, const double *q,             \
                                  ptrdiff_t n, double k2);
PB_DECLARE_LOSS_KERNELS(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_LOSS_KERNELS(avx2)
PB_DECLARE_LOSS_KERNELS(avx512)
#endif

/* Spectral-norm kernels (spectral.c), named as the table entries: _ref, _avx2, _avx512. */
#define PB_DECLARE_SPEC(ISA)                                                                 \
    int pb_spec_rows_f32_##ISA(float *s, float *r, const float *w, const float *v,          \
                               ptrdiff_t rows, ptrdiff_t K);                                \
    int pb_spec_rows_f64_##ISA(double *s, double *r, const double *w, const double *v,      \
                               ptrdiff_t rows, ptrdiff_t K);                                \
    float pb_spec_dot_f32_##ISA(const float *a, const float *b, ptrdiff_t n);               \
    double pb_spec_dot_f64_##ISA(const double *a, const double *b, ptrdiff_t n);            \
    void pb_spec_bwd_f32_##ISA(float *out, const float *g, const float *v, float b,         \
                               float inv, ptrdiff_t K);                                     \
    void pb_spec_bwd_f64_##ISA(double *out, const double *g, const double *v, double b,     \
                               double inv, ptrdiff_t K);                                    \
    void pb_spec_div_f32_##ISA(float *out, const float *w, float sigma, ptrdiff_t n);       \
    void pb_spec_div_f64_##ISA(double *out, const double *w, double sigma, ptrdiff_t n);
PB_DECLARE_SPEC(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_SPEC(avx2)
PB_DECLARE_SPEC(avx512)
#endif

/* Optimizer range kernels the tables point at (optim.c). */
#define PB_DECLARE_OPTIM_RANGES(ISA)                                                         \
    void pb_adam_range_f32_##ISA(float *p, float *m, float *v, float *v_max, const float *g, \
                                 ptrdiff_t n, const pb_optim_coef_f32_t *c);               \
    void pb_adam_range_f64_##ISA(double *p, double *m, double *v, double *v_max,           \
                                 const double *g, ptrdiff_t n, const pb_optim_coef_f64_t *c); \
    void pb_adamax_range_f32_##ISA(float *p, float *m, float *u, const float *g,           \
                                   ptrdiff_t n, const pb_optim_coef_f32_t *c);             \
    void pb_adamax_range_f64_##ISA(double *p, double *m, double *u, const double *g,       \
                                   ptrdiff_t n, const pb_optim_coef_f64_t *c);
PB_DECLARE_OPTIM_RANGES(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_OPTIM_RANGES(avx2)
PB_DECLARE_OPTIM_RANGES(avx512)
#endif

/* Aligned workspace; NULL on failure (callers return PB_ERR_NOMEM). */
void *pb_alloc(size_t bytes);
void pb_free(void *p);
/* A PB_ALIGN-aligned scratch buffer of at least `bytes`, owned by the calling thread and
 * reused by its next call (grown, never shrunk, contents not kept; freed when the thread
 * exits). One buffer per slot, one user per slot at a time: the GEMM driver's packing
 * buffers, and the dense backward's dz. NULL on failure. */
enum { PB_WS_GEMM = 0, PB_WS_DZ = 1, PB_WS_SLOTS = 2 };
void *pb_workspace(int slot, size_t bytes);
/* Thread layout of a GEMM: returns the thread count nt (1 for small problems) and a grid
 * tm x tn == nt (tm threads along M in MR tiles, tn along N in NR micro-panels) chosen to
 * balance the tiles per thread, favouring N splits when m < n and B is packed by
 * transposition (b_trans != 0: B's columns contiguous), so that each thread packs and reads
 * only its own slice of B.
 * Depends only on the shape and pb_threads(). */
int pb_gemm_split(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int mr, int nr, int b_trans, int *tm,
                  int *tn);

/* GEMM drivers (gemm.c): the operation of pb_gemm_* with an optional fused epilogue
 * applied on the last K panel. bias (length n) may be NULL. */
int pb_gemm_path_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, ptrdiff_t rsa, ptrdiff_t csa,
                     ptrdiff_t rsb, ptrdiff_t csb, int beta);
int pb_gemm_path_f64(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, ptrdiff_t rsa, ptrdiff_t csa,
                     ptrdiff_t rsb, ptrdiff_t csb, int beta);
int pb_gemm_epi_f32(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                    const float *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                    ptrdiff_t k, int beta, const pb_epi_f32_t *epi);
int pb_gemm_epi_f64(double *c, ptrdiff_t ldc, const double *a, ptrdiff_t rsa, ptrdiff_t csa,
                    const double *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                    ptrdiff_t k, int beta, const pb_epi_f64_t *epi);

/* The fused backward (dense.c): A = dz, dz[o] = dy[o] * act'(y[o]), formed while the packed
 * path packs A, never stored whole. A(i, p) is at offset i*rsa + p*csa of dy and y, with
 * csa == 1 (dx = dz w: each MR-row micro-panel is formed into scratch, then packed as
 * usual) or rsa == 1 (dw = dz^T x: formed row of dz by row, MC values, into the
 * micro-panels). sum (length m, zeroed by the caller, or NULL) receives the sums over p of
 * A's rows (db, for dw), each in p order by the one thread that owns the row. Only for
 * products that pb_gemm_path_* sends to the packed path, or (rsa == 1) to the A^T B path,
 * which forms the dz of each block of PB_ATB_Q rows into scratch (pb_atb_*). */
typedef struct {
    const float *dy, *y;
    int act;
    float slope;
    float *sum;
} pb_dzsrc_f32_t;
typedef struct {
    const double *dy, *y;
    int act;
    double slope;
    double *sum;
} pb_dzsrc_f64_t;
int pb_gemm_dz_f32(float *c, ptrdiff_t ldc, const pb_dzsrc_f32_t *dz, ptrdiff_t rsa,
                   ptrdiff_t csa, const float *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m,
                   ptrdiff_t n, ptrdiff_t k, int beta);
int pb_gemm_dz_f64(double *c, ptrdiff_t ldc, const pb_dzsrc_f64_t *dz, ptrdiff_t rsa,
                   ptrdiff_t csa, const double *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m,
                   ptrdiff_t n, ptrdiff_t k, int beta);
/* dz[r*ldz + j] = dy[r*ld + j] * act'(y[r*ld + j]) for r < rows, j < n (dense.c): the one
 * definition of dz, for the dz pass and the fused packing alike. dz may be NULL (sums only);
 * sum (length n, or NULL) += each column's values, rows in order. */
void pb_dz_rows_f32(float *dz, ptrdiff_t ldz, float *sum, const float *dy, const float *y,
                    ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n, int act, float slope);
void pb_dz_rows_f64(double *dz, ptrdiff_t ldz, double *sum, const double *dy, const double *y,
                    ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n, int act, double slope);

/* ---- scalar activations: the semantics every path reproduces -------------------------------
 * relu(z) = z < 0 ? 0 : z keeps NaN (as PyTorch) and maps -0 to -0, exactly what
 * max(0, z) does in SIMD (maxps returns its second operand on NaN or equality).
 * sigmoid and softplus are written so that no exp() argument is positive: no overflow for
 * any |z|. Derivatives take the OUTPUT y:
 *   relu' = y > 0 (exactly 0 elsewhere, whatever dy is, as PyTorch's threshold_backward);
 *   leaky' = y > 0 ? 1 : slope (slope >= 0, so y > 0 iff z > 0);
 *   sigmoid' = y (1 - y);  tanh' = 1 - y^2;  softplus' = sigmoid(z) = 1 - e^{-y} = -expm1(-y).
 */
#define PB_DEFINE_ACT(T, SFX, EXP, LOG1P, TANH, EXPM1)                                       \
    static inline T pb_act_##SFX(T z, int act, T slope) {                                  \
        switch (act) {                                                                      \
        case PB_ACT_RELU: return z < (T)0 ? (T)0 : z;                                       \
        case PB_ACT_LEAKY_RELU: return z < (T)0 ? slope * z : z;                            \
        case PB_ACT_SIGMOID: {                                                              \
            T e = EXP(-(z < (T)0 ? -z : z));                                                \
            return z >= (T)0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);                          \
        }                                                                                   \
        case PB_ACT_TANH: return TANH(z);                                                   \
        case PB_ACT_SOFTPLUS:                                                               \
            return (z > (T)0 ? z : (T)0) + LOG1P(EXP(-(z < (T)0 ? -z : z)));                \
        default: return z;                                                                  \
        }                                                                                   \
    }                                                                                       \
    static inline T pb_dact_##SFX(T dy, T y, int act, T slope) {                           \
        switch (act) {                                                                      \
        case PB_ACT_RELU: return y > (T)0 ? dy : (T)0;                                        \
        case PB_ACT_LEAKY_RELU: return y > (T)0 ? dy : slope * dy;                          \
        case PB_ACT_SIGMOID: return dy * (y * ((T)1 - y));                                  \
        case PB_ACT_TANH: return dy * ((T)1 - y * y);                                       \
        case PB_ACT_SOFTPLUS: return dy * -EXPM1(-y);                                       \
        default: return dy;                                                                 \
        }                                                                                   \
    }

PB_DEFINE_ACT(float, f32, expf, log1pf, tanhf, expm1f)
PB_DEFINE_ACT(double, f64, exp, log1p, tanh, expm1)

#endif /* PB_INTERNAL_H */
