/* wlist.h -- work lists: each thread's static share of a parallel region's units, taken
 * from the front by its owner and from the back by the other threads once theirs are empty.
 * Header-only (the test mode's two counters live in core/runtime.c).
 */
#ifndef PB_WLIST_H
#define PB_WLIST_H
#include "core/core.h"

/* ---- work lists: static shares, and stealing at the end ----------------------------------
 * A static split waits for its slowest thread, and on a shared host one core often runs slower
 * than the other for a while (docs/crossovers.md, work lists).
 * So a region that splits independent units of work gives each thread a list -- its static
 * share, in the order it would run it -- which it takes from the front; once its own is empty,
 * a thread takes from the back of the others' lists. A unit is taken exactly once (one
 * compare-and-swap of the list's front and back), and a unit's results never depend on the
 * thread that computes it (K is never split and the tiles follow from the shape), so no result
 * depends on who took what. Each round (a K panel, say) the owner opens its list
 * (pb_wlist_open, a release) once everything a thief needs is ready; a thief skips lists that
 * are empty, including those not yet opened, whose last round the owner drained itself. Rounds
 * must be separated by a barrier. Lists live in the caller's frame, PB_WLIST_MAX of them, each
 * on its own cache line; regions with more threads keep the static split. */
#define PB_WLIST_MAX 64
typedef struct {
    _Alignas(PB_ALIGN) _Atomic uint64_t fb; /* front | back << 32: units [front, back) */
    _Atomic unsigned gen;                    /* times opened (the test mode waits on it) */
} pb_wlist_t;
/* The test mode (pb_steal_test in pybackprop.h): thread 0 leaves its own list to the others
 * and waits until they have emptied it; units taken from another's list are counted. */
extern _Atomic int pb_steal_test_on;
extern _Atomic long pb_steal_test_count;

static inline void pb_wlist_init(pb_wlist_t *l, int nt) { /* before the region: all empty */
    for (int t = 0; t < nt; ++t) {
        atomic_init(&l[t].fb, 0);
        atomic_init(&l[t].gen, 0);
    }
}
static inline void pb_wlist_open(pb_wlist_t *l, ptrdiff_t len) { /* units [0, len) */
    atomic_store_explicit(&l->fb, (uint64_t)len << 32, memory_order_release);
    atomic_fetch_add_explicit(&l->gen, 1u, memory_order_release);
}
/* The next unit of list l, from its front (the owner) or its back (a thief); -1 if none. */
static inline ptrdiff_t pb_wlist_take(pb_wlist_t *l, int back) {
    uint64_t v = atomic_load_explicit(&l->fb, memory_order_acquire);
    for (;;) {
        const uint64_t f = v & 0xffffffffu, b = v >> 32;
        if (f >= b) return -1;
        const uint64_t nv = back ? (b - 1) << 32 | f : b << 32 | (f + 1);
        if (atomic_compare_exchange_weak_explicit(&l->fb, &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (ptrdiff_t)(back ? b - 1 : f);
    }
}
static inline int pb_wlist_empty(pb_wlist_t *l) {
    const uint64_t v = atomic_load_explicit(&l->fb, memory_order_acquire);
    return (v & 0xffffffffu) >= v >> 32;
}
/* Thread me of nt (> 1) in round `round` (1, 2, ...: the lists' openings so far) runs BODY
 * with (o, u) for every unit u of list o it takes: its own list first, then the others'.
 * Lists hold fewer than 2^32 units. */
#define PB_WLIST_RUN(lists, nt, me, round, o, u, BODY)                                      \
    do {                                                                                    \
        const int test_ = atomic_load_explicit(&pb_steal_test_on, memory_order_relaxed);    \
        for (int v_ = 0; v_ < (nt); ++v_) {                                                 \
            const int o = ((me) + v_) % (nt);                                               \
            if (test_ && o == 0 && v_ == 0) continue; /* thread 0: its list to the others */ \
            if (test_ && o == 0) /* the others: wait until thread 0 has opened it */        \
                while (atomic_load_explicit(&(lists)[0].gen, memory_order_acquire) <        \
                       (unsigned)(round)) {                                                 \
                }                                                                           \
            ptrdiff_t u;                                                                    \
            while ((u = pb_wlist_take(&(lists)[o], v_ != 0)) >= 0) {                        \
                if (test_ && v_ != 0)                                                       \
                    atomic_fetch_add_explicit(&pb_steal_test_count, 1, memory_order_relaxed); \
                BODY;                                                                       \
            }                                                                               \
        }                                                                                   \
        if (test_ && (me) == 0) /* until the others have taken all of list 0 */             \
            while (!pb_wlist_empty(&(lists)[0])) {                                          \
            }                                                                               \
    } while (0)
#endif /* PB_WLIST_H */
