"""Tests of the power iteration and the spectral normalisation: power_iteration,
spectral_normalize and spectral_norm_backward (pybackprop/spectral.py).

Parity with pybackprop.reference after 1, 5 and 50 iterations on every dispatch path and
both dtypes; convergence to numpy's 2-norm at the rate the spectral gap predicts; exactness
on rank-1 matrices; the backward by finite differences; degenerate inputs; thread-count
independence; long runs in chunks and Ctrl-C. Every tolerance is derived in the error model
of tests/_spectral_cases.py. Speed is not tested here (bench/bench_spectral.py).
"""
import math

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref

from _spectral_cases import (ARCHS, DTYPES, FD_H, FD_TOL, ITERS, SHAPES, THREAD_SHAPES,
                             amplification, backward_tol, gapped, lower_tol, parity_tol,
                             sigma_true, unit, using)


# ---- parity with the reference -------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N%dK%d" % s)
@pytest.mark.parametrize("n_iters", ITERS)
def test_power_iteration_parity(arch, dtype, shape, n_iters, rng):
    """u, v and sigma match the two-matvec reference from the same start."""
    N, K = shape
    w, _ = gapped(rng, N, K, dtype)
    u0, v0 = unit(rng, N, dtype), unit(rng, K, dtype)
    u, v, ur, vr = u0.copy(), v0.copy(), u0.copy(), v0.copy()
    with using(arch):
        s = pb.power_iteration(w, u, v, n_iters=n_iters)
    sr = ref.power_iteration(w, ur, vr, n_iters=n_iters)
    assert isinstance(s, np.generic) and s.dtype == dtype
    tol = parity_tol(dtype, N, K, amplification(w, v0))
    np.testing.assert_allclose(u, ur, rtol=0, atol=tol)
    np.testing.assert_allclose(v, vr, rtol=0, atol=tol)
    assert abs(float(s) - float(sr)) <= tol * abs(float(sr))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 37), (37, 1), (33, 65), (300, 257)],
                         ids=lambda s: "N%dK%d" % s)
def test_power_iteration_eval_mode(arch, dtype, shape, rng):
    """n_iters=0 leaves u, v untouched and returns u . (w @ v)."""
    N, K = shape
    w = rng.standard_normal(shape).astype(dtype)
    u, v = unit(rng, N, dtype), unit(rng, K, dtype)
    u0, v0 = u.copy(), v.copy()
    with using(arch):
        s = pb.power_iteration(w, u, v, n_iters=0)
    assert np.array_equal(u, u0) and np.array_equal(v, v0)
    want = ref.power_iteration(w.astype(np.float64), u0.astype(np.float64),
                               v0.astype(np.float64), n_iters=0)
    scale = np.abs(u0).astype(np.float64) @ (np.abs(w).astype(np.float64) @ np.abs(v0))
    assert abs(float(s) - want) <= lower_tol(dtype, N, K) * scale


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N%dK%d" % s)
def test_normalize_and_backward_parity(arch, dtype, shape, rng):
    """w / sigma is exact IEEE division; the backward matches the reference formula."""
    N, K = shape
    w = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    u, v = unit(rng, N, dtype), unit(rng, K, dtype)
    sigma = dtype(1.7)
    with using(arch):
        wsn = pb.spectral_normalize(w, sigma)
        dw = pb.spectral_norm_backward(g, w, u, v, sigma)
    assert np.array_equal(wsn, ref.spectral_normalize(w, sigma))
    want = ref.spectral_norm_backward(g.astype(np.float64), w.astype(np.float64), u, v,
                                      float(sigma))
    a = abs(float(np.sum(g.astype(np.float64) * w / float(sigma))))
    scale = (np.abs(g).max() + a * np.abs(u).max() * np.abs(v).max()) / float(sigma)
    np.testing.assert_allclose(dw, want, rtol=0, atol=backward_tol(dtype, N, K) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffers(dtype, rng):
    """out= is written and returned, also in place (out=w, out=grad_wsn)."""
    w = rng.standard_normal((13, 9)).astype(dtype)
    g = rng.standard_normal((13, 9)).astype(dtype)
    u, v = unit(rng, 13, dtype), unit(rng, 9, dtype)
    want = pb.spectral_normalize(w, 3.0)
    want_dw = pb.spectral_norm_backward(g, w, u, v, 3.0)
    out = np.full_like(w, np.nan)
    assert pb.spectral_normalize(w, 3.0, out=out) is out and np.array_equal(out, want)
    w2 = w.copy()
    assert pb.spectral_normalize(w2, 3.0, out=w2) is w2 and np.array_equal(w2, want)
    out = np.full_like(w, np.nan)
    assert pb.spectral_norm_backward(g, w, u, v, 3.0, out=out) is out
    assert np.array_equal(out, want_dw)
    g2 = g.copy()
    assert pb.spectral_norm_backward(g2, w, u, v, 3.0, out=g2) is g2
    assert np.array_equal(g2, want_dw)


# ---- convergence, exactness, bounds ------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(40, 40), (90, 30), (30, 90), (257, 129)],
                         ids=lambda s: "N%dK%d" % s)
