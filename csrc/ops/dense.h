/* dense.h -- what the dense layer (ops/dense.c) lends the rest of the core: the one
 * definition of dz = dy * act'(y).
 */
#ifndef PB_DENSE_H
#define PB_DENSE_H
#include "core/core.h"

/* dz[r*ldz + j] = dy[r*ld + j] * act'(y[r*ld + j]) for r < rows, j < n (dense.c): the one
 * definition of dz, for the dz pass and the fused packing alike. dz may be NULL (sums only);
 * sum (length n, or NULL) += each column's values, rows in order. */
void pb_dz_rows_f32(float *dz, ptrdiff_t ldz, float *sum, const float *dy, const float *y,
                    ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n, int act, float slope);
void pb_dz_rows_f64(double *dz, ptrdiff_t ldz, double *sum, const double *dy, const double *y,
                    ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t n, int act, double slope);
#endif /* PB_DENSE_H */
