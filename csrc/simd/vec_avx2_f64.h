/* vec_avx2_f64.h -- the vector vocabulary on AVX2 + FMA, float64 (4 lanes); the names of
 * vec_avx2_f32.h (the contract: vec_end.h). Needs vec_avx2.h first.
 */
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
#define VFNMA(a, b, c) _mm256_fnmadd_pd(a, b, c)
#define VSQRT(a) _mm256_sqrt_pd(a)
#define VMAXV(a, b) _mm256_max_pd(a, b)
#define VMINV(a, b) _mm256_min_pd(a, b)
#define VABS(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), a)
#define VANDNOT(a, b) _mm256_andnot_pd(a, b)
#define VXOR(a, b) _mm256_xor_pd(a, b)
#define VROUND(a) _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VCOPYSIGN(m, s) _mm256_or_pd(m, _mm256_and_pd(s, _mm256_set1_pd(-0.0)))
#define VHSUM(v) pb_hsum_f64_avx2(v)
#define VHMAX(v) pb_hmax_f64_avx2(v)
#define MASK_T __m256i
#define VMASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3))
#define VLOADM(p, mk) _mm256_maskload_pd(p, mk)
#define VSTOREM(p, mk, v) pb_storem_f64_avx2(p, mk, v)
#define CMASK_T __m256d
#define CMASK_ZERO() _mm256_setzero_pd()
#define CMASK_OR(a, b) _mm256_or_pd(a, b)
#define CMASK_ANY(m) (_mm256_movemask_pd(m) != 0)
#define CMASK_OF(mk) _mm256_castsi256_pd(mk)
#define VCMPLT(a, b) _mm256_cmp_pd(a, b, _CMP_LT_OQ)
#define VCMPGE(a, b) _mm256_cmp_pd(a, b, _CMP_GE_OQ)
#define VCMPGT(a, b) _mm256_cmp_pd(a, b, _CMP_GT_OQ)
#define VCMPNE(a, b) _mm256_cmp_pd(a, b, _CMP_NEQ_UQ)
#define VUNORD(a) _mm256_cmp_pd(a, a, _CMP_UNORD_Q)
#define VBLEND(m, a, b) _mm256_blendv_pd(a, b, m)
#define VBLEND_LT(x, c, a, b) _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, c, _CMP_LT_OQ))
#define VBLEND_LT0(z, a, b) VBLEND_LT(z, _mm256_setzero_pd(), a, b)
#define VRELU(v) _mm256_max_pd(_mm256_setzero_pd(), v)
#define VLEAKY(v, s) \
    _mm256_blendv_pd(v, _mm256_mul_pd(v, s), _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ))
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
/* p * 2^n for integral n in [-1077, 0] (an exp of x <= 0): p * 2^(n + 64) is exact and
 * normal, then one rounding by the product with 2^-64, as in VSCALE's two steps */
#define VSCALE_NEG(p, n) \
    _mm256_mul_pd(_mm256_mul_pd(p, VPOW2I(n, 64)), _mm256_set1_pd(0x1p-64))
