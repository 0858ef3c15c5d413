/* gemm_avx2.c -- AVX2+FMA micro-kernels.
 *
 * Per-function target attributes only (see gemm_avx512.c). 16 ymm registers:
 * f32: 6 x 16 tile (6 rows x 2 ymm), 12 accumulators; f64: 6 x 8 (6 rows x 2 ymm).
 */
#include "pb_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TARGET "avx2,fma"
#define MR 6
#define NV 2
#define ATB_MR 4 /* the A^T B kernel: up to ATB_MR x ATB_NV accumulators */
#define ATB_NV 3

/* ---- float32 ---- */
#define T float
#define SFX f32
#define EPI_T pb_epi_f32_t
#define UKR_NAME pb_gemm_ukr_f32_avx2_6x16
#define GEMV_DOT_NAME pb_gemv_dot_f32_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f32_avx2
#define VREDUCE(v)                                                                           \
    __extension__({                                                                          \
        __m128 s_ = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));      \
        s_ = _mm_add_ps(s_, _mm_movehl_ps(s_, s_));                                          \
        _mm_cvtss_f32(_mm_add_ss(s_, _mm_movehdup_ps(s_)));                                  \
    })
#define VL 8
#define VEC __m256
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define MASK_T __m256i
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, mk) _mm256_maskload_ps(p, mk)
#define VSTOREM(p, mk, v) _mm256_maskstore_ps(p, mk, v)
#define VRELU(v) _mm256_max_ps(_mm256_setzero_ps(), v)
#define VLEAKY(v, s) \
    _mm256_blendv_ps(v, _mm256_mul_ps(v, s), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ))
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VMAXV(a, b) _mm256_max_ps(a, b)
#define VMINV(a, b) _mm256_min_ps(a, b)
#define VABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define VROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VPOW2I(k) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23))
/* p * 2^n in two exact steps (each factor a normal float) */
#define VSCALE(p, n)                                                                          \
    __extension__({                                                                           \
        const __m256i ni_ = _mm256_cvtps_epi32(n), n1_ = _mm256_srai_epi32(ni_, 1);           \
        _mm256_mul_ps(_mm256_mul_ps(p, VPOW2I(n1_)), VPOW2I(_mm256_sub_epi32(ni_, n1_)));     \
    })
#define VBLEND_LT(x, c, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, c, _CMP_LT_OQ))
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm256_setzero_ps(), a, b)
#define VCOPYSIGN(m, s) _mm256_or_ps(m, _mm256_and_ps(s, _mm256_set1_ps(-0.0f)))
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f32_avx2)
#include "vmath_f32.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define ACT_FWD_NAME pb_act_fwd_f32_avx2
#define ACT_BWD_NAME pb_softplus_bwd_f32_avx2
#define VEXPM1(v) FNAME(expm1)(v)
#define ATB_NAME pb_gemm_atb_f32_avx2
#include "ukr_simd.inc"
#undef ATB_NAME
#undef ACT_FWD_NAME
#undef ACT_BWD_NAME
#undef VEXPM1
#undef VSIGMOID
#undef VTANH
#undef VSOFTPLUS
#undef T
#undef SFX
#undef EPI_T
#undef UKR_NAME
#undef GEMV_DOT_NAME
#undef GEMV_AXPY_NAME
#undef VREDUCE
#undef VL
#undef VEC
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VFMA
#undef VADD
#undef MASK_T
#undef VMASK
#undef VLOADM
#undef VSTOREM
#undef VRELU
#undef VLEAKY

/* ---- float64 ---- */
#define T double
#define SFX f64
#define EPI_T pb_epi_f64_t
#define UKR_NAME pb_gemm_ukr_f64_avx2_6x8
#define GEMV_DOT_NAME pb_gemv_dot_f64_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f64_avx2
#define VREDUCE(v)                                                                           \
    __extension__({                                                                          \
        __m128d s_ = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));    \
        _mm_cvtsd_f64(_mm_add_sd(s_, _mm_unpackhi_pd(s_, s_)));                              \
    })
#define VL 4
#define VEC __m256d
#define VZERO() _mm256_setzero_pd()
#define VLOAD(p) _mm256_loadu_pd(p)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VSET1(x) _mm256_set1_pd(x)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VADD(a, b) _mm256_add_pd(a, b)
#define MASK_T __m256i
#define VMASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3))
#define VLOADM(p, mk) _mm256_maskload_pd(p, mk)
#define VSTOREM(p, mk, v) _mm256_maskstore_pd(p, mk, v)
#define VRELU(v) _mm256_max_pd(_mm256_setzero_pd(), v)
#define VLEAKY(v, s) \
    _mm256_blendv_pd(v, _mm256_mul_pd(v, s), _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ))
#define ATB_NAME pb_gemm_atb_f64_avx2
#include "ukr_simd.inc"
#undef ATB_NAME

#endif
