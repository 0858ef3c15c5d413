"""Run-time settings of the C core: threads, SIMD path, flush of subnormals, build facts."""
import os

import numpy as np

from ._core import ffi, lib
from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "set_arch", "get_arch", "available_archs",
           "set_flush_denormal", "get_flush_denormal", "build_info"]

ARCHS = ("ref", "avx2", "avx512")


def set_num_threads(n):
    """Use ``n`` threads in every kernel (``None`` restores the default:
    ``PYBACKPROP_NUM_THREADS`` or the number of processors). Results do not depend on it."""
    if n is None:
        lib.pb_set_num_threads(0)
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    lib.pb_set_num_threads(n)


def get_num_threads():
    """Threads the kernels use (always 1 in a build without OpenMP)."""
    return lib.pb_get_num_threads()


def available_archs():
    """The SIMD paths this CPU can run, portable first: a subset of ("ref", "avx2", "avx512")."""
    return [a for a in ARCHS if lib.pb_arch_supported(a.encode())]


def get_arch():
    """The SIMD path in use (chosen at import: the best available, or ``PYBACKPROP_ARCH``)."""
    return ffi.string(lib.pb_get_arch()).decode()


def set_arch(name):
    """Pin the SIMD path (for tests and benchmarks): one of ``available_archs()``."""
    if not isinstance(name, str) or lib.pb_set_arch(name.encode()) != 0:
        raise ValueError(f"arch must be one of {available_archs()} on this CPU, got {name!r}")


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
        "arch": get_arch(),
        "available_archs": available_archs(),
        "openmp": bool(lib.pb_has_openmp()),
        "num_threads": get_num_threads(),
        "flush_denormal": get_flush_denormal(),
        "env": {k: os.environ[k] for k in ("PYBACKPROP_ARCH", "PYBACKPROP_NUM_THREADS",
                                           "PYBACKPROP_FLUSH_DENORMAL") if k in os.environ},
        "native_module": native_file,
    }


def _cflags():
    return ffi.string(lib.pb_cflags()).decode()
