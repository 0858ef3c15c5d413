/* gemm.c -- the GEMM driver for both dtypes (see gemm_driver.inc for the loop structure).
 * Micro-kernels come from the active kernel table (dispatch.c). */
#include "pb_internal.h"

#define T float
#define SFX f32
#include "gemm_driver.inc"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "gemm_driver.inc"
#undef T
#undef SFX
