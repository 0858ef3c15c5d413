/* losses_avx512.c -- AVX-512 loss kernels (softmax cross-entropy rows, BCE blocks).
 *
 * Per-function target attributes only, as gemm_avx512.c: the file builds on any x86-64
 * compiler and runs only after arch/ has checked the CPU. The kernels themselves are
 * in losses_simd.inc; this file maps its vector vocabulary onto AVX-512 (mask registers,
 * masked loads/stores for row tails, vscalefps for the 2^n of exp).
 */
#include "ops/losses.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define ISA avx512
#define TARGET "avx512f,avx512dq,avx512bw,avx512vl,fma"

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
#define VL 16
#define VEC __m512
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VABS(v) _mm512_abs_ps(v)
#define VROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2(p, n) _mm512_scalef_ps(p, n)
#define MASKV __mmask16
#define MZERO() ((__mmask16)0)
#define VCMPLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VUNORD(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define MOR(a, b) ((__mmask16)((a) | (b)))
#define MANY(m) ((m) != 0)
#define TAIL_T __mmask16
#define VTAIL(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADT(p, tm, fill) _mm512_mask_loadu_ps(fill, tm, p)
#define VSTORET(p, tm, v) _mm512_mask_storeu_ps(p, tm, v)
#define TAIL_MASKV(tm) (tm)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VHMAX(v) _mm512_reduce_max_ps(v)
#define DACC_T pb_dacc_f32_avx512_t
#define DACC_ZERO() ((pb_dacc_f32_avx512_t){_mm512_setzero_pd(), _mm512_setzero_pd()})
#define DACC_ADD(acc, v) dacc_add_f32(acc, v)
#define DACC_HSUM(acc) _mm512_reduce_add_pd(_mm512_add_pd((acc).lo, (acc).hi))
#include "ops/losses_simd.inc"

/* float64 */
#define PB_LOSS_F64 1
#define VL 8
#define VEC __m512d
#define VZERO() _mm512_setzero_pd()
#define VSET1(x) _mm512_set1_pd(x)
#define VLOAD(p) _mm512_loadu_pd(p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VADD(a, b) _mm512_add_pd(a, b)
#define VSUB(a, b) _mm512_sub_pd(a, b)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VDIV(a, b) _mm512_div_pd(a, b)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VMAX(a, b) _mm512_max_pd(a, b)
#define VABS(v) _mm512_abs_pd(v)
#define VROUND(v) _mm512_roundscale_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2(p, n) _mm512_scalef_pd(p, n)
#define MASKV __mmask8
#define MZERO() ((__mmask8)0)
#define VCMPLT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ)
#define VUNORD(a) _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm512_mask_blend_pd(m, a, b)
#define MOR(a, b) ((__mmask8)((a) | (b)))
#define MANY(m) ((m) != 0)
#define TAIL_T __mmask8
#define VTAIL(n) ((__mmask8)((1u << (n)) - 1u))
#define VLOADT(p, tm, fill) _mm512_mask_loadu_pd(fill, tm, p)
#define VSTORET(p, tm, v) _mm512_mask_storeu_pd(p, tm, v)
#define TAIL_MASKV(tm) (tm)
#define VHSUM(v) _mm512_reduce_add_pd(v)
#define VHMAX(v) _mm512_reduce_max_pd(v)
#define DACC_T __m512d
#define DACC_ZERO() _mm512_setzero_pd()
#define DACC_ADD(acc, v) _mm512_add_pd(acc, v)
#define DACC_HSUM(acc) _mm512_reduce_add_pd(acc)
#include "ops/losses_simd.inc"

#endif
