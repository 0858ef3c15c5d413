/* dense.c -- fused dense + activation, forward/backward pairs (shapes as torch nn.Linear).
 *
 *   x  (B, K)   input rows            w  (N, K)  weight (out, in)      b (N,) or NULL
 *   y  (B, N)   y = act(x @ w^T + b)  -- bias and activation in the GEMM epilogue
 *   z  (B, N)   x @ w^T + b, or NULL  -- stored by the same epilogue, before the activation
 *
 * backward, from dy (B, N) and the saved OUTPUT y (B, N) -- for gelu, gelu_tanh and silu
 * the saved pre-activation z instead, in the same argument (named y below):
 *   dz = dy * act'(y)            (pb_dz_rows_*, the one definition)
 *   dw = dz^T @ x    (N, K)      GEMM with A = dz read transposed through packing
 *   db = sum_b dz    (N,)
 *   dx = dz @ w      (B, K)      skipped when dx == NULL
 * When both GEMMs take the packed path (dw: or the A^T B kernel) and B N >= PB_DZ_PAR_MIN,
 * dz is never stored: each GEMM forms the dz of its A block while packing it (the A^T B
 * kernel: of each block of rows), through the producer dz_produce_* that pb_gemm_prod_*
 * calls, dw's packing summing db.
 * Otherwise one pass forms dz and db, and the GEMMs (or the unpacked paths) read dz.
 * accumulate != 0 adds into dx, dw, db (a layer feeding two branches sums both dx).
 *
 * Determinism: db is reduced per column in row order by whichever thread owns the column,
 * and the GEMMs never split K; so the results do not depend on the thread count.
 */
#include "arch/arch.h"
#include "gemm/gemm.h"

#include <string.h>

#define PB_DZ_COLS 64 /* columns per work item of the dz/db pass */
/* dz elements from which the dz/db pass is split over threads; below, when both gradient
 * GEMMs run as tasks, each task forms its own dz instead (see pb_dense_backward) */
#ifndef PB_DZ_PAR_MIN
#define PB_DZ_PAR_MIN 32768
#endif
/* From this many flops per gradient GEMM on, dw and dx are computed concurrently, one GEMM per
 * thread, instead of one after the other with both threads each (no barriers between K panels,
 * no shared packing) (docs/crossovers.md,
 * PB_BWD_TASKS_MIN_FLOPS). Below the bound the parallel region (~1-2 us) costs more than it
 * saves, and both run on the calling thread. */
#ifndef PB_BWD_TASKS_MIN_FLOPS
#define PB_BWD_TASKS_MIN_FLOPS 3.0e5
#endif
/* ... but from K = 2048 on (the n of both GEMMs: each task's B panel is KC x 2048), splitting
 * each GEMM over both threads wins (docs/crossovers.md,
 * PB_BWD_TASKS_MAX_K). */
#ifndef PB_BWD_TASKS_MAX_K
#define PB_BWD_TASKS_MAX_K 2048
#endif

/* In the tasks' mode, a dw with few rows (N <= PB_BWD_DW_CHUNK_MAX_N: a classifier head, say)
 * costs far more than its dx (dw = dz^T x streams x through a GEMM with m = N, the
 * micro-kernel's rows mostly padding; dx = dz w has k = N), and the dx thread would wait idle
 * for it. There dw is cut into column chunks of PB_BWD_DW_CHUNK that both threads take from a
 * shared counter, the dx thread once dx is done. Each chunk packs its own A (N x B, small for
 * such N). Chunks of 128 columns (docs/crossovers.md,
 * PB_BWD_DW_CHUNK). */
#ifndef PB_BWD_DW_CHUNK
#define PB_BWD_DW_CHUNK 128
#endif
#ifndef PB_BWD_DW_CHUNK_MAX_N
#define PB_BWD_DW_CHUNK_MAX_N 64
#endif

/* Rows of dz for one activation ACT (a constant, so that pb_dact_* inlines to one
 * expression and the j loop vectorises; each sum[j] still adds rows in order). */
