/* gemm.h -- the GEMM layer's contracts and entry points (BLIS style).
 *
 * The contracts every ISA's kernels obey, written once: the micro-kernel (packed and with A
 * read in place), the GEMVs, the dot-product kernel, the transposed-tile kernel, the A^T B
 * kernel, the transposing pack, the vector activations (instantiated with the epilogue's
 * code); then the driver's entry points (gemm/gemm.c) and its thread layout
 * (gemm/gemm_split.c). The kernels themselves are declared in gemm/gemm_kernels.h.
 */
#ifndef PB_GEMM_H
#define PB_GEMM_H
#include "core/activation.h"
#include "core/core.h"

/* ---- micro-kernel contract ----------------------------------------------------------------
 * One register tile of C (MR x NR, row-major with row stride ldc):
 *     C[i, j] = beta * C[i, j] + sum_{p<k} Ap[p*MR + i] * Bp[p*NR + j]
 * for 0 <= i < m <= MR and 0 <= j < n <= NR; the rest of the tile is neither read nor
 * written. Ap is a packed A micro-panel (k columns of MR values, zero-padded past m), Bp a
 * packed B micro-panel (k rows of NR values, zero-padded past n); both PB_ALIGN-aligned.
 * beta is 0 or 1, and beta == 0 never reads C (C may hold NaN or garbage). k may be 0.
 * epi == NULL: plain store. epi != NULL (only on the last K panel): before the one store,
 * add epi->bias[j] (if bias != NULL; bias points at the tile's first column) and apply
 * epi->act with epi->slope, in registers, with the scalar semantics of pb_act_*() below.
 * epi->zoff != 0: the value before the activation (after the bias) is also stored, at the
 * same element of the array that starts zoff bytes past C (same layout as C; PB_ZPTR).
 */
typedef struct {
    const float *bias;
    int act;
    float slope;
    ptrdiff_t zoff;
} pb_epi_f32_t;
typedef struct {
    const double *bias;
    int act;
    double slope;
    ptrdiff_t zoff;
} pb_epi_f64_t;
/* The element of the pre-activation output that goes with C's element at dst. */
#define PB_ZPTR(dst, zoff) ((__typeof__(dst))((uintptr_t)(dst) + (uintptr_t)(zoff)))
/* zoff for a pre-activation output z beside C = c (NULL: none, 0). */
#define PB_ZOFF(z, c) ((z) != NULL ? (ptrdiff_t)((uintptr_t)(z) - (uintptr_t)(c)) : 0)

typedef void (*pb_ukr_f32_t)(ptrdiff_t k, const float *ap, const float *bp, float *c,
                             ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                             const pb_epi_f32_t *epi);
typedef void (*pb_ukr_f64_t)(ptrdiff_t k, const double *ap, const double *bp, double *c,
                             ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                             const pb_epi_f64_t *epi);
/* The micro-kernel with A read in place (optional per ISA; NULL: A is always packed): the
 * contract above with A(i, p) at a[i*lda + p] (rows contiguous; only rows i < m are read)
 * instead of a packed micro-panel, the same products in the same order, so the same bits.
 * For a thread whose slice of the B panel is one or two micro-panels (a layer with few
 * outputs), where each element of A is used once or twice and packing it costs more than
 * it saves. */
typedef void (*pb_ukr_a_f32_t)(ptrdiff_t k, const float *a, ptrdiff_t lda, const float *bp,
                               float *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                               const pb_epi_f32_t *epi);
typedef void (*pb_ukr_a_f64_t)(ptrdiff_t k, const double *a, ptrdiff_t lda, const double *bp,
                               double *c, ptrdiff_t ldc, ptrdiff_t m, ptrdiff_t n, int beta,
                               const pb_epi_f64_t *epi);

/* ---- GEMV contract (m == 1, no packing) ----------------------------------------------------
 * dot form:  y[j] = epi(beta y[j] + sum_p x[p] w[j*ldw + p])        (x, w rows contiguous)
 * axpy form: y[j] = epi(beta y[j] + sum_p x[p*incx] w[p*ldw + j])   (w rows contiguous in j)
 * for 0 <= j < n; epi as in the micro-kernel with epi->bias pointing at y[0]'s column; beta
 * 0 never reads y. Each y[j] is summed in an order that depends only on k. */
typedef void (*pb_gemv_dot_f32_t)(ptrdiff_t n, ptrdiff_t k, const float *x, const float *w,
                                  ptrdiff_t ldw, float *y, int beta, const pb_epi_f32_t *epi);
typedef void (*pb_gemv_dot_f64_t)(ptrdiff_t n, ptrdiff_t k, const double *x, const double *w,
                                  ptrdiff_t ldw, double *y, int beta, const pb_epi_f64_t *epi);
typedef void (*pb_gemv_axpy_f32_t)(ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t incx,
                                   const float *w, ptrdiff_t ldw, float *y, int beta,
                                   const pb_epi_f32_t *epi);
typedef void (*pb_gemv_axpy_f64_t)(ptrdiff_t n, ptrdiff_t k, const double *x, ptrdiff_t incx,
                                   const double *w, ptrdiff_t ldw, double *y, int beta,
                                   const pb_epi_f64_t *epi);

