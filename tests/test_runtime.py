"""Tests of pybackprop._runtime's flush-to-zero switch: set_flush_denormal / get_flush_denormal.

Checks: the mode is off by default and from PYBACKPROP_FLUSH_DENORMAL at load time; the
setter's contract (bool only, returns whether the mode is supported, a round trip restores
the exact results); with the mode on, every public C kernel flushes in every thread that does
its work (crafted inputs whose exact and flushed results differ in every element, 1 and 2
threads); dense_forward, dense_backward, mse_loss and the optimizers on inputs mixing
subnormal and normal values match the reference evaluated on those inputs with the
subnormals replaced by zero, within the error model below, on every dispatch path and
bitwise equal for 1 and 2 threads; a caller that flushes in its own thread (FTZ/DAZ set
through pb_probe_set_ftz_daz) gets the exact results with the mode off, the same bits for 1
and 2 threads, and its bits back; afterwards no thread is left flushing (the probe of
test_concurrency.py); every OpenMP parallel region of the C sources opens a PB_FP_SCOPE.
Fixtures arch, threads, flush (which restores the mode) and rng come from conftest.py. No
test reads a clock.
"""
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pybackprop
from pybackprop import optim
from pybackprop import reference as ref
from pybackprop._core import lib
from pybackprop._gemm import gemm
from test_concurrency import _assert_subnormals_survive, _kernel_set
from _helpers import assert_bitwise, assert_within
from pybackprop._bounds import (EPS64, MSE_GRAD_C, MSE_LOSS_C, backward_bounds, forward_bound,
                                lipschitz)
from _dense_cases import reference_backward, reference_forward

DTYPES = (np.float32, np.float64)
ACTIVATIONS = ref.ACTIVATIONS
# the backward from the saved output y (the others take z, not mixed with subnormals here)
Y_KINDS = tuple(k for k in ACTIVATIONS if k not in ref.PREACT_ACTIVATIONS)
SLOPE = 0.01
# (B, K, N): odd sizes, and one large enough that the GEMMs and the dz/db pass run threaded.
SHAPES = [(17, 31, 29), (130, 300, 70)]
SUB_FRACTION = 0.25       # share of the inputs replaced by subnormals
UNDERFLOW_ROWS = 3        # rows of x and dy whose every entry is within 4 tiny of zero
CSRC = Path(__file__).resolve().parent.parent / "csrc"
# The mode needs SSE maths (MXCSR) and DAZ: x86-64 builds.
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
needs_flush = pytest.mark.skipif(not X86, reason="no MXCSR: the mode is unsupported here")

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


