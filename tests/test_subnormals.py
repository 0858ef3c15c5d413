"""Tests of the kernels' results on subnormal inputs, with and without the flush-to-zero mode.

Checks: dense_forward, dense_backward, mse_loss and the optimizers, with the mode on, on
inputs mixing subnormal and normal values match the reference evaluated on those inputs with
the subnormals replaced by zero, within the error model below, on every dispatch path and
bitwise equal for 1 and 2 threads; a caller that flushes in its own thread (FTZ/DAZ set
through pb_probe_set_ftz_daz) gets the exact results with the mode off, the same bits for 1
and 2 threads, and its bits back. Fixtures arch, threads, flush (which restores the mode) and
rng come from conftest.py. No test reads a clock.
"""
import numpy as np
import pytest

import pybackprop
from pybackprop import optim
from pybackprop import reference as ref
from pybackprop._core import lib
from pybackprop._gemm import gemm
from _helpers import assert_bitwise, assert_within
from pybackprop._bounds import (EPS64, MSE_GRAD_C, MSE_LOSS_C, backward_bounds, forward_bound,
                                lipschitz)
from _dense_cases import reference_backward, reference_forward
from _runtime_cases import DTYPES, _fi, needs_flush

ACTIVATIONS = ref.ACTIVATIONS
# the backward from the saved output y (the others take z, not mixed with subnormals here)
Y_KINDS = tuple(k for k in ACTIVATIONS if k not in ref.PREACT_ACTIVATIONS)
SLOPE = 0.01
# (B, K, N): odd sizes, and one large enough that the GEMMs and the dz/db pass run threaded.
SHAPES = [(17, 31, 29), (130, 300, 70)]
SUB_FRACTION = 0.25       # share of the inputs replaced by subnormals
UNDERFLOW_ROWS = 3        # rows of x and dy whose every entry is within 4 tiny of zero

# ---- error model of the flush mode: every tolerance of this file --------------------------
# Compared with the reference evaluated in float64 on the inputs with each subnormal replaced
# by a zero of its sign (flushed()); tiny = np.finfo(dtype).tiny, the smallest normal number.
#   DAZ reads a subnormal operand as exactly that signed zero: no error at the inputs.
#   FTZ returns 0 for a rounding whose result would be below tiny: an absolute error < tiny
#     per rounding (gradual underflow errs by <= half a subnormal ulp, already in
#     test_dense's TINY_C term). Later roundings carry such an error with a factor
#     <= 1 + gamma <= FLUSH_OP, and a product carries it scaled by the other factor.
#   Every input here has |value| <= 1, so every such factor is <= 1.
# dense_forward: z = sum of K products + bias, at most 2 roundings per addend (product and
#   sum; one with FMA), K + 1 addends, moved through the activation by its Lipschitz
#   constant L; then the activation's own roundings (exp/log1p/quotient/sum, or slope * z):
#   <= FLUSH_ELEM of them, each < tiny, each carried with a factor <= 1:
#     |dy| <= (L * 2 (K + 1) + FLUSH_ELEM) * FLUSH_OP * tiny
# dense_backward: dz = dy * act'(y): act' takes <= 3 roundings (y (1 - y), expm1, ...), each
#   carried by |dy| <= 1, then the product: < FLUSH_ELEM tiny. A gradient summed over n
#   addends dz * w, dz * x or dz (n = N for dx, B for dw and db) errs by the carried dz error
#   (|w|, |x| <= 1) plus 2 roundings per addend:
#     |ddx|, |ddw|, |ddb| <= (FLUSH_ELEM + 2) * n * FLUSH_OP * tiny
# mse_loss: e = p - t (< tiny), dpred = e * k2 with k2 = 2/D: |dd| <= (k2 + 1) FLUSH_OP tiny.
#   loss: each square e^2 rounds in the dtype (< tiny) and carries e's error times 2|e| <= 4:
#     |dloss| <= 5 n FLUSH_OP tiny / D
#   (the double-precision sum and the final division stay far from float64's tiny).
# Optimizers: every nonzero input has magnitude in [1e-3, 1] (make_optim), so every
#   intermediate of the element functions (csrc/ops/optim.c) is 0 or >= ~1e-26: products of at
#   most three such values, each sum either 0 or a multiple of its smaller operand's ulp. FTZ
#   never acts, DAZ turns each subnormal input into the signed zero the reference gets, and
#   the kernels perform the reference's IEEE operations in its order: BITWISE equal.
# The tolerances of the exact arithmetic (GEMM_C, ELEM_C, MSE_*_C) are pybackprop/_bounds.py's,
# as in the dense and loss tests.
FLUSH_OP = 1.01
FLUSH_ELEM = 4.0
LIPSCHITZ = {k: lipschitz(k, SLOPE) for k in ref.ACTIVATIONS}


