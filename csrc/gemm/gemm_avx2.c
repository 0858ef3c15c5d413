/* gemm_avx2.c -- AVX2+FMA micro-kernels.
 *
 * Per-function target attributes only (see gemm_avx512.c). 16 ymm registers:
 * f32: 6 x 16 tile (6 rows x 2 ymm), 12 accumulators; f64: 6 x 8 (6 rows x 2 ymm).
 * Also the transposing pack (8 x 8 / 4 x 4 butterflies) and the transposed-tile kernel:
 * float32 6 columns of C times 16 rows (2 ymm of A^T), 12 accumulators, as the micro-kernel;
 * float64 4 columns times 8 rows, 8 accumulators.
 */
#include "gemm/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TARGET "avx2,fma"
#define MR 6
#define NV 2
#define ATB_MR 4 /* the A^T B kernel: up to ATB_MR x ATB_NV accumulators */
#define ATB_NV 3

/* Stores of lanes [0, n) of v, for the masks VMASK(n) (every mask of the SIMD kernels is one):
 * plain 256/128/64/32-bit stores instead of vmaskmovps/pd, whose store form is slow on AMD
 * whatever the mask (docs/gemm.md, "Measurements behind the crossovers"). Lanes past n are
 * never touched, as with the masked store. pb_store_lanes_* take the lane count itself (the
 * transposing pack knows it). */
static inline __attribute__((target(TARGET), always_inline)) void pb_store_lanes_f32_avx2(
    float *p, __m256 v, int n) {
    if (n == 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (n & 4) {
        _mm_storeu_ps(p, x);
        x = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (n & 2) {
        _mm_storel_epi64((__m128i *)p, _mm_castps_si128(x));
        x = _mm_movehl_ps(x, x);
        p += 2;
    }
    if (n & 1) _mm_store_ss(p, x);
}

static inline __attribute__((target(TARGET), always_inline)) void pb_store_lanes_f64_avx2(
    double *p, __m256d v, int n) {
    if (n == 4) {
        _mm256_storeu_pd(p, v);
        return;
    }
    __m128d x = _mm256_castpd256_pd128(v);
    if (n & 2) {
        _mm_storeu_pd(p, x);
        x = _mm256_extractf128_pd(v, 1);
        p += 2;
    }
    if (n & 1) _mm_store_sd(p, x);
}

static inline __attribute__((target(TARGET), always_inline)) void pb_storem_f32_avx2(
    float *p, __m256i mk, __m256 v) {
    pb_store_lanes_f32_avx2(p, v, __builtin_ctz(~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(mk))));
}

static inline __attribute__((target(TARGET), always_inline)) void pb_storem_f64_avx2(
    double *p, __m256i mk, __m256d v) {
    pb_store_lanes_f64_avx2(p, v, __builtin_ctz(~(unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(mk))));
}

/* Stage st of the VL x VL butterfly transpose (the stages of gemm_avx512.c's pack_t, with
 * AVX2's fixed shuffles for its two-source permutes): rows a and b, d = 2^st lanes apart,
 * become (h = 0) new[l] = l & d ? b[l - d] : a[l] and (h = 1) new[l] = l & d ? b[l] : a[l + d].
 * st and h are constants at every (inlined) call. */
static inline __attribute__((target(TARGET), always_inline)) __m256 pb_bfly_f32_avx2(
    int st, int h, __m256 a, __m256 b) {
    if (st == 0) /* [a0 b0 a2 b2 ...] / [a1 b1 a3 b3 ...] */
        return h ? _mm256_blend_ps(_mm256_movehdup_ps(a), b, 0xAA)
                 : _mm256_blend_ps(a, _mm256_moveldup_ps(b), 0xAA);
    if (st == 1) /* [a0 a1 b0 b1 | a4 a5 b4 b5] / [a2 a3 b2 b3 | a6 a7 b6 b7] */
        return h ? _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2))
                 : _mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0));
    return h ? _mm256_permute2f128_ps(a, b, 0x31) : _mm256_permute2f128_ps(a, b, 0x20);
}

