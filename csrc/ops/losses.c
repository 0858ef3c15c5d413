/* losses.c -- loss functions with their gradient in the same pass, and the maximum merge.
 *
 *   mse_loss                          pred, target (n)      -> loss, dpred (n)
 *   softmax_cross_entropy             logits (B, C), labels (B,) or targets (B, C)
 *                                                           -> loss, dlogits (B, C)
 *   binary_cross_entropy_with_logits  logits, targets (n)   -> loss, dlogits (n)
 *   maximum_forward / _backward       z = max(a, b); (da, db) routed from dz
 * The maths of each kernel is stated in pybackprop.h; pybackprop/reference.py is the
 * executable specification.
 *
 * Reduction: every loss is a sum of per-item terms. The items are cut into fixed-size blocks
 * (PB_LOSS_BLOCK elements, or about that many logits of whole rows); each block's terms are
 * summed in double by whichever thread owns the block, and the block sums are added in block
 * order afterwards. The result therefore depends on the shape only, never on the thread
 * count.
 *
 * Where the SIMD paths matter: softmax cross-entropy and BCE spend their time in exp() and
 * log1p() (tens of cycles per element in libm), so they go through the kernel table:
 * per-ISA row/block functions with a vector exp and log1p (losses_simd.inc), and the plain
 * libm versions below as the portable path. mse_loss goes through the table too: its
 * arithmetic is trivial, but on data in cache the portable loop (SSE2 at best, each square
 * converted to double) is ~1.5x slower than the AVX-512 one (measured: 0.31 vs 0.20 ns
 * per float32 element at n = 1e4, one thread); from DRAM both stream at memory speed.
 * maximum_forward/_backward are a compare and a select per element: the compiler's SSE2
 * vectorisation of the plain loops already streams at ~0.2 ns per element, so they have
 * no per-ISA variants.
 *
 * Row/block contracts (what the table entries promise; every path obeys them):
 *   xent_row(d, x, C, label, t, scale) -> loss_r      C >= 1
 *       t == NULL: the target is the class index label in [0, C); else the row t[0..C).
 *       Writes d[c] = (softmax(x)_c - t_c) * scale for every c, returns
 *       loss_r = -sum_c t_c log softmax(x)_c, from m = max x and s = sum e^(x_c - m):
 *       (m - x_label) + log s, or sum_c t_c (m - x_c) + (sum_c t_c) log s.
 *       A row with NaN or an infinite maximum is evaluated by the scalar formula (NaN).
 *   bce_block(d, z, t, n, scale) -> sum_i loss_i      (as a double)
 *       loss_i = max(z_i, 0) - z_i t_i + log1p(e^-|z_i|),  d_i = (sigmoid(z_i) - t_i) * scale.
 *   mse_block(d, p, q, n, k2) -> sum_i e_i^2          (as a double; e_i = p_i - q_i)
 *       d_i = e_i * k2; each square is formed in T and summed in double.
 */
#include "arch/arch.h"
#include "ops/losses.h"

#define PB_LOSS_BLOCK 4096        /* elements per reduction block */
#define PB_LOSS_PAR_MIN 32768     /* below this many elements: one thread */
#define PB_STACK_BLOCKS 256       /* block partials kept on the stack up to this count */

/* Sum of fn(ctx, k) over the blocks k < nblk: each block on any thread, the partial sums
 * added in block order (thread-count independent). PB_ERR_NOMEM before fn ever runs. */
typedef double (*pb_block_fn)(const void *ctx, ptrdiff_t k);

static int ordered_block_sum(double *total, pb_block_fn fn, const void *ctx, ptrdiff_t nblk,
                             int nt) {
    double stack_part[PB_STACK_BLOCKS];
    double *part = stack_part;
    if (nblk > PB_STACK_BLOCKS) {
        part = pb_alloc(sizeof(double) * (size_t)nblk);
        if (part == NULL) return PB_ERR_NOMEM;
    }
    (void)nt; /* unused without OpenMP */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        PB_FP_SCOPE;
#pragma omp for schedule(static) nowait
        for (ptrdiff_t k = 0; k < nblk; ++k) part[k] = fn(ctx, k);
    }
    double s = 0.0;
    for (ptrdiff_t k = 0; k < nblk; ++k) s += part[k];
    if (part != stack_part) pb_free(part);
    *total = s;
    return PB_OK;
}

static int threads_for(ptrdiff_t elements) {
    return elements >= PB_LOSS_PAR_MIN ? pb_threads() : 1;
}