/* ---- dot-product kernel (optional per ISA; NULL: the packed path) -------------------------
 * c[i*ldc + j] = epi(beta c[i*ldc + j] + sum_p a[i*lda + p] b[j*ldb + p]) for i < m, j < n:
 * the forward's layout (rows of x and of w both contiguous in p), without packing, for
 * problems with few rows of A. epi as in the micro-kernel with epi->bias pointing at column
 * 0 of c; beta 0 never reads c. Every c element is summed in an order that depends only on
 * k (not on m, n, the operands' alignment or the split of the columns between threads).
 * ws: 64-byte aligned scratch of ((copy_a ? m : 0) + 8) * PB_DOT_KP(k) elements (aligned
 * copies of rows that are not: of B always, of A only with copy_a, which pays when each row
 * of A is read for many groups of 8 columns; without it A is read in place). */
#define PB_DOT_KP(k) (((k) + 15) / 16 * 16)
typedef void (*pb_gemm_dot_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                                  ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws,
                                  int copy_a);
typedef void (*pb_gemm_dot_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *a,
                                  ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *c,
                                  ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws,
                                  int copy_a);

/* ---- transposed-tile kernel (optional per ISA; NULL: not used) ---------------------------
 * c[i*ldc + j] = epi(beta c[i*ldc + j] + sum_{p<k} a[i, p] b[p*rsb + j*csb]) for i < m,
 * j < n, where B is column-major (rsb == 1: the forward's w) or row-major (csb == 1: w in
 * the backward's dx = dz w) and read in place, and A is given transposed and packed by the
 * ISA's pack_t in panels of W = blk.tw rows: panel i0/W at at + i0*k, at[i0*k + p*W + r] =
 * a[i0 + r, p], zero rows past m. Every element is one FMA chain over p in order,
 * fma(b, a, acc) from 0: the packed micro-kernel's operations for a panel of depth k, so the
 * two give the same bits. epi as in the micro-kernel with epi->bias pointing at column 0 of
 * c; beta 0 never reads c. ws: scratch of blk.tj * k elements. */
typedef void (*pb_gemm_tt_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *at,
                                 const float *b, ptrdiff_t rsb, ptrdiff_t csb, float *c,
                                 ptrdiff_t ldc, int beta, const pb_epi_f32_t *epi, float *ws);
typedef void (*pb_gemm_tt_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *at,
                                 const double *b, ptrdiff_t rsb, ptrdiff_t csb, double *c,
                                 ptrdiff_t ldc, int beta, const pb_epi_f64_t *epi, double *ws);

/* ---- A^T B kernel (optional per ISA; NULL: not used) ------------------------------------
 * One block of q rows p of C = A^T B, for an A^T given row-major (a[p*lda + i], i < m: the
 * backward's dz, or its block formed into scratch) and a row-major B read in place
 * (b[p*ldb + j], j < n: the backward's x), for C with few rows (pb_use_atb_):
 *   acc(i, j) = (first ? 0 : s[i*n + j]) + sum_{p<q} a[p*lda + i] b[p*ldb + j],
 * one FMA chain per element in p order, fma(a, b, acc); then, if last,
 * c[i*ldc + j] = beta ? c[i*ldc + j] + acc : acc (beta 0 never reads c), else
 * s[i*n + j] = acc. The driver runs the blocks of each KC panel with first on its first
 * block and last on its last: per panel one chain from zero, then added to C, which is what
 * the packed micro-kernel computes, so the two paths give the same bits. s: m*n elements
 * (the partial sums between the blocks of a panel). */
typedef void (*pb_gemm_atb_f32_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const float *a,
                                  ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *s,
                                  int first, float *c, ptrdiff_t ldc, int last, int beta);
typedef void (*pb_gemm_atb_f64_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t q, const double *a,
                                  ptrdiff_t lda, const double *b, ptrdiff_t ldb, double *s,
                                  int first, double *c, ptrdiff_t ldc, int last, int beta);

/* Vector activation forward (optional per ISA and dtype; NULL: act.c's scalar loops):
 * y[i] = act(z[i]) for 0 <= i < n by the GEMM epilogue's code (the same function as the
 * fused forward's, e.g. vmath_f32.inc's sigmoid/tanh); y may be z. act.c uses it for every
 * activation. */
typedef void (*pb_act_fwd_f32_t)(float *y, const float *z, ptrdiff_t n, int act, float slope);
typedef void (*pb_act_fwd_f64_t)(double *y, const double *z, ptrdiff_t n, int act,
                                 double slope);

/* Vector activation backward (optional per ISA and dtype; NULL: the scalar pb_dact loops):
 * dz[i] = dy[i] * act'(y[i]) for 0 <= i < n (y the activation's OUTPUT), pb_dact's
 * operations in vector form (softplus' -expm1(-y) with the vmath expm1), so the same bits;
 * dz may be dy or y. Used by act.c for every activation and by pb_dz_rows_* (the dense
 * backward) for softplus. */
