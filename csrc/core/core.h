/* core.h -- what every C source of the core shares: status codes (pybackprop.h), the
 * OpenMP shims, the floating-point scope of every kernel (opt-in flush of subnormals), the
 * alignment and small helper macros, workspace allocation and the thread count.
 * Not part of the public contract. Defined in core/runtime.c.
 */
#ifndef PB_CORE_H
#define PB_CORE_H
#include <math.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pybackprop.h"

#ifndef PB_NO_OPENMP
#include <omp.h>
#define PB_OMP 1
#else
#define PB_OMP 0
#endif

/* The calling thread's number in the current OpenMP team, the team's size, and whether we
 * already run inside a parallel region (kernels called from one then stay on their thread). */
static inline int pb_thread_id(void) {
#if PB_OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int pb_team_size(void) { /* threads of the current team (1 outside) */
#if PB_OMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
/* Whether the current team has the nt threads its region asked for: OpenMP may give fewer
 * (OMP_THREAD_LIMIT, OMP_DYNAMIC, a nested region). A region that splits its work by thread
 * number then does nothing (all threads of a team see the same answer) and its caller runs
 * the work on one thread: shares left to absent threads would never be computed. */
static inline int pb_team_is(int nt) { return pb_team_size() == nt; }
static inline int pb_omp_level(void) { /* nested regions around us, active or not */
#if PB_OMP
    return omp_get_level();
#else
    return 0;
#endif
}
static inline int pb_in_parallel(void) {
#if PB_OMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

/* ---- opt-in flush of subnormals (pb_set_flush_denormal, pybackprop.set_flush_denormal) ----
 * Every thread that does a kernel's work runs it with MXCSR's FTZ (a result below the
 * smallest normal number becomes 0) and DAZ (a subnormal operand reads as 0) bits as the
 * mode says -- the SSE control register governs AVX and AVX-512 arithmetic too: both set
 * when on, both clear when off (the default: subnormals computed exactly), whatever the
 * thread held before, and when it leaves it puts its control bits back exactly; exception
 * flags raised meanwhile stay raised (feupdateenv's semantics). Off therefore also undoes,
 * inside the kernels only, a flush the caller set up itself (torch.set_flush_denormal(True)
 * sets the calling thread's MXCSR for good): otherwise the calling thread would flush and
 * the OpenMP workers would not, and the results would depend on the thread count.
 *
 * `PB_FP_SCOPE;` opens such a scope until the end of the enclosing block (the cleanup
 * attribute restores on every path out of it). It is the first statement of every public
 * compute kernel (the calling thread) and of every OpenMP parallel-region body (each thread
 * of the team; a `parallel for` is written `parallel { PB_FP_SCOPE; for nowait }`). A nested
 * scope -- a kernel calling a kernel, the master thread inside its own region -- finds the
 * bits as the mode wants them and writes nothing; so does, with the mode off, every thread
 * whose MXCSR nobody changed (one read of MXCSR per scope). A thread starts with its
 * creator's MXCSR: before a scope outside any region turns the bits on, pb_fp_team_ready
 * has the calling thread's OpenMP team created (an empty region of the thread count), so
 * that no worker is born inside a kernel with the bits on -- it would find them as wanted,
 * restore nothing, and keep flushing after the mode is off. Where MXCSR does not govern the
 * arithmetic (non-x86 builds, x87 maths) there is no mode: pb_set_flush_denormal(1) reports
 * it unsupported. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2_MATH__)
#include <xmmintrin.h>
#define PB_HAVE_MXCSR 1
#define PB_MXCSR_FTZ_DAZ 0x8040u    /* bit 15 flush-to-zero, bit 6 denormals-are-zero */
#define PB_MXCSR_FLAGS 0x003Fu      /* the sticky exception flags */
#define PB_FP_UNTOUCHED 0xFFFFFFFFu /* never a saved MXCSR (its bits 16-31 are reserved 0) */
void pb_fp_team_ready(void); /* core/runtime.c */
static inline unsigned pb_fp_enter(void) {
    const unsigned want = pb_get_flush_denormal() ? PB_MXCSR_FTZ_DAZ : 0u;
    const unsigned old = _mm_getcsr();
    if ((old & PB_MXCSR_FTZ_DAZ) == want) return PB_FP_UNTOUCHED;
    if (want != 0u && pb_omp_level() == 0) pb_fp_team_ready();
    _mm_setcsr((old & ~PB_MXCSR_FTZ_DAZ) | want);
    return old;
}
static inline void pb_fp_leave(const unsigned *saved) {
    if (*saved != PB_FP_UNTOUCHED) _mm_setcsr(*saved | (_mm_getcsr() & PB_MXCSR_FLAGS));
}
#define PB_FP_SCOPE \
    const unsigned pb_fp_saved_ __attribute__((cleanup(pb_fp_leave), unused)) = pb_fp_enter()
#else
#define PB_HAVE_MXCSR 0
#define PB_FP_SCOPE (void)0
#endif

#define PB_ALIGN 64
#define PB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PB_CAT_(a, b) a##b
#define PB_CAT(a, b) PB_CAT_(a, b)

/* Aligned workspace; NULL on failure (callers return PB_ERR_NOMEM). */
void *pb_alloc(size_t bytes);
void pb_free(void *p);
/* A PB_ALIGN-aligned scratch buffer of at least `bytes`, owned by the calling thread and
 * reused by its next call (grown, never shrunk, contents not kept; freed when the thread
 * exits). One buffer per slot, one user per slot at a time: the GEMM driver's packing
 * buffers, and the dense backward's dz. NULL on failure. */
enum { PB_WS_GEMM = 0, PB_WS_DZ = 1, PB_WS_SLOTS = 2 };
void *pb_workspace(int slot, size_t bytes);
int pb_threads(void);         /* threads a kernel may use */
int pb_flush_supported(void); /* MXCSR has FTZ and DAZ here */
#endif /* PB_CORE_H */