static inline __attribute__((target(TARGET), always_inline)) __m256d pb_bfly_f64_avx2(
    int st, int h, __m256d a, __m256d b) {
    if (st == 0) /* [a0 b0 a2 b2] / [a1 b1 a3 b3] */
        return h ? _mm256_unpackhi_pd(a, b) : _mm256_unpacklo_pd(a, b);
    return h ? _mm256_permute2f128_pd(a, b, 0x31) : _mm256_permute2f128_pd(a, b, 0x20);
}

/* ---- float32 ---- */
#define T float
#define SFX f32
#define EPI_T pb_epi_f32_t
#define UKR_NAME pb_gemm_ukr_f32_avx2_6x16
#define UKR_A_NAME pb_gemm_ukr_a_f32_avx2_6x16
#define GEMV_DOT_NAME pb_gemv_dot_f32_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f32_avx2
#define GEMV_AXPY_STRIP 1024 /* 4 KiB of partial sums */
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
#define VSTOREM(p, mk, v) pb_storem_f32_avx2(p, mk, v)
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
/* 2^(k + off) for int32 k (k + off + 127 the biased exponent, in [1, 254]) */
#define VPOW2I(k, off) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127 + (off))), 23))
/* p * 2^n in two exact steps (each factor a normal float) */
#define VSCALE(p, n)                                                                          \
    __extension__({                                                                           \
        const __m256i ni_ = _mm256_cvtps_epi32(n), n1_ = _mm256_srai_epi32(ni_, 1);           \
        _mm256_mul_ps(_mm256_mul_ps(p, VPOW2I(n1_, 0)), VPOW2I(_mm256_sub_epi32(ni_, n1_), 0)); \
    })
/* p * 2^n for n in [-150, 0] (vmath's exp of x <= 0, p in [0.7, 1.5)): p * 2^(n + 64) is
 * exact and normal, so the product by 2^-64 is the one rounding, as in VSCALE's two steps:
 * the same bits in four operations fewer */
#define VSCALE_NEG(p, n) \
    _mm256_mul_ps(_mm256_mul_ps(p, VPOW2I(_mm256_cvtps_epi32(n), 64)), _mm256_set1_ps(0x1p-64f))
#define VBLEND_LT(x, c, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, c, _CMP_LT_OQ))
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm256_setzero_ps(), a, b)
#define VCOPYSIGN(m, s) _mm256_or_ps(m, _mm256_and_ps(s, _mm256_set1_ps(-0.0f)))
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f32_avx2)
#include "simd/vmath_f32.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define ACT_FWD_NAME pb_act_fwd_f32_avx2
#define ACT_BWD_NAME pb_act_bwd_f32_avx2
#define VEXPM1(v) FNAME(expm1)(v)
#define ATB_NAME pb_gemm_atb_f32_avx2
#define TT_NAME pb_gemm_tt_f32_avx2
#define TT_NV (PB_TT_TW_F32_AVX2 / VL)
#define TT_MJ PB_TT_TJ_F32_AVX2
#define TT_LOG2VL 3
#define TT_IDX int /* unused: TT_BFLY has fixed shuffles */
#define TT_BFLY(st, h, x0, x1) pb_bfly_f32_avx2(st, h, x0, x1)
#include "gemm/simd_kernels.inc"
#undef ATB_NAME
#undef TT_NAME
#undef TT_NV
#undef TT_MJ
#undef TT_LOG2VL
#undef TT_IDX
#undef TT_BFLY
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
#undef UKR_A_NAME
#undef GEMV_DOT_NAME
#undef GEMV_AXPY_NAME
#undef GEMV_AXPY_STRIP
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
#define UKR_A_NAME pb_gemm_ukr_a_f64_avx2_6x8
#define GEMV_DOT_NAME pb_gemv_dot_f64_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f64_avx2
#define GEMV_AXPY_STRIP 512 /* 4 KiB of partial sums */
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
#define VSTOREM(p, mk, v) pb_storem_f64_avx2(p, mk, v)
#define VRELU(v) _mm256_max_pd(_mm256_setzero_pd(), v)
#define VLEAKY(v, s) \
    _mm256_blendv_pd(v, _mm256_mul_pd(v, s), _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ))
