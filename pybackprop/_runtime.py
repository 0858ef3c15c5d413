"""Run-time settings of the C core: threads, CPU configuration and SIMD path, flush of
subnormals, build facts."""
import os

import numpy as np

from ._core import ffi, lib
from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "set_arch", "get_arch", "available_archs",
           "set_cpu", "get_cpu", "available_cpus", "cpu_info",
           "set_flush_denormal", "get_flush_denormal", "build_info"]

ARCHS = ("ref", "avx2", "avx512")
# The most threads a kernel may be asked to use (set_num_threads, PYBACKPROP_NUM_THREADS).
# A count OpenMP cannot create ends the process inside libgomp, with no Python exception;
# 1024 is above the core count of any machine these kernels are tuned for.
MAX_THREADS = 1024
# The accepted values of PYBACKPROP_FLUSH_DENORMAL (empty: unset); the C core reads it.
FLUSH_VALUES = ("0", "1")


def set_num_threads(n):
    """Use ``n`` threads in every kernel, an int in [1, MAX_THREADS] (1024); ``None``
    restores the default. Results do not depend on it. Anything else raises ValueError.

    The default, read at every call: ``PYBACKPROP_NUM_THREADS`` if set, else OpenMP's own
    setting for the calling thread -- ``OMP_NUM_THREADS``, the CPUs the process may run on,
    or what ``omp_set_num_threads`` last set, so ``threadpoolctl.threadpool_limits(n)``
    limits pybackprop as it limits other OpenMP libraries. In a process forked after a
    kernel ran on 2+ threads (``os.fork``, a "fork" multiprocessing pool), every kernel runs
    on one thread: OpenMP's thread pool does not survive fork."""
    if n is None:
        _env_threads()  # the C core re-reads the variable: it must still be valid
        lib.pb_set_num_threads(0)
        return
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be an int in [1, {MAX_THREADS}] or None, got {n!r}")
    lib.pb_set_num_threads(n)


def get_num_threads():
    """Threads the next kernel called from this thread may use (see
    :func:`set_num_threads`; always 1 in a build without OpenMP)."""
    return lib.pb_get_num_threads()


def available_archs():
    """The instruction sets this CPU can run, portable first: a subset of
    ("ref", "avx2", "avx512")."""
    return [a for a in ARCHS if lib.pb_arch_supported(a.encode())]


def get_arch():
    """The highest instruction set of the active CPU configuration (see :func:`get_cpu`)."""
    return ffi.string(lib.pb_get_arch()).decode()


def set_arch(name):
    """Cap the instruction set (for tests and benchmarks): the configuration of this CPU
    model, or the one it falls back to, whose kernels use at most ``name``, one of
    ``available_archs()``. ``set_cpu`` pins a configuration by name instead."""
    if not isinstance(name, str) or lib.pb_set_arch(name.encode()) != 0:
        raise ValueError(f"arch must be one of {available_archs()} on this CPU, got {name!r}")


def _cpu_names():
    return [ffi.string(lib.pb_cpu_name(i)).decode() for i in range(lib.pb_cpu_count())]


def available_cpus():
    """The CPU configurations this CPU can run, portable first (docs/cpus.md)."""
    return [n for n in _cpu_names() if lib.pb_cpu_supported(n.encode())]


def get_cpu():
    """The active CPU configuration: chosen at import from the detected CPU model (or
    ``PYBACKPROP_CPU``), changed by :func:`set_cpu` and :func:`set_arch`."""
    return ffi.string(lib.pb_get_cpu()).decode()


def set_cpu(name):
    """Run the configuration ``name``, one of ``available_cpus()`` (for tests, benchmarks
    and reproducibility; ``PYBACKPROP_CPU`` does the same at import)."""
    if not isinstance(name, str) or lib.pb_set_cpu(name.encode()) != 0:
        raise ValueError(f"cpu must be one of {available_cpus()} on this CPU, got {name!r}")


# The kernel families of pb_cpu_kernels, by index: cpu_info()["kernels"]'s keys.
FAMILIES = ("float32 gemm", "float64 gemm", "vector", "float32 tall", "float64 tall",
            "float32 small k", "float64 small k", "float32 row-major B", "float64 row-major B")


def _kernels(name):
    out = {}
    for fam, what in enumerate(FAMILIES):
        isa = lib.pb_cpu_kernels(name.encode(), fam)
        out[what] = ffi.string(isa).decode()
    return out


def cpu_info():
    """What this CPU is and which configuration runs on it: a dict with ``vendor``,
    ``family``, ``model``, ``stepping`` (cpuid), ``caches`` (``L1d``, ``L2``, ``L3``: bytes,
    ways, line bytes, sets, and whether cpuid gave them), ``cpu`` (the active
    configuration), ``reason`` (why it was chosen at import), ``kernels`` (the ISA of each
    kernel family in it) and ``configurations`` (name -> what it is for, and whether this
    CPU runs it)."""
    vendor = ffi.new("char[13]")
    fms = ffi.new("int[4]")
    caches = ffi.new("ptrdiff_t[12]")
    lib.pb_cpu_detect(vendor, fms, caches)
    levels = {}
    for i, lv in enumerate(("L1d", "L2", "L3")):
        size, ways, line, sets = (int(caches[4 * i + j]) for j in range(4))
        levels[lv] = {"bytes": size, "ways": ways, "line": line, "sets": sets}
    cpu = get_cpu()
    return {
        "vendor": ffi.string(vendor).decode(),
        "family": fms[0], "model": fms[1], "stepping": fms[2],
        "caches": levels, "caches_from_cpuid": bool(fms[3]),
        "cpu": cpu, "reason": ffi.string(lib.pb_cpu_reason()).decode(),
        "kernels": _kernels(cpu),
        "configurations": {
            n: {"about": ffi.string(lib.pb_cpu_about(i)).decode(),
                "runs_here": bool(lib.pb_cpu_supported(n.encode())),
                "kernels": _kernels(n)}
            for i, n in enumerate(_cpu_names())},
    }