def _tiny(dtype):
    return float(np.finfo(dtype).tiny)


def flushed(a):
    """``a`` with every subnormal replaced by a zero of its sign (what DAZ reads)."""
    a = np.asarray(a)
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, np.copysign(0, a), a).astype(a.dtype)


def with_subnormals(rng, a, fraction=SUB_FRACTION):
    """A copy of ``a`` with ``fraction`` of its entries replaced by random subnormals."""
    a = np.array(a)
    mask = rng.random(a.shape) < fraction
    sub = (rng.uniform(-1.0, 1.0, a.shape) * np.finfo(a.dtype).tiny).astype(a.dtype)
    a[mask] = sub[mask]
    return a


def _run_threads(fn, threads):
    """fn() with 1 and with 2 threads: both results, for the bitwise comparison."""
    out = []
    for n in (1, 2):
        threads(n)
        out.append(fn())
    return out


# ---- a caller's own flush ------------------------------------------------------------------
# Kernels over subnormal data, inputs made beforehand (under FTZ/DAZ numpy's own arithmetic
# would flush): (make(dt, S) -> arguments, call(*arguments) -> tuple of arrays). The sizes
# split every kernel across 2 threads.
def _own_flush_bwd(B, K, N):
    return (lambda dt, S: (np.full((B, N), S, dt), np.ones((B, K), dt), np.ones((N, K), dt),
                           np.ones((B, N), dt)),
            lambda dy, x, w, y: pybackprop.dense_backward(dy, x, w, y, activation="relu"))


def _own_flush_adam(dt, S):
    return np.ones(20000, dt), np.full(20000, S, dt), np.zeros(20000, dt), np.zeros(20000, dt)


OWN_FLUSH_CASES = {
    "gemm": (lambda dt, S: (np.empty((256, 128), dt), np.full((256, 8), S, dt),
                            np.ones((8, 128), dt)),
             lambda c, a, b: (gemm(c, a, b),)),
    "dense_forward": (lambda dt, S: (np.full((256, 8), S, dt), np.ones((128, 8), dt)),
                      lambda x, w: (pybackprop.dense_forward(x, w, activation="identity"),)),
    "dense_forward_small": (lambda dt, S: (np.full((32, 128), S, dt), np.ones((128, 128), dt)),
                            lambda x, w: (pybackprop.dense_forward(x, w, activation="identity"),)),
    "dense_backward_tasks": _own_flush_bwd(256, 64, 128),
    "dense_backward_split": _own_flush_bwd(256, 256, 128),
    "activation_backward": (lambda dt, S: (np.full(98304, 4 * S, dt),
                                           np.full(98304, 0.5, dt)),
                            lambda dy, y: (pybackprop.activation_backward(dy, y, "sigmoid"),)),
    "mse_loss": (lambda dt, S: (np.full(50001, S, dt), np.zeros(50001, dt)),
                 lambda p, t: pybackprop.mse_loss(p, t, reduction="sum")[1:]),
    "adam_step": (_own_flush_adam,
                  lambda p, g, m, v: (optim.adam_step(p, g, m, v, step=1), m)[1:]),
    "sigma_upper_bound": (lambda dt, S: (np.full((256, 256), S, dt),),
                        lambda w: (np.array(pybackprop.sigma_upper_bound(w)),)),
}


