/* losses_avx512.c -- AVX-512 loss kernels (softmax cross-entropy rows, BCE blocks).
 *
 * Per-function target attributes only, as gemm_avx512.c: the file builds on any x86-64
 * compiler and runs only after arch/ has checked the CPU. The kernels themselves are
 * in losses_simd.inc, written in the vector vocabulary (csrc/simd/vec_avx512_*.h: mask
 * registers, masked loads/stores for row tails, vscalefps for the 2^n of exp); this file
 * adds the masked load with a fill value and the double accumulators.
 */
#include "ops/losses.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "simd/vec_avx512.h"

#define ISA avx512
#define TARGET PB_TARGET_AVX512

/* float32: loss terms are summed in two double vectors (8 + 8 lanes). */
typedef struct {
    __m512d lo, hi;
} pb_dacc_f32_avx512_t;
static inline __attribute__((target(TARGET), always_inline)) pb_dacc_f32_avx512_t
dacc_add_f32(pb_dacc_f32_avx512_t a, __m512 v) {
    a.lo = _mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a.hi = _mm512_add_pd(a.hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
    return a;
}

#define PB_LOSS_F64 0
#include "simd/vec_avx512_f32.h"
#define VLOADT(p, mk, fill) _mm512_mask_loadu_ps(fill, mk, p)
#define DACC_T pb_dacc_f32_avx512_t
#define DACC_ZERO() ((pb_dacc_f32_avx512_t){_mm512_setzero_pd(), _mm512_setzero_pd()})
#define DACC_ADD(acc, v) dacc_add_f32(acc, v)
#define DACC_HSUM(acc) _mm512_reduce_add_pd(_mm512_add_pd((acc).lo, (acc).hi))
#include "ops/losses_simd.inc"
#include "simd/vec_end.h"

/* float64 */
#define PB_LOSS_F64 1
#include "simd/vec_avx512_f64.h"
#define VLOADT(p, mk, fill) _mm512_mask_loadu_pd(fill, mk, p)
#define DACC_T __m512d
#define DACC_ZERO() _mm512_setzero_pd()
#define DACC_ADD(acc, v) _mm512_add_pd(acc, v)
#define DACC_HSUM(acc) _mm512_reduce_add_pd(acc)
#include "ops/losses_simd.inc"
#include "simd/vec_end.h"

#endif
