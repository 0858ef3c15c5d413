/* losses_avx2.c -- AVX2+FMA loss kernels (softmax cross-entropy rows, BCE blocks).
 *
 * Per-function target attributes only (see losses_avx512.c). Maps the vector vocabulary of
 * losses_simd.inc onto AVX2: comparison masks are vectors, row tails use vmaskmov, and the
 * 2^n of exp is built in the exponent field in two halves (2^n1 * 2^n2, n1 + n2 = n), so
 * results that are subnormal are rounded once, as vscalef does.
 */
#include "ops/losses.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define ISA avx2
#define TARGET "avx2,fma"

static inline __attribute__((target(TARGET), always_inline)) float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline __attribute__((target(TARGET), always_inline)) float hmax_f32(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline __attribute__((target(TARGET), always_inline)) double hsum_f64(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}
static inline __attribute__((target(TARGET), always_inline)) double hmax_f64(__m256d v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}
/* p * 2^n for integral n in [-150, 0] (float) / [-1075, 0] (double), p = e^r in [0.7, 1.5):
 * p * 2^(n + 64) is exact and normal, so its product with 2^-64 is the one rounding (to a
 * subnormal where the result is one), as libm rounds e^y. */
static inline __attribute__((target(TARGET), always_inline)) __m256 scale2_f32(__m256 p,
                                                                               __m256 n) {
    const __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127 + 64)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(0x1p-64f));
}
static inline __attribute__((target(TARGET), always_inline)) __m256d scale2_f64(__m256d p,
                                                                                __m256d n) {
    const __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)),
                         _mm256_set1_epi64x(1023 + 64)),
        52));
    return _mm256_mul_pd(_mm256_mul_pd(p, s), _mm256_set1_pd(0x1p-64));
}

/* float32: loss terms are summed in two double vectors (4 + 4 lanes). */
typedef struct {
    __m256d lo, hi;
} pb_dacc_f32_avx2_t;
static inline __attribute__((target(TARGET), always_inline)) pb_dacc_f32_avx2_t
dacc_add_f32(pb_dacc_f32_avx2_t a, __m256 v) {
    a.lo = _mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a.hi = _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    return a;
}

#define PB_LOSS_F64 0
#define VL 8
#define VEC __m256
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VABS(v) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)
#define VROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2(p, n) scale2_f32(p, n)
#define MASKV __m256
#define MZERO() _mm256_setzero_ps()
#define VCMPLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define VUNORD(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define MOR(a, b) _mm256_or_ps(a, b)
#define MANY(m) (_mm256_movemask_ps(m) != 0)
#define TAIL_T __m256i
#define VTAIL(n) \
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADT(p, tm, fill) \
    _mm256_blendv_ps(fill, _mm256_maskload_ps(p, tm), _mm256_castsi256_ps(tm))
#define VSTORET(p, tm, v) _mm256_maskstore_ps(p, tm, v)
#define TAIL_MASKV(tm) _mm256_castsi256_ps(tm)
#define VHSUM(v) hsum_f32(v)
#define VHMAX(v) hmax_f32(v)
#define DACC_T pb_dacc_f32_avx2_t
#define DACC_ZERO() ((pb_dacc_f32_avx2_t){_mm256_setzero_pd(), _mm256_setzero_pd()})
#define DACC_ADD(acc, v) dacc_add_f32(acc, v)
#define DACC_HSUM(acc) hsum_f64(_mm256_add_pd((acc).lo, (acc).hi))
#include "ops/losses_simd.inc"

/* float64 */
#define PB_LOSS_F64 1
#define VL 4
#define VEC __m256d
#define VZERO() _mm256_setzero_pd()
#define VSET1(x) _mm256_set1_pd(x)
#define VLOAD(p) _mm256_loadu_pd(p)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VADD(a, b) _mm256_add_pd(a, b)
#define VSUB(a, b) _mm256_sub_pd(a, b)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VDIV(a, b) _mm256_div_pd(a, b)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VMAX(a, b) _mm256_max_pd(a, b)
#define VABS(v) _mm256_andnot_pd(_mm256_set1_pd(-0.0), v)
#define VROUND(v) _mm256_round_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2(p, n) scale2_f64(p, n)
#define MASKV __m256d
#define MZERO() _mm256_setzero_pd()
#define VCMPLT(a, b) _mm256_cmp_pd(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm256_cmp_pd(a, b, _CMP_GE_OQ)
#define VUNORD(a) _mm256_cmp_pd(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm256_blendv_pd(a, b, m)
#define MOR(a, b) _mm256_or_pd(a, b)
#define MANY(m) (_mm256_movemask_pd(m) != 0)
#define TAIL_T __m256i
#define VTAIL(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3))
#define VLOADT(p, tm, fill) \
    _mm256_blendv_pd(fill, _mm256_maskload_pd(p, tm), _mm256_castsi256_pd(tm))
#define VSTORET(p, tm, v) _mm256_maskstore_pd(p, tm, v)
#define TAIL_MASKV(tm) _mm256_castsi256_pd(tm)
#define VHSUM(v) hsum_f64(v)
#define VHMAX(v) hmax_f64(v)
#define DACC_T __m256d
#define DACC_ZERO() _mm256_setzero_pd()
#define DACC_ADD(acc, v) _mm256_add_pd(acc, v)
#define DACC_HSUM(acc) hsum_f64(acc)
#include "ops/losses_simd.inc"

#endif
