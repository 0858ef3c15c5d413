/* probe.c -- machine probes for the benchmarks: peak FMA throughput and memory bandwidth.
 *
 * The bench scripts (bench/) print every kernel figure as a fraction of what THIS machine
 * can do, measured here in the same process, never taken from a data sheet:
 *   - pb_probe_fma_peak_f32/_f64: a register-only loop of independent multiply-adds on the
 *     ISA of the active configuration's GEMM for the dtype (pb_cpu_kernels) with pb_threads() threads, in GFLOP/s.
 *   - pb_probe_bandwidth_copy/_rmw: streaming copy and read-modify-write over large arrays,
 *     in GB/s (STREAM convention: the bytes the program reads and writes, without the
 *     write-allocate traffic a cached store causes).
 * Assumes: x86-64 for the AVX2/AVX-512 loops (each carries its own target attribute, so
 * no -march is needed; any other CPU uses the portable loop). Not a kernel: nothing here
 * is used by the dense/GEMM code, and the figures are upper bounds for the bench tables,
 * not a model of any kernel. Negative results mean "not measured" (bad argument or out of
 * memory). Never prints.
 *   - pb_probe_parallel_region_us: the cost of an empty OpenMP parallel region with
 *     pb_threads() threads, in microseconds (what every threaded kernel call pays once).
 *   - pb_probe_ftz_daz / pb_probe_set_ftz_daz: for the tests of the flush mode, the FTZ and
 *     DAZ bits that the calling thread and an OpenMP team hold between kernels (a region
 *     without PB_FP_SCOPE, which would change them), and a caller's own flush to run under.
 */
#define _POSIX_C_SOURCE 200809L

#include <string.h>
#include <time.h>

#include "core/core.h"
#include "testing/pb_testing.h"

#if defined(__x86_64__) || defined(__i386__)
#define PB_PROBE_X86 1
#include <immintrin.h>
#else
#define PB_PROBE_X86 0
#endif

/* OpenMP pragmas only when OpenMP is on (a bare #pragma omp warns under -Wall without
 * -fopenmp). */
#if PB_OMP
#define PB_PROBE_PRAGMA(x) _Pragma(#x)
#else
#define PB_PROBE_PRAGMA(x)
#endif

/* Results are stored here so that the compiler cannot drop the loops that compute them. */
static volatile double pb_probe_sink;

static double pb_probe_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- peak FMA throughput -------------------------------------------------------------------
 * One loop per ISA and dtype: `iters` iterations of NACC independent accumulator vectors,
 * each updated acc = acc * a + c (a fused multiply-add on AVX2/AVX-512; a multiply and an
 * add in the portable loop, which is what plain C compiled without -ffp-contract gives).
 * NACC covers the FMA latency (4 cycles) times the FMA ports (2) with room to spare and
 * still fits the register file with a and c: 16 of 32 zmm, 12 of 16 ymm. With 0 < a < 1
 * the accumulators converge to c / (1 - a) and stay normal (no denormal slow-down).
 * Each loop returns the sum of its accumulators, for the sink. Flops per iteration:
 * 2 * NACC * lanes.
 */
#define PB_PROBE_CHUNK 4096 /* iterations between clock reads: ~10-30 us of work */

typedef double (*pb_probe_fma_fn)(long iters, double a, double c);

typedef struct {
    pb_probe_fma_fn fn;
    double flops_per_iter;
} pb_probe_fma_t;

#if PB_PROBE_X86
#define PB_PROBE_NACC_AVX512 16
#define PB_PROBE_NACC_AVX2 12

