/* pb_testing.h -- hooks for tests and benchmarks, outside the public contract.
 *
 * Work stealing's test mode (checks that no result depends on which thread computed it),
 * the machine probes that the bench scripts divide by (peak FMA rate, bandwidth, the cost
 * of a parallel region) and the floating-point environment probes of the flush-mode tests.
 * Defined in testing/ (probe.c, steal_test.c, act_ld.c). The cffi build script feeds this file to
 * ffi.cdef() after pybackprop.h, with the preprocessor lines dropped: keep it cdef-safe
 * (plain prototypes, no macros, no inline code).
 */
#ifndef PB_TESTING_H
#define PB_TESTING_H
#include <stddef.h>

/* Work stealing, for tests: the threads of a multi-threaded GEMM each run their static
 * share of the work and then take what is left of the others' (docs/gemm.md). With on != 0,
 * thread 0 leaves its whole share to the other threads (so that tests can check that no
 * result depends on which thread computed it); 0 restores normal running. Returns the units
 * of work taken from another thread's share since the previous call. Process-wide: while
 * on, it applies to every GEMM, whichever thread calls it (their results stay right). */
long pb_steal_test(int on);

/* ---- machine probes (bench/) ---------------------------------------------------------------
 * Peak FMA throughput of the current SIMD path with the current thread count, measured by a
 * register-only loop, in GFLOP/s; and streaming bandwidth in GB/s of a copy (read+write)
 * and of a read-modify-write triad over n elements. */
double pb_probe_fma_peak_f32(double seconds);
double pb_probe_fma_peak_f64(double seconds);
double pb_probe_bandwidth_copy(ptrdiff_t n_bytes, int repeats);
double pb_probe_bandwidth_rmw(ptrdiff_t n_bytes, int repeats);
/* The cost in us of an empty OpenMP parallel region with the current thread count (best of
 * `repeats` batches of 1000); 0 with one thread or without OpenMP, < 0 for repeats < 1. */
double pb_probe_parallel_region_us(int repeats);
/* Floating-point environment probes (tests/): the MXCSR FTZ|DAZ bits (0x8040) set in the
 * calling thread or in any thread of an OpenMP region of the current thread count, as they
 * stand between kernels; and the calling thread's bits set to bits & 0x8040 (a caller's own
 * flush, as torch.set_flush_denormal(True) leaves it), returning the previous bits, or -1
 * (nothing changed) without MXCSR or for DAZ on a CPU without it. */
unsigned pb_probe_ftz_daz(void);
int pb_probe_set_ftz_daz(unsigned bits);

/* The pre-activation kinds in long double (act_ld.c), for the ulp measurements of the
 * vector forms: out[i] = act(z[i]), or act'(z[i]) with derivative != 0; PB_ERR_ARG unless
 * act is gelu, gelu_tanh or silu and n >= 0. */
int pb_test_preact_ld(long double *out, const long double *z, ptrdiff_t n, int act,
                      int derivative);

#endif /* PB_TESTING_H */
