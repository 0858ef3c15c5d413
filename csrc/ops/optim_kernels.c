/* optim_kernels.c -- the optimizers' kernel table: each ISA's kernels, indexed by the
 * active configuration's vector ISA (pb_vec_isa in arch/arch.h). Used by ops/optim.c; a new
 * optimizer adds its entries here, or keeps a table of its own in its own files.
 */
#include "arch/arch.h"
#include "ops/optim.h"

static const pb_optim_kernels_t g_kernels[PB_ISA_COUNT] = {
    [PB_ISA_REF] = {
        .adam_f32 = pb_adam_range_f32_ref,
        .adam_f64 = pb_adam_range_f64_ref,
        .adamax_f32 = pb_adamax_range_f32_ref,
        .adamax_f64 = pb_adamax_range_f64_ref,
    },
#if defined(__x86_64__) || defined(__i386__)
    [PB_ISA_AVX2] = {
        .adam_f32 = pb_adam_range_f32_avx2,
        .adam_f64 = pb_adam_range_f64_avx2,
        .adamax_f32 = pb_adamax_range_f32_avx2,
        .adamax_f64 = pb_adamax_range_f64_avx2,
    },
    [PB_ISA_AVX512] = {
        .adam_f32 = pb_adam_range_f32_avx512,
        .adam_f64 = pb_adam_range_f64_avx512,
        .adamax_f32 = pb_adamax_range_f32_avx512,
        .adamax_f64 = pb_adamax_range_f64_avx512,
    },
#endif
};

const pb_optim_kernels_t *pb_optim_kernels(const pb_arch_t *arch) {
    return &g_kernels[pb_vec_isa(arch)];
}
