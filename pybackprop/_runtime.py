"""Run-time settings of the C core: threads, SIMD path, and build facts."""
import os

from ._core import ffi, lib
from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "set_arch", "get_arch", "available_archs",
           "build_info"]

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
        "env": {k: os.environ[k] for k in ("PYBACKPROP_ARCH", "PYBACKPROP_NUM_THREADS")
                if k in os.environ},
        "native_module": native_file,
    }


def _cflags():
    return ffi.string(lib.pb_cflags()).decode()