# ---- the switch ---------------------------------------------------------------------------
def _subprocess(code, env_value):
    env = dict(os.environ)
    env.pop("PYBACKPROP_FLUSH_DENORMAL", None)
    if env_value is not None:
        env["PYBACKPROP_FLUSH_DENORMAL"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


_PROBE = ("import numpy as np, pybackprop as pb; "
          "x = np.full((3, 4), np.finfo(np.float32).smallest_subnormal * 8, np.float32); "
          "y = pb.dense_forward(x, np.ones((2, 4), np.float32), activation='identity'); "
          "print(pb.get_flush_denormal(), pb.build_info()['flush_denormal'], "
          "int(np.count_nonzero(y)))")


def test_default_is_off():
    """A fresh process without PYBACKPROP_FLUSH_DENORMAL computes subnormals exactly."""
    assert _subprocess(_PROBE, None) == ["False", "False", "6"]


@needs_flush
def test_environment_variable_sets_the_mode_at_load():
    """PYBACKPROP_FLUSH_DENORMAL=1 turns the mode on (all-subnormal GEMM gives 0), 0 not."""
    assert _subprocess(_PROBE, "1") == ["True", "True", "0"]
    assert _subprocess(_PROBE, "0") == ["False", "False", "6"]


def test_set_get_round_trip(flush):
    """set returns whether the mode is supported here (x86 builds); get follows set; False
    always succeeds; anything but a bool is a TypeError naming ``mode``."""
    assert flush(True) is X86
    assert pybackprop.get_flush_denormal() is X86
    assert flush(np.bool_(False)) is True
    assert pybackprop.get_flush_denormal() is False
    for bad in (None, 1, 0, "yes", 1.0):
        with pytest.raises(TypeError, match="mode"):
            flush(bad)
    assert pybackprop.get_flush_denormal() is False


# ---- every kernel flushes, in every thread ------------------------------------------------
# Each case: (C kernels it calls, run(dt, S) -> tuple of arrays, exact results, flushed
# results), one value per array (None: nonzero but not exactly predictable, an exp in the
# subnormal range). S = 8 * smallest subnormal. The sizes put every kernel over its one-thread
# limit, so with 2 threads part of each array is computed by an OpenMP worker.
def _fi(dt):
    return np.finfo(dt)


def _bwd(B, K, N):
    def run(dt, S):
        ones = lambda *s: np.ones(s, dt)  # noqa: E731
        return pybackprop.dense_backward(np.full((B, N), S, dt), ones(B, K), ones(N, K),
                                         ones(B, N), activation="relu")
    return run


def _xent(dt, S):
    x = np.zeros((20000, 2), dt)
    x[:, 1] = -100.0 if dt == np.float32 else -720.0     # e^x is subnormal
    loss, d = pybackprop.softmax_cross_entropy(x, np.zeros(20000, np.int64), reduction="sum")
    return (d[:, 1],)


def _bce(dt, S):
    z = np.full(50001, -100.0 if dt == np.float32 else -720.0, dt)
    loss, d = pybackprop.binary_cross_entropy_with_logits(z, np.zeros_like(z), reduction="sum")
    return np.array(loss), d


def _adam(step_fn):
    def run(dt, S):
        p, m, s = np.ones(20000, dt), np.zeros(20000, dt), np.zeros(20000, dt)
        step_fn(p, np.full(20000, S, dt), m, s, step=1)
        return (m,)           # m = 0.1 * g (rounded)
    return run


def _power(n_iters):
    def run(dt, S):
        u, v = np.ones(256, dt), np.ones(256, dt)
        sigma = pybackprop.power_iteration(np.full((256, 256), S, dt), u, v, n_iters=n_iters)
        return (np.array(sigma),) if n_iters == 0 else (u,)
    return run


FLUSH_CASES = {
    "gemm": (("gemm",),
             lambda dt, S: (gemm(np.empty((256, 128), dt), np.full((256, 8), S, dt),
                                 np.ones((8, 128), dt)),),
             lambda S: (8 * S,), (0,)),
    "dense_forward": (("dense_forward",),
                      lambda dt, S: (pybackprop.dense_forward(
                          np.full((256, 8), S, dt), np.ones((128, 8), dt),
                          activation="identity"),),
                      lambda S: (8 * S,), (0,)),
    "dense_forward_gemv": (("dense_forward",),
                           lambda dt, S: (pybackprop.dense_forward(
                               np.full((1, 512), S, dt), np.ones((256, 512), dt),
                               activation="identity"),),
                           lambda S: (512 * S,), (0,)),
    # two GEMMs side by side (small layer), the split GEMMs, and B = 1 (outer product, GEMV)
    "dense_backward_tasks": (("dense_backward", "gemm"), _bwd(256, 64, 128),
                             lambda S: (128 * S, 256 * S, 256 * S), (0, 0, 0)),
    "dense_backward_split": (("dense_backward", "gemm"), _bwd(256, 256, 128),
                             lambda S: (128 * S, 256 * S, 256 * S), (0, 0, 0)),
    "dense_backward_b1": (("dense_backward", "gemm"), _bwd(1, 1100, 1024),
                          lambda S: (1024 * S, S, S), (0, 0, 0)),
    # a normal input whose result is subnormal: FTZ
    "activation_forward": (("activation_forward",),
                           lambda dt, S: (pybackprop.activation(
                               np.full(98304, -1.5 * _fi(dt).tiny, dt), "leaky_relu",
                               negative_slope=0.5),),
                           lambda S: (-0.75 * _fi(S.dtype).tiny,), (0,)),
    "activation_backward": (("activation_backward",),
                            lambda dt, S: (pybackprop.activation_backward(
                                np.full(98304, 1.5 * _fi(dt).tiny, dt),
                                np.full(98304, 0.5, dt), "sigmoid"),),
                            lambda S: (0.375 * _fi(S.dtype).tiny,), (0,)),
    "mse_loss": (("mse_loss",),
                 lambda dt, S: (pybackprop.mse_loss(np.full(50001, S, dt), np.zeros(50001, dt),
                                                    reduction="sum")[1],),
                 lambda S: (2 * S,), (0,)),
    "softmax_cross_entropy": (("softmax_cross_entropy",), _xent, lambda S: (None,), (0,)),
    "bce_with_logits": (("binary_cross_entropy_with_logits",), _bce,
                        lambda S: (None, None), (0, 0)),
    # a tie under DAZ: the first argument wins (its bits are moved, not flushed)
    "maximum_forward": (("maximum_forward",),
                        lambda dt, S: (pybackprop.maximum_forward(np.full(50001, S, dt),
                                                                  np.full(50001, 2 * S, dt)),),
                        lambda S: (2 * S,), lambda S: (S,)),
    "maximum_backward": (("maximum_backward",),
                         lambda dt, S: pybackprop.maximum_backward(
                             np.ones(50001, dt), np.full(50001, S, dt),
                             np.full(50001, 2 * S, dt)),
                         lambda S: (0, 1), (1, 0)),
    "adam_step": (("adam_step",), _adam(optim.adam_step), lambda S: (None,), (0,)),
    "adamax_step": (("adamax_step",), _adam(optim.adamax_step), lambda S: (None,), (0,)),
    "power_iteration_eval": (("spectral_power_iteration",), _power(0),
                             lambda S: (256 * 256 * S,), (0,)),
    "power_iteration": (("spectral_power_iteration",), _power(1), lambda S: (None,), (0,)),
    "spectral_normalize": (("spectral_norm_forward",),
                           lambda dt, S: (pybackprop.spectral_normalize(
                               np.full((256, 256), S, dt), 1.0),),
                           lambda S: (S,), (0,)),
    "spectral_norm_backward": (("spectral_norm_backward",),
                               lambda dt, S: (pybackprop.spectral_norm_backward(
                                   np.full((256, 256), S, dt), np.zeros((256, 256), dt),
                                   np.ones(256, dt), np.ones(256, dt), 1.0),),
                               lambda S: (S,), (0,)),
    "sigma_upper_bound": (("spectral_sigma_upper",),
                          lambda dt, S: (np.array(pybackprop.sigma_upper_bound(
                              np.full((64, 64), S, dt))),),
                          lambda S: (None,), (0,)),
}


def _check_values(got, expected, what):
    assert len(got) == len(expected), what
    for i, (a, e) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        if e is None:
            assert np.all(a != 0), f"{what}[{i}]: exact result expected nonzero"
        else:
            np.testing.assert_array_equal(a, np.full(a.shape, e, a.dtype),
                                          err_msg=f"{what}[{i}]")


def test_flush_cases_cover_every_public_kernel():
    """Every compute kernel of the C API (pb_<stem>_f32/_f64 but the probes) has a case."""
    stems = {n[3:-4] for n in dir(lib) if n.startswith("pb_") and n.endswith("_f32")
             and not n.startswith("pb_probe_")}
    covered = {s for kernels, *_ in FLUSH_CASES.values() for s in kernels}
    assert stems == covered, f"no flush case for {sorted(stems - covered)}"


@needs_flush
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(FLUSH_CASES))
def test_every_kernel_flushes_in_every_thread(flush, threads, case, dtype):
    """Off: the exact results. On: the flushed ones, in every element, with 1 and 2 threads
    (2: the worker's share too). Off again: the exact results, bit for bit as before."""
    _, run, exact, flushed_values = FLUSH_CASES[case]
    S = dtype(8 * _fi(dtype).smallest_subnormal)
    on_values = flushed_values(S) if callable(flushed_values) else flushed_values
    for n in (1, 2):
        threads(n)
        assert flush(False)
        before = run(dtype, S)
        _check_values(before, exact(S), f"{case} off, {n} threads")
        assert flush(True)
        _check_values(run(dtype, S), on_values, f"{case} on, {n} threads")
        assert flush(False)
        for a, b in zip(run(dtype, S), before):
            assert_bitwise(np.asarray(a), np.asarray(b), f"{case} off again")


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


