/* gemm_ref.c -- portable micro-kernels (plain C, any CPU).
 *
 * The contract is the one written in gemm/gemm.h. The tile is accumulated in a local
 * array with constant bounds so the compiler can vectorise it for whatever baseline the
 * build targets; the epilogue uses the scalar activations every path must match.
 */
#include "gemm/gemm_kernels.h"


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
                    if (epi->zoff != 0) *PB_ZPTR(c + i * ldc + j, epi->zoff) = v;           \
                    v = pb_act_##SFX(v, epi->act, epi->slope);                              \
                }                                                                           \
                c[i * ldc + j] = v;                                                         \
            }                                                                               \
    }

PB_REF_UKR(float, f32, PB_REF_NR_F32)
PB_REF_UKR(double, f64, PB_REF_NR_F64)


/* Portable GEMVs (contract in gemm/gemm.h), each y[j] summed in p order. */
#define PB_REF_GEMV(T, SFX)                                                                 \
    static T epi_##SFX(T v, T *y, int beta, const pb_epi_##SFX##_t *epi, ptrdiff_t j) {    \
        if (beta) v += *y;                                                                  \
        if (epi != NULL) {                                                                  \
            if (epi->bias != NULL) v += epi->bias[j];                                       \
            if (epi->zoff != 0) *PB_ZPTR(y, epi->zoff) = v;                                 \
            v = pb_act_##SFX(v, epi->act, epi->slope);                                      \
        }                                                                                   \
        return v;                                                                           \
    }                                                                                       \
    void pb_gemv_dot_##SFX##_ref(ptrdiff_t n, ptrdiff_t k, const T *x, const T *w,         \
                                 ptrdiff_t ldw, T *y, int beta,                             \
                                 const pb_epi_##SFX##_t *epi) {                             \
        for (ptrdiff_t j = 0; j < n; ++j) {                                                 \
            T s = 0;                                                                        \
            for (ptrdiff_t p = 0; p < k; ++p) s += x[p] * w[j * ldw + p];                   \
            y[j] = epi_##SFX(s, y + j, beta, epi, j);                                       \
        }                                                                                   \
    }                                                                                       \
    void pb_gemv_axpy_##SFX##_ref(ptrdiff_t n, ptrdiff_t k, const T *x, ptrdiff_t incx,    \
                                  const T *w, ptrdiff_t ldw, T *y, int beta,                \
                                  const pb_epi_##SFX##_t *epi) {                            \
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 64) {                                          \
            T s[64] = {0};                                                                  \
            const ptrdiff_t nj = PB_MIN((ptrdiff_t)64, n - j0);                             \
            for (ptrdiff_t p = 0; p < k; ++p)                                               \
                for (ptrdiff_t j = 0; j < nj; ++j) s[j] += x[p * incx] * w[p * ldw + j0 + j]; \
            for (ptrdiff_t j = 0; j < nj; ++j)                                              \
                y[j0 + j] = epi_##SFX(s[j], y + j0 + j, beta, epi, j0 + j);                 \
        }                                                                                   \
    }

PB_REF_GEMV(float, f32)
PB_REF_GEMV(double, f64)
