/* runtime.c -- the core's process-wide state and services: status strings, the thread
 * count, the opt-in flush of subnormals, aligned allocation and the per-thread workspaces,
 * the work lists' test-mode counters, and build facts (compiler, flags). Kernel tables and
 * CPU configurations live in arch/. Nothing here prints.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/wlist.h"
#if PB_HAVE_MXCSR
#include <immintrin.h> /* _fxsave */
#endif

static atomic_int g_threads = 0; /* 0: default */

/* Work stealing's test mode (pb_wlist_t in core/wlist.h; set by testing/steal_test.c) */
_Atomic int pb_steal_test_on = 0;
_Atomic long pb_steal_test_count = 0;

const char *pb_strerror(int status) {
    switch (status) {
    case PB_OK: return "success";
    case PB_ERR_NOMEM: return "out of memory allocating a kernel workspace";
    case PB_ERR_ARG: return "invalid dimension or option";
    case PB_ERR_ARCH: return "instruction set unknown or not supported by this CPU";
    case PB_ERR_OVERLAP: return "an output buffer overlaps an input or another output";
    default: return "unknown pybackprop status";
    }
}

#if PB_OMP
/* The thread count of a call, read by the calling thread at each call:
 *   - set_num_threads(n) (g_threads > 0) wins;
 *   - else PYBACKPROP_NUM_THREADS (read at the first call, and again after
 *     set_num_threads(0));
 *   - else OpenMP's own nthreads-var ICV of the calling thread, omp_get_max_threads():
 *     OMP_NUM_THREADS, or the processors of the affinity mask, or what omp_set_num_threads
 *     last set (threadpoolctl's threadpool_limits, a host program's OpenMP settings).
 * Whatever the source, at most PB_MAX_THREADS.
 *
 * Fork: libgomp's thread pool does not survive fork(): in a child whose parent had run a
 * team of 2+ threads, a new team waits forever for the parent's workers. A pthread_atfork
 * child handler (registered at the first call) marks such a child, whose kernels then run on
 * the calling thread alone (one-thread regions never touch the pool): the same bits, since
 * results do not depend on the thread count. */
#define PB_MAX_THREADS 1024
static atomic_int g_env_threads = -1; /* PYBACKPROP_NUM_THREADS; 0 unset, -1 not read */
static atomic_int g_team_started = 0; /* this process ran a team of 2+ threads */
static atomic_int g_forked_child = 0; /* forked after that: one thread from now on */
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void fork_child(void) {
    if (atomic_load_explicit(&g_team_started, memory_order_relaxed))
        atomic_store_explicit(&g_forked_child, 1, memory_order_relaxed);
}
static void fork_register(void) { (void)pthread_atfork(NULL, NULL, fork_child); }

static int env_threads(void) {
    int n = atomic_load_explicit(&g_env_threads, memory_order_relaxed);
    if (n >= 0) return n;
    const char *env = getenv("PYBACKPROP_NUM_THREADS");
    long v = env != NULL && env[0] != '\0' ? strtol(env, NULL, 10) : 0;
    n = v > 0 ? (int)(v < PB_MAX_THREADS ? v : PB_MAX_THREADS) : 0;
    atomic_store_explicit(&g_env_threads, n, memory_order_relaxed);
    return n;
}
#endif

void pb_set_num_threads(int n) {
    atomic_store(&g_threads, n > 0 ? n : 0);
#if PB_OMP
    if (n <= 0) atomic_store(&g_env_threads, -1); /* re-read the environment */
#endif
}

int pb_threads(void) {
#if PB_OMP
    (void)pthread_once(&g_fork_once, fork_register);
    if (atomic_load_explicit(&g_forked_child, memory_order_relaxed)) return 1;
    int n = atomic_load_explicit(&g_threads, memory_order_relaxed);
    if (n <= 0) n = env_threads();
    if (n <= 0) n = omp_get_max_threads();
    n = n < 1 ? 1 : n > PB_MAX_THREADS ? PB_MAX_THREADS : n;
    if (n > 1 && !atomic_load_explicit(&g_team_started, memory_order_relaxed))
        atomic_store_explicit(&g_team_started, 1, memory_order_relaxed);
    return n;
#else
    return 1;
#endif
}

int pb_get_num_threads(void) { return pb_threads(); }

int pb_has_openmp(void) { return PB_OMP; }

/* ---- opt-in flush of subnormals (PB_FP_SCOPE in core/core.h does the work) --------------- */
static atomic_int g_flush = -1; /* -1: PYBACKPROP_FLUSH_DENORMAL not read yet */

