/* dispatch.c -- the kernel table of each ISA path, the thread count, the flush mode.
 *
 * An ISA table names that instruction set's kernels and the block sizes they were first
 * tuned with; a CPU configuration (cpu_configs.c) takes each kernel family from one of
 * these tables and may set its own block sizes. Also: status strings, workspace
 * allocation, the GEMM's thread layout and build facts. Nothing here prints.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pb_internal.h"
#if PB_HAVE_MXCSR
#include <immintrin.h> /* _fxsave */
#endif

/* ---- the kernel tables: every ISA path in one place ---------------------------------------
 * Block sizes: MC*KC the A block in L2, NC*KC the B panel in L3; KC keeps the B micro-panel
 * in L1 on ref, while AVX2 and AVX-512 take deep panels so that C is swept once per 1024
 * (512) of k (docs/gemm.md). The AVX2 table's sizes are the zen3 configuration's, the
 * AVX-512 table's the skylakex configuration's (docs/cpus.md says where each was measured). */
/* The entries whose kernels are named by their ISA alone (the micro-kernels carry their
 * tile in the name and are listed per table). */
#define PB_ISA_ENTRIES(ISA)                                                                  \
    .gemv_dot_f32 = pb_gemv_dot_f32_##ISA, .gemv_dot_f64 = pb_gemv_dot_f64_##ISA,            \
    .gemv_axpy_f32 = pb_gemv_axpy_f32_##ISA, .gemv_axpy_f64 = pb_gemv_axpy_f64_##ISA,        \
    .xent_row_f32 = pb_xent_row_f32_##ISA, .xent_row_f64 = pb_xent_row_f64_##ISA,            \
    .bce_block_f32 = pb_bce_block_f32_##ISA, .bce_block_f64 = pb_bce_block_f64_##ISA,        \
    .mse_block_f32 = pb_mse_block_f32_##ISA, .mse_block_f64 = pb_mse_block_f64_##ISA,        \
    .spec_rows_f32 = pb_spec_rows_f32_##ISA, .spec_rows_f64 = pb_spec_rows_f64_##ISA,        \
    .spec_dot_f32 = pb_spec_dot_f32_##ISA, .spec_dot_f64 = pb_spec_dot_f64_##ISA,            \
    .spec_bwd_f32 = pb_spec_bwd_f32_##ISA, .spec_bwd_f64 = pb_spec_bwd_f64_##ISA,            \
    .spec_div_f32 = pb_spec_div_f32_##ISA, .spec_div_f64 = pb_spec_div_f64_##ISA,            \
    .adam_f32 = pb_adam_range_f32_##ISA, .adam_f64 = pb_adam_range_f64_##ISA,                \
    .adamax_f32 = pb_adamax_range_f32_##ISA, .adamax_f64 = pb_adamax_range_f64_##ISA

const pb_arch_t pb_arch_ref = {
    .name = "ref",
    .blk_f32 = {.mr = PB_REF_MR, .nr = PB_REF_NR_F32, .mc = 128, .kc = 256, .nc = 2048,
                PB_XOVER_DEFAULT},
    .blk_f64 = {.mr = PB_REF_MR, .nr = PB_REF_NR_F64, .mc = 128, .kc = 256, .nc = 2048,
                PB_XOVER_DEFAULT},
    .ukr_f32 = pb_gemm_ukr_f32_ref,
    .ukr_f64 = pb_gemm_ukr_f64_ref,
    PB_ISA_ENTRIES(ref),
};

#if defined(__x86_64__) || defined(__i386__)
const pb_arch_t pb_arch_avx2 = {
    .name = "avx2",
    .blk_f32 = {.mr = 6, .nr = 16, .mc = 144, .kc = 1024, .nc = 4096, .tw = PB_TT_TW_F32_AVX2,
                .tj = PB_TT_TJ_F32_AVX2, .tm = 64, .atb_copy = 4096, PB_XOVER_DEFAULT},
    .blk_f64 = {.mr = 6, .nr = 8, .mc = 96, .kc = 256, .nc = 4096, .tw = PB_TT_TW_F64_AVX2,
                .tj = PB_TT_TJ_F64_AVX2, .tm = 32, .atb_copy = 4096, PB_XOVER_DEFAULT},
    .ukr_f32 = pb_gemm_ukr_f32_avx2_6x16,
    .ukr_f64 = pb_gemm_ukr_f64_avx2_6x8,
    .ukr_a_f32 = pb_gemm_ukr_a_f32_avx2_6x16, /* NULL elsewhere: A always packed there */
    .ukr_a_f64 = pb_gemm_ukr_a_f64_avx2_6x8,
    .pack_t_f32 = pb_pack_t_f32_avx2,
    .pack_t_f64 = pb_pack_t_f64_avx2,
    .tt_f32 = pb_gemm_tt_f32_avx2,
    .tt_f64 = pb_gemm_tt_f64_avx2,
    .act_fwd_f32 = pb_act_fwd_f32_avx2,
    .act_fwd_f64 = pb_act_fwd_f64_avx2,
    .act_bwd_f32 = pb_act_bwd_f32_avx2,
    .act_bwd_f64 = pb_act_bwd_f64_avx2,
    .atb_f32 = pb_gemm_atb_f32_avx2, /* NULL in ref: dw of few rows packs there */
    .atb_f64 = pb_gemm_atb_f64_avx2,
    PB_ISA_ENTRIES(avx2),
};