static int bad_reduction(int reduction) {
    return reduction != PB_REDUCE_MEAN && reduction != PB_REDUCE_SUM;
}

/* ---- portable row/block kernels (the "ref" table entries) ---------------------------------- */
#define PB_DEFINE_LOSS_REF(T, SFX, EXP, LOG, LOG1P, FABS)                                   \
    T pb_xent_row_##SFX##_ref(T *d, const T *x, ptrdiff_t C, ptrdiff_t label, const T *t,   \
                              T scale) {                                                    \
        T m = x[0];                                                                         \
        for (ptrdiff_t c = 1; c < C; ++c) m = x[c] > m ? x[c] : m;                          \
        T s = 0;                                                                            \
        for (ptrdiff_t c = 0; c < C; ++c) {                                                 \
            const T e = EXP(x[c] - m); /* <= 1: the max term is e^0 */                      \
            d[c] = e;                                                                       \
            s += e;                                                                         \
        }                                                                                   \
        const T log_s = LOG(s), k = scale / s; /* s >= 1 unless NaN */                      \
        if (t == NULL) {                                                                    \
            for (ptrdiff_t c = 0; c < C; ++c) d[c] *= k;                                    \
            d[label] -= scale;                                                              \
            return (m - x[label]) + log_s;                                                  \
        }                                                                                   \
        T tx = 0, tsum = 0;                                                                 \
        for (ptrdiff_t c = 0; c < C; ++c) {                                                 \
            tx += t[c] * (m - x[c]);                                                        \
            tsum += t[c];                                                                   \
            d[c] = d[c] * k - t[c] * scale;                                                 \
        }                                                                                   \
        return tx + tsum * log_s;                                                           \
    }                                                                                       \
                                                                                            \
    double pb_bce_block_##SFX##_ref(T *d, const T *z, const T *t, ptrdiff_t n, T scale) {   \
        double acc = 0.0;                                                                   \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                 \
            const T zi = z[i], ti = t[i];                                                   \
            const T e = EXP(-FABS(zi)); /* in (0, 1]: never overflows */                    \
            acc += (double)((zi > 0 ? zi : (T)0) - zi * ti + LOG1P(e));                     \
            const T sig = (zi >= 0 ? (T)1 : e) / ((T)1 + e); /* sigmoid(z), stable */       \
            d[i] = (sig - ti) * scale;                                                      \
        }                                                                                   \
        return acc;                                                                         \
    }                                                                                            \
    /* 8 independent double accumulators (vectorisable), added in a fixed order. */        \
    double pb_mse_block_##SFX##_ref(T *restrict d, const T *restrict p, const T *restrict q, \
                                    ptrdiff_t n, T k2) {                                    \
        double acc[8] = {0};                                                                \
        ptrdiff_t i = 0;                                                                    \
        for (; i + 8 <= n; i += 8)                                                          \
            for (int l = 0; l < 8; ++l) {                                                   \
                const T e = p[i + l] - q[i + l];                                            \
                d[i + l] = e * k2;                                                          \
                acc[l] += (double)(e * e);                                                  \
            }                                                                               \
        for (int l = 0; i < n; ++i, ++l) {                                                  \
            const T e = p[i] - q[i];                                                        \
            d[i] = e * k2;                                                                  \
            acc[l] += (double)(e * e);                                                      \
        }                                                                                   \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
    }

PB_DEFINE_LOSS_REF(float, f32, expf, logf, log1pf, fabsf)
PB_DEFINE_LOSS_REF(double, f64, exp, log, log1p, fabs)