__attribute__((target("avx512f,fma"))) static double pb_probe_fma_f32_avx512(long iters,
                                                                            double a,
                                                                            double c) {
    const __m512 va = _mm512_set1_ps((float)a), vc = _mm512_set1_ps((float)c);
    __m512 acc[PB_PROBE_NACC_AVX512];
    for (int j = 0; j < PB_PROBE_NACC_AVX512; ++j) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_AVX512; ++j) acc[j] = _mm512_fmadd_ps(acc[j], va, vc);
    for (int j = 1; j < PB_PROBE_NACC_AVX512; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
    return (double)_mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx512f,fma"))) static double pb_probe_fma_f64_avx512(long iters,
                                                                            double a,
                                                                            double c) {
    const __m512d va = _mm512_set1_pd(a), vc = _mm512_set1_pd(c);
    __m512d acc[PB_PROBE_NACC_AVX512];
    for (int j = 0; j < PB_PROBE_NACC_AVX512; ++j) acc[j] = _mm512_set1_pd((double)j);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_AVX512; ++j) acc[j] = _mm512_fmadd_pd(acc[j], va, vc);
    for (int j = 1; j < PB_PROBE_NACC_AVX512; ++j) acc[0] = _mm512_add_pd(acc[0], acc[j]);
    return _mm512_reduce_add_pd(acc[0]);
}

__attribute__((target("avx2,fma"))) static double pb_probe_fma_f32_avx2(long iters, double a,
                                                                        double c) {
    const __m256 va = _mm256_set1_ps((float)a), vc = _mm256_set1_ps((float)c);
    __m256 acc[PB_PROBE_NACC_AVX2];
    for (int j = 0; j < PB_PROBE_NACC_AVX2; ++j) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_AVX2; ++j) acc[j] = _mm256_fmadd_ps(acc[j], va, vc);
    for (int j = 1; j < PB_PROBE_NACC_AVX2; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[0]);
    double s = 0.0;
    for (int l = 0; l < 8; ++l) s += (double)lanes[l];
    return s;
}

__attribute__((target("avx2,fma"))) static double pb_probe_fma_f64_avx2(long iters, double a,
                                                                        double c) {
    const __m256d va = _mm256_set1_pd(a), vc = _mm256_set1_pd(c);
    __m256d acc[PB_PROBE_NACC_AVX2];
    for (int j = 0; j < PB_PROBE_NACC_AVX2; ++j) acc[j] = _mm256_set1_pd((double)j);
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_AVX2; ++j) acc[j] = _mm256_fmadd_pd(acc[j], va, vc);
    for (int j = 1; j < PB_PROBE_NACC_AVX2; ++j) acc[0] = _mm256_add_pd(acc[0], acc[j]);
    double lanes[4];
    _mm256_storeu_pd(lanes, acc[0]);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif /* PB_PROBE_X86 */

/* Portable loop: what the compiler makes of plain C for this build's baseline ISA (on
 * x86-64, SSE2 vectors of the accumulator array, multiply and add separately, so a chain's
 * latency is the multiply's plus the add's). 48 floats or 24 doubles: 12 xmm registers. */
#define PB_PROBE_NACC_REF_F32 48
#define PB_PROBE_NACC_REF_F64 24

static double pb_probe_fma_f32_ref(long iters, double a, double c) {
    const float fa = (float)a, fc = (float)c;
    float acc[PB_PROBE_NACC_REF_F32];
    for (int j = 0; j < PB_PROBE_NACC_REF_F32; ++j) acc[j] = (float)j;
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_REF_F32; ++j) acc[j] = acc[j] * fa + fc;
    double s = 0.0;
    for (int j = 0; j < PB_PROBE_NACC_REF_F32; ++j) s += (double)acc[j];
    return s;
}

static double pb_probe_fma_f64_ref(long iters, double a, double c) {
    double acc[PB_PROBE_NACC_REF_F64];
    for (int j = 0; j < PB_PROBE_NACC_REF_F64; ++j) acc[j] = (double)j;
    for (long i = 0; i < iters; ++i)
        for (int j = 0; j < PB_PROBE_NACC_REF_F64; ++j) acc[j] = acc[j] * a + c;
    double s = 0.0;
    for (int j = 0; j < PB_PROBE_NACC_REF_F64; ++j) s += acc[j];
    return s;
}