#define PB_DZ_ROWS(SFX, ACT)                                                                \
    for (ptrdiff_t r = 0; r < rows; ++r) {                                                  \
        const __typeof__(*dy) *restrict d = dy + r * ld, *restrict yr = y + r * ld;         \
        __typeof__(sum) o = dz != NULL ? dz + r * ldz : NULL;                               \
        if (o != NULL && sum != NULL)                                                       \
            for (ptrdiff_t j = 0; j < n; ++j) {                                             \
                const __typeof__(*dy) g = pb_dact_##SFX(d[j], yr[j], ACT, slope);           \
                o[j] = g;                                                                   \
                sum[j] += g;                                                                \
            }                                                                              \
        else if (o != NULL)                                                                 \
            for (ptrdiff_t j = 0; j < n; ++j) o[j] = pb_dact_##SFX(d[j], yr[j], ACT, slope); \
        else                                                                                \
            for (ptrdiff_t j = 0; j < n; ++j) sum[j] += pb_dact_##SFX(d[j], yr[j], ACT, slope); \
    }

/* pb_dz_rows_*: dz[r*ldz + j] = dy[r*ld + j] * act'(y[r*ld + j]) for r < rows, j < n, the one
 * definition of dz, for the dz pass and the GEMM's fused packing (dz_produce_*) alike. dz
 * may be NULL (sums only); sum (length n, or NULL) += each column's values, rows in order.
 * softplus and the pre-activation kinds (y then holds z): the vector act_bwd of the active
 * SIMD path where there is one (the same as act.c's), then the sums in row order. */