@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_convergence_at_predicted_rate(arch, shape, rho, rng):
    """float64: relative error < 1e-6 after the iterations the gap predicts."""
    N, K = shape
    w, v1 = gapped(rng, N, K, np.float64, rho)
    u, v = unit(rng, N, np.float64), unit(rng, K, np.float64)
    cos0 = abs(v @ v1)
    tan0 = math.sqrt(max(1 - cos0**2, 0.0)) / cos0
    # (rho^(2n-1) tan0)^2 / 2 <= 1e-7 (a tenth of the target, for rounding)
    n = max(1, math.ceil((math.log(tan0) - math.log(math.sqrt(2e-7))) / (2 * math.log(1 / rho))
                         + 0.5))
    with using(arch):
        s = pb.power_iteration(w, u, v, n_iters=n)
    true = sigma_true(w)
    assert abs(s - true) / true < 1e-6
    assert np.linalg.norm(w @ v - true * u) < 1e-3 * true  # u, v are the singular pair


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (33, 65), (300, 257)],
                         ids=lambda s: "N%dK%d" % s)
def test_rank_one_exact_after_one_iteration(arch, dtype, shape, rng):
    """w = a b^T: one iteration gives u = a/|a|, v = b/|b|, sigma = |a||b| (up to rounding)."""
    N, K = shape
    a, b = rng.standard_normal(N), rng.standard_normal(K)
    w = np.outer(a, b).astype(dtype)
    u, v = unit(rng, N, dtype), unit(rng, K, dtype)
    if float(v.astype(np.float64) @ b) < 0:  # sign of the start only flips u and v
        v = -v
    with using(arch):
        s = pb.power_iteration(w, u, v, n_iters=1)
    tol = 4 * lower_tol(dtype, N, K)
    true = sigma_true(w)
    assert abs(float(s) - true) <= tol * true
    np.testing.assert_allclose(u, a / np.linalg.norm(a), rtol=0, atol=tol)
    np.testing.assert_allclose(v, b / np.linalg.norm(b), rtol=0, atol=tol)


# ---- gradient ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (7, 5), (9, 17)],
                         ids=lambda s: "N%dK%d" % s)
def test_backward_finite_differences(arch, shape, rng):
    """spectral_norm_backward is the gradient of L(w / (u^T w v)) with u, v fixed."""
    N, K = shape
    w = rng.standard_normal(shape)
    c = rng.standard_normal(shape)  # L(w) = sum(c * w / sigma(w))
    u, v = unit(rng, N, np.float64), unit(rng, K, np.float64)
    if u @ w @ v < 0:
        u = -u

    def loss(wx):
        return float(np.sum(c * wx / (u @ wx @ v)))

    sigma = u @ w @ v
    with using(arch):
        got = pb.spectral_norm_backward(c, w, u, v, sigma)
    fd = np.empty(shape)
    for idx in np.ndindex(*shape):
        wp, wm = w.copy(), w.copy()
        wp[idx] += FD_H
        wm[idx] -= FD_H
        fd[idx] = (loss(wp) - loss(wm)) / (2 * FD_H)
    np.testing.assert_allclose(got, fd, rtol=0, atol=FD_TOL * max(1.0, np.abs(fd).max()))


