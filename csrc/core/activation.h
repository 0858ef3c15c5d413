/* activation.h -- the scalar activation functions and their derivatives: the semantics
 * that every path (GEMM epilogues, vector kernels, the dense backward's dz) reproduces.
 */
#ifndef PB_ACTIVATION_H
#define PB_ACTIVATION_H
#include "core/core.h"

/* ---- scalar activations: the semantics every path reproduces -------------------------------
 * relu(z) = z < 0 ? 0 : z keeps NaN (as PyTorch) and maps -0 to -0, exactly what
 * max(0, z) does in SIMD (maxps returns its second operand on NaN or equality).
 * sigmoid and softplus are written so that no exp() argument is positive: no overflow for
 * any |z|. Derivatives take the OUTPUT y (the pre-activation kinds below: z):
 *   relu' = y > 0 (exactly 0 elsewhere, whatever dy is, as PyTorch's threshold_backward);
 *   leaky' = y > 0 ? 1 : slope (slope >= 0, so y > 0 iff z > 0);
 *   sigmoid' = y (1 - y);  tanh' = 1 - y^2;  softplus' = sigmoid(z) = 1 - e^{-y} = -expm1(-y).
 */
/* ---- pre-activation kinds: gelu, gelu_tanh, silu ---------------------------------------
 * Their derivative needs z (y alone does not determine it: gelu and silu are not monotone),
 * so pb_dact takes z for them (pb_act_takes_z). Each is evaluated in a wider type W (double
 * for float32, x87 long double for float64) and rounded once:
 *   gelu(z)      = z Phi(z),   Phi(z) = erfc(-z / sqrt 2) / 2
 *                  (erfc, not 1 + erf: no cancellation in the left tail)
 *   gelu_tanh(z) = z sigmoid(w),  w = 2 sqrt(2/pi) (z + 0.044715 z^3)
 *                  (= z (1 + tanh(w / 2)) / 2, PyTorch's approximate="tanh", without the
 *                  cancellation of 1 + tanh in the left tail)
 *   silu(z)      = z sigmoid(z)
 *   gelu'(z)      = Phi(z) + z phi(z),  phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
 *   gelu_tanh'(z) = s + z s (1 - s) w'(z),  s = sigmoid(w),  w' = 2 sqrt(2/pi) (1 + 3 0.044715 z^2)
 *   silu'(z)      = s (1 + z (1 - s)),  s = sigmoid(z),  1 - s = sigmoid(-z)
 * W's extra bits cover the rounding of the arguments -z / sqrt 2 and w, whose relative error
 * the tails multiply by up to ~z^2 and ~|w|. Signs: f(-0) = -0 for all three (z times a
 * positive factor); f(-inf) = -inf * 0 = NaN as PyTorch's formulas give. */
/* Whether act names an activation (enum pb_act: IDENTITY to SILU, the last). */
static inline int pb_act_valid(int act) { return act >= PB_ACT_IDENTITY && act <= PB_ACT_SILU; }
static inline int pb_act_takes_z(int act) {
    return act == PB_ACT_GELU || act == PB_ACT_GELU_TANH || act == PB_ACT_SILU;
}
#define PB_GELU_RSQRT2 0.707106781186547524400844362104849039L /* 1 / sqrt 2 */
#define PB_GELU_RSQRT2PI 0.398942280401432677939946059934381868L /* 1 / sqrt(2 pi) */
#define PB_GELU_TANH_C1 1.59576912160573071175569963213149190L /* 2 sqrt(2/pi) */
#define PB_GELU_TANH_C3 (PB_GELU_TANH_C1 * 0.044715L)

#define PB_DEFINE_PREACT(W, SFX, EXP, ERFC)                                                 \
    static inline W pb_sigmoid_w_##SFX(W t) {                                               \
        const W e = EXP(-(t < (W)0 ? -t : t));                                              \
        return t >= (W)0 ? (W)1 / ((W)1 + e) : e / ((W)1 + e);                              \
    }                                                                                       \
    static inline W pb_preact_##SFX(W z, int act) {                                         \
        switch (act) {                                                                      \
        case PB_ACT_GELU: return z * ((W)0.5 * ERFC(-z * (W)PB_GELU_RSQRT2));               \
        case PB_ACT_GELU_TANH:                                                              \
            return z * pb_sigmoid_w_##SFX(z * ((W)PB_GELU_TANH_C1 + (W)PB_GELU_TANH_C3 * z * z)); \
        default: return z * pb_sigmoid_w_##SFX(z); /* silu */                               \
        }                                                                                   \
    }                                                                                       \
    static inline W pb_dpreact_##SFX(W z, int act) {                                        \
        switch (act) {                                                                      \
        case PB_ACT_GELU:                                                                   \
            return (W)0.5 * ERFC(-z * (W)PB_GELU_RSQRT2) +                                  \
                   z * (EXP((W)-0.5 * z * z) * (W)PB_GELU_RSQRT2PI);                        \
        case PB_ACT_GELU_TANH: {                                                            \
            const W z2 = z * z;                                                             \
            const W w = z * ((W)PB_GELU_TANH_C1 + (W)PB_GELU_TANH_C3 * z2);                 \
            const W s = pb_sigmoid_w_##SFX(w), sm = pb_sigmoid_w_##SFX(-w);                 \
            return s + z * (s * sm) * ((W)PB_GELU_TANH_C1 + (W)3 * (W)PB_GELU_TANH_C3 * z2); \
        }                                                                                   \
        default: /* silu */                                                                 \
            return pb_sigmoid_w_##SFX(z) * ((W)1 + z * pb_sigmoid_w_##SFX(-z));             \
        }                                                                                   \
    }
PB_DEFINE_PREACT(double, f32, exp, erfc)
PB_DEFINE_PREACT(long double, f64, expl, erfcl)

#define PB_DEFINE_ACT(T, SFX, EXP, LOG1P, TANH, EXPM1, W)                                   \
    static inline T pb_act_##SFX(T z, int act, T slope) {                                   \
        switch (act) {                                                                      \
        case PB_ACT_GELU:                                                                   \
        case PB_ACT_GELU_TANH:                                                              \
        case PB_ACT_SILU: return (T)pb_preact_##SFX((W)z, act);                             \
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
    static inline T pb_dact_##SFX(T dy, T y, int act, T slope) {                            \
        switch (act) {                                                                      \
        case PB_ACT_GELU:                                                                   \
        case PB_ACT_GELU_TANH:                                                              \
        case PB_ACT_SILU: return dy * (T)pb_dpreact_##SFX((W)y, act); /* y holds z */       \
        case PB_ACT_RELU: return y > (T)0 ? dy : (T)0;                                      \
        case PB_ACT_LEAKY_RELU: return y > (T)0 ? dy : slope * dy;                          \
        case PB_ACT_SIGMOID: return dy * (y * ((T)1 - y));                                  \
        case PB_ACT_TANH: return dy * ((T)1 - y * y);                                       \
        case PB_ACT_SOFTPLUS: return dy * -EXPM1(-y);                                       \
        default: return dy;                                                                 \
        }                                                                                   \
    }

PB_DEFINE_ACT(float, f32, expf, log1pf, tanhf, expm1f, double)
PB_DEFINE_ACT(double, f64, exp, log1p, tanh, expm1, long double)
#endif /* PB_ACTIVATION_H */
