/* gemm.c -- the GEMM driver for both dtypes (see gemm_driver.inc for the loop structure).
 * Micro-kernels come from the active kernel table (arch/). */
#include "arch/arch.h"
#include "core/wlist.h"
#include "gemm/gemm.h"

#include <string.h> /* memcpy: the tall dot path's aligned copy of B */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h> /* SSE2 (x86-64 baseline): the outer product's stores */
#define PB_HAVE_STREAM 1
#else
#define PB_HAVE_STREAM 0
#endif

#define T float
#define SFX f32
#if PB_HAVE_STREAM
#define SV __m128
#define SV_W 4
#define SV_SET1(x) _mm_set1_ps(x)
#define SV_MUL_LOADU(s, p) _mm_mul_ps(s, _mm_loadu_ps(p))
#define SV_STREAM(p, v) _mm_stream_ps(p, v)
#define SV_STORE(p, v) _mm_store_ps(p, v)
#endif
#include "gemm/gemm_driver.inc"
#undef T
#undef SFX
#undef SV
#undef SV_W
#undef SV_SET1
#undef SV_MUL_LOADU
#undef SV_STREAM
#undef SV_STORE

#define T double
#define SFX f64
#if PB_HAVE_STREAM
#define SV __m128d
#define SV_W 2
#define SV_SET1(x) _mm_set1_pd(x)
#define SV_MUL_LOADU(s, p) _mm_mul_pd(s, _mm_loadu_pd(p))
#define SV_STREAM(p, v) _mm_stream_pd(p, v)
#define SV_STORE(p, v) _mm_store_pd(p, v)
#endif
#include "gemm/gemm_driver.inc"
#undef T
#undef SFX

int pb_gemm_path(int *path, int *family, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                 ptrdiff_t rsa, ptrdiff_t csa, ptrdiff_t rsb, ptrdiff_t csb, int beta,
                 int elem_bytes) {
    if (m < 1 || n < 1 || k < 0 || (beta != 0 && beta != 1) ||
        (elem_bytes != 4 && elem_bytes != 8))
        return PB_ERR_ARG;
    const pb_arch_t *arch = pb_arch();
    *path = elem_bytes == 4
                ? pb_gemm_path_f32(arch, family, m, n, k, rsa, csa, rsb, csb, beta)
                : pb_gemm_path_f64(arch, family, m, n, k, rsa, csa, rsb, csb, beta);
    return PB_OK;
}