#define PB_DEFINE_DZ_ROWS(T, SFX)                                                          \
    static void pb_dz_rows_##SFX(const pb_arch_t *arch, T *dz, ptrdiff_t ldz, T *sum,      \
                                 const T *dy, const T *y, ptrdiff_t ld, ptrdiff_t rows,    \
                                 ptrdiff_t n, int act, T slope) {                          \
        const pb_act_bwd_##SFX##_t sp = arch->act_bwd_##SFX;                               \
        if ((act == PB_ACT_SOFTPLUS || pb_act_takes_z(act)) && sp != NULL) {               \
            /* whole rows into dz; without dz (sums only), the same vector values through a \
             * chunk of PB_DZ_COLS columns */                                             \
            T tmp[PB_DZ_COLS];                                                             \
            const ptrdiff_t step = dz != NULL ? n : (ptrdiff_t)PB_DZ_COLS;                 \
            for (ptrdiff_t j0 = 0; j0 < n; j0 += step) {                                   \
                const ptrdiff_t nj = PB_MIN(step, n - j0);                                 \
                for (ptrdiff_t r = 0; r < rows; ++r) {                                     \
                    T *d = dz != NULL ? dz + r * ldz + j0 : tmp;                           \
                    sp(d, dy + r * ld + j0, y + r * ld + j0, nj, act, slope);              \
                    if (sum != NULL)                                                       \
                        for (ptrdiff_t j = 0; j < nj; ++j) sum[j0 + j] += d[j];            \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        switch (act) {                                                                     \
        case PB_ACT_RELU: PB_DZ_ROWS(SFX, PB_ACT_RELU); break;                            \
        case PB_ACT_LEAKY_RELU: PB_DZ_ROWS(SFX, PB_ACT_LEAKY_RELU); break;                \
        case PB_ACT_SIGMOID: PB_DZ_ROWS(SFX, PB_ACT_SIGMOID); break;                      \
        case PB_ACT_TANH: PB_DZ_ROWS(SFX, PB_ACT_TANH); break;                            \
        case PB_ACT_SOFTPLUS: PB_DZ_ROWS(SFX, PB_ACT_SOFTPLUS); break;                    \
        case PB_ACT_GELU: PB_DZ_ROWS(SFX, PB_ACT_GELU); break;                            \
        case PB_ACT_GELU_TANH: PB_DZ_ROWS(SFX, PB_ACT_GELU_TANH); break;                  \
        case PB_ACT_SILU: PB_DZ_ROWS(SFX, PB_ACT_SILU); break;                            \
        default: PB_DZ_ROWS(SFX, PB_ACT_IDENTITY); break;                                 \
        }                                                                                  \
    }

PB_DEFINE_DZ_ROWS(float, f32)
PB_DEFINE_DZ_ROWS(double, f64)

/* The fused backward's producer of A = dz for the GEMM (pb_aprod_*_t in gemm/gemm.h): the
 * value at offset o is dy[o] * act'(y[o]), formed by pb_dz_rows_*. */
#define PB_DEFINE_DZ_PRODUCER(T, SFX)                                                      \
    typedef struct {                                                                       \
        const pb_arch_t *arch;                                                             \
        const T *dy, *y;                                                                   \
        int act;                                                                           \
        T slope;                                                                           \
    } dz_ctx_##SFX;                                                                        \
    static void dz_produce_##SFX(const void *ctx, T *dst, ptrdiff_t ldd, T *sum,           \
                                 ptrdiff_t off, ptrdiff_t ld, ptrdiff_t nrows, ptrdiff_t n) { \
        const dz_ctx_##SFX *c = ctx;                                                       \
        pb_dz_rows_##SFX(c->arch, dst, ldd, sum, c->dy + off, c->y + off, ld, nrows, n, c->act, \
                         c->slope);                                                        \
    }

PB_DEFINE_DZ_PRODUCER(float, f32)
PB_DEFINE_DZ_PRODUCER(double, f64)

/* 1 if the memory of p (pn elements of sz bytes) and of q (qn elements) intersect; NULL or
 * empty arrays intersect nothing. */
static int overlap(const void *p, ptrdiff_t pn, const void *q, ptrdiff_t qn, size_t sz) {
    if (p == NULL || q == NULL || pn <= 0 || qn <= 0) return 0;
    const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q;
    return a < b + (size_t)qn * sz && b < a + (size_t)pn * sz;
}

/* Whether any of the nout outputs (extents on[], elements of sz bytes) overlaps one of the
 * nin inputs or an output before it: the contract's PB_ERR_OVERLAP. */
static int outputs_overlap(const void *const *out, const ptrdiff_t *on, int nout,
                           const void *const *in, const ptrdiff_t *inn, int nin, size_t sz) {
    for (int o = 0; o < nout; ++o) {
        for (int i = 0; i < nin; ++i)
            if (overlap(out[o], on[o], in[i], inn[i], sz)) return 1;
        for (int i = 0; i < o; ++i)
            if (overlap(out[o], on[o], out[i], on[i], sz)) return 1;
    }
    return 0;
}

/* The first error of dw (st[0], st[2]: its chunks on thread 1) and dx (st[1]). */
static int tasks_status(const int *st) {
    return st[0] != PB_OK ? st[0] : st[2] != PB_OK ? st[2] : st[1];
}

/* Whether dw's GEMM on this path can form dz itself (pb_gemm_prod_*): packed or A^T B. */
static int forms_dz(int path) { return path == PB_GEMM_PACKED || path == PB_GEMM_ATB; }

/* Whether the tasks' dw is cut into chunks (above): few rows, at least two chunks. */
static int dw_chunked(ptrdiff_t K, ptrdiff_t N) {
    return N <= PB_BWD_DW_CHUNK_MAX_N && K >= 2 * PB_BWD_DW_CHUNK;
}

#define PB_DEFINE_DENSE(T, SFX)                                                            \
    int pb_dense_forward_##SFX(T *y, T *z, const T *x, const T *w, const T *b,            \
                               ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int act, T slope) { \
        PB_FP_SCOPE;                                                                       \
        if (B < 0 || K < 0 || N < 0 || !pb_act_valid(act))                                 \
            return PB_ERR_ARG;                                                             \
        {                                                                                  \
            const void *out[2] = {y, z}, *in[3] = {x, w, b};                               \
            const ptrdiff_t on[2] = {B * N, B * N}, inn[3] = {B * K, N * K, N};            \
            if (outputs_overlap(out, on, 2, in, inn, 3, sizeof(T))) return PB_ERR_OVERLAP; \
        }                                                                                  \
        /* z beside y (the same layout): the epilogue stores it at y's element + zoff */    \
        const pb_epi_##SFX##_t epi = {b, act, slope, B * N > 0 ? PB_ZOFF(z, y) : 0};       \
        /* C = y (B x N);  A = x (row stride K);  B(p, j) = w[j*K + p] */                  \
        return pb_gemm_epi_##SFX(pb_arch(), y, N, x, K, 1, w, 1, K, B, N, K, 0, &epi);     \
    }                                                                                      \
                                                                                           \
    /* dz = dy * act'(y) over columns [j0, j1), and db += / = the column sums of dz. */  \
    static void dz_db_##SFX(const pb_arch_t *arch, T *dz, T *db, const T *dy, const T *y,  \
                            ptrdiff_t B,                                                   \
                            ptrdiff_t N, ptrdiff_t j0, ptrdiff_t j1, int act, T slope,     \
                            int accumulate) {                                              \
        T sum[PB_DZ_COLS] = {0};                                                           \
        pb_dz_rows_##SFX(arch, dz != NULL ? dz + j0 : NULL, N, sum, dy + j0, y + j0, N,    \
                         B, j1 - j0,                                                       \
                         act, slope);                                                      \
        if (db != NULL)                                                                    \
            for (ptrdiff_t j = j0; j < j1; ++j)                                            \
                db[j] = accumulate ? db[j] + sum[j - j0] : sum[j - j0];                    \
    }                                                                                      \
                                                                                           \
    /* Columns [j0, j0 + nj) of dw = dz^T x, and dx = dz w whole, from the stored dz or     \
     * (src != NULL) with dz formed while packing. */                                      \
    static int dw_gemm_##SFX(const pb_arch_t *arch, T *dw, const T *dz,                    \
                             const pb_aprod_##SFX##_t *src, const T *x,                    \
                             ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int beta, ptrdiff_t j0, \
                             ptrdiff_t nj) {                                               \
        return src != NULL                                                                 \
                   ? pb_gemm_prod_##SFX(arch, dw + j0, K, src, 1, N, x + j0, K, 1, N, nj, B, beta) \
                   : pb_gemm_epi_##SFX(arch, dw + j0, K, dz, 1, N, x + j0, K, 1, N, nj,    \
                                       B, beta, NULL);                                     \
    }                                                                                      \
    static int dx_gemm_##SFX(const pb_arch_t *arch, T *dx, const T *dz,                    \
                             const pb_aprod_##SFX##_t *src, const T *w,                    \
                             ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int beta) {           \
        return src != NULL ? pb_gemm_prod_##SFX(arch, dx, K, src, N, 1, w, K, 1, B, K, N, beta) \
                           : pb_gemm_epi_##SFX(arch, dx, K, dz, N, 1, w, K, 1, B, K, N,    \
                                               beta, NULL);                                \
    }                                                                                      \
                                                                                           \
    /* Column chunks of dw (PB_BWD_DW_CHUNK) taken from the shared counter *next until none \
     * is left: dw[:, j0:j1] = dz^T x[:, j0:j1] on the calling thread alone. K is never      \
     * split, so a column's bits do not depend on its chunk nor on the thread taking it.    \
     * With src != NULL, dz is formed while packing, and only chunk 0 sums db (src->sum). */ \
    static int dw_chunks_##SFX(const pb_arch_t *arch, T *dw, const T *dz,                  \
                               const pb_aprod_##SFX##_t *src,                              \
                               const T *x, ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int beta, \
                               int *next) {                                                \
        int st = PB_OK;                                                                    \
        pb_aprod_##SFX##_t nosum;                                                          \
        if (src != NULL) {                                                                 \
            nosum = *src;                                                                  \
            nosum.sum = NULL;                                                              \
        }                                                                                  \
        for (;;) {                                                                         \
            int c;                                                                         \
            _Pragma("omp atomic capture")                                                  \
            c = (*next)++;                                                                 \
            const ptrdiff_t j0 = (ptrdiff_t)c * PB_BWD_DW_CHUNK;                           \
            if (j0 >= K) break;                                                            \
            const ptrdiff_t nj = PB_MIN((ptrdiff_t)PB_BWD_DW_CHUNK, K - j0);               \
            const int s = dw_gemm_##SFX(arch, dw, dz,                                      \
                                        src != NULL && c != 0 ? &nosum : src, x, B, K,     \
                                        N, beta, j0, nj);                                  \
            if (s != PB_OK) st = s;                                                        \
        }                                                                                  \
        return st;                                                                         \
    }                                                                                      \
                                                                                           \
    /* Thread me's task inside the tasks' region: 0 runs dw (or starts on its chunks), 1   \
     * runs dx (then takes dw's chunks that are left); statuses into st[me] (and st[2]). */ \
    static void task_##SFX(const pb_arch_t *arch, int me, int chunked, int *next, T *dx,   \
                           T *dw, const T *dz,                                             \
                           const pb_aprod_##SFX##_t *src_dw, const pb_aprod_##SFX##_t *src_dx, \
                           const T *x, const T *w, ptrdiff_t B, ptrdiff_t K, ptrdiff_t N,  \
                           int beta, int *st) {                                            \
        if (me == 0) {                                                                     \
            st[0] = chunked ? dw_chunks_##SFX(arch, dw, dz, src_dw, x, B, K, N, beta, next) \
                            : dw_gemm_##SFX(arch, dw, dz, src_dw, x, B, K, N, beta, 0, K); \
        } else {                                                                           \
            st[1] = dx_gemm_##SFX(arch, dx, dz, src_dx, w, B, K, N, beta);                 \
            if (chunked) st[2] = dw_chunks_##SFX(arch, dw, dz, src_dw, x, B, K, N, beta, next); \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* dw (when non-NULL) and then dx (when non-NULL, and dw went well), or the two side    \
     * by side as tasks, one thread each (dw in chunks shared by both threads when it has  \
     * few rows): from the stored dz, or (src_dw != NULL) with dz formed while packing from \
     * src_dw / src_dx. */                                                                  \
    static int grads_##SFX(const pb_arch_t *arch, T *dx, T *dw, const T *dz,               \
                           const pb_aprod_##SFX##_t *src_dw,                               \
                           const pb_aprod_##SFX##_t *src_dx, const T *x, const T *w,       \
                           ptrdiff_t B, ptrdiff_t K, ptrdiff_t N, int beta, int tasks) {   \
        int st[3] = {PB_OK, PB_OK, PB_OK};                                                 \
        if (tasks) {                                                                       \
            const int chunked = dw_chunked(K, N);                                          \
            int next = 0;                                                                  \
            int full = 1; /* both threads came (else the calling thread alone, below) */ \
            _Pragma("omp parallel num_threads(2)")                                         \
            {                                                                              \
                PB_FP_SCOPE;                                                               \
                if (pb_team_is(2))                                                         \
                    task_##SFX(arch, pb_thread_id(), chunked, &next, dx, dw, dz, src_dw,   \
                               src_dx, x,                                                  \
                               w, B, K, N, beta, st);                                      \
                else if (pb_thread_id() == 0)                                              \
                    full = 0;                                                              \
            }                                                                              \
            tasks = full;                                                                  \
        }                                                                                  \
        if (!tasks) {                                                                      \
            if (dw != NULL) st[0] = dw_gemm_##SFX(arch, dw, dz, src_dw, x, B, K, N, beta, 0, K); \
            if (dx != NULL && st[0] == PB_OK)                                              \
                st[1] = dx_gemm_##SFX(arch, dx, dz, src_dx, w, B, K, N, beta);             \
        }                                                                                  \
        return tasks_status(st);                                                           \
    }                                                                                      \
                                                                                           \
    /* The backward with dz formed while packing (dw, dx non-NULL; B, K, N >= 1). */      \
    static int dense_backward_fused_##SFX(const pb_arch_t *arch, T *dx, T *dw, T *db,      \
                                          const T *dy, const T *x,                         \
                                          const T *w, const T *y, ptrdiff_t B, ptrdiff_t K, \
                                          ptrdiff_t N, int act, T slope, int accumulate,    \
                                          int tasks) {                                      \
        const int beta = accumulate ? 1 : 0;                                               \
        T *sum = NULL;                                                                     \
        if (db != NULL) {                                                                  \
            sum = pb_workspace(PB_WS_DZ, sizeof(T) * (size_t)N);                           \
            if (sum == NULL) return PB_ERR_NOMEM;                                          \
            memset(sum, 0, sizeof(T) * (size_t)N);                                         \
        }                                                                                  \
        const dz_ctx_##SFX ctx = {arch, dy, y, act, slope};                                \
        const pb_aprod_##SFX##_t src_dw = {dz_produce_##SFX, &ctx, sum};                   \
        const pb_aprod_##SFX##_t src_dx = {dz_produce_##SFX, &ctx, NULL};                  \
        const int st = grads_##SFX(arch, dx, dw, NULL, &src_dw, &src_dx, x, w, B, K, N,    \
                                   beta, tasks);                                           \
        if (st != PB_OK) return st;                                                        \
        if (db != NULL)                                                                    \
            for (ptrdiff_t j = 0; j < N; ++j) db[j] = accumulate ? db[j] + sum[j] : sum[j]; \
        return PB_OK;                                                                      \
    }                                                                                      \
                                                                                           \
    int pb_dense_backward_##SFX(T *dx, T *dw, T *db, const T *dy, const T *x, const T *w, \
                                const T *y, ptrdiff_t B, ptrdiff_t K, ptrdiff_t N,         \
                                int act, T slope, int accumulate) {                        \
        PB_FP_SCOPE;                                                                       \
        if (B < 0 || K < 0 || N < 0 || !pb_act_valid(act))                                 \
            return PB_ERR_ARG;                                                             \
        {                                                                                  \
            const void *out[3] = {dx, dw, db}, *in[4] = {dy, x, w, y};                     \
            const ptrdiff_t on[3] = {B * K, N * K, N}, inn[4] = {B * N, B * K, N * K, B * N}; \
            if (outputs_overlap(out, on, 3, in, inn, 4, sizeof(T))) return PB_ERR_OVERLAP; \
        }                                                                                  \
        const pb_arch_t *arch = pb_arch(); /* once: every part of the call on one path */  \
        const int beta = accumulate ? 1 : 0;                                               \
        /* dw (N x K) = dz^T @ x: A(i=n, p=r) = dz[r*N + n], B(p=r, j) = x[r*K + j]         \
         * dx (B x K) = dz @ w:   A(i=r, p=n) = dz[r*N + n], B(p=n, j) = w[n*K + j]         \
         * From PB_BWD_TASKS_MIN_FLOPS on, the two GEMMs run side by side, one thread each   \
         * (each GEMM is then single-threaded, which gives the same bits as any split); but  \
         * not when B == 1 makes dw a large outer product: its streaming stores want both    \
         * cores' store bandwidth (docs/crossovers.md). */ \
        const double flops = 2.0 * (double)B * (double)N * (double)K;                      \
        const int tasks = dw != NULL && dx != NULL && pb_threads() > 1 && !pb_in_parallel() && \
                          flops >= PB_BWD_TASKS_MIN_FLOPS && K < PB_BWD_TASKS_MAX_K &&       \
                          (B > 1 || (double)N * (double)K < 1048576.0);                     \
        /* Layers whose two gradient GEMMs both take the packed path (dw: or the A^T B     \
         * kernel): dz is never stored; each GEMM forms it while packing its A, or dw block \
         * by block (pb_gemm_prod_*: the same values, by pb_dz_rows_*), and dw's packing sums \
         * db (each column in row order, as the pass below). */                             \
        if (dw != NULL && dx != NULL && B * N >= PB_DZ_PAR_MIN && K > 0 &&                 \
            forms_dz(pb_gemm_path_##SFX(arch, NULL, N, K, B, 1, N, K, 1, beta)) &&         \
            pb_gemm_path_##SFX(arch, NULL, B, K, N, N, 1, K, 1, beta) == PB_GEMM_PACKED)   \
            return dense_backward_fused_##SFX(arch, dx, dw, db, dy, x, w, y, B, K, N, act, slope, \
                                              accumulate, tasks);                           \
        /* identity: dz is dy itself, no copy */                                           \
        T *dzbuf = NULL;                                                                   \
        if (act != PB_ACT_IDENTITY && B > 0 && N > 0) {                                    \
            dzbuf = pb_workspace(PB_WS_DZ, sizeof(T) * (size_t)B * (size_t)N);             \
            if (dzbuf == NULL) return PB_ERR_NOMEM;                                        \
        }                                                                                  \
        /* Small layers with both tasks: each task forms its own dz (the dw task also db)     \
         * in its own thread's workspace (the same values, by the same code), instead of one  \
         * dz made by the calling thread and then read by the other core: moving 16 KiB of    \
         * freshly written lines between the cores cost ~4 us of a 15 us backward at         \
         * (32, 128, 128), against 0.7 us for the second dz pass. */                         \
        if (tasks && dzbuf != NULL && B * N < PB_DZ_PAR_MIN) {                         \
            int st[3] = {PB_OK, PB_OK, PB_OK};                                             \
            const int chunked = dw_chunked(K, N);                                          \
            int next = 0;                                                                  \
            int full = 1; /* both threads came (else the one-thread way, below) */          \
            _Pragma("omp parallel num_threads(2)")                                         \
            {                                                                              \
                PB_FP_SCOPE;                                                               \
                const int me = pb_thread_id();                                             \
                if (!pb_team_is(2)) {                                                      \
                    if (me == 0) full = 0;                                                 \
                } else {                                                                   \
                    T *dzp = me == 0 ? dzbuf                                               \
                                     : pb_workspace(PB_WS_DZ, sizeof(T) * (size_t)B * (size_t)N); \
                    if (dzp == NULL) {                                                     \
                        st[1] = PB_ERR_NOMEM;                                              \
                    } else {                                                               \
                        for (ptrdiff_t j0 = 0; j0 < N; j0 += PB_DZ_COLS)                   \
                            dz_db_##SFX(arch, dzp, me == 0 ? db : NULL, dy, y, B, N, j0,   \
                                        PB_MIN(N, j0 + PB_DZ_COLS), act, slope, accumulate); \
                        task_##SFX(arch, me, chunked, &next, dx, dw, dzp, NULL, NULL, x,   \
                                   w, B, K, N,                                             \
                                   beta, st);                                              \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            if (full) return tasks_status(st);                                             \
        }                                                                                  \
        if (dzbuf != NULL || db != NULL) {                                                 \
            const ptrdiff_t nblk = (N + PB_DZ_COLS - 1) / PB_DZ_COLS;                      \
            const int nt = B * N >= PB_DZ_PAR_MIN ? pb_threads() : 1;                      \
            if (nt == 1) { /* no parallel region at all: cheaper for small layers */      \
                for (ptrdiff_t jb = 0; jb < nblk; ++jb)                                    \
                    dz_db_##SFX(arch, dzbuf, db, dy, y, B, N, jb * PB_DZ_COLS,             \
                                PB_MIN(N, (jb + 1) * PB_DZ_COLS), act, slope, accumulate); \
            } else {                                                                       \
                _Pragma("omp parallel num_threads(nt)")                                    \
                {                                                                          \
                    PB_FP_SCOPE;                                                           \
                    _Pragma("omp for schedule(static) nowait")                             \
                    for (ptrdiff_t jb = 0; jb < nblk; ++jb)                                \
                        dz_db_##SFX(arch, dzbuf, db, dy, y, B, N, jb * PB_DZ_COLS,         \
                                    PB_MIN(N, (jb + 1) * PB_DZ_COLS), act, slope, accumulate); \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        return grads_##SFX(arch, dx, dw, dzbuf != NULL ? dzbuf : dy, NULL, NULL, x, w, B,  \
                           K, N, beta,                                                     \
                           tasks);                                                         \
    }

PB_DEFINE_DENSE(float, f32)
PB_DEFINE_DENSE(double, f64)
