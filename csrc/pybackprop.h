/* pybackprop.h -- the public contract of the pybackprop C core.
 *
 * Every function the Python layer may call is declared here, except the hooks that only
 * tests and benchmarks use (testing/pb_testing.h); the cffi build script
 * (pybackprop/_ffi_build.py) feeds both files to ffi.cdef() after dropping the preprocessor
 * lines, so everything outside them must stay cdef-safe: plain prototypes, plain enums, no
 * macros, no inline code.
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
    PB_ERR_ARCH = 3,      /* an instruction set was requested that this CPU lacks */
    PB_ERR_OVERLAP = 4    /* an output's memory overlaps an input's or another output's */
};

enum pb_act {
    PB_ACT_IDENTITY = 0,
    PB_ACT_RELU = 1,
    PB_ACT_LEAKY_RELU = 2, /* slope >= 0 */
    PB_ACT_SIGMOID = 3,
    PB_ACT_TANH = 4,
    PB_ACT_SOFTPLUS = 5,
    /* pre-activation kinds: the backward takes z, not y (see the dense section) */
    PB_ACT_GELU = 6,       /* z Phi(z), Phi the standard normal CDF (erf form) */
    PB_ACT_GELU_TANH = 7,  /* z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2 */
    PB_ACT_SILU = 8        /* z sigmoid(z) */
};

/* ---- library: status, dispatch, threads, build ---------------------------------------- */
const char *pb_strerror(int status);
/* ---- CPU configurations (cpu_configs.c, docs/cpus.md) ------------------------------------
 * A configuration names, per kernel family (float32 GEMM and dense, float64 GEMM and
 * dense, the vector kernels), which ISA's kernels run, with the block sizes and path
 * crossovers of one CPU model. One is chosen once at load time: PYBACKPROP_CPU=NAME if this
 * CPU runs NAME, else the detected model's, falling back to a related one where this CPU
 * lacks an ISA or PYBACKPROP_ARCH caps it. Changeable for tests and benchmarks. */
int pb_cpu_count(void);
const char *pb_cpu_name(int i);          /* configuration i (0 <= i < count), else NULL */
const char *pb_cpu_about(int i);         /* what it is for, one sentence */
int pb_cpu_supported(const char *name);  /* 1 if this CPU and build run it */
int pb_set_cpu(const char *name);        /* PB_ERR_ARCH if unknown or not runnable here */
const char *pb_get_cpu(void);            /* the active configuration */
const char *pb_cpu_reason(void);         /* why the load-time choice was made */
/* The ISA ("ref", "avx2", "avx512") of a family (0 float32 GEMM, 1 float64 GEMM, 2 vector
 * kernels; 3 and 4: the float32 and float64 GEMM's tall products, few columns on a large
 * batch, where a configuration runs them on another ISA's kernels; 5 and 6: the float32 and
 * float64 GEMM's shallow products, those it would pack with k <= pb_gemm_blocks' blk[12],
 * likewise; 7 and 8: the other products they would pack with a row-major B, likewise) in
 * configuration `name`
 * (NULL: the active one); NULL if either is unknown. */
const char *pb_cpu_kernels(const char *name, int family);
/* What cpuid says: vendor[13] (NUL-terminated, "" without cpuid), fms[4] = family, model,
 * stepping, caches known (0: assumed); caches[12] = (bytes, ways, line, sets) of L1d, L2,
 * L3. Returns PB_OK. */
int pb_cpu_detect(char *vendor, int *fms, ptrdiff_t *caches);
/* The highest ISA of the active configuration: "ref", "avx2" or "avx512". pb_set_arch
 * caps it: the detected model's configuration, followed down its fallbacks until its ISAs
 * are at most `name` (as PYBACKPROP_ARCH at load time). */
const char *pb_get_arch(void);
int pb_set_arch(const char *name);       /* PB_ERR_ARCH if unknown or unsupported here */
int pb_arch_supported(const char *name); /* 1 if this CPU (and build) can run the ISA */
/* Threads used by every kernel; n <= 0 restores the default: PYBACKPROP_NUM_THREADS, else
 * OpenMP's nthreads-var of the calling thread (OMP_NUM_THREADS, omp_set_num_threads), read
 * at each call; at most 1024. 1 in a process forked after a kernel ran 2+ threads (the OpenMP
 * pool does not survive fork). Without OpenMP the count is always 1. */
