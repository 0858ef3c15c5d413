/* spectral.h -- the per-ISA kernels of the spectral norm (drivers in ops/spectral.c). */
#ifndef PB_SPECTRAL_H
#define PB_SPECTRAL_H
#include "core/core.h"

/* ---- spectral norm kernels (one per ISA and dtype; drivers in spectral.c) --------------
 * rows: s[i] = w_i . v for the `rows` rows w_i of w (row stride K), and, if r != NULL,
 *       r[k] = 2^-e sum_i s[i] * w[i*K + k] (r is overwritten; zeros when rows == 0), each
 *       row re-read for r right after its dot product, while it is still in cache; returns
 *       e (0 when r == NULL). The power-of-two scale keeps s_i w_i near the range of w
 *       (s ~ sigma, so unscaled products ~ sigma^2 would overflow float32 past 1.8e19):
 *       e follows spec_scale_update() (spectral.c), a function of the s values in row
 *       order only.
 * dot:  sum_{i<n} a[i] * b[i] in the dtype's arithmetic (n is at most a few 10^4).
 * bwd:  out[k] = (g[k] - b * v[k]) * inv for k < K  (one row of the spectral-norm backward).
 * div:  out[i] = w[i] / sigma for i < n, exact IEEE division (out may be w). */
typedef int (*pb_spec_rows_f32_t)(float *s, float *r, const float *w, const float *v,
                                  ptrdiff_t rows, ptrdiff_t K);
typedef int (*pb_spec_rows_f64_t)(double *s, double *r, const double *w, const double *v,
                                  ptrdiff_t rows, ptrdiff_t K);
typedef float (*pb_spec_dot_f32_t)(const float *a, const float *b, ptrdiff_t n);
typedef double (*pb_spec_dot_f64_t)(const double *a, const double *b, ptrdiff_t n);
typedef void (*pb_spec_bwd_f32_t)(float *out, const float *g, const float *v, float b,
                                  float inv, ptrdiff_t K);
typedef void (*pb_spec_bwd_f64_t)(double *out, const double *g, const double *v, double b,
                                  double inv, ptrdiff_t K);
typedef void (*pb_spec_div_f32_t)(float *out, const float *w, float sigma, ptrdiff_t n);
typedef void (*pb_spec_div_f64_t)(double *out, const double *w, double sigma, ptrdiff_t n);

/* Spectral-norm kernels (spectral.c), named as the table entries: _ref, _avx2, _avx512. */
#define PB_DECLARE_SPEC(ISA)                                                                 \
    int pb_spec_rows_f32_##ISA(float *s, float *r, const float *w, const float *v,          \
                               ptrdiff_t rows, ptrdiff_t K);                                \
    int pb_spec_rows_f64_##ISA(double *s, double *r, const double *w, const double *v,      \
                               ptrdiff_t rows, ptrdiff_t K);                                \
    float pb_spec_dot_f32_##ISA(const float *a, const float *b, ptrdiff_t n);               \
    double pb_spec_dot_f64_##ISA(const double *a, const double *b, ptrdiff_t n);            \
    void pb_spec_bwd_f32_##ISA(float *out, const float *g, const float *v, float b,         \
                               float inv, ptrdiff_t K);                                     \
    void pb_spec_bwd_f64_##ISA(double *out, const double *g, const double *v, double b,     \
                               double inv, ptrdiff_t K);                                    \
    void pb_spec_div_f32_##ISA(float *out, const float *w, float sigma, ptrdiff_t n);       \
    void pb_spec_div_f64_##ISA(double *out, const double *w, double sigma, ptrdiff_t n);
PB_DECLARE_SPEC(ref)
#if defined(__x86_64__) || defined(__i386__)
PB_DECLARE_SPEC(avx2)
PB_DECLARE_SPEC(avx512)
#endif

/* The spectral-norm kernels of one ISA (ops/spectral_kernels.c);
 * pb_spectral_kernels(arch) those of the table a call read once (arch/arch.h). */
typedef struct {
    pb_spec_rows_f32_t spec_rows_f32;
    pb_spec_rows_f64_t spec_rows_f64;
    pb_spec_dot_f32_t spec_dot_f32;
    pb_spec_dot_f64_t spec_dot_f64;
    pb_spec_bwd_f32_t spec_bwd_f32;
    pb_spec_bwd_f64_t spec_bwd_f64;
    pb_spec_div_f32_t spec_div_f32;
    pb_spec_div_f64_t spec_div_f64;
} pb_spectral_kernels_t;
struct pb_arch_s;
const pb_spectral_kernels_t *pb_spectral_kernels(const struct pb_arch_s *arch);
#endif /* PB_SPECTRAL_H */
