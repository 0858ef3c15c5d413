/* cpu_configs.c -- the CPU configurations, and the one that runs.
 *
 * A configuration is data: for each kernel family the ISA table whose kernels it runs
 * (float32 GEMM and dense, float64 GEMM and dense, and the vector kernels of losses,
 * spectral norm and optimizers), block sizes and path crossovers where they differ from
 * that table's, and the configuration to fall back to on a CPU that lacks one of its ISAs.
 * Adding a CPU model is one entry of pb_cpu_configs and one line of model_config.
 * docs/cpus.md says which CPU each one was measured on.
 *
 * The load-time choice: PYBACKPROP_CPU=NAME if this CPU runs NAME; else the detected
 * model's configuration (model_config), followed down its fallbacks until this CPU runs it
 * and its highest ISA is at most PYBACKPROP_ARCH (ref, avx2, avx512) when that is set.
 * pb_set_cpu pins a configuration, pb_set_arch caps the ISA the same way.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"

typedef struct {
    const char *name;
    const char *about;
    const char *isa_f32, *isa_f64, *isa_vec; /* the ISA tables of the three families;
                                              * NULL: the best this CPU runs ("derived") */
    const char *fallback;                    /* NULL: none (the portable one) */
    /* Block sizes: "isa" the family's ISA table's, "model" derived from `caches` (NULL:
     * this CPU's) by pb_blocks_model. */
    int model_blocks;
    const pb_cache_t *caches; /* L1d, L2, L3 */
    /* Crossovers where they differ from the family's ISA table's (0: the table's): the
     * transposed-tile rule's largest m (float32, float64). */
    int tm_f32, tm_f64;
    /* The A^T B path's copy of B blocks whose rows alias in L1 where it differs from the
     * tables' (0: theirs), both dtypes: blk.atb_copy (the stride in bytes), .atb_copy_nt (the
     * most threads at work with which it copies), .atb_copy_min (the fewest bytes of B). */
    int atb_copy, atb_copy_nt;
    double atb_copy_min;
    /* The ISA whose table runs the tall rule's products (pb_gemm_table_), per dtype (NULL:
     * the family's own). */
    const char *isa_tall_f32, *isa_tall_f64;
    /* The ISA whose table runs the products the family's table would pack with k <= small_k
     * (pb_gemm_table_), per dtype (NULL: the family's own). */
    const char *isa_small_k_f32, *isa_small_k_f64;
    int small_k_f32, small_k_f64;
    /* The ISA whose table runs the other products the family's table would pack with a
     * row-major B (pb_gemm_table_), per dtype (NULL: the family's own). */
    const char *isa_rowb_f32, *isa_rowb_f64;
} pb_cpu_cfg_t;

/* Haswell's caches (32 KiB 8-way L1d, 256 KiB 8-way L2, 8 MiB 16-way L3: a 4-core
 * client part), the generic AVX2 configuration's model. */
static const pb_cache_t haswell_caches[3] = {
    {32768, 8, 64, 64}, {262144, 8, 64, 512}, {8388608, 16, 64, 8192}};

static const pb_cpu_cfg_t pb_cpu_configs[] = {
    {"generic", "portable C kernels: any CPU", "ref", "ref", "ref", NULL, .model_blocks = 0},
#if defined(__x86_64__) || defined(__i386__)
    {"haswell", "AVX2+FMA kernels, blocks modelled on Haswell's caches: Intel cores from "
                "Haswell on without AVX-512, AMD Zen 1 and 2",
     "avx2", "avx2", "avx2", "generic", .model_blocks = 1, .caches = haswell_caches},
    {"zen3", "AVX2+FMA kernels with blocks measured on Zen: AMD Zen 3, and Zen 4/5 where "
             "AVX-512 is hidden",
     "avx2", "avx2", "avx2", "haswell", .model_blocks = 0},
    {"zen4", "AMD Zen 4/5 with AVX-512 (512-bit instructions on 256-bit units): AVX-512 "
             "kernels; float32's transposed-tile path up to 128 rows, its tall products "
             "(few outputs, large batch) and float64's packed products of depth <= 256 or "
             "with a row-major B (the backward's) on the AVX2 kernels; dw's rows of x 4 KiB "
             "apart copied first on one thread, from 8 MiB of x",
     "avx512", "avx512", "avx512", "zen3", .model_blocks = 0, .tm_f32 = 128,
     .isa_tall_f32 = "avx2", .isa_small_k_f64 = "avx2", .small_k_f64 = 256,
     .isa_rowb_f64 = "avx2",
     .atb_copy = 4096, .atb_copy_nt = 1, .atb_copy_min = 8388608.0},
    {"skylakex", "AVX-512 kernels: Intel server cores from Skylake-X to Sapphire Rapids",
     "avx512", "avx512", "avx512", "haswell", .model_blocks = 0},
#endif
    {"derived", "the best ISA this CPU runs, blocks modelled on its own caches (cpuid): a "
                "CPU no other configuration names",
     NULL, NULL, NULL, "generic", .model_blocks = 1},
};
#define PB_NCFG ((int)(sizeof pb_cpu_configs / sizeof pb_cpu_configs[0]))

