/* act_ld.c -- the pre-activation kinds (gelu, gelu_tanh, silu) and their derivatives in
 * x87 long double (64-bit significand), for the tests that measure the vector forms' error
 * in ulps of float32 and float64: core/activation.h's scalar formulas with W = long double
 * (erfcl, expl), whose own error is a few units of 2^-64, far below the ulps measured.
 */
#include "core/core.h"
#include "core/activation.h"
#include "testing/pb_testing.h"

int pb_test_preact_ld(long double *out, const long double *z, ptrdiff_t n, int act,
                      int derivative) {
    if (n < 0 || !pb_act_takes_z(act)) return PB_ERR_ARG;
    for (ptrdiff_t i = 0; i < n; ++i)
        out[i] = derivative ? pb_dpreact_f64(z[i], act) : pb_preact_f64(z[i], act);
    return PB_OK;
}