/* ---- drivers ------------------------------------------------------------------------------- */
#define PB_DEFINE_LOSSES(T, SFX)                                                            \
    /* mse: blocks of PB_LOSS_BLOCK elements through the table's block kernel. */       \
    typedef struct {                                                                        \
        T *d;                                                                               \
        const T *p, *q;                                                                     \
        ptrdiff_t n;                                                                        \
        T k2;                                                                               \
        pb_mse_block_##SFX##_t blockf;                                                      \
    } mse_ctx_##SFX;                                                                        \
    static double mse_block_##SFX(const void *vctx, ptrdiff_t blk) {                        \
        const mse_ctx_##SFX *cx = vctx;                                                     \
        const ptrdiff_t i0 = blk * PB_LOSS_BLOCK, i1 = PB_MIN(cx->n, i0 + PB_LOSS_BLOCK);   \
        return cx->blockf(cx->d + i0, cx->p + i0, cx->q + i0, i1 - i0, cx->k2);             \
    }                                                                                       \
    int pb_mse_loss_##SFX(T *loss, T *dpred, const T *pred, const T *target, ptrdiff_t n,   \
                          int reduction) {                                                  \
        PB_FP_SCOPE;                                                                        \
        if (n < 0 || bad_reduction(reduction)) return PB_ERR_ARG;                           \
        const double D = reduction == PB_REDUCE_MEAN ? (double)n : 1.0;                     \
        const mse_ctx_##SFX cx = {dpred, pred, target, n, (T)(2.0 / D),                     \
                                  pb_losses_kernels(pb_arch())->mse_block_##SFX};           \
        double total;                                                                       \
        const int st = ordered_block_sum(&total, mse_block_##SFX, &cx,                      \
                                         (n + PB_LOSS_BLOCK - 1) / PB_LOSS_BLOCK,           \
                                         threads_for(n));                                   \
        if (st != PB_OK) return st;                                                         \
        *loss = (T)(total / D);                                                             \
        return PB_OK;                                                                       \
    }                                                                                       \
                                                                                            \
    /* softmax cross-entropy: blocks of whole rows, one table call per row. */              \
    typedef struct {                                                                        \
        T *d, *row_loss;                                                                    \
        const T *x, *t;                                                                     \
        const int64_t *labels;                                                              \
        int64_t ignore;                                                                     \
        ptrdiff_t B, C, rows;                                                               \
        T scale;                                                                            \
        pb_xent_row_##SFX##_t row;                                                          \
    } xent_ctx_##SFX;                                                                       \
    static double xent_block_##SFX(const void *vctx, ptrdiff_t blk) {                       \
        const xent_ctx_##SFX *cx = vctx;                                                    \
        const ptrdiff_t r0 = blk * cx->rows, r1 = PB_MIN(cx->B, r0 + cx->rows), C = cx->C;  \
        double acc = 0.0;                                                                   \
        for (ptrdiff_t r = r0; r < r1; ++r) {                                               \
            T lr = 0;                                                                       \
            if (cx->labels != NULL && cx->labels[r] == cx->ignore) {                        \
                for (ptrdiff_t c = 0; c < C; ++c) cx->d[r * C + c] = 0;                     \
            } else {                                                                        \
                lr = cx->row(cx->d + r * C, cx->x + r * C, C,                               \
                             cx->labels != NULL ? (ptrdiff_t)cx->labels[r] : 0,             \
                             cx->t != NULL ? cx->t + r * C : NULL, cx->scale);              \
                acc += (double)lr;                                                          \
            }                                                                               \
            if (cx->row_loss != NULL) cx->row_loss[r] = lr;                                 \
        }                                                                                   \
        return acc;                                                                         \
    }                                                                                       \
    int pb_softmax_cross_entropy_##SFX(T *loss, T *dlogits, const T *logits,                \
                                       const int64_t *labels, const T *targets,             \
                                       ptrdiff_t B, ptrdiff_t C, int reduction,             \
                                       int64_t ignore_index) {                              \
        PB_FP_SCOPE;                                                                        \
        if (B < 0 || C < 0 || (B > 0 && C == 0) ||                                          \
            (bad_reduction(reduction) && reduction != PB_REDUCE_NONE) ||                    \
            (labels == NULL) == (targets == NULL))                                          \
            return PB_ERR_ARG;                                                              \
        ptrdiff_t counted = B; /* rows in the mean: those not ignored */                    \
        if (labels != NULL)                                                                 \
            for (ptrdiff_t r = 0; r < B; ++r) {                                             \
                if (labels[r] == ignore_index) {                                            \
                    --counted;                                                              \
                    continue;                                                               \
                }                                                                           \
                if (labels[r] < 0 || labels[r] >= (int64_t)C) return PB_ERR_ARG;            \
            }                                                                               \
        const double D = reduction == PB_REDUCE_MEAN ? (double)counted : 1.0;               \
        const ptrdiff_t rows = C >= PB_LOSS_BLOCK ? 1 : PB_LOSS_BLOCK / (C > 0 ? C : 1);    \
        const xent_ctx_##SFX cx = {dlogits, reduction == PB_REDUCE_NONE ? loss : NULL,      \
                                   logits, targets, labels, ignore_index, B, C, rows,       \
                                   (T)(1.0 / D),                                            \
                                   pb_losses_kernels(pb_arch())->xent_row_##SFX};           \
        double total;                                                                       \
        const int st = ordered_block_sum(&total, xent_block_##SFX, &cx,                     \
                                         (B + rows - 1) / rows, threads_for(B * C));        \
        if (st != PB_OK) return st;                                                         \
        if (reduction != PB_REDUCE_NONE) *loss = (T)(total / D);                            \
        return PB_OK;                                                                       \
    }                                                                                       \
                                                                                            \
    /* binary cross-entropy with logits: blocks of PB_LOSS_BLOCK elements. */               \
    typedef struct {                                                                        \
        T *d;                                                                               \
        const T *z, *t;                                                                     \
        ptrdiff_t n;                                                                        \
        T scale;                                                                            \
        pb_bce_block_##SFX##_t blockf;                                                      \
    } bce_ctx_##SFX;                                                                        \
    static double bce_block_##SFX(const void *vctx, ptrdiff_t blk) {                        \
        const bce_ctx_##SFX *cx = vctx;                                                     \
        const ptrdiff_t i0 = blk * PB_LOSS_BLOCK, i1 = PB_MIN(cx->n, i0 + PB_LOSS_BLOCK);   \
        return cx->blockf(cx->d + i0, cx->z + i0, cx->t + i0, i1 - i0, cx->scale);          \
    }                                                                                       \
    int pb_binary_cross_entropy_with_logits_##SFX(T *loss, T *dlogits, const T *logits,     \
                                                  const T *targets, ptrdiff_t n,            \
                                                  int reduction) {                          \
        PB_FP_SCOPE;                                                                        \
        if (n < 0 || bad_reduction(reduction)) return PB_ERR_ARG;                           \
        const double D = reduction == PB_REDUCE_MEAN ? (double)n : 1.0;                     \
        const bce_ctx_##SFX cx = {dlogits, logits, targets, n, (T)(1.0 / D),                \
                                  pb_losses_kernels(pb_arch())->bce_block_##SFX};           \
        double total;                                                                       \
        const int st = ordered_block_sum(&total, bce_block_##SFX, &cx,                      \
                                         (n + PB_LOSS_BLOCK - 1) / PB_LOSS_BLOCK,           \
                                         threads_for(n));                                   \
        if (st != PB_OK) return st;                                                         \
        *loss = (T)(total / D);                                                             \
        return PB_OK;                                                                       \
    }                                                                                       \
                                                                                            \
    /* maximum: "a won" is a >= b or a is NaN (so NaN in either input propagates). */      \
    int pb_maximum_forward_##SFX(T *z, const T *a, const T *b, ptrdiff_t n) {               \
        PB_FP_SCOPE;                                                                        \
        if (n < 0) return PB_ERR_ARG;                                                       \
        const int nt = threads_for(n);                                                      \
        (void)nt; /* unused without OpenMP */                                               \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                 \
        {                                                                                   \
            PB_FP_SCOPE;                                                                    \
            _Pragma("omp for schedule(static) nowait")                                      \
            for (ptrdiff_t i = 0; i < n; ++i) {                                             \
                const T ai = a[i], bi = b[i];                                               \
                z[i] = (ai >= bi || ai != ai) ? ai : bi;                                    \
            }                                                                               \
        }                                                                                   \
        return PB_OK;                                                                       \
    }                                                                                       \
    int pb_maximum_backward_##SFX(T *da, T *db, const T *dz, const T *a, const T *b,        \
                                  ptrdiff_t n) {                                            \
        PB_FP_SCOPE;                                                                        \
        if (n < 0) return PB_ERR_ARG;                                                       \
        const int nt = threads_for(n);                                                      \
        (void)nt; /* unused without OpenMP */                                               \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                 \
        {                                                                                   \
            PB_FP_SCOPE;                                                                    \
            _Pragma("omp for schedule(static) nowait")                                      \
            for (ptrdiff_t i = 0; i < n; ++i) {                                             \
                const T ai = a[i], bi = b[i], g = dz[i];                                    \
                const int a_won = ai >= bi || ai != ai;                                     \
                da[i] = a_won ? g : (T)0;                                                   \
                db[i] = a_won ? (T)0 : g;                                                   \
            }                                                                               \
        }                                                                                   \
        return PB_OK;                                                                       \
    }

PB_DEFINE_LOSSES(float, f32)
PB_DEFINE_LOSSES(double, f64)
