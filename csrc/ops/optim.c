/* optim.c -- Adam / AdamW and AdaMax: one fused in-place pass per step, many tensors per call.
 *
 * The maths (and the argument contract) is in pybackprop.h's "optimizers" section; this file
 * holds the scalar element functions that define the semantics bit for bit, the portable
 * range kernels, the per-ISA range kernels (optim_simd.inc, with target attributes), and the
 * multi-tensor drivers.
 *
 * Floating point: every element is computed in the parameter dtype with the operations of
 * torch.optim's single-tensor CPU path, in its order (torch.lerp's two-branch formula,
 * v*beta2 then + ((1-beta2)*g)*g, sqrt(v)/sqrt(bc2) + eps, p + (-step_size*m)/denom), each
 * one IEEE-rounded, never fused: the library is compiled as ISO C11 (-std=c11), where GCC's
 * default is -ffp-contract=off, and the intrinsics below never use FMA. So the portable,
 * AVX2 and AVX-512 paths agree bitwise with each other and with the numpy reference.
 * (PyTorch's own vectorised lerp and add-with-alpha use an FMA; it differs from us, and
 * from its own scalar tail, by an ulp here and there.)
 *
 * Threads: the elements of all tensors form one index space [0, total), cut into one
 * contiguous, PB_OPTIM_GRAIN-aligned span per thread; a thread walks the tensors that
 * intersect its span. Work is shared across tensors and inside large ones, and since no
 * element depends on another the result does not depend on the cut.
 */
#include "arch/arch.h"
#include "ops/optim.h"

/* Below this many elements in a call, one thread does it all (a parallel region costs about
 * a microsecond, the update of 4096 float32 elements about as much). */
#define PB_OPTIM_PAR_MIN 8192
/* Span boundaries are multiples of this many elements: whole cache lines, whole vectors. */
#define PB_OPTIM_GRAIN 64

/* ---- the scalar element functions: the semantics every path reproduces ----------------- */
/* max as torch.maximum: NaN if either operand is NaN (the same select as the SIMD code). */
#define PB_DEFINE_OPTIM_ELEM(T, SFX, SQRT, FABS)                                             \
    static inline T pb_maxnan_##SFX(T a, T b) { return (a > b || a != a) ? a : b; }         \
    static inline void pb_adam_elem_##SFX(T *p_, T *m_, T *v_, T *vmax_, T g,              \
                                          const pb_optim_coef_##SFX##_t *c) {             \
        T p = *p_, m = *m_, v = *v_;                                                       \
        if (c->maximize) g = -g;                                                           \
        if (c->wd_mode == PB_WD_COUPLED) g = g + c->wd * p;                                \
        else if (c->wd_mode == PB_WD_DECOUPLED) p = p * c->decay;                          \
        m = (c->lerp_small ? m : g) + c->lerp_coef * (g - m); /* first moment */           \
        v = v * c->b2;                                                                     \
        v = v + (c->c2 * g) * g; /* second moment */                                        \
        T s = v;                                                                           \
        if (c->amsgrad) *vmax_ = s = pb_maxnan_##SFX(*vmax_, v);                           \
        const T denom = SQRT(s) / c->bc2_sqrt + c->eps;                                    \
        *p_ = p + (c->neg_step * m) / denom;                                               \
        *m_ = m;                                                                           \
        *v_ = v;                                                                           \
    }                                                                                      \
    static inline void pb_adamax_elem_##SFX(T *p_, T *m_, T *u_, T g,                     \
                                            const pb_optim_coef_##SFX##_t *c) {           \
        T p = *p_, m = *m_, u = *u_;                                                       \
        if (c->maximize) g = -g;                                                           \
        if (c->wd_mode == PB_WD_COUPLED) g = g + c->wd * p;                                \
        m = (c->lerp_small ? m : g) + c->lerp_coef * (g - m); /* first moment */           \
        u = pb_maxnan_##SFX(u * c->b2, FABS(g) + c->eps);    /* infinity norm */            \
        if (u != (T)0) *p_ = p + (c->neg_step * m) / u;      /* u == 0: no gradient yet */  \
        *m_ = m;                                                                           \
        *u_ = u;                                                                           \
    }                                                                                      \
    void pb_adam_range_##SFX##_ref(T *p, T *m, T *v, T *v_max, const T *g, ptrdiff_t n,    \
                                   const pb_optim_coef_##SFX##_t *c) {                    \
        for (ptrdiff_t i = 0; i < n; ++i)                                                  \
            pb_adam_elem_##SFX(p + i, m + i, v + i, c->amsgrad ? v_max + i : NULL, g[i], c); \
    }                                                                                      \
    void pb_adamax_range_##SFX##_ref(T *p, T *m, T *u, const T *g, ptrdiff_t n,            \
                                     const pb_optim_coef_##SFX##_t *c) {                  \
        for (ptrdiff_t i = 0; i < n; ++i) pb_adamax_elem_##SFX(p + i, m + i, u + i, g[i], c); \
    }

