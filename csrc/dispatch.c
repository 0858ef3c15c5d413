/* dispatch.c -- the one place where the SIMD path and the thread count are chosen.
 *
 * The active kernel table starts as the portable one and is replaced, once, by the best
 * table the CPU and OS support (or by PYBACKPROP_ARCH=ref|avx2|avx512). Tests and
 * benchmarks may switch it with pb_set_arch(). Also: status strings, workspace allocation
 * and build facts. Nothing here prints.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pb_internal.h"

/* ---- the kernel tables: every ISA path in one place ---------------------------------------
 * Block sizes (Sapphire Rapids: 48 KiB L1d, 2 MiB L2 per core): KC keeps the B micro-panel
 * in L1, MC*KC the A block in L2, NC*KC the B panel in L3. */
#define PB_SPEC_ENTRIES(ISA)                                                                 \
    .spec_rows_f32 = pb_spec_rows_f32_##ISA, .spec_rows_f64 = pb_spec_rows_f64_##ISA,        \
    .spec_dot_f32 = pb_spec_dot_f32_##ISA, .spec_dot_f64 = pb_spec_dot_f64_##ISA,            \
    .spec_bwd_f32 = pb_spec_bwd_f32_##ISA, .spec_bwd_f64 = pb_spec_bwd_f64_##ISA,            \
    .spec_div_f32 = pb_spec_div_f32_##ISA, .spec_div_f64 = pb_spec_div_f64_##ISA
const pb_arch_t pb_arch_ref = {
    .name = "ref",
    .blk_f32 = {.mr = PB_REF_MR, .nr = PB_REF_NR_F32, .mc = 128, .kc = 256, .nc = 2048},
    .blk_f64 = {.mr = PB_REF_MR, .nr = PB_REF_NR_F64, .mc = 128, .kc = 256, .nc = 2048},
    .ukr_f32 = pb_gemm_ukr_f32_ref,
    .ukr_f64 = pb_gemm_ukr_f64_ref,
    .xent_row_f32 = pb_xent_row_f32_ref,
    .xent_row_f64 = pb_xent_row_f64_ref,
    .bce_block_f32 = pb_bce_block_f32_ref,
    .bce_block_f64 = pb_bce_block_f64_ref,
    .mse_block_f32 = pb_mse_block_f32_ref,
    .mse_block_f64 = pb_mse_block_f64_ref,
    PB_SPEC_ENTRIES(ref),
    .adam_f32 = pb_adam_range_f32_ref,
    .adam_f64 = pb_adam_range_f64_ref,
    .adamax_f32 = pb_adamax_range_f32_ref,
    .adamax_f64 = pb_adamax_range_f64_ref,
};

#if defined(__x86_64__) || defined(__i386__)
const pb_arch_t pb_arch_avx2 = {
    .name = "avx2",
    .blk_f32 = {.mr = 6, .nr = 16, .mc = 144, .kc = 256, .nc = 4096},
    .blk_f64 = {.mr = 6, .nr = 8, .mc = 96, .kc = 256, .nc = 4096},
    .ukr_f32 = pb_gemm_ukr_f32_avx2_6x16,
    .ukr_f64 = pb_gemm_ukr_f64_avx2_6x8,
    .xent_row_f32 = pb_xent_row_f32_avx2,
    .xent_row_f64 = pb_xent_row_f64_avx2,
    .bce_block_f32 = pb_bce_block_f32_avx2,
    .bce_block_f64 = pb_bce_block_f64_avx2,
    .mse_block_f32 = pb_mse_block_f32_avx2,
    .mse_block_f64 = pb_mse_block_f64_avx2,
    PB_SPEC_ENTRIES(avx2),
    .adam_f32 = pb_adam_range_f32_avx2,
    .adam_f64 = pb_adam_range_f64_avx2,
    .adamax_f32 = pb_adamax_range_f32_avx2,
    .adamax_f64 = pb_adamax_range_f64_avx2,
};

