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
#include "simd/vec_avx512.h"

#define TARGET PB_TARGET_AVX512
#define MR 12
#define NV 2
#define ATB_MR 8 /* the A^T B kernel: up to ATB_MR x ATB_NV accumulators */
#define ATB_NV 3

/* ---- float32's gelu_tanh and silu in float64 lanes (simd/vmath_wide.inc) ----------- */
#include "simd/vec_avx512_f64.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_vw, stem), _avx512)
#include "simd/vmath_wide.inc"
#undef FNAME
#include "simd/vec_end.h"

/* ---- float32 ---- */
#define T float
#define SFX f32
#define EPI_T pb_epi_f32_t
#define UKR_NAME pb_gemm_ukr_f32_avx512_12x32
#define GEMV_DOT_NAME pb_gemv_dot_f32_avx512
#define GEMV_AXPY_NAME pb_gemv_axpy_f32_avx512
#define GEMV_AXPY_STRIP 1024 /* 4 KiB of partial sums */
#include "simd/vec_avx512_f32.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f32_avx512)
#include "simd/vmath_f32.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define VPREACT(act, v) FNAME(preact)(act, v)
#define VDPREACT(act, d, z) FNAME(dpreact)(act, d, z)

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
#undef VPREACT
#undef VDPREACT
#undef T
#undef SFX
#undef EPI_T
#undef UKR_NAME
#undef GEMV_DOT_NAME
#undef GEMV_AXPY_NAME
#undef GEMV_AXPY_STRIP
#undef FNAME
#include "simd/vec_end.h"

/* ---- float64 ---- */
#define T double
#define SFX f64
#define EPI_T pb_epi_f64_t
#define UKR_NAME pb_gemm_ukr_f64_avx512_12x16
#define GEMV_DOT_NAME pb_gemv_dot_f64_avx512
#define GEMV_AXPY_NAME pb_gemv_axpy_f64_avx512
#define GEMV_AXPY_STRIP 512 /* 4 KiB of partial sums */
#include "simd/vec_avx512_f64.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f64_avx512)
#include "simd/vmath_f64.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define VPREACT(act, v) FNAME(preact)(act, v)
#define VDPREACT(act, d, z) FNAME(dpreact)(act, d, z)

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
#undef VPREACT
#undef VDPREACT
#include "simd/vec_end.h"


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
