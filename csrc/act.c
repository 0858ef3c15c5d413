/* act.c -- standalone elementwise activation kernels, forward/backward pairs.
 *   forward:  y[i] = act(z[i])
 *   backward: dz[i] = dy[i] * act'(y[i])      (act' from the OUTPUT y, see pb_internal.h)
 * n elements, contiguous. Threads take static contiguous chunks; each element is computed
 * the same way whatever the thread count.
 */
#include "pb_internal.h"

/* Below this many elements a parallel region costs more than it saves. */
#define PB_ELEMWISE_PAR_MIN 32768

#define PB_DEFINE_ACT_KERNELS(T, SFX)                                                      \
    int pb_activation_forward_##SFX(T *y, const T *z, ptrdiff_t n, int act, T slope) {    \
        PB_FP_SCOPE;                                                                       \
        if (n < 0 || act < PB_ACT_IDENTITY || act > PB_ACT_SOFTPLUS) return PB_ERR_ARG;    \
        const int nt = n >= PB_ELEMWISE_PAR_MIN ? pb_threads() : 1;                        \
        (void)nt; /* unused without OpenMP */                                              \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                \
        {                                                                                  \
            PB_FP_SCOPE;                                                                   \
            _Pragma("omp for schedule(static) nowait")                                     \
            for (ptrdiff_t i = 0; i < n; ++i) y[i] = pb_act_##SFX(z[i], act, slope);       \
        }                                                                                  \
        return PB_OK;                                                                      \
    }                                                                                      \
    int pb_activation_backward_##SFX(T *dz, const T *dy, const T *y, ptrdiff_t n, int act, \
                                     T slope) {                                            \
        PB_FP_SCOPE;                                                                       \
        if (n < 0 || act < PB_ACT_IDENTITY || act > PB_ACT_SOFTPLUS) return PB_ERR_ARG;    \
        const int nt = n >= PB_ELEMWISE_PAR_MIN ? pb_threads() : 1;                        \
        (void)nt; /* unused without OpenMP */                                              \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                \
        {                                                                                  \
            PB_FP_SCOPE;                                                                   \
            _Pragma("omp for schedule(static) nowait")                                     \
            for (ptrdiff_t i = 0; i < n; ++i) dz[i] = pb_dact_##SFX(dy[i], y[i], act, slope); \
        }                                                                                  \
        return PB_OK;                                                                      \
    }

PB_DEFINE_ACT_KERNELS(float, f32)
PB_DEFINE_ACT_KERNELS(double, f64)
