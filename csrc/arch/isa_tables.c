/* isa_tables.c -- the kernel table of each ISA path, and which ISAs this CPU runs.
 *
 * An ISA table names that instruction set's kernels and the block sizes they were first
 * tuned with; a CPU configuration (arch/cpu_configs.c) takes each kernel family from one of
 * these tables and may set its own block sizes.
 */
#include <string.h>

#include "arch/arch.h"
#include "gemm/gemm_kernels.h"

/* ---- the kernel tables: every ISA path in one place ---------------------------------------
 * Block sizes: MC*KC the A block in L2, NC*KC the B panel in L3; KC keeps the B micro-panel
 * in L1 on ref, while AVX2 and AVX-512 take deep panels so that C is swept once per 1024
 * (512) of k (docs/gemm.md). The AVX2 table's sizes are the zen3 configuration's, the
 * AVX-512 table's the skylakex configuration's (docs/cpus.md says where each was measured). */
/* The entries whose kernels are named by their ISA alone (the micro-kernels carry their
 * tile in the name and are listed per table). The vector operations (losses, spectral norm,
 * optimizers) keep their own tables, indexed by vec_isa (ops/<op>_kernels.c). */
#define PB_ISA_ENTRIES(ISA)                                                                  \
    .gemv_dot_f32 = pb_gemv_dot_f32_##ISA, .gemv_dot_f64 = pb_gemv_dot_f64_##ISA,            \
    .gemv_axpy_f32 = pb_gemv_axpy_f32_##ISA, .gemv_axpy_f64 = pb_gemv_axpy_f64_##ISA

const pb_arch_t pb_arch_ref = {
    .name = "ref",
    .vec_isa = PB_ISA_REF,
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
    .vec_isa = PB_ISA_AVX2,
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
    .vec_isa = PB_ISA_AVX512,
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