/* The loop of the ISA whose GEMM the active configuration runs for the dtype (is_f64). */
static pb_probe_fma_t pb_probe_fma_select(int is_f64) {
    const char *arch = pb_cpu_kernels(NULL, is_f64);
    pb_probe_fma_t r;
#if PB_PROBE_X86
    if (arch != NULL && strcmp(arch, "avx512") == 0) {
        r.fn = is_f64 ? pb_probe_fma_f64_avx512 : pb_probe_fma_f32_avx512;
        r.flops_per_iter = 2.0 * PB_PROBE_NACC_AVX512 * (is_f64 ? 8 : 16);
        return r;
    }
    if (arch != NULL && strcmp(arch, "avx2") == 0) {
        r.fn = is_f64 ? pb_probe_fma_f64_avx2 : pb_probe_fma_f32_avx2;
        r.flops_per_iter = 2.0 * PB_PROBE_NACC_AVX2 * (is_f64 ? 4 : 8);
        return r;
    }
#else
    (void)arch;
#endif
    r.fn = is_f64 ? pb_probe_fma_f64_ref : pb_probe_fma_f32_ref;
    r.flops_per_iter = 2.0 * (is_f64 ? PB_PROBE_NACC_REF_F64 : PB_PROBE_NACC_REF_F32);
    return r;
}

/* Every thread runs the loop in chunks: first a warm-up (lets the core settle at its
 * vector clock), then, after a barrier, until `seconds` after a common start t0. The rate
 * is all threads' flops over the wall time from t0 to the end of the slowest thread. */
static double pb_probe_fma_peak(double seconds, int is_f64) {
    if (!(seconds > 0.0)) seconds = 0.2;
    const pb_probe_fma_t k = pb_probe_fma_select(is_f64);
    const double warmup = seconds < 0.5 ? 0.2 * seconds : 0.1;
    /* Operands the compiler cannot see: the loop cannot be folded or hoisted. */
    pb_probe_sink = 0.999999;
    const double a = pb_probe_sink, c = 1e-6 * a;
    double t0 = 0.0, sink = 0.0;
    long chunks = 0;
    const int nt = PB_OMP ? pb_threads() : 1;
    (void)nt;
    PB_PROBE_PRAGMA(omp parallel num_threads(nt) reduction(+ : sink, chunks))
    {
        const double w0 = pb_probe_now();
        do {
            sink += k.fn(PB_PROBE_CHUNK, a, c);
        } while (pb_probe_now() - w0 < warmup);
        PB_PROBE_PRAGMA(omp barrier)
        PB_PROBE_PRAGMA(omp single)
        t0 = pb_probe_now();
        /* (implicit barrier after single: every thread sees t0) */
        do {
            sink += k.fn(PB_PROBE_CHUNK, a, c);
            ++chunks;
        } while (pb_probe_now() - t0 < seconds);
    }
    const double t1 = pb_probe_now();
    pb_probe_sink = sink;
    if (!(t1 > t0)) return -1.0;
    return (double)chunks * PB_PROBE_CHUNK * k.flops_per_iter / (t1 - t0) * 1e-9;
}

double pb_probe_fma_peak_f32(double seconds) { return pb_probe_fma_peak(seconds, 0); }
double pb_probe_fma_peak_f64(double seconds) { return pb_probe_fma_peak(seconds, 1); }

/* ---- streaming bandwidth -------------------------------------------------------------------
 * Two float arrays a, b of n_bytes each (rounded down to whole floats), first touched in
 * parallel with the same static partition as the timed loops (pages land on the NUMA node
 * of the thread that streams them). Best of `repeats` timed passes (repeats < 1 counts as
 * 1); n_bytes < 64 or an allocation failure gives -1.0.
 *   copy: b[i] = a[i]              bytes = 2 * n_bytes (read a, write b)
 *   rmw:  a[i] = a[i] + s * b[i]   bytes = 3 * n_bytes (read a, read b, write a)
 */
