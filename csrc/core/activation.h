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
#endif /* PB_ACTIVATION_H */
