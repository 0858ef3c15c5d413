/* losses_kernels.c -- the losses' kernel table: each ISA's kernels, indexed by the
 * active configuration's vector ISA (pb_vec_isa in arch/arch.h). Used by ops/losses.c.
 */
#include "arch/arch.h"
#include "ops/losses.h"

static const pb_losses_kernels_t g_kernels[PB_ISA_COUNT] = {
    [PB_ISA_REF] = {
        .xent_row_f32 = pb_xent_row_f32_ref,
        .xent_row_f64 = pb_xent_row_f64_ref,
        .bce_block_f32 = pb_bce_block_f32_ref,
        .bce_block_f64 = pb_bce_block_f64_ref,
        .mse_block_f32 = pb_mse_block_f32_ref,
        .mse_block_f64 = pb_mse_block_f64_ref,
    },
#if defined(__x86_64__) || defined(__i386__)
    [PB_ISA_AVX2] = {
        .xent_row_f32 = pb_xent_row_f32_avx2,
        .xent_row_f64 = pb_xent_row_f64_avx2,
        .bce_block_f32 = pb_bce_block_f32_avx2,
        .bce_block_f64 = pb_bce_block_f64_avx2,
        .mse_block_f32 = pb_mse_block_f32_avx2,
        .mse_block_f64 = pb_mse_block_f64_avx2,
    },
    [PB_ISA_AVX512] = {
        .xent_row_f32 = pb_xent_row_f32_avx512,
        .xent_row_f64 = pb_xent_row_f64_avx512,
        .bce_block_f32 = pb_bce_block_f32_avx512,
        .bce_block_f64 = pb_bce_block_f64_avx512,
        .mse_block_f32 = pb_mse_block_f32_avx512,
        .mse_block_f64 = pb_mse_block_f64_avx512,
    },
#endif
};

const pb_losses_kernels_t *pb_losses_kernels(const pb_arch_t *arch) {
    return &g_kernels[pb_vec_isa(arch)];
}
