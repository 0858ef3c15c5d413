/* arch.h -- the kernel table of one ISA path or CPU configuration (pb_arch_t), the block
 * sizes and path crossovers of the GEMM (pb_blocks_t), and what cpuid says about the CPU.
 * The ISA tables are in arch/isa_tables.c, the configurations built from them in
 * arch/cpu_configs.c, the CPU's description in arch/cpu_detect.c.
 */
#ifndef PB_ARCH_H
#define PB_ARCH_H
#include "core/core.h"
#include "gemm/gemm.h"

/* Block sizes of one ISA path: register tile MR x NR, cache blocks MC (A block rows, L2),
 * KC (panel depth, B micro-panel in L1), NC (B panel columns, L3). MC is a multiple of MR,
 * NC of NR. */
typedef struct {
    int mr, nr;
    ptrdiff_t mc, kc, nc;
    int tw, tj; /* transposed-tile kernel: A^T panel width, rows of B per tile */
    int tm;     /* ... and the largest m its rule (pb_use_tt_) takes */
    int atb_copy; /* A^T B path: copy blocks of B whose row stride (bytes) is a multiple of
                   * this, which alias in L1 (0: never; pb_atb_ldq_ in gemm/driver_atb.inc), */
    int atb_copy_nt; /* ... with at most this many threads at work: the GEMM's times the
                      * region's it is called from, as dw's beside dx's (0: any), */
    double atb_copy_min; /* ... and B (k rows of its stride) at least this many bytes */
    /* Path crossovers (gemm_driver.inc): the largest m of the dot-product kernel's rule
     * (pb_use_dot_; taller A: pb_use_dot_tall_) and of the A^T B kernel's (pb_use_atb_), and
     * the most bytes of B for which two threads split the transposed-tile path by rows
     * (pb_tt_msplit_). */
    int dot_m, atb_m;
    double tt_msplit;
    /* The largest k of the products this table would pack that run on the small-k table
     * instead (pb_gemm_table_; 0: none, the ISA tables' value): a CPU configuration's. */
    int small_k;
} pb_blocks_t;
/* The crossovers every ISA table starts from (a CPU configuration may override them). */
#define PB_XOVER_DEFAULT .dot_m = 64, .atb_m = 64, .tt_msplit = 262144.0

/* The kernel table of one ISA path or CPU configuration. arch/isa_tables.c starts every
 * entry from the _ref kernels and overrides what the ISA has; arch/cpu_configs.c builds a
 * configuration's table from the ISA tables of its families; exactly one table is active at
 * a time. */
typedef struct pb_arch_s {
    const char *name; /* the ISA: "ref", "avx2", "avx512" (a configuration's highest) */
    const char *cpu;  /* the CPU configuration (cpu_configs.c); NULL in an ISA's own table */
    pb_blocks_t blk_f32, blk_f64;
    pb_ukr_f32_t ukr_f32;
    pb_ukr_f64_t ukr_f64;
    pb_ukr_a_f32_t ukr_a_f32;
    pb_ukr_a_f64_t ukr_a_f64;
    pb_gemv_dot_f32_t gemv_dot_f32;
    pb_gemv_dot_f64_t gemv_dot_f64;
    pb_gemv_axpy_f32_t gemv_axpy_f32;
    pb_gemv_axpy_f64_t gemv_axpy_f64;
    pb_pack_t_f32_t pack_t_f32;
    pb_pack_t_f64_t pack_t_f64;
    pb_gemm_dot_f32_t dot_f32;
    pb_gemm_dot_f64_t dot_f64;
    pb_gemm_tt_f32_t tt_f32;
    pb_gemm_tt_f64_t tt_f64;
    pb_gemm_atb_f32_t atb_f32;
    pb_gemm_atb_f64_t atb_f64;
    pb_act_fwd_f32_t act_fwd_f32;
    pb_act_fwd_f64_t act_fwd_f64;
    pb_act_bwd_f32_t act_bwd_f32;
    pb_act_bwd_f64_t act_bwd_f64;
    /* The ISA of the vector kernels (PB_ISA_*): the operations whose kernels come from the
     * vector family (losses, spectral norm, optimizers) keep their own per-ISA tables and
     * index them with it (pb_vec_isa), so that a new operation edits no table here. */
    int vec_isa;
    /* The table that runs the tall rule's products (pb_gemm_table_ in gemm/driver_paths.inc:
     * few columns on a large batch, the forward's layout), per dtype: a CPU configuration's
     * choice where another ISA's kernels win there; NULL: this table. */
    const struct pb_arch_s *tall_f32, *tall_f64;
    /* The table that runs the products this one would pack with k <= blk.small_k (shallow
     * products: a backward's dx with few outputs, dw on a small batch), per dtype; NULL: this
     * table. */
    const struct pb_arch_s *small_k_f32, *small_k_f64;
    /* The table that runs the products this one would pack whose B is row-major (the
     * backward's dx = dz @ w and dw = dz^T x; the forward's B, w^T, is column-major) and that
     * are not shallow, per dtype; NULL: this table. */
    const struct pb_arch_s *rowb_f32, *rowb_f64;
} pb_arch_t;

/* The active table (arch/cpu_configs.c). A public kernel reads it once, at its start, and
 * hands that table to everything it calls (the GEMM, the per-op kernel look-ups), so that
 * a set_arch from another thread during the call cannot mix two paths in one result. */
const pb_arch_t *pb_arch(void);

/* The ISAs, as indices of an operation's own kernel table. */
enum { PB_ISA_REF = 0, PB_ISA_AVX2 = 1, PB_ISA_AVX512 = 2, PB_ISA_COUNT = 3 };
/* The ISA of the active configuration's vector kernels: the index into an operation's own
 * per-ISA table (ops/losses_kernels.c, ops/spectral_kernels.c, ops/optim_kernels.c). */
static inline int pb_vec_isa(const pb_arch_t *arch) { return arch->vec_isa; }

/* The per-ISA tables, defined together in arch/isa_tables.c. */
extern const pb_arch_t pb_arch_ref;
extern const pb_arch_t pb_arch_avx2;
extern const pb_arch_t pb_arch_avx512;

/* ---- the CPU (cpu_detect.c) ----------------------------------------------------------------
 * One cache level as cpuid describes it; size == 0 where it is unknown. */
typedef struct {
    ptrdiff_t size;
    int ways, line, sets;
} pb_cache_t;
typedef struct {
    char vendor[13];  /* "GenuineIntel", "AuthenticAMD", ...; "" without cpuid */
    int family, model, stepping; /* the display family and model (base + extended) */
    pb_cache_t l1d, l2, l3;
    int caches_known; /* 1 if the caches came from cpuid, 0 if assumed (pb_cache_assumed) */
} pb_cpuinfo_t;
const pb_cpuinfo_t *pb_cpuinfo(void); /* read once */
/* Block sizes mc, kc, nc of a register tile mr x nr (already in *b) for elements of elem
 * bytes and these caches, by the analytical model of Low et al. (cpu_detect.c). */
void pb_blocks_model(pb_blocks_t *b, int elem, const pb_cache_t *l1d, const pb_cache_t *l2,
                     const pb_cache_t *l3);
#endif /* PB_ARCH_H */