@needs_flush
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(OWN_FLUSH_CASES))
def test_a_callers_own_flush_stays_out_of_the_kernels(flush, threads, case, dtype):
    """A caller whose thread has FTZ and DAZ set (as torch.set_flush_denormal(True) leaves
    it): with the mode off, every kernel computes the subnormals exactly -- bit for bit the
    results of a caller without them, with 1 and 2 threads (before, the calling thread
    flushed and the OpenMP workers did not, so the results depended on the thread count) --
    and the caller's bits are set again when the call returns; with the mode on, as flushed
    as for any caller."""
    make, call = OWN_FLUSH_CASES[case]
    S = dtype(8 * _fi(dtype).smallest_subnormal)
    for n in (1, 2):
        threads(n)
        for mode in (False, True):
            assert flush(mode)
            clean = [np.array(a) for a in call(*make(dtype, S))]
            args = make(dtype, S)
            assert lib.pb_probe_set_ftz_daz(0x8040) == 0
            try:
                got = call(*args)
            finally:
                back = lib.pb_probe_set_ftz_daz(0)
            assert back == 0x8040, f"{case}: the caller's FTZ/DAZ were not put back"
            for i, (a, e) in enumerate(zip(got, clean)):
                assert_bitwise(np.asarray(a), e, f"{case}[{i}], mode {mode}, {n} threads")
            if not mode:
                assert all(np.any(e != 0) for e in clean), f"{case}: exact results are 0"


# ---- results on mixed inputs: the reference on flushed inputs -----------------------------
def underflowing(rng, a, rows=UNDERFLOW_ROWS):
    """``a`` with its first ``rows`` rows (all of a 1-D ``a``, every other entry) replaced by
    values in (-4 tiny, 4 tiny), subnormal and normal: sums and products over such a row
    underflow, so FTZ acts on the intermediate results and the flush terms are reached."""
    a = np.array(a)
    part = a[:rows] if a.ndim == 2 else a[::2]
    part[...] = rng.uniform(-4.0, 4.0, part.shape) * np.finfo(a.dtype).tiny
    return a


def make_dense_mixed(rng, shape, dtype):
    """x (B, K), w (N, K), b (N,) uniform in [-1, 1], a share of each subnormal, and
    underflowing rows of x and entries of b."""
    B, K, N = shape
    u = lambda *s: rng.uniform(-1.0, 1.0, s).astype(dtype)  # noqa: E731
    x, w, b = (with_subnormals(rng, a) for a in (u(B, K), u(N, K), u(N)))
    return underflowing(rng, x), w, underflowing(rng, b)