void pb_set_num_threads(int n);
int pb_get_num_threads(void);
int pb_has_openmp(void);
/* Opt-in flush of subnormals inside the kernels, process-wide, default off (or on from
 * PYBACKPROP_FLUSH_DENORMAL=1, read once). Every kernel runs with FTZ and DAZ in MXCSR set
 * (on) or clear (off, even if the caller had set them) in each thread that does its work,
 * and restores that thread's MXCSR control bits before returning (the caller's state is
 * never changed). pb_set_flush_denormal returns 1 if the mode is now as asked, 0 if this
 * CPU or build cannot flush (mode 0 always works). */
int pb_set_flush_denormal(int mode);
int pb_get_flush_denormal(void);
const char *pb_compiler(void);
const char *pb_cflags(void);        /* the flags the core was compiled with */

/* ---- dense + activation ------------------------------------------------------------------
 * forward:  z[B,N] = x[B,K] @ w[N,K]^T + b[N]     b may be NULL
 *           y[B,N] = act(z)
 *           z may be NULL (not wanted); else it receives the pre-activation, stored by the
 *           same epilogue that stores y (one more store per vector, no second pass).
 * backward: dz = dy * act'(.), where the 7th argument `s` (B x N) is
 *             the saved OUTPUT y for identity, relu, leaky_relu, sigmoid, tanh, softplus,
 *             the saved PRE-ACTIVATION z for gelu, gelu_tanh, silu (whose derivative
 *             cannot be taken from y);
 *           dx[B,K] = dz @ w    (dx may be NULL: not computed)
 *           dw[N,K] = dz^T @ x
 *           db[N]   = sum_b dz  (db may be NULL: not computed)
 *           accumulate != 0 adds into dx, dw, db instead of overwriting them.
 * The activation is applied in the GEMM epilogue, on each output tile before its one store.
 * Outputs (y, z; dx, dw, db) may not overlap an input or each other: PB_ERR_OVERLAP, nothing
 * written (checked on the arrays' extents, B*K, N*K, N or B*N elements).
 */
int pb_dense_forward_f32(float *y, float *z, const float *x, const float *w, const float *b,
                         ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int act, float slope);
int pb_dense_forward_f64(double *y, double *z, const double *x, const double *w,
                         const double *b, ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int act,
                         double slope);
int pb_dense_backward_f32(float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, const float *s, ptrdiff_t B, ptrdiff_t K,
                          ptrdiff_t N, int act, float slope, int accumulate);
int pb_dense_backward_f64(double *dx, double *dw, double *db, const double *dy,
                          const double *x, const double *w, const double *s, ptrdiff_t B,
                          ptrdiff_t K, ptrdiff_t N, int act, double slope, int accumulate);

/* Elementwise: y[n] = act(z[n]);  dz[n] = dy[n] * act'(.) from s[n], the OUTPUT y or, for
 * gelu, gelu_tanh and silu, the pre-activation z (as the dense backward). */
int pb_activation_forward_f32(float *y, const float *z, ptrdiff_t n, int act, float slope);
int pb_activation_forward_f64(double *y, const double *z, ptrdiff_t n, int act,
                              double slope);
int pb_activation_backward_f32(float *dz, const float *dy, const float *s, ptrdiff_t n,
                               int act, float slope);