static int cfg_index(const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < PB_NCFG; ++i)
        if (strcmp(pb_cpu_configs[i].name, name) == 0) return i;
    return -1;
}

/* The configuration of a CPU model, by vendor, family and model, and whether it runs
 * AVX-512; why: a phrase for pb_cpu_reason. A model with no entry gets "derived". */
static const char *model_config(const pb_cpuinfo_t *ci, int avx512, const char **why) {
    const int amd = strcmp(ci->vendor, "AuthenticAMD") == 0;
    const int intel = strcmp(ci->vendor, "GenuineIntel") == 0;
    if (amd && ci->family == 0x17) return *why = "AMD Zen 1/2", "haswell";
    if (amd && (ci->family == 0x19 || ci->family == 0x1a)) {
        *why = ci->family == 0x19 ? "AMD Zen 3/4" : "AMD Zen 5";
        return avx512 ? "zen4" : "zen3";
    }
    if (intel && ci->family == 6) {
        switch (ci->model) { /* server cores with two 512-bit FMA units (most SKUs) */
        case 0x55: case 0x6a: case 0x6c: case 0x8f: case 0xcf: case 0xad: case 0xae:
            if (avx512) return *why = "Intel Xeon (Skylake-SP to Granite Rapids)", "skylakex";
            break;
        default: break;
        }
    }
    return *why = "no configuration names this model", "derived";
}

static int isa_rank(const char *isa) {
    return strcmp(isa, "avx512") == 0 ? 2 : strcmp(isa, "avx2") == 0 ? 1 : 0;
}
static const char *best_isa(void) {
    return pb_arch_supported("avx512") ? "avx512" : pb_arch_supported("avx2") ? "avx2" : "ref";
}
static const pb_arch_t *isa_table(const char *isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (strcmp(isa, "avx512") == 0) return &pb_arch_avx512;
    if (strcmp(isa, "avx2") == 0) return &pb_arch_avx2;
#endif
    return &pb_arch_ref;
}

/* ---- the built tables: one per configuration, filled once --------------------------------- */
static pb_arch_t g_tables[PB_NCFG];
static int g_runs[PB_NCFG];
static const char *g_isa[PB_NCFG][9]; /* the families' ISAs: float32, float64, vector; the
                                       * float32 and float64 tall products', small-k
                                       * products' and row-major B products' */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Family f32 of table t from table s: the GEMM, its kernels, dense's activations. */
#define PB_TAKE_FAMILY(t, s, SFX)                                                            \
    do {                                                                                    \
        (t)->blk_##SFX = (s)->blk_##SFX;                                                    \
        (t)->ukr_##SFX = (s)->ukr_##SFX;                                                    \
        (t)->ukr_a_##SFX = (s)->ukr_a_##SFX;                                                \
        (t)->gemv_dot_##SFX = (s)->gemv_dot_##SFX;                                          \
        (t)->gemv_axpy_##SFX = (s)->gemv_axpy_##SFX;                                        \
        (t)->pack_t_##SFX = (s)->pack_t_##SFX;                                              \
        (t)->dot_##SFX = (s)->dot_##SFX;                                                    \
        (t)->tt_##SFX = (s)->tt_##SFX;                                                      \
        (t)->atb_##SFX = (s)->atb_##SFX;                                                    \
        (t)->act_fwd_##SFX = (s)->act_fwd_##SFX;                                            \
        (t)->act_bwd_##SFX = (s)->act_bwd_##SFX;                                            \
    } while (0)

