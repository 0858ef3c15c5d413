/* spectral_kernels.c -- the spectral norm's kernel table: each ISA's kernels, indexed by
 * the active configuration's vector ISA (pb_vec_isa in arch/arch.h). Used by
 * ops/spectral_driver.inc.
 */
#include "arch/arch.h"
#include "ops/spectral.h"

static const pb_spectral_kernels_t g_kernels[PB_ISA_COUNT] = {
    [PB_ISA_REF] = {
        .spec_rows_f32 = pb_spec_rows_f32_ref,
        .spec_rows_f64 = pb_spec_rows_f64_ref,
        .spec_dot_f32 = pb_spec_dot_f32_ref,
        .spec_dot_f64 = pb_spec_dot_f64_ref,
        .spec_bwd_f32 = pb_spec_bwd_f32_ref,
        .spec_bwd_f64 = pb_spec_bwd_f64_ref,
        .spec_div_f32 = pb_spec_div_f32_ref,
        .spec_div_f64 = pb_spec_div_f64_ref,
    },
#if defined(__x86_64__) || defined(__i386__)
    [PB_ISA_AVX2] = {
        .spec_rows_f32 = pb_spec_rows_f32_avx2,
        .spec_rows_f64 = pb_spec_rows_f64_avx2,
        .spec_dot_f32 = pb_spec_dot_f32_avx2,
        .spec_dot_f64 = pb_spec_dot_f64_avx2,
        .spec_bwd_f32 = pb_spec_bwd_f32_avx2,
        .spec_bwd_f64 = pb_spec_bwd_f64_avx2,
        .spec_div_f32 = pb_spec_div_f32_avx2,
        .spec_div_f64 = pb_spec_div_f64_avx2,
    },
    [PB_ISA_AVX512] = {
        .spec_rows_f32 = pb_spec_rows_f32_avx512,
        .spec_rows_f64 = pb_spec_rows_f64_avx512,
        .spec_dot_f32 = pb_spec_dot_f32_avx512,
        .spec_dot_f64 = pb_spec_dot_f64_avx512,
        .spec_bwd_f32 = pb_spec_bwd_f32_avx512,
        .spec_bwd_f64 = pb_spec_bwd_f64_avx512,
        .spec_div_f32 = pb_spec_div_f32_avx512,
        .spec_div_f64 = pb_spec_div_f64_avx512,
    },
#endif
};

const pb_spectral_kernels_t *pb_spectral_kernels(const pb_arch_t *arch) {
    return &g_kernels[pb_vec_isa(arch)];
}
