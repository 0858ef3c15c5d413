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
#include "simd/vec_avx2.h"

#define TARGET PB_TARGET_AVX2
#define MR 6
#define NV 2
#define ATB_MR 4 /* the A^T B kernel: up to ATB_MR x ATB_NV accumulators */
#define ATB_NV 3

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

/* ---- float32's gelu_tanh and silu in float64 lanes (simd/vmath_wide.inc) ----------- */
#include "simd/vec_avx2_f64.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_vw, stem), _avx2)
#include "simd/vmath_wide.inc"
#undef FNAME
#include "simd/vec_end.h"

/* ---- float32 ---- */
#define T float
#define SFX f32
#define EPI_T pb_epi_f32_t
#define UKR_NAME pb_gemm_ukr_f32_avx2_6x16
#define UKR_A_NAME pb_gemm_ukr_a_f32_avx2_6x16
#define GEMV_DOT_NAME pb_gemv_dot_f32_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f32_avx2
#define GEMV_AXPY_STRIP 1024 /* 4 KiB of partial sums */
#include "simd/vec_avx2_f32.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f32_avx2)
#include "simd/vmath_f32.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define VPREACT(act, v) FNAME(preact)(act, v)
#define VDPREACT(act, d, z) FNAME(dpreact)(act, d, z)
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
#undef VPREACT
#undef VDPREACT
#undef T
#undef SFX
#undef EPI_T
#undef UKR_NAME
#undef UKR_A_NAME
#undef GEMV_DOT_NAME
#undef GEMV_AXPY_NAME
#undef GEMV_AXPY_STRIP
#undef FNAME
#include "simd/vec_end.h"

/* ---- float64 ---- */
#define T double
#define SFX f64
#define EPI_T pb_epi_f64_t
#define UKR_NAME pb_gemm_ukr_f64_avx2_6x8
#define UKR_A_NAME pb_gemm_ukr_a_f64_avx2_6x8
#define GEMV_DOT_NAME pb_gemv_dot_f64_avx2
#define GEMV_AXPY_NAME pb_gemv_axpy_f64_avx2
#define GEMV_AXPY_STRIP 512 /* 4 KiB of partial sums */
#include "simd/vec_avx2_f64.h"
#define FNAME(stem) PB_CAT(PB_CAT(pb_v, stem), _f64_avx2)
#include "simd/vmath_f64.inc"
#define VSIGMOID(v) FNAME(sigmoid)(v)
#define VTANH(v) FNAME(tanh)(v)
#define VSOFTPLUS(v) FNAME(softplus)(v)
#define VPREACT(act, v) FNAME(preact)(act, v)
#define VDPREACT(act, d, z) FNAME(dpreact)(act, d, z)
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
#include "simd/vec_end.h"

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