PB_DEFINE_OPTIM_ELEM(float, f32, sqrtf, fabsf)
PB_DEFINE_OPTIM_ELEM(double, f64, sqrt, fabs)

/* ---- per-ISA range kernels -----------------------------------------------------------------
 * optim_simd.inc instantiated per ISA and dtype, written in the vector vocabulary
 * (csrc/simd/vec_<isa>_<dtype>.h). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd/vec_avx2.h"
#include "simd/vec_avx512.h"

#define TARGET PB_TARGET_AVX512
#define ISA avx512
#define T float
#define CSFX f32
#include "simd/vec_avx512_f32.h"
#include "ops/optim_simd.inc"
#include "simd/vec_end.h"
#define T double
#define CSFX f64
#include "simd/vec_avx512_f64.h"
#include "ops/optim_simd.inc"
#include "simd/vec_end.h"
#undef TARGET
#undef ISA

#define TARGET PB_TARGET_AVX2
#define ISA avx2
#define T float
#define CSFX f32
#include "simd/vec_avx2_f32.h"
#include "ops/optim_simd.inc"
#include "simd/vec_end.h"
#define T double
#define CSFX f64
#include "simd/vec_avx2_f64.h"
#include "ops/optim_simd.inc"
#include "simd/vec_end.h"
#undef TARGET
#undef ISA
#endif /* x86 */

/* ---- multi-tensor drivers ------------------------------------------------------------------ */

/* Start of thread t's span of [0, total) among nt threads (a multiple of PB_OPTIM_GRAIN;
 * the last span ends at total). */
static ptrdiff_t pb_optim_cut(ptrdiff_t total, int t, int nt) {
    if (t >= nt) return total;
    return (total / PB_OPTIM_GRAIN) * t / nt * PB_OPTIM_GRAIN;
}

/* Sum of the sizes, or -1 if n_tensors < 0, a size < 0, or the sizes overflow. */
static ptrdiff_t pb_optim_total(const ptrdiff_t *size, ptrdiff_t n_tensors) {
    if (n_tensors < 0 || (n_tensors > 0 && size == NULL)) return -1;
    ptrdiff_t total = 0;
    for (ptrdiff_t k = 0; k < n_tensors; ++k) {
        if (size[k] < 0 || size[k] > PTRDIFF_MAX - total) return -1;
        total += size[k];
    }
    return total;
}

/* The hyperparameter checks of every optimizer (NaN fails them all). */
static int pb_optim_bad_hyper(int64_t step, double lr, double beta1, double beta2, double eps,
                              double weight_decay) {
    return !(step >= 1) || !(lr >= 0.0) || !(beta1 >= 0.0 && beta1 < 1.0) ||
           !(beta2 >= 0.0 && beta2 < 1.0) || !(eps >= 0.0) || !(weight_decay >= 0.0);
}

