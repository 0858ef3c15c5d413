/* gemm_split.c -- the thread layout of the packed GEMM: how many threads, and their grid
 * over M and N (contract at pb_gemm_split in gemm/gemm.h).
 */
#include "gemm/gemm.h"

/* Below this many flops one thread is faster than waking a second one. */
#define PB_GEMM_PAR_MIN_FLOPS 400000.0

int pb_gemm_split(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int mr, int nr, int b_trans, int *tm,
                  int *tn) {
    int nt = pb_threads();
    const ptrdiff_t n_mr = (m + mr - 1) / mr, n_nr = (n + nr - 1) / nr;
    if (nt < 1 || pb_in_parallel() ||
        2.0 * (double)m * (double)n * (double)(k > 0 ? k : 1) < PB_GEMM_PAR_MIN_FLOPS)
        nt = 1;
    if ((ptrdiff_t)nt > n_mr * n_nr) nt = (int)(n_mr * n_nr);
    /* Tiles of the busiest thread for tm threads along M. An M split shares the packed B panel
     * between cores (every core reads all of it), an N split keeps each B slice core-local but
     * packs A in every thread. So when B's packing is the costly transposing one (b_trans: the
     * forward's weight) and A is the smaller operand (m < n), take the fewest M splits within
     * 15 % of the best balance (docs/crossovers.md,
     * pb_gemm_split), else the most M splits among the best. */
#define PB_SPLIT_W(t) ((double)((n_mr + (t)-1) / (t)) * (double)((n_nr + nt / (t)-1) / (nt / (t))))
    double best = -1.0;
    for (int t = 1; t <= nt; ++t)
        if (nt % t == 0 && (best < 0.0 || PB_SPLIT_W(t) < best)) best = PB_SPLIT_W(t);
    int best_m = 1;
    if (b_trans && m < n) {
        for (int t = nt; t >= 1; --t)
            if (nt % t == 0 && PB_SPLIT_W(t) <= 1.15 * best) best_m = t;
    } else {
        for (int t = 1; t <= nt; ++t)
            if (nt % t == 0 && PB_SPLIT_W(t) == best) best_m = t;
    }
#undef PB_SPLIT_W
    *tm = best_m;
    *tn = nt / best_m;
    return nt;
}
