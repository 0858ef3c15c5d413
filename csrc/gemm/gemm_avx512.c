/* gemm_avx512.c -- AVX-512F micro-kernels.
 *
 * Compiled with per-function target attributes only, so this file builds on any x86-64
 * compiler and its code runs only after arch/ has checked the CPU.
 * f32: 12 x 32 tile (12 rows x 2 zmm), 24 accumulators; f64: 12 x 16 (12 rows x 2 zmm).
 * Blocks: see the table in arch/isa_tables.c and docs/gemm.md (deep K panels, so that C is swept
 * once per 1024 (f32) / 512 (f64) of k).
 */
#include "gemm/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TARGET "avx512f,avx512dq,avx512bw,avx512vl,fma"
#define MR 12
#define NV 2
#define ATB_MR 8 /* the A^T B kernel: up to ATB_MR x ATB_NV accumulators */
#define ATB_NV 3

/* ---- float32 ---- */
#define T float
#define SFX f32
#define EPI_T pb_epi_f32_t
#define UKR_NAME pb_gemm_ukr_f32_avx512_12x32
#define GEMV_DOT_NAME pb_gemv_dot_f32_avx512
#define GEMV_AXPY_NAME pb_gemv_axpy_f32_avx512
#define VREDUCE(v) _mm512_reduce_add_ps(v)
#define VL 16
#define VEC __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define MASK_T __mmask16
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_ps(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#define VRELU(v) _mm512_max_ps(_mm512_setzero_ps(), v)
#define VLEAKY(v, s) \
    _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, s)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VMAXV(a, b) _mm512_max_ps(a, b)
#define VMINV(a, b) _mm512_min_ps(a, b)
#define VABS(a) _mm512_abs_ps(a)
#define VROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE(p, n) _mm512_scalef_ps(p, n)
#define VSCALE_NEG(p, n) VSCALE(p, n)
#define VBLEND_LT(x, c, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, c, _CMP_LT_OQ), b, a)
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm512_setzero_ps(), a, b)
#define VCOPYSIGN(m, s) _mm512_or_ps(m, _mm512_and_ps(s, _mm512_set1_ps(-0.0f)))
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f32_avx512)
#include "simd/vmath_f32.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)

/* Lanes 0..7 of the result: the sums of the 16 lanes of a[0], ..., a[7], every one by the
 * same fixed tree: 128-bit quarters (0+2, 1+3), then those two, then the 4 lanes of the
 * quarter (0+2, 1+3), then those two. 14 shuffles and 8 adds for 8 dot products. */