static void build(void) {
    const pb_cpuinfo_t *ci = pb_cpuinfo();
    for (int i = 0; i < PB_NCFG; ++i) {
        const pb_cpu_cfg_t *c = &pb_cpu_configs[i];
        const char *best = best_isa();
        const char *f32 = c->isa_f32 ? c->isa_f32 : best, *f64 = c->isa_f64 ? c->isa_f64 : best,
                   *vec = c->isa_vec ? c->isa_vec : best;
        g_isa[i][0] = f32;
        g_isa[i][1] = f64;
        g_isa[i][2] = vec;
        g_runs[i] = pb_arch_supported(f32) && pb_arch_supported(f64) && pb_arch_supported(vec) &&
                    (c->isa_tall_f32 == NULL || pb_arch_supported(c->isa_tall_f32)) &&
                    (c->isa_tall_f64 == NULL || pb_arch_supported(c->isa_tall_f64)) &&
                    (c->isa_small_k_f32 == NULL || pb_arch_supported(c->isa_small_k_f32)) &&
                    (c->isa_small_k_f64 == NULL || pb_arch_supported(c->isa_small_k_f64)) &&
                    (c->isa_rowb_f32 == NULL || pb_arch_supported(c->isa_rowb_f32)) &&
                    (c->isa_rowb_f64 == NULL || pb_arch_supported(c->isa_rowb_f64));
        pb_arch_t *t = &g_tables[i];
        *t = *isa_table(vec);
        PB_TAKE_FAMILY(t, isa_table(f32), f32);
        PB_TAKE_FAMILY(t, isa_table(f64), f64);
        const char *top = isa_rank(f32) > isa_rank(vec) ? f32 : vec;
        t->name = isa_rank(f64) > isa_rank(top) ? isa_table(f64)->name : isa_table(top)->name;
        t->cpu = c->name;
        if (c->model_blocks) {
            const pb_cache_t *k = c->caches;
            const pb_cache_t *l1 = k ? &k[0] : &ci->l1d, *l2 = k ? &k[1] : &ci->l2,
                             *l3 = k ? &k[2] : &ci->l3;
            pb_blocks_model(&t->blk_f32, 4, l1, l2, l3);
            pb_blocks_model(&t->blk_f64, 8, l1, l2, l3);
        }
        if (c->tm_f32 > 0) t->blk_f32.tm = c->tm_f32;
        if (c->tm_f64 > 0) t->blk_f64.tm = c->tm_f64;
        if (c->atb_copy > 0) t->blk_f32.atb_copy = t->blk_f64.atb_copy = c->atb_copy;
        if (c->atb_copy_nt > 0) t->blk_f32.atb_copy_nt = t->blk_f64.atb_copy_nt = c->atb_copy_nt;
        if (c->atb_copy_min > 0)
            t->blk_f32.atb_copy_min = t->blk_f64.atb_copy_min = c->atb_copy_min;
        t->tall_f32 = c->isa_tall_f32 != NULL ? isa_table(c->isa_tall_f32) : NULL;
        t->tall_f64 = c->isa_tall_f64 != NULL ? isa_table(c->isa_tall_f64) : NULL;
        g_isa[i][3] = c->isa_tall_f32 != NULL ? c->isa_tall_f32 : f32;
        g_isa[i][4] = c->isa_tall_f64 != NULL ? c->isa_tall_f64 : f64;
        t->small_k_f32 = c->isa_small_k_f32 != NULL ? isa_table(c->isa_small_k_f32) : NULL;
        t->small_k_f64 = c->isa_small_k_f64 != NULL ? isa_table(c->isa_small_k_f64) : NULL;
        t->blk_f32.small_k = t->small_k_f32 != NULL ? c->small_k_f32 : 0;
        t->blk_f64.small_k = t->small_k_f64 != NULL ? c->small_k_f64 : 0;
        g_isa[i][5] = c->isa_small_k_f32 != NULL ? c->isa_small_k_f32 : f32;
        g_isa[i][6] = c->isa_small_k_f64 != NULL ? c->isa_small_k_f64 : f64;
        t->rowb_f32 = c->isa_rowb_f32 != NULL ? isa_table(c->isa_rowb_f32) : NULL;
        t->rowb_f64 = c->isa_rowb_f64 != NULL ? isa_table(c->isa_rowb_f64) : NULL;
        g_isa[i][7] = c->isa_rowb_f32 != NULL ? c->isa_rowb_f32 : f32;
        g_isa[i][8] = c->isa_rowb_f64 != NULL ? c->isa_rowb_f64 : f64;
    }
}

static const pb_arch_t *table(int i) {
    (void)pthread_once(&g_once, build);
    return &g_tables[i];
}
static int runs(int i) {
    (void)pthread_once(&g_once, build);
    return i >= 0 && i < PB_NCFG && g_runs[i];
}

/* Configuration i, followed down its fallbacks until this CPU runs it and its highest ISA
 * ranks at most cap. */
static int settle(int i, int cap) {
    while (i >= 0 && (!runs(i) || isa_rank(table(i)->name) > cap))
        i = cfg_index(pb_cpu_configs[i].fallback);
    return i >= 0 ? i : 0;
}

/* ---- the choice ------------------------------------------------------------------------------ */
static _Atomic(const pb_arch_t *) g_arch = NULL;
static char g_reason[256];
static pthread_once_t g_reason_once = PTHREAD_ONCE_INIT;