typedef void (*pb_act_bwd_f32_t)(float *dz, const float *dy, const float *y, ptrdiff_t n,
                                 int act, float slope);
typedef void (*pb_act_bwd_f64_t)(double *dz, const double *dy, const double *y, ptrdiff_t n,
                                 int act, double slope);

/* Transposing pack (optional per ISA; NULL: the driver's portable loops):
 * dst[p*W + r] = src[r*ld + p] for 0 <= r < rows <= W, 0 <= p < kc; dst[p*W + r] = 0 for
 * rows <= r < W. Packs an A micro-panel of a row-major A (W = MR) or a B micro-panel of a
 * column-major B (W = NR). Pure data movement: packed values are bitwise the source's. */
typedef void (*pb_pack_t_f32_t)(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t rows,
                                ptrdiff_t kc, int W);
typedef void (*pb_pack_t_f64_t)(double *dst, const double *src, ptrdiff_t ld, ptrdiff_t rows,
                                ptrdiff_t kc, int W);

/* Thread layout of a GEMM: returns the thread count nt (1 for small problems) and a grid
 * tm x tn == nt (tm threads along M in MR tiles, tn along N in NR micro-panels) chosen to
 * balance the tiles per thread, favouring N splits when m < n and B is packed by
 * transposition (b_trans != 0: B's columns contiguous), so that each thread packs and reads
 * only its own slice of B.
 * Depends only on the shape and pb_threads(). */
int pb_gemm_split(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int mr, int nr, int b_trans, int *tm,
                  int *tn);

/* GEMM drivers (gemm.c): the operation of pb_gemm_* with an optional fused epilogue
 * applied on the last K panel. bias (length n) may be NULL. Each takes the kernel table its
 * caller read once for the whole call (arch/arch.h). */
struct pb_arch_s;
int pb_gemm_path_f32(const struct pb_arch_s *arch, int *family, ptrdiff_t m, ptrdiff_t n,
                     ptrdiff_t k, ptrdiff_t rsa, ptrdiff_t csa, ptrdiff_t rsb, ptrdiff_t csb,
                     int beta);
int pb_gemm_path_f64(const struct pb_arch_s *arch, int *family, ptrdiff_t m, ptrdiff_t n,
                     ptrdiff_t k, ptrdiff_t rsa, ptrdiff_t csa, ptrdiff_t rsb, ptrdiff_t csb,
                     int beta);
int pb_gemm_epi_f32(const struct pb_arch_s *arch, float *c, ptrdiff_t ldc, const float *a,
                    ptrdiff_t rsa, ptrdiff_t csa,
                    const float *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                    ptrdiff_t k, int beta, const pb_epi_f32_t *epi);
int pb_gemm_epi_f64(const struct pb_arch_s *arch, double *c, ptrdiff_t ldc, const double *a,
                    ptrdiff_t rsa, ptrdiff_t csa,
                    const double *b, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t m, ptrdiff_t n,
                    ptrdiff_t k, int beta, const pb_epi_f64_t *epi);

/* ---- A formed while packing: a producer (callback) ---------------------------------------
 * pb_gemm_prod_*: the product of pb_gemm_* with an A that is never stored whole: its values
 * are formed by the caller's producer while the packed path packs A (a fused producer, as
 * the dense backward's dz = dy * act'(y)). A(i, p) is the producer's value at offset
 * i*rsa + p*csa, with csa == 1 (each MR-row micro-panel is formed into scratch, then packed
 * as usual) or rsa == 1 (formed PB_APROD_ROWS rows p at a time, MC values each, then dealt
 * out to the micro-panels). The producer:
 *   rows(ctx, dst, ldd, sum, off, ld, nrows, n): dst[r*ldd + j] = the value at offset
 *       off + r*ld + j, for r < nrows, j < n; if sum != NULL, sum[j] += those values, rows
 *       r in order.
 * sum (length m, zeroed by the caller, or NULL) receives the sums over p of A's rows, each
 * in p order by the one thread that owns the row. Only for products that pb_gemm_path_*
 * sends to the packed path, or (rsa == 1) to the A^T B path, which forms each block of
 * PB_ATB_Q rows p into scratch. */
#define PB_DEFINE_APROD(T, SFX)                                                              \
    typedef struct {                                                                        \
        void (*rows)(const void *ctx, T *dst, ptrdiff_t ldd, T *sum, ptrdiff_t off,         \
                     ptrdiff_t ld, ptrdiff_t nrows, ptrdiff_t n);                           \
        const void *ctx;                                                                    \
        T *sum;                                                                             \
    } pb_aprod_##SFX##_t;                                                                   \
    int pb_gemm_prod_##SFX(const struct pb_arch_s *arch, T *c, ptrdiff_t ldc,              \
                           const pb_aprod_##SFX##_t *a, ptrdiff_t rsa,                     \
                           ptrdiff_t csa, const T *b, ptrdiff_t rsb, ptrdiff_t csb,         \
                           ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int beta);
PB_DEFINE_APROD(float, f32)
PB_DEFINE_APROD(double, f64)
#endif /* PB_GEMM_H */
