/* gemm_ref.c -- portable micro-kernels (plain C, any CPU).
 *
 * The contract is the one written in pb_internal.h. The tile is accumulated in a local
 * array with constant bounds so the compiler can vectorise it for whatever baseline the
 * build targets; the epilogue uses the scalar activations every path must match.
 */
#include "pb_internal.h"


#define PB_REF_UKR(T, SFX, NR)                                                              \
    void pb_gemm_ukr_##SFX##_ref(ptrdiff_t k, const T *ap, const T *bp, T *c,        \
                                        ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,  \
                                        const pb_epi_##SFX##_t *epi) {                      \
        T acc[PB_REF_MR][NR] = {{0}};                                                          \
        for (ptrdiff_t p = 0; p < k; ++p)                                                   \
            for (int i = 0; i < PB_REF_MR; ++i) {                                              \
                const T a = ap[p * PB_REF_MR + i];                                             \
                for (int j = 0; j < NR; ++j) acc[i][j] += a * bp[p * NR + j];               \
            }                                                                               \
        for (ptrdiff_t i = 0; i < m; ++i)                                                   \
            for (ptrdiff_t j = 0; j < n; ++j) {                                             \
                T v = acc[i][j];                                                            \
                if (beta) v += c[i * ldc + j];                                              \
                if (epi != NULL) {                                                          \
                    if (epi->bias != NULL) v += epi->bias[j];                               \
                    v = pb_act_##SFX(v, epi->act, epi->slope);                              \
                }                                                                           \
                c[i * ldc + j] = v;                                                         \
            }                                                                               \
    }

PB_REF_UKR(float, f32, PB_REF_NR_F32)
PB_REF_UKR(double, f64, PB_REF_NR_F64)

