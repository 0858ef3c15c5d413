"""Private access to the C core's general GEMM, for tests of its edge logic.

``gemm(c, a, b, beta)`` computes ``c[...] = beta * c + a @ b`` in place through
``pb_gemm_f32/f64``. Unlike the public modules it accepts strided views, so that tests can
reach every packing case (row- or column-major operands, a ``c`` that is a window of a larger
buffer): ``a`` and ``b`` may have any non-negative element strides, ``c`` must have unit
column stride. Not part of the public API; it does no conversion.
"""
import numpy as np

from ._core import F32, F64, check_status, ffi, lib
from ._runtime import FAMILIES

_PTR = {F32: "float *", F64: "double *"}


def _addr(a):
    return a.__array_interface__["data"][0]


def _strides(name, a):
    s0, s1 = a.strides
    isz = a.itemsize
    if s0 < 0 or s1 < 0 or s0 % isz or s1 % isz:
        raise ValueError(f"{name} needs non-negative strides in whole elements, got {a.strides}")
    return s0 // isz, s1 // isz


def gemm(c, a, b, beta=0):
    """``c = beta * c + a @ b`` for 2-D float32/float64 arrays (``c``: unit column stride,
    writeable); returns ``c``. beta is 0 (``c`` is never read) or 1."""
    dtype = c.dtype
    if dtype not in (F32, F64) or a.dtype != dtype or b.dtype != dtype:
        raise TypeError(f"c, a, b must share a float dtype, got {c.dtype}, {a.dtype}, {b.dtype}")
    m, n = c.shape
    if a.shape[0] != m or b.shape[1] != n or a.shape[1] != b.shape[0]:
        raise ValueError(f"shapes c {c.shape}, a {a.shape}, b {b.shape} do not match")
    ldc, one = _strides("c", c)
    if n > 1 and one != 1 or not c.flags.writeable:
        raise ValueError("c must be writeable with unit column stride")
    rsa, csa = _strides("a", a)
    rsb, csb = _strides("b", b)
    t = _PTR[dtype]
    fn = lib.pb_gemm_f32 if dtype == F32 else lib.pb_gemm_f64
    check_status(fn(ffi.cast(t, _addr(c)), ldc, ffi.cast(t, _addr(a)), rsa, csa,
                    ffi.cast(t, _addr(b)), rsb, csb, m, n, a.shape[1], beta))
    return c


def blocks(cpu, dtype):
    """Block sizes and crossovers of the GEMM in CPU configuration ``cpu`` (``None``: the
    active one) for ``dtype``: a dict with the register tile ``mr``, ``nr``, the cache
    blocks ``mc``, ``kc``, ``nc``, the transposed-tile kernel's A^T panel width ``tw``, tile
    rows ``tj`` and largest ``m``, ``tm``, the largest ``m`` of the dot-product kernel's rule
    ``dot_m`` and of the A^T B kernel's ``atb_m`` (each 0 where the configuration has no
    such kernel), the most bytes of B of the transposed-tile row split ``tt_msplit``, the
    A^T B path's aliasing stride ``atb_copy``, the most threads at work with which it copies
    ``atb_copy_nt`` (0: any) and the fewest bytes of B it copies ``atb_copy_min``, and the
    largest depth ``small_k`` of the products the packed path would take that run on the
    configuration's small-k kernels (``cpu_info()["kernels"]["float32 small k"]``,
    ``"float64 small k"``; 0: none)."""
    blk = ffi.new("ptrdiff_t[15]")
    check_status(lib.pb_gemm_blocks(blk, ffi.NULL if cpu is None else cpu.encode(),
                                    np.dtype(dtype).itemsize))
    return dict(zip(("mr", "nr", "mc", "kc", "nc", "tw", "tj", "tm", "dot_m", "atb_m",
                     "tt_msplit", "atb_copy", "small_k", "atb_copy_nt", "atb_copy_min"),
                    list(blk)))


PATHS = {lib.PB_GEMM_PACKED: "packed", lib.PB_GEMM_GEMV: "gemv", lib.PB_GEMM_DOT: "dot",
         lib.PB_GEMM_TT: "tt", lib.PB_GEMM_OUTER: "outer",
         lib.PB_GEMM_ATB: "atb"}


def path(a, b, beta=0, family=False):
    """The name of the path ``gemm(c, a, b, beta)`` takes in the active CPU configuration
    and thread count: "packed", "gemv", "dot", "tt", "outer" or "atb" (see docs/gemm.md);
    with ``family=True``, (path, the kernel family that runs it: a key of
    ``cpu_info()["kernels"]``)."""
    rsa, csa = _strides("a", a)
    rsb, csb = _strides("b", b)
    code, fam = ffi.new("int *"), ffi.new("int *")
    check_status(lib.pb_gemm_path(code, fam, a.shape[0], b.shape[1], a.shape[1], rsa, csa, rsb,
                                  csb, beta, a.itemsize))
    return (PATHS[code[0]], FAMILIES[fam[0]]) if family else PATHS[code[0]]


def steal_test(on):
    """Work stealing's test mode (``pb_steal_test``): while on, thread 0 of every
    multi-threaded GEMM leaves its whole share of the work to the other threads. Returns the
    units of work taken from another thread's share since the previous call."""
    return int(lib.pb_steal_test(1 if on else 0))
