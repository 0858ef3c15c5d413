/* vec_avx2_f32.h -- the vector vocabulary on AVX2 + FMA, float32 (8 lanes). Every SIMD
 * source writes its kernels in these names (the contract: csrc/simd/vec_end.h lists them) and
 * includes one vocabulary per ISA and dtype, then vec_end.h. Needs vec_avx2.h first.
 */
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
#define VFNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define VSQRT(a) _mm256_sqrt_ps(a)
#define VMAXV(a, b) _mm256_max_ps(a, b)
#define VMINV(a, b) _mm256_min_ps(a, b)
#define VABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define VANDNOT(a, b) _mm256_andnot_ps(a, b)
#define VXOR(a, b) _mm256_xor_ps(a, b)
#define VROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VCOPYSIGN(m, s) _mm256_or_ps(m, _mm256_and_ps(s, _mm256_set1_ps(-0.0f)))
#define VHSUM(v) pb_hsum_f32_avx2(v)
/* float64 lanes: the two halves widened, two float64 vectors narrowed (rounded once), and
 * the name of a vmath_wide.inc function of this ISA */
#define VWIDE_LO(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define VWIDE_HI(v) _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define VNARROW(lo, hi) _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo))
#define VWIDE(stem) PB_CAT(PB_CAT(pb_vw, stem), _avx2)
#define VHMAX(v) pb_hmax_f32_avx2(v)
/* int32 lanes; t[i & 15] per lane: both halves of t permuted, bit 3 of i (moved to the sign
 * bit) picks one */
#define VINT __m256i
#define VCVTI(v) _mm256_cvtps_epi32(v)
#define VLOOKUP16(t, i)                                                                \
    _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(t), i),                  \
                     _mm256_permutevar8x32_ps(_mm256_loadu_ps((t) + 8), i),            \
                     _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)))
/* lane masks: the first n lanes */
#define MASK_T __m256i
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, mk) _mm256_maskload_ps(p, mk)
#define VSTOREM(p, mk, v) pb_storem_f32_avx2(p, mk, v)
/* comparison masks and selects: VBLEND(m, a, b) = m ? b : a per lane */
#define CMASK_T __m256
#define CMASK_ZERO() _mm256_setzero_ps()
#define CMASK_OR(a, b) _mm256_or_ps(a, b)
#define CMASK_ANY(m) (_mm256_movemask_ps(m) != 0)
#define CMASK_OF(mk) _mm256_castsi256_ps(mk)
#define VCMPLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define VCMPGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VCMPNE(a, b) _mm256_cmp_ps(a, b, _CMP_NEQ_UQ)
#define VUNORD(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define VBLEND_LT(x, c, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, c, _CMP_LT_OQ))
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm256_setzero_ps(), a, b)
#define VRELU(v) _mm256_max_ps(_mm256_setzero_ps(), v)
#define VLEAKY(v, s) \
    _mm256_blendv_ps(v, _mm256_mul_ps(v, s), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ))
/* 2^(k + off) for int32 k (k + off + 127 the biased exponent, in [1, 254]) */
#define VPOW2I(k, off) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127 + (off))), 23))
/* p * 2^n in two exact steps (each factor a normal float) */
#define VSCALE(p, n)                                                                          \
    __extension__({                                                                           \
        const __m256i ni_ = _mm256_cvtps_epi32(n), n1_ = _mm256_srai_epi32(ni_, 1);           \
        _mm256_mul_ps(_mm256_mul_ps(p, VPOW2I(n1_, 0)), VPOW2I(_mm256_sub_epi32(ni_, n1_), 0)); \
    })
/* p * 2^n for integral n in [-150, 0] (an exp of x <= 0, p in [0.7, 1.5)): p * 2^(n + 64) is
 * exact and normal, so the product by 2^-64 is the one rounding (to a subnormal where the
 * result is one), as in VSCALE's two steps and as libm rounds: the same bits in four
 * operations fewer */
#define VSCALE_NEG(p, n) \
    _mm256_mul_ps(_mm256_mul_ps(p, VPOW2I(_mm256_cvtps_epi32(n), 64)), _mm256_set1_ps(0x1p-64f))