# ---- degenerate inputs ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_matrix(arch, dtype, rng):
    """A zero matrix gives sigma 0, finite u and v, upper bound 0."""
    w = np.zeros((9, 13), dtype)
    u, v = unit(rng, 9, dtype), unit(rng, 13, dtype)
    with using(arch):
        assert pb.power_iteration(w, u, v, n_iters=0) == 0
        assert pb.power_iteration(w, u, v, n_iters=3) == 0
        assert np.all(np.isfinite(u)) and np.all(np.isfinite(v))
        assert pb.sigma_upper_bound(w) == 0.0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(arch, dtype, rng):
    """A NaN in w makes sigma, u, v, the upper bound and w / sigma NaN."""
    w = rng.standard_normal((9, 13)).astype(dtype)
    w[4, 7] = np.nan
    u, v = unit(rng, 9, dtype), unit(rng, 13, dtype)
    with using(arch):
        assert np.isnan(pb.power_iteration(w, u.copy(), v.copy(), n_iters=0))
        s = pb.power_iteration(w, u, v, n_iters=2)
        assert np.isnan(s) and np.isnan(u).any() and np.isnan(v).any()
        assert math.isnan(pb.sigma_upper_bound(w))
        assert np.isnan(pb.spectral_normalize(w, s)).all()
    w[4, 7] = np.inf
    assert pb.sigma_upper_bound(w) == math.inf


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty(shape):
    """Zero-size w: sigma 0, empty or zero vectors, no crash."""
    N, K = shape
    w = np.zeros(shape)
    u, v = np.full(N, 0.5), np.full(K, 0.5)
    assert pb.power_iteration(w, u, v, n_iters=2) == 0
    assert np.all(u == 0) and np.all(v == 0)
    assert pb.sigma_upper_bound(w) == 0.0
    assert pb.spectral_normalize(w, 2.0).shape == shape
    assert pb.spectral_norm_backward(w, w, np.zeros(N), np.zeros(K), 2.0).shape == shape


# ---- threads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=lambda s: "N%dK%d" % s)
def test_threads_bitwise(arch, dtype, shape, rng):
    """1 and 2 threads give bitwise-identical sigma, u, v, w / sigma and gradients."""
    N, K = shape
    w = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    u0, v0 = unit(rng, N, dtype), unit(rng, K, dtype)
    results = []
    for nt in (1, 2):
        with using(arch, nt):
            u, v = u0.copy(), v0.copy()
            s0 = pb.power_iteration(w, u, v, n_iters=0)
            s = pb.power_iteration(w, u, v, n_iters=3)
            results.append((s0, s, u, v, pb.spectral_normalize(w, s),
                            pb.spectral_norm_backward(g, w, u, v, s),
                            pb.sigma_upper_bound(w[:40, :60], n_squarings=2)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


# ---- long runs: chunked C calls, Ctrl-C ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_iteration_in_chunks_equals_one_run(monkeypatch, dtype):
    """power_iteration runs long counts as several C calls; the bits are those of one call
    (an iteration reads only w and v, sigma comes from the last)."""
    import pybackprop.spectral as sp
    rng = np.random.default_rng(3)
    w = rng.standard_normal((24, 40)).astype(dtype)
    u0, v0 = rng.standard_normal(24).astype(dtype), rng.standard_normal(40).astype(dtype)
    u1, v1 = u0.copy(), v0.copy()
    s1 = pb.power_iteration(w, u1, v1, n_iters=37)
    monkeypatch.setattr(sp, "_CHUNK_ITERS", 5)  # 37 = 7 calls of 5 and one of 2
    u2, v2 = u0.copy(), v0.copy()
    s2 = pb.power_iteration(w, u2, v2, n_iters=37)
    assert s1.tobytes() == s2.tobytes()
    assert u1.tobytes() == u2.tobytes() and v1.tobytes() == v2.tobytes()


def test_power_iteration_answers_ctrl_c():
    """n_iters = 2**31 - 1 on a 64 x 64 matrix (about an hour of work) stops within seconds
    of SIGINT with KeyboardInterrupt, u and v left unit vectors. In a child process, under
    a deadline (past 60 s the child prints every thread's stack and exits: the failure's
    message then says where it was). The child installs Python's SIGINT handler itself:
    Python leaves SIGINT ignored when it starts ignored (a suite run in the background)."""
    import subprocess
    import sys
    code = (
        "import faulthandler, os, signal, threading, time, numpy as np, pybackprop as pb\n"
        "faulthandler.dump_traceback_later(60, exit=True)\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "w = np.random.default_rng(0).standard_normal((64, 64))\n"
        "u = np.full(64, 0.125); v = np.full(64, 0.125)\n"
        "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    pb.power_iteration(w, u, v, n_iters=2**31 - 1)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', time.monotonic() - t, np.linalg.norm(u), np.linalg.norm(v))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    word, elapsed, nu, nv = out.stdout.split()
    assert word == "interrupted"
    assert float(elapsed) < 5.0
    unit = 68 * 2.0**-52  # a normalised 64-vector: (64 + 4) rounding errors at most
    assert abs(float(nu) - 1) <= unit and abs(float(nv) - 1) <= unit
