/* losses_avx2.c -- AVX2+FMA loss kernels (softmax cross-entropy rows, BCE blocks).
 *
 * Per-function target attributes only (see losses_avx512.c). The kernels are in
 * losses_simd.inc, written in the vector vocabulary (csrc/simd/vec_avx2_*.h: comparison
 * masks are vectors, row tails masked, the 2^n of exp built in the exponent field so that
 * results that are subnormal are rounded once, as vscalef does); this file adds the masked
 * load with a fill value and the float32 losses' double accumulators.
 */
#include "ops/losses.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd/vec_avx2.h"

#define ISA avx2
#define TARGET PB_TARGET_AVX2

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
#include "simd/vec_avx2_f32.h"
#define VLOADT(p, mk, fill) VBLEND(CMASK_OF(mk), fill, VLOADM(p, mk))
#define DACC_T pb_dacc_f32_avx2_t
#define DACC_ZERO() ((pb_dacc_f32_avx2_t){_mm256_setzero_pd(), _mm256_setzero_pd()})
#define DACC_ADD(acc, v) dacc_add_f32(acc, v)
#define DACC_HSUM(acc) pb_hsum_f64_avx2(_mm256_add_pd((acc).lo, (acc).hi))
#include "ops/losses_simd.inc"
#include "simd/vec_end.h"

/* float64 */
#define PB_LOSS_F64 1
#include "simd/vec_avx2_f64.h"
#define VLOADT(p, mk, fill) VBLEND(CMASK_OF(mk), fill, VLOADM(p, mk))
#define DACC_T __m256d
#define DACC_ZERO() _mm256_setzero_pd()
#define DACC_ADD(acc, v) _mm256_add_pd(acc, v)
#define DACC_HSUM(acc) pb_hsum_f64_avx2(acc)
#include "ops/losses_simd.inc"
#include "simd/vec_end.h"

#endif
