/* losses.h -- the per-ISA kernels of the losses (contracts in ops/losses.c): one softmax
 * cross-entropy row, one block of binary cross-entropy or of squared errors.
 */
#ifndef PB_LOSSES_H
#define PB_LOSSES_H
#include "core/core.h"

/* Loss kernels of one ISA path; the contracts are written once in losses.c. */
typedef float (*pb_xent_row_f32_t)(float *d, const float *x, ptrdiff_t C, ptrdiff_t label,
                                   const float *t, float scale);
typedef double (*pb_xent_row_f64_t)(double *d, const double *x, ptrdiff_t C,
                                    ptrdiff_t label, const double *t, double scale);
typedef double (*pb_bce_block_f32_t)(float *d, const float *z, const float *t, ptrdiff_t n,
                                     float scale);
typedef double (*pb_bce_block_f64_t)(double *d, const double *z, const double *t,
                                     ptrdiff_t n, double scale);
typedef double (*pb_mse_block_f32_t)(float *d, const float *p, const float *q, ptrdiff_t n,
                                     float k2);
typedef double (*pb_mse_block_f64_t)(double *d, const double *p, const double *q,
                                     ptrdiff_t n, double k2);

/* Loss kernels the tables point at: losses.c (ref), losses_avx2.c, losses_avx512.c. */
#define PB_DECLARE_LOSS_KERNELS(ISA)                                                        \
    float pb_xent_row_f32_##ISA(float *d, const float *x, ptrdiff_t C, ptrdiff_t label,    \
                                const float *t, float scale);                              \
    double pb_xent_row_f64_##ISA(double *d, const double *x, ptrdiff_t C, ptrdiff_t label, \
                                 const double *t, double scale);                           \
    double pb_bce_block_f32_##ISA(float *d, const float *z, const float *t, ptrdiff_t n,   \
                                  float scale);                                            \
    double pb_bce_block_f64_##ISA(double *d, const double *z, const double *t,             \
                                  ptrdiff_t n, double scale);                              \
    double pb_mse_block_f32_##ISA(float *d, const float *p, const float *q, ptrdiff_t n,   \
                                  float k2);                                               \
    double pb_mse_block_f64_##ISA(double *d, const double *p, const double *q,             \
                                  ptrdiff_t n, double k2);
PB_DECLARE_LOSS_KERNELS(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_LOSS_KERNELS(avx2)
PB_DECLARE_LOSS_KERNELS(avx512)
#endif

/* The loss kernels of one ISA (ops/losses_kernels.c);
 * pb_losses_kernels(arch) those of the table a call read once (arch/arch.h). */
typedef struct {
    pb_xent_row_f32_t xent_row_f32;
    pb_xent_row_f64_t xent_row_f64;
    pb_bce_block_f32_t bce_block_f32;
    pb_bce_block_f64_t bce_block_f64;
    pb_mse_block_f32_t mse_block_f32;
    pb_mse_block_f64_t mse_block_f64;
} pb_losses_kernels_t;
struct pb_arch_s;
const pb_losses_kernels_t *pb_losses_kernels(const struct pb_arch_s *arch);
#endif /* PB_LOSSES_H */