def _env_threads():
    """PYBACKPROP_NUM_THREADS, if set and not empty: decimal digits only, a value in
    [1, MAX_THREADS]. ValueError naming the variable otherwise."""
    value = os.environ.get("PYBACKPROP_NUM_THREADS", "")
    if value and not (value.isascii() and value.isdigit()
                      and 1 <= int(value) <= MAX_THREADS):
        raise ValueError(f"PYBACKPROP_NUM_THREADS={value!r}: expected a whole number of "
                         f"threads in [1, {MAX_THREADS}] (decimal digits only), or unset")


def _check_environment():
    """Every setting in the environment is parsed strictly, and a value that would be
    ignored or misread is an error naming the variable and what it accepts (read by the C
    core at its first call): PYBACKPROP_CPU and PYBACKPROP_ARCH must name a configuration or
    instruction set this CPU runs, PYBACKPROP_NUM_THREADS a thread count in
    [1, MAX_THREADS], PYBACKPROP_FLUSH_DENORMAL "0" or "1". An empty value is unset."""
    cpu = os.environ.get("PYBACKPROP_CPU", "")
    if cpu and cpu not in available_cpus():
        raise ValueError(f"PYBACKPROP_CPU={cpu!r}: not a configuration this CPU runs; "
                         f"choose from {available_cpus()} (all: {_cpu_names()})")
    arch = os.environ.get("PYBACKPROP_ARCH", "")
    if arch and arch not in available_archs():
        raise ValueError(f"PYBACKPROP_ARCH={arch!r}: not an instruction set this CPU runs; "
                         f"choose from {available_archs()}")
    _env_threads()
    flush = os.environ.get("PYBACKPROP_FLUSH_DENORMAL", "")
    if flush and flush not in FLUSH_VALUES:
        raise ValueError(f"PYBACKPROP_FLUSH_DENORMAL={flush!r}: expected '1' (flush "
                         "subnormals to zero in the kernels) or '0' (exact, the default)")


def set_flush_denormal(mode):
    """Flush subnormal numbers to zero inside pybackprop's kernels (``mode=True``), or compute
    them exactly (``False``, the default, even when the calling thread itself flushes, as
    after ``torch.set_flush_denormal(True)``). Named after ``torch.set_flush_denormal``.

    On, every kernel runs with the FTZ and DAZ bits of MXCSR set in each thread that does its
    work (the calling thread and every OpenMP thread): a subnormal input reads as a zero of
    its sign and a result below ``np.finfo(dtype).tiny`` becomes 0, so a GEMM on subnormal
    data runs at full speed on CPUs that take a microcode assist per subnormal operation
    (~170x slower on an Intel Xeon; AMD Zen 4 needs none: SECURITY.md). Results then differ
    from the reference (``pybackprop.reference``, exact IEEE arithmetic) by less than
    ``tiny`` per rounding, and stay bitwise identical for any thread count. Unlike PyTorch's
    switch, the mode stays inside the kernels: each thread's MXCSR control bits are put back
    before the call returns, so numpy and every other library keep computing subnormals.

    Process-wide, like :func:`set_num_threads`; ``PYBACKPROP_FLUSH_DENORMAL=1`` turns it on
    at load time. A call already running in another thread when the mode changes may see
    either mode.

    mode : bool
    Returns True if the mode is now ``mode``; False if this CPU or build cannot flush (no
    x86 SSE arithmetic, or no DAZ; the mode then stays off). ``False`` always succeeds.
    Raises TypeError if ``mode`` is not a bool.
    """
    if not isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"mode must be a bool, got {type(mode).__name__} {mode!r}")
    return bool(lib.pb_set_flush_denormal(int(mode)))


def get_flush_denormal():
    """Whether the kernels flush subnormals to zero (see :func:`set_flush_denormal`)."""
    return bool(lib.pb_get_flush_denormal())


def build_info():
    """How the C core was built and what it runs with now."""
    from ._native import __file__ as native_file
    return {
        "version": __version__,
        "compiler": ffi.string(lib.pb_compiler()).decode(),
        "cflags": _cflags(),
        "cpu": get_cpu(),
        "cpu_reason": ffi.string(lib.pb_cpu_reason()).decode(),
        "available_cpus": available_cpus(),
        "arch": get_arch(),
        "available_archs": available_archs(),
        "openmp": bool(lib.pb_has_openmp()),
        "num_threads": get_num_threads(),
        "flush_denormal": get_flush_denormal(),
        "env": {k: os.environ[k] for k in ("PYBACKPROP_CPU", "PYBACKPROP_ARCH",
                                           "PYBACKPROP_NUM_THREADS",
                                           "PYBACKPROP_FLUSH_DENORMAL") if k in os.environ},
        "native_module": native_file,
    }


def _cflags():
    return ffi.string(lib.pb_cflags()).decode()
