/* act.c -- standalone elementwise activation kernels, forward/backward pairs.
 *   forward:  y[i] = act(z[i])
 *   backward: dz[i] = dy[i] * act'(s[i])      (s the OUTPUT y, or for gelu, gelu_tanh and
 *             silu the pre-activation z: see core/activation.h)
 * n elements, contiguous. Threads take static contiguous chunks; each element is computed
 * the same way whatever the thread count.
 */
#include "arch/arch.h"

/* Below this many elements a parallel region costs more than it saves. */
#define PB_ELEMWISE_PAR_MIN 32768

/* One loop per activation: with ACT a constant, pb_act_* / pb_dact_* inline to a single
 * expression, so the simple ones vectorise.
 * The same scalar functions either way: the same bits. A SIMD path's forward takes every
 * activation through its vector kernel instead (the fused epilogue's code; relu and
 * leaky_relu too: these loops, built for the baseline ISA, vectorise to 128 bits only), and
 * its backward through the vector form of pb_dact (ISA file's act_bwd). */
#define PB_ACT_SWITCH(LOOP)                                                                 \
    switch (act) {                                                                          \
    case PB_ACT_RELU: LOOP(PB_ACT_RELU); break;                                            \
    case PB_ACT_LEAKY_RELU: LOOP(PB_ACT_LEAKY_RELU); break;                                \
    case PB_ACT_SIGMOID: LOOP(PB_ACT_SIGMOID); break;                                      \
    case PB_ACT_TANH: LOOP(PB_ACT_TANH); break;                                            \
    case PB_ACT_SOFTPLUS: LOOP(PB_ACT_SOFTPLUS); break;                                     \
    case PB_ACT_GELU: LOOP(PB_ACT_GELU); break;                                            \
    case PB_ACT_GELU_TANH: LOOP(PB_ACT_GELU_TANH); break;                                  \
    case PB_ACT_SILU: LOOP(PB_ACT_SILU); break;                                            \
    default: LOOP(PB_ACT_IDENTITY); break;                                                 \
    }

/* CALL over [i0, i1) = [0, n) on the calling thread for small n, else over each thread's
 * static contiguous share (no parallel region at all below PB_ELEMWISE_PAR_MIN). */
#define PB_ELEMWISE_RUN(n, CALL)                                                            \
    do {                                                                                    \
        const int nt_ = (n) >= PB_ELEMWISE_PAR_MIN ? pb_threads() : 1;                      \
        if (nt_ == 1) {                                                                     \
            const ptrdiff_t i0 = 0, i1 = (n);                                               \
            CALL;                                                                           \
            break;                                                                          \
        }                                                                                  \
        (void)nt_; /* unused without OpenMP */                                              \
        _Pragma("omp parallel num_threads(nt_)")                                            \
        {                                                                                   \
            PB_FP_SCOPE;                                                                    \
            const ptrdiff_t t_ = pb_thread_id(), m_ = pb_team_size();                       \
            const ptrdiff_t i0 = (n) * t_ / m_, i1 = (n) * (t_ + 1) / m_;                   \
            CALL;                                                                           \
        }                                                                                  \
    } while (0)

#define PB_DEFINE_ACT_KERNELS(T, SFX)                                                      \
    /* elements [i0, i1) */                                                                \
    static void act_fwd_##SFX(pb_act_fwd_##SFX##_t vec, T *y, const T *z, ptrdiff_t i0,    \
                              ptrdiff_t i1, int act, T slope) {                            \
        if (vec != NULL) {                                                                 \
            vec(y + i0, z + i0, i1 - i0, act, slope); /* the fused epilogue's vector code */ \
            return;                                                                        \
        }                                                                                  \
        PB_ACT_SWITCH(PB_ACT_FWD_LOOP_##SFX)                                               \
    }                                                                                      \
    static void act_bwd_##SFX(pb_act_bwd_##SFX##_t vec, T *dz, const T *dy, const T *y,    \
                              ptrdiff_t i0, ptrdiff_t i1, int act, T slope) {              \
        if (vec != NULL) {                                                                 \
            vec(dz + i0, dy + i0, y + i0, i1 - i0, act, slope);                            \
            return;                                                                        \
        }                                                                                  \
        PB_ACT_SWITCH(PB_ACT_BWD_LOOP_##SFX)                                               \
    }                                                                                      \
    int pb_activation_forward_##SFX(T *y, const T *z, ptrdiff_t n, int act, T slope) {    \
        PB_FP_SCOPE;                                                                       \
        if (n < 0 || !pb_act_valid(act)) return PB_ERR_ARG;                                \
        const pb_act_fwd_##SFX##_t vec = pb_arch()->act_fwd_##SFX; /* once per call */     \
        PB_ELEMWISE_RUN(n, act_fwd_##SFX(vec, y, z, i0, i1, act, slope));                  \
        return PB_OK;                                                                      \
    }                                                                                      \
    int pb_activation_backward_##SFX(T *dz, const T *dy, const T *y, ptrdiff_t n, int act, \
                                     T slope) {                                            \
        PB_FP_SCOPE;                                                                       \
        if (n < 0 || !pb_act_valid(act)) return PB_ERR_ARG;                                \
        const pb_act_bwd_##SFX##_t vec = pb_arch()->act_bwd_##SFX; /* once per call */     \
        PB_ELEMWISE_RUN(n, act_bwd_##SFX(vec, dz, dy, y, i0, i1, act, slope));             \
        return PB_OK;                                                                      \
    }

#define PB_ACT_FWD_LOOP_f32(ACT) \
    for (ptrdiff_t i = i0; i < i1; ++i) y[i] = pb_act_f32(z[i], ACT, slope)
#define PB_ACT_FWD_LOOP_f64(ACT) \
    for (ptrdiff_t i = i0; i < i1; ++i) y[i] = pb_act_f64(z[i], ACT, slope)
#define PB_ACT_BWD_LOOP_f32(ACT) \
    for (ptrdiff_t i = i0; i < i1; ++i) dz[i] = pb_dact_f32(dy[i], y[i], ACT, slope)
#define PB_ACT_BWD_LOOP_f64(ACT) \
    for (ptrdiff_t i = i0; i < i1; ++i) dz[i] = pb_dact_f64(dy[i], y[i], ACT, slope)

PB_DEFINE_ACT_KERNELS(float, f32)
PB_DEFINE_ACT_KERNELS(double, f64)
