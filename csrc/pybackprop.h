/* pybackprop.h -- the public contract of the pybackprop C core.
 *
 * Every function the Python layer may call is declared here and nowhere else; the cffi
 * build script (pybackprop/_ffi_build.py) feeds this file to ffi.cdef() after dropping the
 * preprocessor lines, so everything outside them must stay cdef-safe: plain prototypes,
 * plain enums, no macros, no inline code.
 *
 * Conventions (llm.c style):
 *   - Arrays are dense, C-contiguous and of the stated dtype; the Python layer checks this.
 *   - Argument order: outputs (and saved buffers) first, then inputs, then dimensions, then
 *     options. An optional array (bias, db, dx) is a NULL pointer when absent.
 *   - Dimension letters: B batch rows, K input features, N output features.
 *   - Every kernel returns an int status (PB_OK == 0); pb_strerror() describes it. The core
 *     never prints and never exits.
 *   - Sizes are ptrdiff_t: index arithmetic is 64-bit throughout.
 *   - Results do not depend on the thread count (no reduction is ever split across threads
 *     in a thread-count dependent way).
 */
#ifndef PYBACKPROP_H
#define PYBACKPROP_H
#include <stddef.h>
#include <stdint.h>

enum pb_status {
    PB_OK = 0,
    PB_ERR_NOMEM = 1,     /* a workspace allocation failed */
    PB_ERR_ARG = 2,       /* a dimension or option is out of range */
    PB_ERR_ARCH = 3       /* an instruction set was requested that this CPU lacks */
};

enum pb_act {
    PB_ACT_IDENTITY = 0,
    PB_ACT_RELU = 1,
    PB_ACT_LEAKY_RELU = 2, /* slope >= 0 */
    PB_ACT_SIGMOID = 3,
    PB_ACT_TANH = 4,
    PB_ACT_SOFTPLUS = 5
};

/* ---- library: status, dispatch, threads, build ---------------------------------------- */
const char *pb_strerror(int status);
/* The SIMD path in use: "ref", "avx2" or "avx512". Chosen once at load time (best the CPU
 * supports, or PYBACKPROP_ARCH), changeable for tests and benchmarks. */
const char *pb_get_arch(void);
int pb_set_arch(const char *name);       /* PB_ERR_ARCH if unknown or unsupported here */
int pb_arch_supported(const char *name); /* 1 if this CPU (and build) can run the path */
/* Threads used by every kernel; n <= 0 restores the default (PYBACKPROP_NUM_THREADS or
 * the OpenMP default). Without OpenMP the count is always 1. */
void pb_set_num_threads(int n);
int pb_get_num_threads(void);
int pb_has_openmp(void);
const char *pb_compiler(void);
const char *pb_cflags(void);        /* the flags the core was compiled with */

/* ---- dense + activation ------------------------------------------------------------------
 * forward:  y[B,N] = act(x[B,K] @ w[N,K]^T + b[N])     b may be NULL
 * backward: dz = dy * act'(y)   (act' from the saved OUTPUT y)
 *           dx[B,K] = dz @ w    (dx may be NULL: not computed)
 *           dw[N,K] = dz^T @ x
 *           db[N]   = sum_b dz  (db may be NULL: not computed)
 *           accumulate != 0 adds into dx, dw, db instead of overwriting them.
 * The activation is applied in the GEMM epilogue, on each output tile before its one store.
 */
int pb_dense_forward_f32(float *y, const float *x, const float *w, const float *b,
                         ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int act, float slope);
int pb_dense_forward_f64(double *y, const double *x, const double *w, const double *b,
                         ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int act, double slope);
int pb_dense_backward_f32(float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, const float *y, ptrdiff_t B, ptrdiff_t K,
                          ptrdiff_t N, int act, float slope, int accumulate);
int pb_dense_backward_f64(double *dx, double *dw, double *db, const double *dy,
                          const double *x, const double *w, const double *y, ptrdiff_t B,
                          ptrdiff_t K, ptrdiff_t N, int act, double slope, int accumulate);

/* Elementwise: y[n] = act(z[n]);  dz[n] = dy[n] * act'(y[n]) from the output y. */
int pb_activation_forward_f32(float *y, const float *z, ptrdiff_t n, int act, float slope);
int pb_activation_forward_f64(double *y, const double *z, ptrdiff_t n, int act,
                              double slope);
int pb_activation_backward_f32(float *dz, const float *dy, const float *y, ptrdiff_t n,
                               int act, float slope);
int pb_activation_backward_f64(double *dz, const double *dy, const double *y, ptrdiff_t n,
                               int act, double slope);

/* General GEMM used by the kernels above, exposed for tests of the edge logic:
 * c[i*ldc + j] = beta*c + sum_p a[i*rsa + p*csa] * bm[p*rsb + j*csb],  0<=i<m, 0<=j<n.
 * beta is 0 or 1; beta == 0 never reads c. */
int pb_gemm_f32(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                const float *bm, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                ptrdiff_t k, int beta);
int pb_gemm_f64(double *c, ptrdiff_t ldc, const double *a, ptrdiff_t rsa, ptrdiff_t csa,
                const double *bm, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                ptrdiff_t k, int beta);