# ---- nothing is left behind -----------------------------------------------------------------
@needs_flush
def test_mode_on_leaves_no_thread_flushing(flush, threads):
    """After every kernel ran with the mode on (1 and 2 threads, on subnormal data too),
    subnormals survive numpy arithmetic in the calling thread at once, and, with the mode
    off again, in the kernels' OpenMP threads: each thread's MXCSR was restored."""
    for n in (1, 2):
        threads(n)
        for dt in DTYPES:
            assert flush(True)
            _kernel_set(0, dt)
            S = dt(8 * _fi(dt).smallest_subnormal)
            for _, run, _, _ in FLUSH_CASES.values():
                run(dt, S)
            sub = np.full(16, S, dt)
            assert (sub * dt(1) == sub).all()        # this thread, mode still on
            assert flush(False)
            _assert_subnormals_survive(dt)


def test_every_parallel_region_opens_an_fp_scope():
    """In the C sources (csrc/**/*.c, *.inc; probe.c measures the machine and is exempt), every
    `omp parallel` pragma is followed by a block whose first statement is PB_FP_SCOPE, and
    no `omp parallel for` exists (its body could not open one per thread)."""
    files = sorted(p for p in CSRC.rglob("*") if p.suffix in (".c", ".inc")
                   and p.name != "probe.c")
    assert files, f"no C sources under {CSRC}"
    regions = 0
    for path in files:
        lines = [ln.rstrip().rstrip("\\").strip() for ln in path.read_text().splitlines()]
        for i, line in enumerate(lines):
            if not re.search(r"omp\s+parallel\b", line):
                continue
            regions += 1
            where = f"{path.name}:{i + 1}"
            assert not re.search(r"omp\s+parallel\s+for\b", line), \
                f"{where}: `omp parallel for` (write `parallel {{ PB_FP_SCOPE; for nowait }}`)"
            body = [ln for ln in lines[i + 1:i + 4] if ln]
            assert body[:2] == ["{", "PB_FP_SCOPE;"], \
                f"{where}: the region's body does not open with PB_FP_SCOPE"
    assert regions >= 15  # the regions in csrc today: the scan found them all


