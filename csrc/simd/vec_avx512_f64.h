/* vec_avx512_f64.h -- the vector vocabulary on AVX-512 (F, DQ, BW, VL) + FMA, float64
 * (8 lanes); the names of vec_avx2_f32.h (the contract: vec_end.h). Masks are mask registers.
 * Needs vec_avx512.h first.
 */
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
#define VFNMA(a, b, c) _mm512_fnmadd_pd(a, b, c)
#define VSQRT(a) _mm512_sqrt_pd(a)
#define VMAXV(a, b) _mm512_max_pd(a, b)
#define VMINV(a, b) _mm512_min_pd(a, b)
#define VABS(a) _mm512_abs_pd(a)
#define VANDNOT(a, b) _mm512_andnot_pd(a, b)
#define VXOR(a, b) _mm512_xor_pd(a, b)
#define VROUND(a) _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VCOPYSIGN(m, s) _mm512_or_pd(m, _mm512_and_pd(s, _mm512_set1_pd(-0.0)))
#define VHSUM(v) _mm512_reduce_add_pd(v)
#define VHMAX(v) _mm512_reduce_max_pd(v)
#define MASK_T __mmask8
#define VMASK(n) ((__mmask8)((1u << (n)) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_pd(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_pd(p, mk, v)
#define CMASK_T __mmask8
#define CMASK_ZERO() ((__mmask8)0)
#define CMASK_OR(a, b) ((__mmask8)((a) | (b)))
#define CMASK_ANY(m) ((m) != 0)
#define CMASK_OF(mk) (mk)
#define VCMPLT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ)
#define VCMPGT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ)
#define VCMPNE(a, b) _mm512_cmp_pd_mask(a, b, _CMP_NEQ_UQ)
#define VUNORD(a) _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm512_mask_blend_pd(m, a, b)
#define VBLEND_LT(x, c, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, c, _CMP_LT_OQ), b, a)
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm512_setzero_pd(), a, b)
#define VRELU(v) _mm512_max_pd(_mm512_setzero_pd(), v)
#define VLEAKY(v, s) \
    _mm512_mask_mul_pd(v, _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_LT_OQ), v, s)
/* p * 2^n, rounded once (vscalef) */
#define VSCALE(p, n) _mm512_scalef_pd(p, n)
#define VSCALE_NEG(p, n) VSCALE(p, n)