#undef VSUB
#undef VMUL
#undef VDIV
#undef VMAXV
#undef VMINV
#undef VABS
#undef VROUND
#undef VPOW2I
#undef VSCALE
#undef VSCALE_NEG
#undef VBLEND_LT
#undef VBLEND_LT0
#undef VCOPYSIGN
#undef FNAME
#define VSUB(a, b) _mm256_sub_pd(a, b)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VDIV(a, b) _mm256_div_pd(a, b)
#define VMAXV(a, b) _mm256_max_pd(a, b)
#define VMINV(a, b) _mm256_min_pd(a, b)
#define VABS(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), a)
#define VROUND(a) _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* 2^(k + off) for integer-valued doubles k (k + off in [-1022, 1023]): AVX2 has no double ->
 * int64 conversion, so k + off + 1023 is read off the low bits of k + off + 1023 + 1.5 * 2^52
 * (whose exponent is that of 1.5 * 2^52 for |k + off + 1023| < 2^51: the integer difference
 * of the two bit patterns is k + off + 1023), then shifted into the exponent field. */
#define VPOW2I(k, off)                                                                       \
    _mm256_castsi256_pd(_mm256_slli_epi64(                                                   \
        _mm256_sub_epi64(                                                                    \
            _mm256_castpd_si256(                                                             \
                _mm256_add_pd(k, _mm256_set1_pd(6755399441055744.0 + 1023.0 + (off)))),      \
            _mm256_castpd_si256(_mm256_set1_pd(6755399441055744.0))),                        \
        52))
/* p * 2^n in two exact steps (each factor a normal double: n in [-1077, 1024] by
 * vmath_f64.inc's clamp), so that results in the subnormal range are rounded once, as
 * AVX-512's scalef and libm round them */
#define VSCALE(p, n)                                                                          \
    __extension__({                                                                           \
        const __m256d n1_ = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));          \
        _mm256_mul_pd(_mm256_mul_pd(p, VPOW2I(n1_, 0)), VPOW2I(_mm256_sub_pd(n, n1_), 0));    \
    })
/* p * 2^n for n in [-1077, 0] (vmath's exp and expm1 of x <= 0): p * 2^(n + 64) is exact and
 * normal, then one rounding by the product with 2^-64, as in VSCALE's two steps */
#define VSCALE_NEG(p, n) \
    _mm256_mul_pd(_mm256_mul_pd(p, VPOW2I(n, 64)), _mm256_set1_pd(0x1p-64))
#define VBLEND_LT(x, c, a, b) _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, c, _CMP_LT_OQ))
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm256_setzero_pd(), a, b)
#define VCOPYSIGN(m, s) _mm256_or_pd(m, _mm256_and_pd(s, _mm256_set1_pd(-0.0)))
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f64_avx2)
#include "simd/vmath_f64.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define ACT_FWD_NAME pb_act_fwd_f64_avx2
#define ACT_BWD_NAME pb_act_bwd_f64_avx2
#define VEXPM1(v) FNAME(expm1)(v)
#define ATB_NAME pb_gemm_atb_f64_avx2
#define TT_NAME pb_gemm_tt_f64_avx2
#define TT_NV (PB_TT_TW_F64_AVX2 / VL)
#define TT_MJ PB_TT_TJ_F64_AVX2
#define TT_LOG2VL 2
#define TT_IDX int /* unused: TT_BFLY has fixed shuffles */
#define TT_BFLY(st, h, x0, x1) pb_bfly_f64_avx2(st, h, x0, x1)
#include "gemm/simd_kernels.inc"
#undef ATB_NAME
#undef TT_NAME
#undef TT_NV
#undef TT_MJ
#undef TT_LOG2VL
#undef TT_IDX
#undef TT_BFLY

