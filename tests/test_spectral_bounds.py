"""Tests of the spectral norm's bounds: sigma_upper_bound, lipschitz_constant and
lipschitz_bound (pybackprop/spectral.py).

The power-iteration estimate <= the true sigma <= the certified upper bound over matrices
from the rank-one to the ill-conditioned, the C bound against the numpy specification; the
Lipschitz bound against empirical ratios of random networks, each layer's estimate within
the lag its start vector and spectrum allow; the constants of gelu, gelu_tanh and silu.
Every tolerance is derived in the error model of tests/_spectral_cases.py.
"""
import math

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref

from _spectral_cases import (ARCHS, DTYPES, _eps, gapped, lower_tol, orthonormal, power_lag,
                             sigma_true, svd_tol, unit, using)


def _bound_cases(rng):
    yield "gauss", rng.standard_normal((60, 45))
    yield "gauss-wide", rng.standard_normal((20, 200))
    yield "gapped", gapped(rng, 50, 70, np.float64, 0.95)[0]
    yield "rank1", np.outer(rng.standard_normal(31), rng.standard_normal(17))
    yield "identity", np.eye(40)
    yield "tiny", rng.standard_normal((25, 30)) * 1e-150
    yield "huge", rng.standard_normal((25, 30)) * 1e150
    yield "single", np.array([[-3.0]])
    yield "row", rng.standard_normal((1, 50))
    yield "col", rng.standard_normal((50, 1))
    yield "ill", (orthonormal(rng, 40, 40) * np.logspace(0, -12, 40)) @ orthonormal(rng, 40, 40).T


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_squarings", [0, 1, 4, 8])
def test_lower_le_sigma_le_upper(arch, dtype, n_squarings, rng):
    """Power-iteration estimate <= true sigma <= certified upper bound, for many matrices."""
    with using(arch):
        for name, w in _bound_cases(rng):
            if dtype == np.float32 and name in ("tiny", "huge"):
                w = w / np.abs(w).max() * (1e-30 if name == "tiny" else 1e30)
            w = w.astype(dtype)
            N, K = w.shape
            true = sigma_true(w)
            u, v = unit(rng, N, dtype), unit(rng, K, dtype)
            lower = float(pb.power_iteration(w, u, v, n_iters=20))
            upper = pb.sigma_upper_bound(w, n_squarings=n_squarings)
            assert lower <= true * (1 + lower_tol(dtype, N, K)), name
            assert upper >= true * (1 - svd_tol(N, K)), name
            # and the bound is informative: within its proven factor m^(1/2^(j+2)), + slack
            assert upper <= true * min(N, K) ** (1 / 2 ** (n_squarings + 2)) * (1 + 1e-6), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_upper_bound_matches_reference(dtype, rng):
    """The C chain and the numpy specification give the same bound up to rounding."""
    for name, w in _bound_cases(rng):
        if dtype == np.float32 and name in ("tiny", "huge"):
            continue
        w = w.astype(dtype)
        got, want = pb.sigma_upper_bound(w), ref.sigma_upper_bound(w)
        assert abs(got - want) <= 1e-9 * want, name


# ---- Lipschitz bound ---------------------------------------------------------------------
NETS = [("relu", "relu", "identity"), ("tanh", "tanh", "tanh"),
        ("sigmoid", "sigmoid", "identity"), ("relu", "sigmoid", "tanh"),
        ("leaky_relu", "softplus", "identity"), ("gelu", "silu", "gelu_tanh")]


def _network(rng, widths, dtype):
    ws = [rng.standard_normal((widths[i + 1], widths[i])).astype(dtype) / math.sqrt(widths[i])
          for i in range(len(widths) - 1)]
    bs = [rng.standard_normal(widths[i + 1]).astype(dtype) for i in range(len(widths) - 1)]
    return ws, bs


def _forward(x, ws, bs, acts, slope):
    for w, b, act in zip(ws, bs, acts):
        x = pb.dense_forward(x, w, b, activation=act, negative_slope=slope)
    return x