static int detected_index(const char **why) {
    return cfg_index(model_config(pb_cpuinfo(), pb_arch_supported("avx512"), why));
}

static void choose(void) {
    const pb_cpuinfo_t *ci = pb_cpuinfo();
    const char *env_cpu = getenv("PYBACKPROP_CPU"), *env_arch = getenv("PYBACKPROP_ARCH");
    const int pinned = env_cpu != NULL && env_cpu[0] != '\0' ? cfg_index(env_cpu) : -1;
    int i;
    if (pinned >= 0 && runs(pinned)) {
        i = pinned;
        snprintf(g_reason, sizeof g_reason, "PYBACKPROP_CPU=%s", env_cpu);
    } else {
        const char *why;
        const int d = detected_index(&why);
        const int cap = env_arch != NULL && env_arch[0] != '\0' && pb_arch_supported(env_arch)
                            ? isa_rank(env_arch)
                            : 2;
        i = settle(d, cap);
        snprintf(g_reason, sizeof g_reason, "%s family 0x%x model 0x%x: %s -> %s%s%s%s%s",
                 ci->vendor[0] ? ci->vendor : "no cpuid", ci->family, ci->model, why,
                 pb_cpu_configs[d].name, i != d ? ", falls back to " : "",
                 i != d ? pb_cpu_configs[i].name : "",
                 cap < 2 ? " (PYBACKPROP_ARCH=" : "", cap < 2 ? env_arch : "");
        if (cap < 2) strncat(g_reason, ")", sizeof g_reason - strlen(g_reason) - 1);
    }
    atomic_store_explicit(&g_arch, table(i), memory_order_release);
}

const pb_arch_t *pb_arch(void) {
    const pb_arch_t *a = atomic_load_explicit(&g_arch, memory_order_acquire);
    if (a == NULL) {
        (void)pthread_once(&g_reason_once, choose);
        a = atomic_load_explicit(&g_arch, memory_order_acquire);
    }
    return a;
}

const char *pb_get_arch(void) { return pb_arch()->name; }
const char *pb_get_cpu(void) { return pb_arch()->cpu; }
const char *pb_cpu_reason(void) {
    (void)pb_arch();
    return g_reason;
}

int pb_cpu_count(void) { return PB_NCFG; }
const char *pb_cpu_name(int i) { return i >= 0 && i < PB_NCFG ? pb_cpu_configs[i].name : NULL; }
const char *pb_cpu_about(int i) { return i >= 0 && i < PB_NCFG ? pb_cpu_configs[i].about : NULL; }
int pb_cpu_supported(const char *name) { return runs(cfg_index(name)); }

int pb_set_cpu(const char *name) {
    const int i = cfg_index(name);
    if (!runs(i)) return PB_ERR_ARCH;
    (void)pb_arch(); /* the load-time choice and its reason first */
    atomic_store_explicit(&g_arch, table(i), memory_order_release);
    return PB_OK;
}

int pb_set_arch(const char *name) {
    if (name == NULL || !pb_arch_supported(name)) return PB_ERR_ARCH;
    const char *why;
    (void)pb_arch();
    atomic_store_explicit(&g_arch, table(settle(detected_index(&why), isa_rank(name))),
                          memory_order_release);
    return PB_OK;
}

const char *pb_cpu_kernels(const char *name, int family) {
    const int i = name == NULL ? cfg_index(pb_get_cpu()) : cfg_index(name);
    if (i < 0 || family < 0 || family > 8) return NULL;
    (void)pthread_once(&g_once, build);
    return g_isa[i][family];
}

int pb_gemm_blocks(ptrdiff_t *blk, const char *name, int elem_bytes) {
    const int i = name == NULL ? -1 : cfg_index(name);
    if (name != NULL && i < 0) return PB_ERR_ARCH;
    if (elem_bytes != 4 && elem_bytes != 8) return PB_ERR_ARG;
    const pb_arch_t *t = i >= 0 ? table(i) : pb_arch();
    const pb_blocks_t *b = elem_bytes == 4 ? &t->blk_f32 : &t->blk_f64;
    const int has_dot = elem_bytes == 4 ? t->dot_f32 != NULL : t->dot_f64 != NULL;
    const int has_atb = elem_bytes == 4 ? t->atb_f32 != NULL : t->atb_f64 != NULL;
    const ptrdiff_t v[15] = {
        b->mr, b->nr, b->mc, b->kc, b->nc, b->tw, b->tj, b->tm, has_dot ? b->dot_m : 0,
        has_atb ? b->atb_m : 0, (ptrdiff_t)b->tt_msplit, b->atb_copy, b->small_k,
        b->atb_copy_nt, (ptrdiff_t)b->atb_copy_min};
    memcpy(blk, v, sizeof v);
    return PB_OK;
}