/* The scalars of one step, as torch forms them: in double, each rounded once to T.
 *   lerp weight w = 1 - beta1; torch.lerp uses m + w (g - m) when |w| < 0.5, else
 *   g - (g - m)(1 - w) == g + (w - 1)(g - m) exactly (w - 1 = -(1 - w) in any rounding).
 *   step_size = lr / (1 - beta1^t);  bc2_sqrt = (1 - beta2^t) ** 0.5 (pow, as torch). */
#define PB_DEFINE_OPTIM_DRIVERS(T, SFX)                                                      \
    /* 1 if the pointer array a exists and holds no NULL for a non-empty tensor. */          \
    static int pb_optim_ptrs_ok_##SFX(const T *const *a, const ptrdiff_t *size,              \
                                      ptrdiff_t n_tensors) {                               \
        if (n_tensors > 0 && a == NULL) return 0;                                          \
        for (ptrdiff_t k = 0; k < n_tensors; ++k)                                          \
            if (size[k] > 0 && a[k] == NULL) return 0;                                     \
        return 1;                                                                          \
    }                                                                                      \
                                                                                           \
    static pb_optim_coef_##SFX##_t pb_optim_coef_##SFX(int64_t step, double lr, double beta1, \
                                                       double beta2, double eps, double wd, \
                                                       int wd_mode, int amsgrad,           \
                                                       int maximize) {                     \
        pb_optim_coef_##SFX##_t c;                                                         \
        const T w = (T)(1.0 - beta1);                                                      \
        c.lerp_small = (w < (T)0 ? -w : w) < (T)0.5;                                       \
        c.lerp_coef = c.lerp_small ? w : w - (T)1;                                         \
        c.wd = (T)wd;                                                                      \
        c.decay = (T)(1.0 - lr * wd);                                                      \
        c.wd_mode = wd != 0.0 ? wd_mode : PB_WD_NONE;                                      \
        c.b2 = (T)beta2;                                                                   \
        c.c2 = (T)(1.0 - beta2);                                                           \
        c.bc2_sqrt = (T)pow(1.0 - pow(beta2, (double)step), 0.5);                          \
        c.eps = (T)eps;                                                                    \
        c.neg_step = (T)(-(lr / (1.0 - pow(beta1, (double)step))));                        \
        c.amsgrad = amsgrad != 0;                                                          \
        c.maximize = maximize != 0;                                                        \
        return c;                                                                          \
    }                                                                                      \
                                                                                           \
    /* The parallel walk: thread t updates [cut(t), cut(t+1)) of the concatenated tensors,  \
     * piece by piece, with the active path's Adam (adamax == 0) or AdaMax range kernel    \
     * (then s is u and v_max is unused). */                                               \
    static void pb_optim_run_##SFX(int adamax, T *const *param, T *const *m, T *const *s,  \
                                   T *const *v_max, const T *const *grad,                  \
                                   const ptrdiff_t *size, ptrdiff_t n_tensors,             \
                                   ptrdiff_t total, const pb_optim_coef_##SFX##_t *c) {    \
        const pb_optim_kernels_t *kern = pb_optim_kernels(pb_arch()); /* read once */      \
        const pb_adam_range_##SFX##_t adam = kern->adam_##SFX;                             \
        const pb_adamax_range_##SFX##_t amax = kern->adamax_##SFX;                         \
        const int nt = total >= PB_OPTIM_PAR_MIN ? pb_threads() : 1;                       \
        (void)nt; /* unused without OpenMP */                                              \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                \
        {                                                                                  \
            PB_FP_SCOPE;                                                                   \
            int t = 0, nth = 1;                                                            \
            PB_OPTIM_THREAD_ID(t, nth);                                                    \
            const ptrdiff_t lo = pb_optim_cut(total, t, nth);                              \
            const ptrdiff_t hi = pb_optim_cut(total, t + 1, nth);                          \
            ptrdiff_t off = 0;                                                             \
            for (ptrdiff_t k = 0; k < n_tensors && off < hi; off += size[k], ++k) {        \
                const ptrdiff_t a = PB_MAX(lo, off) - off;                                 \
                const ptrdiff_t b = PB_MIN(hi, off + size[k]) - off;                       \
                if (a >= b) continue;                                                      \
                if (adamax)                                                                \
                    amax(param[k] + a, m[k] + a, s[k] + a, grad[k] + a, b - a, c);         \
                else                                                                       \
                    adam(param[k] + a, m[k] + a, s[k] + a, v_max ? v_max[k] + a : NULL,    \
                         grad[k] + a, b - a, c);                                           \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    int pb_adam_step_##SFX(T *const *param, T *const *m, T *const *v, T *const *v_max,     \
                           const T *const *grad, const ptrdiff_t *size, ptrdiff_t n_tensors, \
                           int64_t step, double lr, double beta1, double beta2, double eps,  \
                           double weight_decay, int decoupled_weight_decay, int amsgrad,   \
                           int maximize) {                                                 \
        PB_FP_SCOPE;                                                                       \
        const ptrdiff_t total = pb_optim_total(size, n_tensors);                           \
        if (total < 0 || pb_optim_bad_hyper(step, lr, beta1, beta2, eps, weight_decay) ||  \
            !pb_optim_ptrs_ok_##SFX((const T *const *)param, size, n_tensors) ||           \
            !pb_optim_ptrs_ok_##SFX((const T *const *)m, size, n_tensors) ||               \
            !pb_optim_ptrs_ok_##SFX((const T *const *)v, size, n_tensors) ||               \
            (amsgrad && !pb_optim_ptrs_ok_##SFX((const T *const *)v_max, size, n_tensors)) || \
            !pb_optim_ptrs_ok_##SFX(grad, size, n_tensors))                                \
            return PB_ERR_ARG;                                                             \
        const pb_optim_coef_##SFX##_t c = pb_optim_coef_##SFX(                             \
            step, lr, beta1, beta2, eps, weight_decay,                                     \
            decoupled_weight_decay ? PB_WD_DECOUPLED : PB_WD_COUPLED, amsgrad, maximize);  \
        pb_optim_run_##SFX(0, param, m, v, amsgrad ? v_max : NULL, grad, size, n_tensors,   \
                           total, &c);                                                     \
        return PB_OK;                                                                      \
    }                                                                                      \
                                                                                           \
    int pb_adamax_step_##SFX(T *const *param, T *const *m, T *const *u, const T *const *grad, \
                             const ptrdiff_t *size, ptrdiff_t n_tensors, int64_t step,     \
                             double lr, double beta1, double beta2, double eps,            \
                             double weight_decay, int maximize) {                          \
        PB_FP_SCOPE;                                                                       \
        const ptrdiff_t total = pb_optim_total(size, n_tensors);                           \
        if (total < 0 || pb_optim_bad_hyper(step, lr, beta1, beta2, eps, weight_decay) ||  \
            !pb_optim_ptrs_ok_##SFX((const T *const *)param, size, n_tensors) ||           \
            !pb_optim_ptrs_ok_##SFX((const T *const *)m, size, n_tensors) ||               \
            !pb_optim_ptrs_ok_##SFX((const T *const *)u, size, n_tensors) ||               \
            !pb_optim_ptrs_ok_##SFX(grad, size, n_tensors))                                \
            return PB_ERR_ARG;                                                             \
        const pb_optim_coef_##SFX##_t c = pb_optim_coef_##SFX(                             \
            step, lr, beta1, beta2, eps, weight_decay, PB_WD_COUPLED, 0, maximize);        \
        pb_optim_run_##SFX(1, param, m, u, NULL, grad, size, n_tensors, total, &c);         \
        return PB_OK;                                                                      \
    }

#if PB_OMP
#define PB_OPTIM_THREAD_ID(t, nth) (t = omp_get_thread_num(), nth = omp_get_num_threads())
#else
#define PB_OPTIM_THREAD_ID(t, nth) ((void)0)
#endif

PB_DEFINE_OPTIM_DRIVERS(float, f32)
PB_DEFINE_OPTIM_DRIVERS(double, f64)