/* ---- transposing pack (both dtypes; contract at pb_pack_t_*_t in gemm/gemm.h) -------------
 * dst[p*W + r] = src[r*ld + p] for r < rows, p < kc, and 0 for rows <= r < W: blocks of
 * VL x VL (VL rows of src, zero past rows, times VL values of p, masked loads past kc)
 * transposed in registers by log2(VL) butterfly stages (pb_bfly_*), each column then
 * stored as W's next VL (or last, fewer) lanes. */
#define PB_PACK_T_AVX2(T, SFX, VL, LOG2VL, VEC, LOADU, LOADM, MASK, STOREN, ZERO, BFLY)      \
    __attribute__((target(TARGET))) void pb_pack_t_##SFX##_avx2(                            \
        T *dst, const T *src, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t kc, int W) {          \
        VEC tr[VL];                                                                         \
        for (int r0 = 0; r0 < W; r0 += VL) {                                                \
            const ptrdiff_t nv =                                                            \
                PB_MAX((ptrdiff_t)0, PB_MIN(PB_MIN(rows, (ptrdiff_t)W) - r0, (ptrdiff_t)VL)); \
            const int lanes = PB_MIN(VL, W - r0);                                           \
            const T *s0 = src + r0 * ld;                                                    \
            for (ptrdiff_t p0 = 0; p0 < kc; p0 += VL) {                                     \
                const int pc = (int)PB_MIN((ptrdiff_t)VL, kc - p0);                         \
                if (pc == VL) {                                                             \
                    _Pragma("GCC unroll 8") for (int i = 0; i < VL; ++i)                    \
                        tr[i] = i < nv ? LOADU(s0 + i * ld + p0) : ZERO();                  \
                } else {                                                                    \
                    const __m256i lm = MASK(pc);                                            \
                    _Pragma("GCC unroll 8") for (int i = 0; i < VL; ++i)                    \
                        tr[i] = i < nv ? LOADM(s0 + i * ld + p0, lm) : ZERO();              \
                }                                                                           \
                _Pragma("GCC unroll 4") for (int st = 0; st < LOG2VL; ++st)                 \
                    _Pragma("GCC unroll 8") for (int i = 0; i < VL; ++i) {                  \
                        const int d = 1 << st;                                              \
                        if (i & d) continue;                                                \
                        const VEC a = tr[i], b = tr[i + d];                                 \
                        tr[i] = BFLY(st, 0, a, b);                                          \
                        tr[i + d] = BFLY(st, 1, a, b);                                      \
                    }                                                                       \
                T *d0 = dst + p0 * W + r0;                                                  \
                _Pragma("GCC unroll 8") for (int c = 0; c < VL; ++c) {                      \
                    if (c >= pc) break;                                                     \
                    STOREN(d0 + c * W, tr[c], lanes);                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

/* masks for the loads past kc: the micro-kernels' own (simd_epilogue.inc) */
PB_PACK_T_AVX2(float, f32, 8, 3, __m256, _mm256_loadu_ps, _mm256_maskload_ps,
               pb_gemm_ukr_f32_avx2_6x16_mask, pb_store_lanes_f32_avx2, _mm256_setzero_ps,
               pb_bfly_f32_avx2)
PB_PACK_T_AVX2(double, f64, 4, 2, __m256d, _mm256_loadu_pd, _mm256_maskload_pd,
               pb_gemm_ukr_f64_avx2_6x8_mask, pb_store_lanes_f64_avx2, _mm256_setzero_pd,
               pb_bfly_f64_avx2)

#endif