const pb_arch_t pb_arch_avx512 = {
    .name = "avx512",
    .blk_f32 = {.mr = 12, .nr = 32, .mc = 384, .kc = 256, .nc = 4096},
    .blk_f64 = {.mr = 12, .nr = 16, .mc = 192, .kc = 256, .nc = 4096},
    .ukr_f32 = pb_gemm_ukr_f32_avx512_12x32,
    .ukr_f64 = pb_gemm_ukr_f64_avx512_12x16,
    .xent_row_f32 = pb_xent_row_f32_avx512,
    .xent_row_f64 = pb_xent_row_f64_avx512,
    .bce_block_f32 = pb_bce_block_f32_avx512,
    .bce_block_f64 = pb_bce_block_f64_avx512,
    .mse_block_f32 = pb_mse_block_f32_avx512,
    .mse_block_f64 = pb_mse_block_f64_avx512,
    PB_SPEC_ENTRIES(avx512),
    .adam_f32 = pb_adam_range_f32_avx512,
    .adam_f64 = pb_adam_range_f64_avx512,
    .adamax_f32 = pb_adamax_range_f32_avx512,
    .adamax_f64 = pb_adamax_range_f64_avx512,
};
#endif

static _Atomic(const pb_arch_t *) g_arch = NULL;
static atomic_int g_threads = 0; /* 0: default */

const char *pb_strerror(int status) {
    switch (status) {
    case PB_OK: return "success";
    case PB_ERR_NOMEM: return "out of memory allocating a kernel workspace";
    case PB_ERR_ARG: return "invalid dimension or option";
    case PB_ERR_ARCH: return "instruction set unknown or not supported by this CPU";
    default: return "unknown pybackprop status";
    }
}

static const pb_arch_t *arch_by_name(const char *name) {
    if (name == NULL) return NULL;
    if (strcmp(name, "ref") == 0) return &pb_arch_ref;
#if defined(__x86_64__) || defined(__i386__)
    if (strcmp(name, "avx2") == 0) return &pb_arch_avx2;
    if (strcmp(name, "avx512") == 0) return &pb_arch_avx512;
#endif
    return NULL;
}

int pb_arch_supported(const char *name) {
    const pb_arch_t *a = arch_by_name(name);
    if (a == NULL) return 0;
    if (a == &pb_arch_ref) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* GCC's feature bits include the OS (XSAVE) state checks for AVX and AVX-512. */
    if (a == &pb_arch_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (a == &pb_arch_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
#endif
    return 0;
}

static const pb_arch_t *arch_default(void) {
    const char *env = getenv("PYBACKPROP_ARCH");
    if (env != NULL && env[0] != '\0' && pb_arch_supported(env)) return arch_by_name(env);
    if (pb_arch_supported("avx512")) return arch_by_name("avx512");
    if (pb_arch_supported("avx2")) return arch_by_name("avx2");
    return &pb_arch_ref;
}

const pb_arch_t *pb_arch(void) {
    const pb_arch_t *a = atomic_load_explicit(&g_arch, memory_order_acquire);
    if (a == NULL) { /* racing initialisers compute the same answer */
        a = arch_default();
        atomic_store_explicit(&g_arch, a, memory_order_release);
    }
    return a;
}

const char *pb_get_arch(void) { return pb_arch()->name; }

int pb_set_arch(const char *name) {
    if (!pb_arch_supported(name)) return PB_ERR_ARCH;
    atomic_store_explicit(&g_arch, arch_by_name(name), memory_order_release);
    return PB_OK;
}

#if PB_OMP
static int threads_default(void) {
    const char *env = getenv("PYBACKPROP_NUM_THREADS");
    if (env != NULL && env[0] != '\0') {
        long n = strtol(env, NULL, 10);
        if (n > 0 && n < 4096) return (int)n;
    }
    return omp_get_num_procs();
}
#endif

void pb_set_num_threads(int n) { atomic_store(&g_threads, n > 0 ? n : 0); }

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
    size_t n = (bytes + PB_ALIGN - 1) / PB_ALIGN * PB_ALIGN;
    return aligned_alloc(PB_ALIGN, n > 0 ? n : PB_ALIGN);
}

void pb_free(void *p) { free(p); }
