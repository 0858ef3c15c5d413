"""Tests of the SpectralNorm class (pybackprop/spectral.py): the functional calls it makes,
its state dict, and parity with torch.nn.utils.parametrizations.spectral_norm when torch is
importable.
"""
import numpy as np
import pytest

import pybackprop as pb

from _spectral_cases import DTYPES, parity_tol


# ---- the class -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_spectral_norm_class_matches_functional(dtype, rng):
    """SpectralNorm = seeded normalised u, v; warmup + n_iters on the first call; n_iters
    on later calls; backward uses the call's u, v, sigma."""
    w = rng.standard_normal((21, 13)).astype(dtype)
    g = rng.standard_normal((21, 13)).astype(dtype)
    sn = pb.SpectralNorm((21, 13), dtype=dtype, n_iters=2, warmup=7, seed=123)
    gen = np.random.default_rng(123)
    u = gen.standard_normal(21).astype(dtype)
    v = gen.standard_normal(13).astype(dtype)
    u /= np.linalg.norm(u)
    v /= np.linalg.norm(v)
    np.testing.assert_array_equal(sn.u, u)
    np.testing.assert_array_equal(sn.v, v)
    wsn = sn.normalize(w)
    s = pb.power_iteration(w, u, v, n_iters=9)
    assert sn.last_sigma == s and np.array_equal(wsn, w / s)
    assert np.array_equal(sn.backward(g, w), pb.spectral_norm_backward(g, w, u, v, s))
    assert sn.sigma(w) == pb.power_iteration(w, u, v, n_iters=2)
    assert sn.sigma(w, n_iters=0) == pb.power_iteration(w, u, v, n_iters=0)
    np.testing.assert_array_equal(sn.u, u)
    with pytest.raises(ValueError, match="shape"):
        sn.sigma(w[:3])
    with pytest.raises(TypeError, match="dtype"):
        sn.sigma(w.astype(np.float32 if dtype == np.float64 else np.float64))


def test_spectral_norm_state_dict_roundtrip(rng):
    """state_dict/load_state_dict restore the state exactly: identical next results."""
    w = rng.standard_normal((30, 17)).astype(np.float32)
    a = pb.SpectralNorm((30, 17), seed=1)
    a.normalize(w)
    state = a.state_dict()
    b = pb.SpectralNorm((30, 17), seed=2, n_iters=5, warmup=0)
    b.load_state_dict(state)
    state["u"][:] = 0  # the loaded state is a copy
    for _ in range(3):
        assert np.array_equal(a.normalize(w), b.normalize(w))
    assert np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert a.state_dict().keys() == b.state_dict().keys()
    fresh = pb.SpectralNorm((30, 17), seed=1)
    fresh.load_state_dict(pb.SpectralNorm((30, 17), seed=1).state_dict())
    assert fresh.warmed_up is False
    with pytest.raises(ValueError, match="state\\['u'\\]"):
        b.load_state_dict(dict(state, u=np.zeros(29, np.float32)))
    with pytest.raises(ValueError, match="state\\['v'\\]"):
        b.load_state_dict(dict(state, v=np.zeros(17, np.float64)))


# ---- PyTorch ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_parametrization(dtype, rng):
    """Same u, v and w / sigma as torch.nn.utils.parametrizations.spectral_norm (training)."""
    torch = pytest.importorskip("torch")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    N, K = 23, 17
    lin = torch.nn.Linear(K, N, bias=False).to(tdt)
    torch.nn.utils.parametrizations.spectral_norm(lin, n_power_iterations=3)
    par = lin.parametrizations.weight
    w = par.original.detach().numpy().copy()
    u, v = par[0]._u.detach().numpy().copy(), par[0]._v.detach().numpy().copy()
    lin.train()
    want = lin.weight.detach().numpy()
    got_s = pb.power_iteration(w, u, v, n_iters=3)
    got = pb.spectral_normalize(w, got_s)
    tol = parity_tol(dtype, N, K, 1.0) * 4
    np.testing.assert_allclose(u, par[0]._u.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(v, par[0]._v.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