@needs_flush
@pytest.mark.parametrize("kind", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dK%dN%d" % s)
def test_dense_forward_with_flush_matches_flushed_reference(flush, threads, arch, shape,
                                                            dtype, kind, rng):
    """Mode on: y equals the reference on flushed inputs within the exact bound plus the
    flush term; 1 and 2 threads bitwise equal."""
    x, w, b = make_dense_mixed(rng, shape, dtype)
    assert flush(True)
    y1, y2 = _run_threads(lambda: pybackprop.dense_forward(x, w, b, activation=kind,
                                                           negative_slope=SLOPE), threads)
    assert_bitwise(y1, y2, "y, 1 vs 2 threads")
    xf, wf, bf = flushed(x), flushed(w), flushed(b)
    y_ref = reference_forward(xf, wf, bf, kind, SLOPE)
    K = shape[1]
    bound = (forward_bound(xf, wf, bf, kind, dtype, y_ref, SLOPE)
             + (LIPSCHITZ[kind] * 2 * (K + 1) + FLUSH_ELEM) * FLUSH_OP * _tiny(dtype))
    assert_within(y1, y_ref, bound, f"y {kind}")


@needs_flush
@pytest.mark.parametrize("kind", Y_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dK%dN%d" % s)
def test_dense_backward_with_flush_matches_flushed_reference(flush, threads, arch, shape,
                                                             dtype, kind, rng):
    """Mode on: dx, dw, db equal the reference on flushed inputs (dy, x, w and the saved y
    mixed with subnormals) within the exact bounds plus the flush terms; 1 and 2 threads
    bitwise equal."""
    B, K, N = shape
    x, w, b = make_dense_mixed(rng, shape, dtype)
    y = with_subnormals(rng, reference_forward(x, w, b, kind, SLOPE).astype(dtype))
    dy = underflowing(rng, with_subnormals(rng, rng.uniform(-1.0, 1.0, (B, N)).astype(dtype)))
    assert flush(True)
    r1, r2 = _run_threads(lambda: pybackprop.dense_backward(
        dy, x, w, y, activation=kind, negative_slope=SLOPE), threads)
    dyf, xf, wf, yf = flushed(dy), flushed(x), flushed(w), flushed(y)
    expected = reference_backward(dyf, xf, wf, yf, kind, SLOPE)
    bounds = backward_bounds(dyf, xf, wf, yf, kind, dtype, SLOPE)
    for name, a, c, e, bd, n in zip(("dx", "dw", "db"), r1, r2, expected, bounds, (N, B, B)):
        assert_bitwise(a, c, f"{name}, 1 vs 2 threads")
        assert_within(a, e, bd + (FLUSH_ELEM + 2) * n * FLUSH_OP * _tiny(dtype),
                      f"{name} {kind}")


@needs_flush
@pytest.mark.parametrize("reduction", ("mean", "sum"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", (1001, 50001))
def test_mse_loss_with_flush_matches_flushed_reference(flush, threads, arch, n, dtype,
                                                       reduction, rng):
    """Mode on: loss and dpred equal the reference on flushed inputs within the exact bound
    plus the flush terms; 1 and 2 threads bitwise equal."""
    pred, target = (with_subnormals(rng, rng.uniform(-1.0, 1.0, n).astype(dtype))
                    for _ in range(2))
    assert flush(True)
    (l1, d1), (l2, d2) = _run_threads(
        lambda: pybackprop.mse_loss(pred, target, reduction=reduction), threads)
    assert_bitwise(np.array(l1), np.array(l2), "loss, 1 vs 2 threads")
    assert_bitwise(d1, d2, "dpred, 1 vs 2 threads")
    loss_ref, d_ref = ref.mse_loss(flushed(pred).astype(np.float64),
                                   flushed(target).astype(np.float64), reduction=reduction)
    D = n if reduction == "mean" else 1
    eps, tiny = float(np.finfo(dtype).eps), _tiny(dtype)
    assert_within(d1, d_ref, MSE_GRAD_C * eps * np.abs(d_ref) + (2 / D + 1) * FLUSH_OP * tiny,
                  "dpred")
    assert_within(l1, loss_ref, (MSE_LOSS_C * eps + 1.01 * n * EPS64) * loss_ref
                  + 5 * n * FLUSH_OP * tiny / D, "loss")


def make_optim(rng, n, dtype, nonneg=False):
    """Magnitudes log-uniform in [1e-3, 1] (random signs unless ``nonneg``), a share of them
    subnormal (the error model's precondition)."""
    a = 10.0 ** rng.uniform(-3.0, 0.0, n)
    if not nonneg:
        a = a * rng.choice([-1.0, 1.0], n)
    return with_subnormals(rng, a.astype(dtype))


OPTIM_CASES = [
    ("adam", dict()),
    ("adam", dict(weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adamw", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("adamax", dict(weight_decay=0.1)),
]


@needs_flush
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", OPTIM_CASES, ids=lambda c: c[0] + str(len(c[1])))
def test_optimizers_with_flush_equal_flushed_reference(flush, threads, arch, case, dtype, rng):
    """Mode on: one step over 20001 elements (threaded) equals the reference step on the
    flushed parameter, gradient and state bit for bit, with 1 and 2 threads."""
    kind, opts = case
    n = 20001
    p, g, m = (make_optim(rng, n, dtype) for _ in range(3))
    state = [m, make_optim(rng, n, dtype, nonneg=True)]
    if opts.get("amsgrad"):
        state.append(make_optim(rng, n, dtype, nonneg=True))
    ours_fn, ref_fn = ((optim.adamax_step, ref.adamax_step) if kind == "adamax"
                       else (optim.adam_step, ref.adam_step))

    def step(fn, arrays):
        p_, g_, *st = (a.copy() for a in arrays)
        extra = dict(v_max=st[2]) if opts.get("amsgrad") else {}
        fn(p_, g_, st[0], st[1], step=3, **opts, **extra)
        return [p_] + st

    assert flush(True)
    r1, r2 = _run_threads(lambda: step(ours_fn, [p, g] + state), threads)
    expected = step(ref_fn, [flushed(a) for a in [p, g] + state])
    for name, a, c, e in zip(("p", "m", "v/u", "v_max"), r1, r2, expected):
        assert_bitwise(a, c, f"{name}, 1 vs 2 threads")
        assert_bitwise(a, e, f"{name} vs the reference on flushed inputs")