# ---- thread count and environment: bounded, parsed strictly -----------------------------------
@pytest.mark.parametrize("n", [pybackprop._runtime.MAX_THREADS + 1, 100000, 2**31, 2**63, 0,
                               -1, 1.0, True, "2"])
def test_set_num_threads_is_bounded(n):
    """A count outside [1, MAX_THREADS] (which libgomp could fail to create, ending the
    process) or not an int raises ValueError, never cffi's OverflowError; the count stays."""
    before = pybackprop.get_num_threads()
    with pytest.raises(ValueError, match=str(pybackprop._runtime.MAX_THREADS)):
        pybackprop.set_num_threads(n)
    assert pybackprop.get_num_threads() == before


def _import_with(var, value, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYBACKPROP_") and k != "OMP_NUM_THREADS"}
    env[var] = value
    env.update(extra)
    return subprocess.run([sys.executable, "-c", "import pybackprop as p; "
                           "print(p.get_num_threads(), p.get_flush_denormal())"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("var,value", [
    ("PYBACKPROP_NUM_THREADS", "3abc"), ("PYBACKPROP_NUM_THREADS", " 3"),
    ("PYBACKPROP_NUM_THREADS", "+3"), ("PYBACKPROP_NUM_THREADS", "0"),
    ("PYBACKPROP_NUM_THREADS", "-2"), ("PYBACKPROP_NUM_THREADS", "1025"),
    ("PYBACKPROP_NUM_THREADS", "99999999999999999999"), ("PYBACKPROP_NUM_THREADS", "٣"),
    ("PYBACKPROP_FLUSH_DENORMAL", "true"), ("PYBACKPROP_FLUSH_DENORMAL", "2"),
    ("PYBACKPROP_FLUSH_DENORMAL", "yes"), ("PYBACKPROP_FLUSH_DENORMAL", " 1"),
    ("PYBACKPROP_FLUSH_DENORMAL", "01")])
def test_a_setting_that_would_be_misread_is_an_error(var, value):
    """A value the C core would misread or ignore makes the import fail with a ValueError
    naming the variable and its value."""
    out = _import_with(var, value)
    assert out.returncode != 0
    assert "ValueError" in out.stderr and f"{var}={value!r}" in out.stderr, out.stderr


@pytest.mark.parametrize("var,value,want", [
    ("PYBACKPROP_NUM_THREADS", "3", "3"), ("PYBACKPROP_NUM_THREADS", "1024", "1024"),
    ("PYBACKPROP_NUM_THREADS", "", None), ("PYBACKPROP_FLUSH_DENORMAL", "0", "False"),
    ("PYBACKPROP_FLUSH_DENORMAL", "", "False")])
def test_accepted_settings(var, value, want):
    """The documented values are read as documented (an empty value is unset)."""
    out = _import_with(var, value)
    assert out.returncode == 0, out.stderr
    threads, flush = out.stdout.split()
    if var == "PYBACKPROP_NUM_THREADS" and want is not None:
        assert threads == want
    if var == "PYBACKPROP_FLUSH_DENORMAL":
        assert flush == want


def test_restoring_the_default_rechecks_the_environment(monkeypatch):
    """set_num_threads(None) makes the C core re-read PYBACKPROP_NUM_THREADS: a value set
    since the import is checked as at import, and the count stays as it was."""
    before = pybackprop.get_num_threads()
    monkeypatch.setenv("PYBACKPROP_NUM_THREADS", "2x")
    with pytest.raises(ValueError, match="PYBACKPROP_NUM_THREADS='2x'"):
        pybackprop.set_num_threads(None)
    assert pybackprop.get_num_threads() == before


@pytest.mark.skipif(not pybackprop.build_info()["openmp"], reason="a build without OpenMP "
                    "always runs one thread")
@pytest.mark.parametrize("omp,ours,want", [("1", "", "1"), ("3", "", "3"), ("1", "2", "2"),
                                           ("5000", "", "1024")])
def test_default_threads_follow_omp_num_threads(omp, ours, want):
    """Without set_num_threads, PYBACKPROP_NUM_THREADS wins, else OMP_NUM_THREADS (through
    OpenMP's own ICV), capped at MAX_THREADS: under MPI or a host program that sets it, each
    process starts the threads it was given, not one per core."""
    out = _import_with("OMP_NUM_THREADS", omp, PYBACKPROP_NUM_THREADS=ours)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == want


@pytest.mark.skipif(not pybackprop.build_info()["openmp"], reason="a build without OpenMP "
                    "always runs one thread")
def test_threadpoolctl_limits_the_kernels():
    """threadpoolctl finds pybackprop's OpenMP runtime and its limit holds for the kernels
    (they read OpenMP's nthreads-var at each call); set_num_threads still wins over it."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl (the bench "
                                        "extra) is not installed")
    pybackprop.set_num_threads(None)
    try:
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert pybackprop.get_num_threads() == 1
            x = np.ones((64, 64), np.float32)
            pybackprop.dense_forward(x, x)  # runs (on one thread)
            pybackprop.set_num_threads(2)
            assert pybackprop.get_num_threads() == 2
            pybackprop.set_num_threads(None)
            assert pybackprop.get_num_threads() == 1
        with threadpoolctl.threadpool_limits(2, user_api="openmp"):
            assert pybackprop.get_num_threads() == 2
    finally:
        pybackprop.set_num_threads(None)
