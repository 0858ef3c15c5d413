"""What the fuzz tests share: the hypothesis settings and strategies, the value regimes and
memory layouts of the inputs, the error model behind every tolerance, and the comparisons
against an oracle (NaN and Inf positions first, then a bound on the finite elements)."""
import numpy as np
from hypothesis import HealthCheck, settings, strategies as st

import pybackprop

DTYPES = (np.float32, np.float64)
LAYOUTS = ("c", "f", "strided", "negative", "misaligned", "list")
MODES = ("normal", "denormal", "special", "huge")
DIM = st.one_of(st.integers(0, 4), st.sampled_from([7, 9, 17, 33]))
SEED = st.integers(0, 2**32 - 1)
SHAPES = st.lists(DIM, min_size=0, max_size=3).map(tuple)

# ---- error model (every tolerance of the fuzz tests) -------------------------------------
# A sum of n terms in any order, with or without FMA: |fl(s) - s| <= gamma_n sum|terms|,
# gamma_n <= 1.01 n u (Higham, Lemma 3.1), u = eps / 2; the long double oracle adds nothing
# measurable. GEMM_C = 1.01 per addend in eps (covers ours; the oracle's is ~2^-11 of it).
# Elementwise functions (exp, log1p, tanh in C and numpy): <= 4 eps each side: ELEM_C = 8.
# Underflow: each product or elementary function may lose up to one smallest subnormal:
# absolute floor TINY_C * (n + 1) * smallest_subnormal, plus TINY_C * tiny for results at
# the underflow threshold (sigmoid(-100) in float32 is subnormal).
# Losses: ours adds terms in order inside fixed blocks (in double: for float64 inputs a
# recursive sum, gamma_n <= GEMM_C n eps), the reference pairwise (less): GEMM_C (n + 1) eps
# relative to the sum of the (non-negative) terms, plus ELEM_C eps for each term's own
# exp/log1p rounding.
GEMM_C = 1.01
ELEM_C = 8.0
TINY_C = 8.0

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def values(rng, shape, dtype, mode):
    """Random values of ``dtype`` in one of the regimes of MODES."""
    fi = np.finfo(dtype)
    a = rng.standard_normal(shape).astype(dtype)
    if a.size == 0:
        return a
    pick = rng.random(shape)
    if mode == "denormal":
        den = (rng.standard_normal(shape) * float(fi.tiny) / 7).astype(dtype)
        a = np.where(pick < 0.4, den, a)
        a = np.where(pick > 0.9, dtype(0) * np.sign(a), a)   # +0 and -0
    elif mode == "special":
        spec = np.array([np.nan, np.inf, -np.inf], dtype)[rng.integers(0, 3, shape)]
        a = np.where(pick < 0.15, spec, a)
    elif mode == "huge":
        huge = (np.sign(a) * float(fi.max) * rng.uniform(0.25, 1, shape)).astype(dtype)
        a = np.where(pick < 0.3, huge, a)
    return a.astype(dtype)


def layout(a, kind, rng=None):
    """The values of ``a`` in the memory layout ``kind`` (equal elementwise)."""
    if kind == "c":
        return np.array(a, order="C")
    if kind == "f":
        return np.array(a, order="F")
    if kind == "strided":
        big = np.zeros(a.shape + (2,), a.dtype)
        big[..., 0] = a
        return big[..., 0]
    if kind == "negative":
        flip = np.array(a[(slice(None, None, -1),) * a.ndim], order="C")
        return flip[(slice(None, None, -1),) * a.ndim]
    if kind == "misaligned":
        buf = np.zeros(a.nbytes + a.itemsize + 3, np.uint8)
        off = 1 + 2 * int(rng.integers(0, 2)) if rng is not None else 1
        view = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        assert not view.flags.aligned or a.size == 0
        return view
    if kind == "list":
        # a nested list cannot hold a shape such as (0, 3); those stay arrays
        return a.tolist() if np.array(a.tolist()).shape == a.shape else a
    raise AssertionError(kind)


def _is_array(a):
    return isinstance(a, np.ndarray)


def call_dtype(dtype, *inputs):
    """The dtype a call computes in: that of its arrays, float64 when all are lists."""
    typed = any(isinstance(a, (np.ndarray, np.generic)) for a in inputs)
    return np.dtype(dtype) if typed else np.dtype(np.float64)


def assert_same_specials(ours, ref, what):
    """NaN exactly where ref is NaN, the same infinity where ref is infinite."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=what + ": NaN")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(ours[inf], ref[inf], err_msg=what + ": Inf")
    np.testing.assert_array_equal(np.isinf(ours), inf, err_msg=what + ": Inf positions")


def assert_close(ours, ref, rtol, atol, what):
    """Specials as ref, finite elements within rtol * |ref| + atol (atol may be an array)."""
    assert_same_specials(ours, ref, what)
    fin = np.isfinite(np.asarray(ref, np.float64))
    o, r = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    atol = np.broadcast_to(atol, r.shape)
    err = np.abs(o[fin] - r[fin])
    lim = rtol * np.abs(r[fin]) + atol[fin]
    assert (err <= lim).all(), (what, float(np.max(err - lim, initial=0)))


def sentinel_like(shape, dtype):
    """An output buffer filled with a recognisable value, to show it is never written."""
    return np.full(shape, -1234.5, dtype)


def with_arch(name, fn):
    """fn() in CPU configuration ``name``, then the previous one again."""
    saved = pybackprop.get_cpu()
    pybackprop.set_cpu(name)
    try:
        return fn()
    finally:
        pybackprop.set_cpu(saved)