int pb_activation_backward_f64(double *dz, const double *dy, const double *s, ptrdiff_t n,
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
/* The block sizes and crossovers of the GEMM in configuration `name` (NULL: the active one)
 * for elements of `elem_bytes` (4 or 8): blk[0..4] = MR, NR (register tile), MC, KC, NC
 * (cache blocks); blk[5..7] = the A^T panel width, the tile rows and the largest m of the
 * transposed-tile kernel (0 where there is none); blk[8] the largest m of the dot-product
 * kernel's rule, blk[9] of the A^T B kernel's (0 where there is none); blk[10] the most
 * bytes of B for the transposed-tile path's row split; blk[11] the A^T B path's aliasing
 * stride; blk[12] the largest k of the products the packed path would take that run on the
 * configuration's small-k kernels (family 5 or 6 of pb_cpu_kernels; 0: none); blk[13] the
 * most threads at work with which the A^T B path copies (0: any), blk[14] the fewest bytes
 * of B it copies. PB_ERR_ARCH if the name is
 * unknown. */
int pb_gemm_blocks(ptrdiff_t *blk, const char *arch, int elem_bytes);
/* *path = the path pb_gemm_f32/f64 takes for this problem (the dense forward makes the same
 * choice) in the active configuration and thread count, and *family the kernel family of
 * pb_cpu_kernels whose kernels run it (0 / 1: the GEMM's; 3 / 4: the tall products'; 5 / 6:
 * the small-k products'), for tests and benchmarks; PB_ERR_ARG
 * (nothing written) unless m, n >= 1, k >= 0, beta 0 or 1 and elem_bytes 4 or 8. Paths sum
 * in different orders (docs/gemm.md); the transposed-tile path gives the packed path's bits. */
enum {
    PB_GEMM_PACKED = 0, /* packing, macro-kernel, micro-kernel */
    PB_GEMM_GEMV = 1,   /* m == 1 */
    PB_GEMM_DOT = 2,    /* dot-product kernel, no packing */
    PB_GEMM_TT = 3,     /* transposed-tile kernel: A^T packed, B read in place */
    PB_GEMM_OUTER = 4,  /* k == 1 outer product, streaming stores */
    PB_GEMM_ATB = 5     /* A^T B kernel: few rows of C, A^T and B row-major, B read in place */
};
int pb_gemm_path(int *path, int *family, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                 ptrdiff_t rsa, ptrdiff_t csa, ptrdiff_t rsb, ptrdiff_t csb, int beta,
                 int elem_bytes);

/* ---- optimizers ----------------------------------------------------------------------------
 * One step of Adam / AdamW and of AdaMax over n_tensors tensors in ONE call (multi-tensor):
 * tensor k is the contiguous array param[k][0 .. size[k]) with its gradient grad[k] and its
 * state m[k], v[k] (or u[k]), v_max[k], all of the same length and dtype, updated in place.
 * Threads share the total work (across tensors and inside large ones); every element is
 * computed the same way whatever the thread count, so results are bitwise reproducible.
 *
 * Semantics are torch.optim's single-tensor CPU path, op for op, in the parameter dtype
 * (scalars such as lr / (1 - beta1^t) are computed in double and rounded once), without
 * fused multiply-adds; pybackprop/reference.py is the specification. t = step >= 1 is the
 * step number after increment; g = maximize ? -grad : grad.
 *
 * Adam (decoupled_weight_decay == 0) / AdamW (!= 0):
 *   if weight_decay != 0:  decoupled ? p = p * (1 - lr*wd)  :  g = g + wd * p
 *   m = lerp(m, g, 1 - beta1)                          first moment  (torch.lerp)
 *   v = v * beta2 + ((1 - beta2) * g) * g              second moment
 *   amsgrad: v_max = max(v_max, v), and v_max replaces v below (NaN propagates)
 *   p = p + (-(lr / (1 - beta1^t)) * m) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   v_max is NULL (not read) unless amsgrad != 0.
 * AdaMax (Adam paper, section 7.1; eps placed as torch.optim.Adamax):
 *   if weight_decay != 0:  g = g + wd * p
 *   m = lerp(m, g, 1 - beta1)                          first moment
 *   u = max(u * beta2, |g| + eps)                      exponentially weighted infinity norm
 *   p = p + (-(lr / (1 - beta1^t)) * m) / u,  except where u == 0 (no gradient ever, eps 0):
 *       p is left unchanged there instead of becoming NaN.
 * Returns PB_ERR_ARG (before touching memory) if n_tensors < 0, a size < 0, a needed pointer
 * is NULL, step < 1, lr < 0, a beta outside [0, 1), eps < 0 or weight_decay < 0.
 */
int pb_adam_step_f32(float *const *param, float *const *m, float *const *v,
                     float *const *v_max, const float *const *grad, const ptrdiff_t *size,
                     ptrdiff_t n_tensors, int64_t step, double lr, double beta1, double beta2,
                     double eps, double weight_decay, int decoupled_weight_decay, int amsgrad,
                     int maximize);
int pb_adam_step_f64(double *const *param, double *const *m, double *const *v,
                     double *const *v_max, const double *const *grad, const ptrdiff_t *size,
                     ptrdiff_t n_tensors, int64_t step, double lr, double beta1, double beta2,
                     double eps, double weight_decay, int decoupled_weight_decay, int amsgrad,
                     int maximize);
int pb_adamax_step_f32(float *const *param, float *const *m, float *const *u,
                       const float *const *grad, const ptrdiff_t *size, ptrdiff_t n_tensors,
                       int64_t step, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int maximize);
int pb_adamax_step_f64(double *const *param, double *const *m, double *const *u,
                       const double *const *grad, const ptrdiff_t *size, ptrdiff_t n_tensors,
                       int64_t step, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int maximize);

/* ---- spectral norm ------------------------------------------------------------------------- */
/* w[N,K] is a weight as (out, in); u[N], v[K] are the persistent power-iteration vectors.
 * normalize(a) = a / max(||a||_2, eps). Semantics of torch.nn.utils.parametrizations
 * .spectral_norm (dim=0); see pybackprop/reference.py for the plain two-matvec form.
 *
 * power_iteration: n_iters >= 1 iterations, each ONE pass over w:
 *     s = w @ v,  r = w^T s  (r accumulated row by row while the row is in cache),
 *     u = normalize(s),  t = r / max(||s||, eps) (= w^T u),  v = normalize(t),
 *   then *sigma = t . v  (= u . (w @ v) for the new u, v: no extra pass).
 *   n_iters == 0 (evaluation): u, v are not written; *sigma = u . (w @ v), one pass.
 *   u, v, sigma: in/out, out.  w: (N, K).  eps >= 0.
 * norm_forward:  out[n] = w[n] / sigma  (n = N*K elements; exact IEEE division; out may be w).
 * norm_backward: dw[N,K] = (dwsn - <dwsn, w/sigma> u v^T) / sigma, the gradient of a loss of
 *   w / sigma(w) with u, v held constant (sigma = u^T w v). Reads w once, dwsn twice.
 * sigma_upper: *upper >= sigma_max(w), certified against every rounding of the computation:
 *   Gram matrix of the smaller side in float64 (pb_gemm_f64), n_squarings squarings, then
 *   sigma <= ||G^(2^j)||_F^(1/2^(j+1)), inflated by the derived rounding bounds (spectral.c).
 *   NaN in w gives NaN, an infinity (without NaN) gives inf. n_squarings in [0, 30].
 */
int pb_spectral_power_iteration_f32(float *u, float *v, float *sigma, const float *w,
                                    ptrdiff_t N, ptrdiff_t K, int n_iters, float eps);
int pb_spectral_power_iteration_f64(double *u, double *v, double *sigma, const double *w,
                                    ptrdiff_t N, ptrdiff_t K, int n_iters, double eps);
int pb_spectral_norm_forward_f32(float *out, const float *w, ptrdiff_t n, float sigma);
int pb_spectral_norm_forward_f64(double *out, const double *w, ptrdiff_t n, double sigma);
int pb_spectral_norm_backward_f32(float *dw, const float *dwsn, const float *w,
                                  const float *u, const float *v, float sigma, ptrdiff_t N,
                                  ptrdiff_t K);
int pb_spectral_norm_backward_f64(double *dw, const double *dwsn, const double *w,
                                  const double *u, const double *v, double sigma,
                                  ptrdiff_t N, ptrdiff_t K);
int pb_spectral_sigma_upper_f32(double *upper, const float *w, ptrdiff_t N, ptrdiff_t K,
                                int n_squarings);
int pb_spectral_sigma_upper_f64(double *upper, const double *w, ptrdiff_t N, ptrdiff_t K,
                                int n_squarings);

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
    PB_REDUCE_SUM = 1,
    PB_REDUCE_NONE = 2 /* softmax cross-entropy only: loss[r] per row, D = 1 */
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
 *   one-hot or probability rows). A row whose label equals ignore_index (any value; a
 *   label outside [0, C) is an error otherwise) has loss_r = 0 and dlogits[r] = 0 and is
 *   not counted in the mean (PyTorch's ignore_index; targets rows ignore nothing).
 *   p = softmax(logits[r]) = e^(x - m) / s,  m = max_c x_c,  s = sum_c e^(x_c - m)
 *   loss_r = -sum_c t_c log p_c = sum_c t_c (m - x_c) + (sum_c t_c) log s
 *            (index labels: m - x_label + log s)          -- log-sum-exp, never overflows
 *   loss = sum_r loss_r / D,   D = the rows not ignored (mean) or 1 (sum); with
 *   PB_REDUCE_NONE loss holds B values, loss[r] = loss_r, and D = 1
 *   dlogits[r, c] = (p_c - t_c) / D                        (the same pass)
 * A row holding NaN or +-inf follows the plain formula (NaN results), on every path.     */
int pb_softmax_cross_entropy_f32(float *loss, float *dlogits, const float *logits,
                                 const int64_t *labels, const float *targets, ptrdiff_t B,
                                 ptrdiff_t C, int reduction, int64_t ignore_index);
int pb_softmax_cross_entropy_f64(double *loss, double *dlogits, const double *logits,
                                 const int64_t *labels, const double *targets, ptrdiff_t B,
                                 ptrdiff_t C, int reduction, int64_t ignore_index);

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
