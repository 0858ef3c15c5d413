/* optim.h -- the optimizers' per-ISA range kernels and the scalars of one step they take
 * (drivers in ops/optim.c).
 */
#ifndef PB_OPTIM_H
#define PB_OPTIM_H
#include "core/core.h"

/* ---- optimizers (optim.c): per-ISA range kernels ------------------------------------------
 * One Adam or AdaMax step over one contiguous range of n elements, with the scalars of the
 * step already formed (in double, rounded once to T) by the drivers in optim.c. Every path
 * reproduces the scalar element functions of optim.c bit for bit (same IEEE operations in
 * the same order, no FMA). wd_mode: PB_WD_NONE, PB_WD_COUPLED (g += wd*p), PB_WD_DECOUPLED
 * (p *= decay). lerp: m = (lerp_small ? m : g) + lerp_coef * (g - m), torch.lerp's two
 * branches. neg_step = -(lr / (1 - beta1^t)). */
enum { PB_WD_NONE = 0, PB_WD_COUPLED = 1, PB_WD_DECOUPLED = 2 };
#define PB_DEFINE_OPTIM_COEF(T, SFX)                                                         \
    typedef struct {                                                                        \
        T wd, decay, lerp_coef, b2, c2, bc2_sqrt, eps, neg_step;                           \
        int wd_mode, lerp_small, amsgrad, maximize;                                        \
    } pb_optim_coef_##SFX##_t;                                                             \
    typedef void (*pb_adam_range_##SFX##_t)(T *p, T *m, T *v, T *v_max, const T *g,      \
                                             ptrdiff_t n, const pb_optim_coef_##SFX##_t *c); \
    typedef void (*pb_adamax_range_##SFX##_t)(T *p, T *m, T *u, const T *g, ptrdiff_t n,  \
                                               const pb_optim_coef_##SFX##_t *c);
PB_DEFINE_OPTIM_COEF(float, f32)
PB_DEFINE_OPTIM_COEF(double, f64)

/* Optimizer range kernels the tables point at (optim.c). */
#define PB_DECLARE_OPTIM_RANGES(ISA)                                                         \
    void pb_adam_range_f32_##ISA(float *p, float *m, float *v, float *v_max, const float *g, \
                                 ptrdiff_t n, const pb_optim_coef_f32_t *c);               \
    void pb_adam_range_f64_##ISA(double *p, double *m, double *v, double *v_max,           \
                                 const double *g, ptrdiff_t n, const pb_optim_coef_f64_t *c); \
    void pb_adamax_range_f32_##ISA(float *p, float *m, float *u, const float *g,           \
                                   ptrdiff_t n, const pb_optim_coef_f32_t *c);             \
    void pb_adamax_range_f64_##ISA(double *p, double *m, double *u, const double *g,       \
                                   ptrdiff_t n, const pb_optim_coef_f64_t *c);
PB_DECLARE_OPTIM_RANGES(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_OPTIM_RANGES(avx2)
PB_DECLARE_OPTIM_RANGES(avx512)
#endif

/* The optimizers' range kernels of one ISA (ops/optim_kernels.c);
 * pb_optim_kernels(arch) those of the table a call read once (arch/arch.h). */
typedef struct {
    pb_adam_range_f32_t adam_f32;
    pb_adam_range_f64_t adam_f64;
    pb_adamax_range_f32_t adamax_f32;
    pb_adamax_range_f64_t adamax_f64;
} pb_optim_kernels_t;
struct pb_arch_s;
const pb_optim_kernels_t *pb_optim_kernels(const struct pb_arch_s *arch);
#endif /* PB_OPTIM_H */