static double pb_probe_bandwidth(ptrdiff_t n_bytes, int repeats, int rmw) {
    if (n_bytes < 64) return -1.0;
    if (repeats < 1) repeats = 1;
    const ptrdiff_t n = n_bytes / (ptrdiff_t)sizeof(float);
    float *a = (float *)pb_alloc((size_t)n * sizeof(float));
    float *b = (float *)pb_alloc((size_t)n * sizeof(float));
    if (a == NULL || b == NULL) {
        if (a != NULL) pb_free(a);
        if (b != NULL) pb_free(b);
        return -1.0;
    }
    const int nt = PB_OMP ? pb_threads() : 1;
    (void)nt;
    PB_PROBE_PRAGMA(omp parallel for schedule(static) num_threads(nt))
    for (ptrdiff_t i = 0; i < n; ++i) {
        a[i] = 1.0f;
        b[i] = 2.0f;
    }
    pb_probe_sink = 1e-3;
    const float s = (float)pb_probe_sink;
    double best = 0.0;
    for (int r = 0; r < repeats; ++r) {
        const double t0 = pb_probe_now();
        if (rmw) {
            PB_PROBE_PRAGMA(omp parallel for schedule(static) num_threads(nt))
            for (ptrdiff_t i = 0; i < n; ++i) a[i] = a[i] + s * b[i];
        } else {
            PB_PROBE_PRAGMA(omp parallel for schedule(static) num_threads(nt))
            for (ptrdiff_t i = 0; i < n; ++i) b[i] = a[i];
        }
        const double dt = pb_probe_now() - t0;
        if (dt > 0.0 && (best == 0.0 || dt < best)) best = dt;
    }
    pb_probe_sink = (double)a[n / 2] + (double)b[n - 1];
    pb_free(a);
    pb_free(b);
    if (!(best > 0.0)) return -1.0;
    const double bytes = (double)n * sizeof(float) * (rmw ? 3.0 : 2.0);
    return bytes / best * 1e-9;
}

double pb_probe_bandwidth_copy(ptrdiff_t n_bytes, int repeats) {
    return pb_probe_bandwidth(n_bytes, repeats, 0);
}

double pb_probe_bandwidth_rmw(ptrdiff_t n_bytes, int repeats) {
    return pb_probe_bandwidth(n_bytes, repeats, 1);
}

/* ---- cost of a parallel region ----------------------------------------------------------
 * Batches of PB_PROBE_REGIONS empty regions back to back (the team's threads stay awake
 * between them, as in a loop of kernel calls); the best batch's mean, in us. */
#define PB_PROBE_REGIONS 1000
double pb_probe_parallel_region_us(int repeats) {
    if (repeats < 1) return -1.0;
    const int nt = pb_threads();
    if (!PB_OMP || nt < 2) return 0.0;
    double best = 0.0;
    long total = 0;
    for (int r = 0; r < repeats; ++r) {
        long count = 0;
        const double t0 = pb_probe_now();
        for (int i = 0; i < PB_PROBE_REGIONS; ++i) {
            PB_PROBE_PRAGMA(omp parallel num_threads(nt) reduction(+ : count))
            count += 1;
        }
        const double dt = pb_probe_now() - t0;
        total += count;
        if (dt > 0.0 && (best == 0.0 || dt < best)) best = dt;
    }
    pb_probe_sink = (double)total;
    return best > 0.0 ? best / PB_PROBE_REGIONS * 1e6 : -1.0;
}

/* ---- floating-point environment (tests) -------------------------------------------------- */
unsigned pb_probe_ftz_daz(void) {
    unsigned bits = 0;
#if PB_HAVE_MXCSR
    const int nt = pb_threads();
    bits = _mm_getcsr() & PB_MXCSR_FTZ_DAZ;
    PB_PROBE_PRAGMA(omp parallel num_threads(nt) reduction(| : bits))
    bits |= _mm_getcsr() & PB_MXCSR_FTZ_DAZ;
#endif
    return bits;
}

int pb_probe_set_ftz_daz(unsigned bits) {
#if PB_HAVE_MXCSR
    bits &= PB_MXCSR_FTZ_DAZ;
    if ((bits & 0x40u) && !pb_flush_supported()) return -1;
    const unsigned old = _mm_getcsr();
    _mm_setcsr((old & ~PB_MXCSR_FTZ_DAZ) | bits);
    return (int)(old & PB_MXCSR_FTZ_DAZ);
#else
    (void)bits;
    return -1;
#endif
}
