/* vec_avx512_f32.h -- the vector vocabulary on AVX-512 (F, DQ, BW, VL) + FMA, float32
 * (16 lanes); the names of vec_avx2_f32.h (the contract: vec_end.h). Masks are mask registers.
 * Needs vec_avx512.h first.
 */
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
#define VFNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define VSQRT(a) _mm512_sqrt_ps(a)
#define VMAXV(a, b) _mm512_max_ps(a, b)
#define VMINV(a, b) _mm512_min_ps(a, b)
#define VABS(a) _mm512_abs_ps(a)
#define VANDNOT(a, b) _mm512_andnot_ps(a, b)
#define VXOR(a, b) _mm512_xor_ps(a, b)
#define VROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VCOPYSIGN(m, s) _mm512_or_ps(m, _mm512_and_ps(s, _mm512_set1_ps(-0.0f)))
#define VHSUM(v) _mm512_reduce_add_ps(v)
/* float64 lanes: the two halves widened, two float64 vectors narrowed (rounded once), and
 * the name of a vmath_wide.inc function of this ISA */
#define VWIDE_LO(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define VWIDE_HI(v) \
    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
#define VNARROW(lo, hi)                                                                      \
    _mm512_castpd_ps(_mm512_insertf64x4(                                                     \
        _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))),                       \
        _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1))
#define VWIDE(stem) PB_CAT(PB_CAT(pb_vw, stem), _avx512)
#define VHMAX(v) _mm512_reduce_max_ps(v)
/* int32 lanes; t[i & 15] per lane (one permute across the 16 lanes) */
#define VINT __m512i
#define VCVTI(v) _mm512_cvtps_epi32(v)
#define VLOOKUP16(t, i) _mm512_permutexvar_ps(i, _mm512_loadu_ps(t))
#define MASK_T __mmask16
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADM(p, mk) _mm512_maskz_loadu_ps(mk, p)
#define VSTOREM(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#define CMASK_T __mmask16
#define CMASK_ZERO() ((__mmask16)0)
#define CMASK_OR(a, b) ((__mmask16)((a) | (b)))
#define CMASK_ANY(m) ((m) != 0)
#define CMASK_OF(mk) (mk)
#define VCMPLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VCMPGT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VCMPNE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ)
#define VUNORD(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define VBLEND_LT(x, c, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, c, _CMP_LT_OQ), b, a)
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm512_setzero_ps(), a, b)
#define VRELU(v) _mm512_max_ps(_mm512_setzero_ps(), v)
#define VLEAKY(v, s) \
    _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, s)
/* p * 2^n, rounded once (vscalef) */
#define VSCALE(p, n) _mm512_scalef_ps(p, n)
#define VSCALE_NEG(p, n) VSCALE(p, n)
