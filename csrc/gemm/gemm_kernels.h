/* gemm_kernels.h -- the GEMM-layer kernels each ISA file defines (gemm_ref.c,
 * gemm_avx2.c, gemm_avx512.c), named as the ISA tables (arch/isa_tables.c) take them, and
 * the register tiles of the transposed-tile kernels, which the kernels and the tables share.
 * Contracts: gemm/gemm.h.
 */
#ifndef PB_GEMM_KERNELS_H
#define PB_GEMM_KERNELS_H
#include "gemm/gemm.h"

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
 * kernels' register tiles (gemm_avx512.c) and the driver's packing (arch/isa_tables.c) both
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
#endif /* PB_GEMM_KERNELS_H */