const pb_arch_t pb_arch_avx512 = {
    .name = "avx512",
    .blk_f32 = {.mr = 12, .nr = 32, .mc = 192, .kc = 1024, .nc = 2048, .tw = PB_TT_TW_F32_AVX512,
                .tj = PB_TT_TJ_F32_AVX512, .tm = 256, PB_XOVER_DEFAULT},
    .blk_f64 = {.mr = 12, .nr = 16, .mc = 192, .kc = 512, .nc = 2048, .tw = PB_TT_TW_F64_AVX512,
                .tj = PB_TT_TJ_F64_AVX512, .tm = 256, PB_XOVER_DEFAULT},
    .ukr_f32 = pb_gemm_ukr_f32_avx512_12x32,
    .ukr_f64 = pb_gemm_ukr_f64_avx512_12x16,
    .pack_t_f32 = pb_pack_t_f32_avx512, /* NULL in the other tables: portable packing */
    .pack_t_f64 = pb_pack_t_f64_avx512,
    .dot_f32 = pb_gemm_dot_f32_avx512, /* NULL elsewhere: small-M forwards pack there */
    .dot_f64 = pb_gemm_dot_f64_avx512,
    .tt_f32 = pb_gemm_tt_f32_avx512,
    .tt_f64 = pb_gemm_tt_f64_avx512,
    .atb_f32 = pb_gemm_atb_f32_avx512,
    .atb_f64 = pb_gemm_atb_f64_avx512,
    .act_fwd_f32 = pb_act_fwd_f32_avx512,
    .act_fwd_f64 = pb_act_fwd_f64_avx512,
    .act_bwd_f32 = pb_act_bwd_f32_avx512,
    .act_bwd_f64 = pb_act_bwd_f64_avx512,
    PB_ISA_ENTRIES(avx512),
};
#endif

static atomic_int g_threads = 0; /* 0: default */

/* Work stealing's test mode (pb_wlist_t in pb_internal.h) */
_Atomic int pb_steal_test_on = 0;
_Atomic long pb_steal_test_count = 0;

long pb_steal_test(int on) {
    atomic_store(&pb_steal_test_on, on != 0);
    return atomic_exchange(&pb_steal_test_count, 0);
}

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

int pb_arch_supported(const char *name) {
    if (name == NULL) return 0;
    if (strcmp(name, "ref") == 0) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* GCC's feature bits include the OS (XSAVE) state checks for AVX and AVX-512. */
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
#endif
    return 0;
}

#if PB_OMP
/* Read once (the first kernel call): every call asks for the thread count. */
static atomic_int g_threads_default = 0;
static int threads_default(void) {
    int n = atomic_load_explicit(&g_threads_default, memory_order_relaxed);
    if (n > 0) return n;
    const char *env = getenv("PYBACKPROP_NUM_THREADS");
    long v = env != NULL && env[0] != '\0' ? strtol(env, NULL, 10) : 0;
    n = v > 0 && v < 4096 ? (int)v : omp_get_num_procs();
    atomic_store_explicit(&g_threads_default, n, memory_order_relaxed);
    return n;
}
#endif

void pb_set_num_threads(int n) {
    atomic_store(&g_threads, n > 0 ? n : 0);
#if PB_OMP
    if (n <= 0) atomic_store(&g_threads_default, 0); /* re-read the environment */
#endif
}

int pb_threads(void) {
#if PB_OMP
    int n = atomic_load(&g_threads);
    return n > 0 ? n : threads_default();
#else
    return 1;
#endif
}

int pb_get_num_threads(void) { return pb_threads(); }

int pb_has_openmp(void) { return PB_OMP; }

/* ---- opt-in flush of subnormals (PB_FP_SCOPE in pb_internal.h does the work) ------------- */
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

/* ---- GEMM workspace and thread layout -------------------------------------------------- */
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
    /* Tiles of the busiest thread for tm threads along M. An M split shares the packed B
     * panel between cores (every core reads all of it), an N split keeps each B slice
     * core-local but packs A in every thread. So when B's packing is the costly transposing
     * one (b_trans: the forward's weight) and A is the smaller operand (m < n), take the
     * fewest M splits within 15 % of the best balance (forward 1.5x at (64, 512, 512), 1.14x
     * at (256, 1024, 1024) over an M split), else the most M splits among the best. */
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
