/* vec_avx512.h -- what the AVX-512 vocabularies (vec_avx512_f32.h, vec_avx512_f64.h) build
 * on: the target string. Included once per AVX-512 source, before a vocabulary.
 */
#ifndef PB_VEC_AVX512_H
#define PB_VEC_AVX512_H
#include <immintrin.h>

#define PB_TARGET_AVX512 "avx512f,avx512dq,avx512bw,avx512vl,fma"
#endif /* PB_VEC_AVX512_H */