/* MXCSR has a DAZ bit on this CPU: bit 6 of MXCSR_MASK, bytes 28-31 of the FXSAVE image
 * (0 there means the default mask 0xFFBF, without DAZ). Writing an unsupported MXCSR bit
 * faults, so the mode is refused rather than tried. */
#if PB_HAVE_MXCSR
__attribute__((target("fxsr"))) int pb_flush_supported(void) {
    _Alignas(16) unsigned char area[512];
    memset(area, 0, sizeof area);
    _fxsave(area);
    uint32_t mask;
    memcpy(&mask, area + 28, sizeof mask);
    return ((mask != 0 ? mask : 0xFFBFu) & 0x40u) != 0;
}
#else
int pb_flush_supported(void) { return 0; }
#endif

int pb_get_flush_denormal(void) {
    int f = atomic_load_explicit(&g_flush, memory_order_relaxed);
    if (f >= 0) return f;
    const char *env = getenv("PYBACKPROP_FLUSH_DENORMAL");
    int want = env != NULL && env[0] != '\0' && strtol(env, NULL, 10) != 0 && pb_flush_supported();
    int unread = -1; /* a pb_set_flush_denormal() that came first wins */
    atomic_compare_exchange_strong(&g_flush, &unread, want);
    return atomic_load_explicit(&g_flush, memory_order_relaxed);
}

/* The calling thread's OpenMP team, as many threads as a kernel's region may ask for, created
 * while this thread's MXCSR is still the caller's (PB_FP_SCOPE, core/core.h); a team that
 * exists already is reused, so this is one empty region per kernel with the mode on. */
#if PB_HAVE_MXCSR
void pb_fp_team_ready(void) {
#if PB_OMP
    const int nt = pb_get_num_threads();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        PB_FP_SCOPE;
    }
#endif
}
#endif

int pb_set_flush_denormal(int mode) {
    if (mode && !pb_flush_supported()) return 0;
    atomic_store(&g_flush, mode ? 1 : 0);
    return 1;
}

const char *pb_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

#ifndef PB_CFLAGS
#define PB_CFLAGS "unknown"
#endif
const char *pb_cflags(void) { return PB_CFLAGS; }

void *pb_alloc(size_t bytes) {
    if (bytes > SIZE_MAX - PB_ALIGN) return NULL; /* the round-up below would wrap */
    size_t n = (bytes + PB_ALIGN - 1) / PB_ALIGN * PB_ALIGN;
    return aligned_alloc(PB_ALIGN, n > 0 ? n : PB_ALIGN);
}

void pb_free(void *p) { free(p); }

/* ---- per-thread workspaces ---------------------------------------------------------------- */
/* Each thread's workspace hangs off a pthread key (freed by its destructor at thread exit),
 * looked up with pthread_getspecific: no _Thread_local in this dlopen'ed module, whose
 * dynamic TLS GCC 12's LeakSanitizer misreads on OpenMP worker threads (it scanned a bogus
 * DTLS range and crashed: "Tracer caught signal 11" in ScanRangeForPointers). */
static pthread_key_t g_ws_key;
static pthread_once_t g_ws_once = PTHREAD_ONCE_INIT;
typedef struct {
    void *buf[PB_WS_SLOTS];
    size_t size[PB_WS_SLOTS];
} pb_ws_t;

static void ws_destroy(void *p) {
    pb_ws_t *ws = p;
    for (int s = 0; s < PB_WS_SLOTS; ++s) free(ws->buf[s]);
    free(ws);
}
static void ws_key_init(void) { (void)pthread_key_create(&g_ws_key, ws_destroy); }

void *pb_workspace(int slot, size_t bytes) {
    if (slot < 0 || slot >= PB_WS_SLOTS) return NULL;
    (void)pthread_once(&g_ws_once, ws_key_init);
    pb_ws_t *ws = pthread_getspecific(g_ws_key);
    if (ws != NULL && bytes <= ws->size[slot]) return ws->buf[slot];
    if (ws == NULL) {
        ws = calloc(1, sizeof(pb_ws_t));
        if (ws == NULL) return NULL;
        if (pthread_setspecific(g_ws_key, ws) != 0) { /* freed at thread exit */
            free(ws);
            return NULL;
        }
    }
    size_t n = (bytes + (bytes >> 2) + PB_ALIGN - 1) / PB_ALIGN * PB_ALIGN; /* 25% slack */
    void *p = aligned_alloc(PB_ALIGN, n > 0 ? n : PB_ALIGN);
    if (p == NULL) return NULL;
    free(ws->buf[slot]);
    ws->buf[slot] = p;
    ws->size[slot] = n;
    return p;
}
