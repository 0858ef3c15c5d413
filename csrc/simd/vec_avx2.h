/* vec_avx2.h -- what the AVX2 vocabularies (vec_avx2_f32.h, vec_avx2_f64.h) build on: the
 * target string and the helpers their macros call (stores of the first n lanes, horizontal
 * sum and max). Included once per AVX2 source, before a vocabulary.
 */
#ifndef PB_VEC_AVX2_H
#define PB_VEC_AVX2_H
#include <immintrin.h>

#define PB_TARGET_AVX2 "avx2,fma"

/* Stores of lanes [0, n) of v, for the masks VMASK(n) (every lane mask of the SIMD kernels is
 * one): plain 256/128/64/32-bit stores instead of vmaskmovps/pd, whose store form is slow on
 * AMD whatever the mask (docs/crossovers.md). Lanes past n are
 * never touched, as with the masked store. */
static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) void
pb_store_lanes_f32_avx2(float *p, __m256 v, int n) {
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

static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) void
pb_store_lanes_f64_avx2(double *p, __m256d v, int n) {
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

static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) void
pb_storem_f32_avx2(float *p, __m256i mk, __m256 v) {
    pb_store_lanes_f32_avx2(
        p, v, __builtin_ctz(~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(mk))));
}

static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) void
pb_storem_f64_avx2(double *p, __m256i mk, __m256d v) {
    pb_store_lanes_f64_avx2(
        p, v, __builtin_ctz(~(unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(mk))));
}

/* Horizontal sum and max, lanes paired in a fixed order. */
static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) float
pb_hsum_f32_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) float
pb_hmax_f32_avx2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) double
pb_hsum_f64_avx2(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
static inline __attribute__((target(PB_TARGET_AVX2), always_inline)) double
pb_hmax_f64_avx2(__m256d v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
}
#endif /* PB_VEC_AVX2_H */