@pytest.mark.parametrize("acts", NETS, ids=lambda a: "-".join(a))
@pytest.mark.parametrize("dtype", DTYPES)
def test_lipschitz_bound_holds(acts, dtype, rng):
    """bound >= ||f(x1) - f(x2)|| / ||x1 - x2|| over random pairs and top directions."""
    slope = 1.5  # leaky_relu with slope > 1: its constant is the slope
    ws, bs = _network(rng, [12, 20, 16, 7], dtype)
    B = 4000
    x1 = rng.standard_normal((B, 12)).astype(dtype)
    # random pairs at several distances, and small steps along the first layer's top
    # right singular vector (where the linear part stretches most)
    d = rng.standard_normal((B, 12)) * np.logspace(-3, 0, B)[:, None]
    v1 = np.linalg.svd(ws[0].astype(np.float64))[2][0]
    d[: B // 4] = np.outer(np.logspace(-3, 0, B // 4), v1)
    x2 = (x1 + d).astype(dtype)
    f1, f2 = _forward(x1, ws, bs, acts, slope), _forward(x2, ws, bs, acts, slope)
    dx = np.linalg.norm((x1 - x2).astype(np.float64), axis=1)
    ratio = np.linalg.norm((f1 - f2).astype(np.float64), axis=1) / dx
    # rounding of f in the dtype: |f| ~ 1, so a difference carries ~ 16 eps sqrt(width) noise
    noise = 16 * _eps(dtype) * math.sqrt(20) * 3 / dx
    emp = float(np.max(ratio - noise))
    cert, fc = pb.lipschitz_bound(ws, acts, negative_slope=slope, certified=True)
    est, fe = pb.lipschitz_bound(ws, acts, negative_slope=slope)
    assert cert >= emp and est >= emp
    assert est <= cert * (1 + 1e-5)
    assert cert == pytest.approx(math.prod(fc), rel=1e-12)
    lips = [pb.lipschitz_constant(a, slope) for a in acts]
    for layer, (f, w, lip) in enumerate(zip(fe, ws, lips)):
        s, tol = sigma_true(w), lower_tol(dtype, *w.shape)
        lag = power_lag(w, layer, 100)  # the default n_iters
        assert s * lip * (1 - lag - tol) <= f <= s * lip * (1 + tol), (layer, lag)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lipschitz_one_linear_layer_is_sigma(dtype, rng):
    """For x -> W x the bound is sigma(W), attained along the top right singular vector."""
    w = rng.standard_normal((15, 11)).astype(dtype)
    true = sigma_true(w)
    est, factors = pb.lipschitz_bound([w], ["identity"])
    cert, _ = pb.lipschitz_bound([w], [None], certified=True, n_squarings=8)
    assert factors == [est]
    assert abs(est - true) <= 4 * lower_tol(dtype, 15, 11) * true
    assert true * (1 - svd_tol(15, 11)) <= cert <= true * 11 ** (1 / 2**10) * (1 + 1e-6)
    v1 = np.linalg.svd(w.astype(np.float64))[2][0]
    x = rng.standard_normal(11)
    ratio = np.linalg.norm(w.astype(np.float64) @ v1)  # ||W (x + v1) - W x|| / ||v1||
    assert ratio == pytest.approx(true, rel=1e-12)
    assert pb.lipschitz_bound([w], ["sigmoid"])[0] == pytest.approx(est / 4, rel=1e-12)
    assert pb.lipschitz_bound([w], ["leaky_relu"], negative_slope=3.0)[0] == \
        pytest.approx(3 * est, rel=1e-12)
    del x
    rb, rf = ref.lipschitz_bound([w.astype(np.float64)], ["identity"])
    assert rb == pytest.approx(true, rel=1e-9)


# Where each derivative peaks (the root of the second derivative), for the sweeps below.
PREACT_ARGMAX = {"gelu": math.sqrt(2), "gelu_tanh": 1.41850400879083, "silu": 2.39935728051547}


@pytest.mark.parametrize("kind", sorted(PREACT_ARGMAX))
def test_lipschitz_constants_of_gelu_and_silu(kind):
    """lipschitz_constant of gelu, gelu_tanh, silu is sup |act'|: at least the largest
    |act'(z)| (the reference's derivative from z, float64) on a wide grid over [-30, 30]
    and a grid of step 1e-8 around the maximum, and within 1e-9 of it (act' is flat to
    second order at its maximum: a grid of step h misses at most h^2 / 8 times the largest
    |third derivative|, below 1e-17 here)."""
    zs = np.concatenate([np.linspace(-30.0, 30.0, 600001),
                         PREACT_ARGMAX[kind] + np.linspace(-1e-3, 1e-3, 200001)])
    d = ref.activation_backward(np.ones_like(zs), None, kind, preact=zs)
    sweep = float(np.max(np.abs(d)))
    lip = pb.lipschitz_constant(kind)
    assert sweep <= lip <= sweep + 1e-9
    assert abs(zs[np.argmax(np.abs(d))] - PREACT_ARGMAX[kind]) < 1e-4


@pytest.mark.parametrize("kind", sorted(PREACT_ARGMAX))
def test_lipschitz_bound_uses_the_gelu_and_silu_constants(kind, rng):
    """A network with a gelu, gelu_tanh or silu layer: that layer's factor is sigma(W)
    times the activation's constant, estimated and certified alike."""
    lip = pb.lipschitz_constant(kind)
    assert lip > 1.0  # above identity's: these activations stretch past their maxima
    w1, w2 = rng.standard_normal((9, 6)), rng.standard_normal((4, 9))
    est, fe = pb.lipschitz_bound([w1, w2], [kind, "identity"])
    lin, fl = pb.lipschitz_bound([w1, w2], [None, None])
    assert fe == pytest.approx([lip * fl[0], fl[1]], rel=1e-12)
    assert est == pytest.approx(lip * lin, rel=1e-12)
    cert, fc = pb.lipschitz_bound([w1], [kind], certified=True)
    plain, _ = pb.lipschitz_bound([w1], [None], certified=True)
    assert fc == [cert] and cert == pytest.approx(lip * plain, rel=1e-12)


def test_lipschitz_errors():
    """Mismatched lengths and unknown activations raise ValueError."""
    w = np.eye(3)
    with pytest.raises(ValueError, match="activations"):
        pb.lipschitz_bound([w, w], ["relu"])
    with pytest.raises(ValueError, match="activation"):
        pb.lipschitz_bound([w], ["mish"])
    with pytest.raises(ValueError, match="negative_slope"):
        pb.lipschitz_bound([w], ["leaky_relu"], negative_slope=-1.0)