/* ---- machine probes (bench/) ---------------------------------------------------------------
 * Peak FMA throughput of the current SIMD path with the current thread count, measured by a
 * register-only loop, in GFLOP/s; and streaming bandwidth in GB/s of a copy (read+write)
 * and of a read-modify-write triad over n elements. */
double pb_probe_fma_peak_f32(double seconds);
double pb_probe_fma_peak_f64(double seconds);
double pb_probe_bandwidth_copy(ptrdiff_t n_bytes, int repeats);
double pb_probe_bandwidth_rmw(ptrdiff_t n_bytes, int repeats);

/* ---- optimizers ---------------------------------------------------------------------------- */

/* ---- spectral norm ------------------------------------------------------------------------- */

/* ---- losses and merges --------------------------------------------------------------------- */
/* Each loss writes its reduced value to loss[0] and, in the same pass, the gradient of that
 * value with respect to its first input. reduction PB_REDUCE_MEAN divides by the count
 * stated per kernel (a mean over zero items is 0/0 = NaN, as numpy and PyTorch),
 * PB_REDUCE_SUM does not divide. The total is a sum of per-block partial sums (fixed-size
 * blocks, accumulated in double, added in block order): the same bits for any thread
 * count. PB_ERR_ARG (nothing written) for a negative size, an unknown reduction or a class
 * index outside [0, C). */
enum pb_reduction {
    PB_REDUCE_MEAN = 0,
    PB_REDUCE_SUM = 1
};

/* Mean squared error over n elements (any shape, flattened):
 *   loss = sum_i (pred_i - target_i)^2 / D        D = n (mean) or 1 (sum)
 *   dpred_i = 2 (pred_i - target_i) / D                                                    */
int pb_mse_loss_f32(float *loss, float *dpred, const float *pred, const float *target,
                    ptrdiff_t n, int reduction);
int pb_mse_loss_f64(double *loss, double *dpred, const double *pred, const double *target,
                    ptrdiff_t n, int reduction);

/* Softmax cross-entropy over B rows of C classes (C >= 1 when B > 0):
 *   logits (B, C); the target of row r is EITHER the class index labels[r] in [0, C)
 *   (labels (B,), targets NULL) OR the row targets[r, :] (targets (B, C), labels NULL:
 *   one-hot or probability rows).
 *   p = softmax(logits[r]) = e^(x - m) / s,  m = max_c x_c,  s = sum_c e^(x_c - m)
 *   loss_r = -sum_c t_c log p_c = sum_c t_c (m - x_c) + (sum_c t_c) log s
 *            (index labels: m - x_label + log s)          -- log-sum-exp, never overflows
 *   loss = sum_r loss_r / D,   D = B (mean) or 1 (sum)
 *   dlogits[r, c] = (p_c - t_c) / D                        (the same pass)
 * A row holding NaN or +-inf follows the plain formula (NaN results), on every path.     */
int pb_softmax_cross_entropy_f32(float *loss, float *dlogits, const float *logits,
                                 const int64_t *labels, const float *targets, ptrdiff_t B,
                                 ptrdiff_t C, int reduction);
int pb_softmax_cross_entropy_f64(double *loss, double *dlogits, const double *logits,
                                 const int64_t *labels, const double *targets, ptrdiff_t B,
                                 ptrdiff_t C, int reduction);

/* Binary cross-entropy on logits z over n elements, targets t in [0, 1]:
 *   loss_i = -(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))
 *          = max(z, 0) - z t + log1p(e^-|z|)          -- no overflow for any |z|
 *   loss = sum_i loss_i / D,  D = n (mean) or 1 (sum)
 *   dlogits_i = (sigmoid(z_i) - t_i) / D                                                   */
int pb_binary_cross_entropy_with_logits_f32(float *loss, float *dlogits, const float *logits,
                                            const float *targets, ptrdiff_t n,
                                            int reduction);
int pb_binary_cross_entropy_with_logits_f64(double *loss, double *dlogits,
                                            const double *logits, const double *targets,
                                            ptrdiff_t n, int reduction);

/* Elementwise maximum of two branches, n elements (any shape, flattened):
 *   forward:  z = a >= b ? a : b    (NaN in either input gives NaN)
 *   backward: da = dz where a won, else 0;  db = dz where b won, else 0
 * A tie (a == b) goes to the FIRST argument a: da = dz, db = 0. (PyTorch's
 * torch.maximum splits a tie, dz/2 to each.) "a won" is a >= b or a is NaN.              */
int pb_maximum_forward_f32(float *z, const float *a, const float *b, ptrdiff_t n);
int pb_maximum_forward_f64(double *z, const double *a, const double *b, ptrdiff_t n);
int pb_maximum_backward_f32(float *da, float *db, const float *dz, const float *a,
                            const float *b, ptrdiff_t n);
int pb_maximum_backward_f64(double *da, double *db, const double *dz, const double *a,
                            const double *b, ptrdiff_t n);

#endif /* PYBACKPROP_H */