static inline __attribute__((target(TARGET), always_inline)) __m512 pb_reduce8_f32_avx512(
    const __m512 *a) {
    __m512 h[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) /* [a_2q: Q0+Q2, Q1+Q3 | a_2q+1: Q0+Q2, Q1+Q3] */
        h[q] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * q], a[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * q], a[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* quarter q of lo / hi: the 4 partial sums of a_q / a_4+q */
    const __m512 lo = _mm512_add_ps(_mm512_shuffle_f32x4(h[0], h[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(h[0], h[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 hi = _mm512_add_ps(_mm512_shuffle_f32x4(h[2], h[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(h[2], h[3], _MM_SHUFFLE(3, 1, 3, 1)));
    /* per quarter q: [lo0+lo2, hi0+hi2, lo1+lo3, hi1+hi3], then lanes 0 and 1 the totals */
    const __m512 d = _mm512_add_ps(_mm512_unpacklo_ps(lo, hi), _mm512_unpackhi_ps(lo, hi));
    const __m512 e = _mm512_add_ps(d, _mm512_shuffle_ps(d, d, _MM_SHUFFLE(1, 0, 3, 2)));
    /* lane 4q holds sum a_q, lane 4q+1 sum a_4+q */
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 4, 8, 12, 1, 5, 9, 13), e);
}
#define DOT_NAME pb_gemm_dot_f32_avx512
#define VREDUCE8(a) pb_reduce8_f32_avx512(a)
#define ACT_FWD_NAME pb_act_fwd_f32_avx512
#define ACT_BWD_NAME pb_act_bwd_f32_avx512
#define VEXPM1(v) FNAME(expm1)(v)
#define TT_NAME pb_gemm_tt_f32_avx512
#define TT_NV (PB_TT_TW_F32_AVX512 / VL)
#define TT_MJ PB_TT_TJ_F32_AVX512
#define TT_LOG2VL 4
#define TT_IDX __m512i
#define TT_IDX_ELEM int32_t
#define TT_IDX_LOAD(p) _mm512_loadu_si512(p)
#define TT_PERM2(a, i, b) _mm512_permutex2var_ps(a, i, b)
#define ATB_NAME pb_gemm_atb_f32_avx512
#include "gemm/simd_kernels.inc"
#undef ATB_NAME
#undef TT_NAME
#undef TT_NV
#undef TT_MJ
#undef TT_LOG2VL
#undef TT_IDX_ELEM
#undef TT_PERM2
#undef ACT_FWD_NAME
#undef ACT_BWD_NAME
#undef VEXPM1
#undef DOT_NAME
#undef VREDUCE8
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
#define UKR_NAME pb_gemm_ukr_f64_avx512_12x16
#define GEMV_DOT_NAME pb_gemv_dot_f64_avx512
#define GEMV_AXPY_NAME pb_gemv_axpy_f64_avx512
#define VREDUCE(v) _mm512_reduce_add_pd(v)
#define VL 8
#define VEC __m512d
#define VZERO() _mm512_setzero_pd()
#define VLOAD(p) _mm512_loadu_pd(p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VSET1(x) _mm512_set1_pd(x)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VADD(a, b) _mm512_add_pd(a, b)
#define MASK_T __mmask8
#define VMASK(n) ((__mmask8)((1u << (n)) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_pd(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_pd(p, mk, v)
#define VRELU(v) _mm512_max_pd(_mm512_setzero_pd(), v)
#define VLEAKY(v, s) \
    _mm512_mask_mul_pd(v, _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_LT_OQ), v, s)
#undef VSUB
#undef VMUL
#undef VDIV
#undef VMAXV
#undef VMINV
#undef VABS
#undef VROUND
#undef VSCALE
#undef VSCALE_NEG
#undef VBLEND_LT
#undef VBLEND_LT0
#undef VCOPYSIGN
#undef FNAME
#define VSUB(a, b) _mm512_sub_pd(a, b)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VDIV(a, b) _mm512_div_pd(a, b)
#define VMAXV(a, b) _mm512_max_pd(a, b)
#define VMINV(a, b) _mm512_min_pd(a, b)
#define VABS(a) _mm512_abs_pd(a)
#define VROUND(a) _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE(p, n) _mm512_scalef_pd(p, n)
#define VSCALE_NEG(p, n) VSCALE(p, n)
#define VBLEND_LT(x, c, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, c, _CMP_LT_OQ), b, a)
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm512_setzero_pd(), a, b)
#define VCOPYSIGN(m, s) _mm512_or_pd(m, _mm512_and_pd(s, _mm512_set1_pd(-0.0)))
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f64_avx512)
#include "simd/vmath_f64.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)

/* Lanes 0..7 of the result: the sums of the 8 lanes of a[0], ..., a[7], every one by the
 * same fixed tree: 128-bit quarters (0+2, 1+3), then those two, then the 2 lanes of the
 * quarter. 14 shuffles and 7 adds for 8 dot products. */
static inline __attribute__((target(TARGET), always_inline)) __m512d pb_reduce8_f64_avx512(
    const __m512d *a) {
    __m512d h[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) /* [a_2q: Q0+Q2, Q1+Q3 | a_2q+1: Q0+Q2, Q1+Q3] */
        h[q] = _mm512_add_pd(_mm512_shuffle_f64x2(a[2 * q], a[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f64x2(a[2 * q], a[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* quarter q of lo / hi: the 2 partial sums of a_q / a_4+q */
    const __m512d lo = _mm512_add_pd(_mm512_shuffle_f64x2(h[0], h[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f64x2(h[0], h[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512d hi = _mm512_add_pd(_mm512_shuffle_f64x2(h[2], h[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f64x2(h[2], h[3], _MM_SHUFFLE(3, 1, 3, 1)));
    /* lane 2q holds sum a_q, lane 2q+1 sum a_4+q */
    const __m512d e = _mm512_add_pd(_mm512_unpacklo_pd(lo, hi), _mm512_unpackhi_pd(lo, hi));
    return _mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), e);
}
#define DOT_NAME pb_gemm_dot_f64_avx512
#define VREDUCE8(a) pb_reduce8_f64_avx512(a)
#define ACT_FWD_NAME pb_act_fwd_f64_avx512
#define ACT_BWD_NAME pb_act_bwd_f64_avx512
#define VEXPM1(v) FNAME(expm1)(v)
#define TT_NAME pb_gemm_tt_f64_avx512
#define TT_NV (PB_TT_TW_F64_AVX512 / VL)
#define TT_MJ PB_TT_TJ_F64_AVX512
#define TT_LOG2VL 3
#define TT_IDX_ELEM int64_t
#define TT_PERM2(a, i, b) _mm512_permutex2var_pd(a, i, b)
#define ATB_NAME pb_gemm_atb_f64_avx512
#include "gemm/simd_kernels.inc"
#undef ATB_NAME
#undef TT_NAME
#undef TT_NV
#undef TT_MJ
#undef TT_LOG2VL
#undef TT_IDX
#undef TT_IDX_ELEM
#undef TT_IDX_LOAD
#undef TT_PERM2
#undef ACT_FWD_NAME
#undef ACT_BWD_NAME
#undef VEXPM1
#undef DOT_NAME
#undef VREDUCE8
#undef VSIGMOID
#undef VTANH
#undef VSOFTPLUS


/* ---- transposing pack (both dtypes) ------------------------------------------------------
 * dst[p*W + r] = src[r*ld + p] for 0 <= r < rows, 0 <= p < kc, and 0 for rows <= r < W:
 * an A micro-panel of a row-major A (W = MR) or a B micro-panel of a column-major B
 * (W = NR, the forward's weight). Blocks of VL x VL are transposed in registers by log2(VL)
 * butterfly stages of two-source permutes; stage d pairs rows i and i + d (bit d clear) into
 *   new[i][l]     = l & d ? r[i + d][l - d] : r[i][l]
 *   new[i + d][l] = l & d ? r[i + d][l]     : r[i][l + d]
 * after which row c holds column c. */
#define PB_PACK_T(T, SFX, VL, LOG2VL, VEC, IDX_T, IDXLOAD, PERM2, MASK_T, LOADZ, STOREM, ZERO)           \
    __attribute__((target(TARGET))) void pb_pack_t_##SFX##_avx512(                             \
        T *dst, const T *src, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t kc, int W) {             \
        IDX_T lo_i[VL], hi_i[VL];                                                              \
        VEC tr[VL];                                                                            \
        __m512i lo[LOG2VL], hi[LOG2VL];                                                        \
        for (int ns = 0; ns < LOG2VL; ++ns) {                                                  \
            const int d = 1 << ns;                                                             \
            for (int l = 0; l < VL; ++l) {                                                     \
                lo_i[l] = (IDX_T)((l & d) ? VL + l - d : l);                                   \
                hi_i[l] = (IDX_T)((l & d) ? VL + l : l + d);                                   \
            }                                                                                  \
            lo[ns] = IDXLOAD(lo_i);                                                            \
            hi[ns] = IDXLOAD(hi_i);                                                            \
        }                                                                                      \
        for (int r0 = 0; r0 < W; r0 += VL) {                                                   \
            const ptrdiff_t nv = PB_MAX((ptrdiff_t)0, PB_MIN(PB_MIN(rows, (ptrdiff_t)W) - r0, (ptrdiff_t)VL)); \
            const int lanes = PB_MIN(VL, W - r0);                                              \
            const MASK_T sm = (MASK_T)((1u << lanes) - 1u);                                    \
            for (ptrdiff_t p0 = 0; p0 < kc; p0 += VL) {                                        \
                const int pc = (int)PB_MIN((ptrdiff_t)VL, kc - p0);                            \
                const MASK_T lm = (MASK_T)((1u << pc) - 1u);                                   \
                _Pragma("GCC unroll 16") for (int i = 0; i < VL; ++i)                          \
                    tr[i] = i < nv ? LOADZ(lm, src + (r0 + i) * ld + p0) : ZERO();             \
                _Pragma("GCC unroll 4") for (int st = 0; st < LOG2VL; ++st)                     \
                    _Pragma("GCC unroll 16") for (int i = 0; i < VL; ++i) {                    \
                        const int d = 1 << st;                                                 \
                        if (i & d) continue;                                                   \
                        const VEC a = tr[i], b = tr[i + d];                                    \
                        tr[i] = PERM2(a, lo[st], b);                                           \
                        tr[i + d] = PERM2(a, hi[st], b);                                       \
                    }                                                                          \
                _Pragma("GCC unroll 16") for (int c = 0; c < VL; ++c)                          \
                    if (c < pc) STOREM(dst + (p0 + c) * W + r0, sm, tr[c]);                    \
            }                                                                                  \
        }                                                                                      \
    }

PB_PACK_T(float, f32, 16, 4, __m512, int32_t, _mm512_loadu_si512, _mm512_permutex2var_ps, __mmask16,
          _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps, _mm512_setzero_ps)
PB_PACK_T(double, f64, 8, 3, __m512d, int64_t, _mm512_loadu_si512, _mm512_permutex2var_pd, __mmask8,
          _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd, _mm512_setzero_pd)

#endif
