"""Tests of the spectral norm: power_iteration, spectral_normalize, spectral_norm_backward,
sigma_upper_bound, lipschitz_bound and SpectralNorm (pybackprop/spectral.py).

Parity with pybackprop.reference after 1, 5 and 50 iterations on every dispatch path and
both dtypes; convergence to numpy's 2-norm at the rate the spectral gap predicts; exactness
on rank-1 matrices; lower <= sigma <= upper; the backward by finite differences; Lipschitz
bounds against empirical ratios of random networks; degenerate inputs; the error contract
(u, v are updated in place, so a bad one raises before anything is written); thread-count
independence; PyTorch parity when torch is importable. Every tolerance is derived in the
error model below. Speed is not tested here (bench/bench_spectral.py).
"""
import contextlib
import math
import zlib

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref

ARCHS = tuple(pb.available_archs())
DTYPES = (np.float32, np.float64)
ITERS = (1, 5, 50)
# (N, K): square, tall, wide, a single row, a single column, odd sizes past vector widths.
SHAPES = [(1, 1), (1, 37), (37, 1), (2, 3), (17, 17), (33, 65), (130, 31), (31, 130),
          (67, 203), (300, 257)]
THREAD_SHAPES = [(300, 257), (1031, 129)]
RHO = 0.5  # s_2 / s_1 of the gapped test matrices

# ---- error model: every tolerance of this file ------------------------------------------
# eps = np.finfo(dtype).eps. A matrix-vector product of length n, summed in any order with or
# without FMA, errs by |fl(Wx) - Wx| <= gamma_n |W||x| [Higham, ASNA, (3.5)]; with rounding
# errors behaving as a random walk the typical size is eps sqrt(n) |W||x| (the bench's model
# _common.tolerance, 16 eps sqrt(n) with a safety factor 16).
# PARITY: one iteration (two products, two normalisations) of ours and of the reference each
#   commit about 16 eps (sqrt(N) + sqrt(K)) relative to sigma_1 for the gapped matrices
#   (||W||_F <= 2 sigma_1: s_i <= RHO^(i-1)); normalising divides by ||W x|| >= sigma_1 / A,
#   A = sigma_1 / ||W v_0|| (measured on the start vector: large when v_0 is nearly
#   orthogonal to v_1), and the error left by one iteration is contracted by RHO^2 in the
#   next: the sum over iterations is at most 1 / (1 - RHO^2). Two implementations: x 2.
#   tol = 2 * 16 eps (sqrt N + sqrt K) A^2 / (1 - RHO^2), absolute on the unit vectors u, v,
#   relative on sigma.
# LOWER: the power-iteration sigma u.(Wv) with unit u, v is <= sigma_max in exact
#   arithmetic; its rounding adds at most 16 eps (sqrt N + sqrt K) relative.
# SVD: numpy's 2-norm (LAPACK SVD in float64 of the dtype's values) is within
#   8 m eps64 sigma of the exact value (backward stable SVD, m = min(N, K) + 1).
# CONVERGE: relative error of sigma after n iterations <= (RHO^(2n-1) tan theta_0)^2 / 2,
#   theta_0 the angle of v_0 to v_1 (u_n is within RHO tan theta(v_{n-1}) of u_1, and
#   sigma = ||W^T u_n|| >= sigma_1 cos theta(u_n)); the target is 1e-6 (float64).
# LAG: lipschitz_bound's sigma after n iterations from its documented start v_0 (u, v drawn
#   from default_rng(layer), u first) is ||A x|| / ||W x|| with A = W^T W and x = v_{n-1} =
#   A^(n-1) v_0 / ||.||; that is <= sigma_1 and >= sqrt(x^T A x) (Cauchy-Schwarz), so
#   0 <= 1 - sigma / sigma_1 <= sum_{i>1} (c_i / c_1)^2 (s_i / s_1)^(4(n-1)) (1 - s_i^2 / s_1^2),
#   c = V^T v_0 (power_lag): exact for any gap, however small. Rounding adds LOWER.
# BACKWARD: dw = (G - a u v^T) * (1/sigma) commits a few roundings per entry plus <G, W>
#   (N K terms): 16 eps (4 + sqrt(N K)) relative to max |G| / sigma + |a| |u||v| / sigma.
# FD: central differences in float64 with h = 1e-6 on an O(1) loss: truncation h^2 |L'''|
#   ~ 1e-12, cancellation eps |L| / h ~ 1e-10; FD_TOL = 1e-7, far below the O(1e-2..1)
#   gradient entries a wrong formula changes.
# UPPER_SLACK: the certified bound is never below sigma (test: >= the SVD value within SVD).
FD_H, FD_TOL = 1e-6, 1e-7


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def parity_tol(dtype, N, K, amp=1.0):
    return 2 * 16 * _eps(dtype) * (math.sqrt(N) + math.sqrt(K)) * amp**2 / (1 - RHO**2)


def lower_tol(dtype, N, K):
    return 16 * _eps(dtype) * (math.sqrt(N) + math.sqrt(K))


def svd_tol(N, K):
    return 8 * (min(N, K) + 1) * _eps(np.float64)


def backward_tol(dtype, N, K):
    return 16 * _eps(dtype) * (4 + math.sqrt(N * K))


# ---- helpers -----------------------------------------------------------------------------
@pytest.fixture
def rng(request):
    """A random generator seeded from the test's node id."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@contextlib.contextmanager
def using(arch=None, threads=None):
    """Run a block on one SIMD path and/or thread count, restoring both afterwards."""
    saved_arch, saved_threads = pb.get_arch(), pb.get_num_threads()
    try:
        if arch is not None:
            pb.set_arch(arch)
        if threads is not None:
            pb.set_num_threads(threads)
        yield
    finally:
        pb.set_arch(saved_arch)
        pb.set_num_threads(saved_threads)


def orthonormal(rng, n, m):
    q, r = np.linalg.qr(rng.standard_normal((n, m)))
    return q * np.sign(np.diag(r))


def gapped(rng, N, K, dtype, rho=RHO):
    """U diag(s) V^T with s_i = rho^(i-1): sigma_1 = 1, gap s_2 / s_1 = rho. Returns
    (w, v_1) with w cast to dtype and v_1 the top right singular vector (float64)."""
    m = min(N, K)
    U, V = orthonormal(rng, N, m), orthonormal(rng, K, m)
    s = rho ** np.arange(m)
    return ((U * s) @ V.T).astype(dtype), V[:, 0]


def unit(rng, n, dtype):
    x = rng.standard_normal(n)
    return (x / np.linalg.norm(x)).astype(dtype)


def sigma_true(w):
    w = np.asarray(w, np.float64)
    return float(np.linalg.norm(w, 2)) if w.size else 0.0


def power_lag(w, layer, n_iters):
    """The LAG bound of lipschitz_bound's estimate for layer `layer`, weight w."""
    w = np.asarray(w, np.float64)
    start = np.random.default_rng(layer)
    start.standard_normal(w.shape[0])  # u, drawn first
    v0 = start.standard_normal(w.shape[1])
    _, s, vt = np.linalg.svd(w)
    c = vt @ (v0 / np.linalg.norm(v0))
    r = s[1:] / s[0]
    return float(np.sum((c[1:len(s)] / c[0]) ** 2 * r ** (4 * (n_iters - 1)) * (1 - r**2)))


def amplification(w, v0):
    """A = sigma_1 / ||W v_0|| of the error model."""
    w = np.asarray(w, np.float64)
    return sigma_true(w) / max(np.linalg.norm(w @ np.asarray(v0, np.float64)), 1e-300)


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


# ---- the error contract ----------------------------------------------------------------------
def _bad_states(dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    ro = np.zeros(13, dtype)
    ro.flags.writeable = False
    return [
        ("shape", lambda u, v: (np.zeros(10, dtype), v), ValueError, "u has shape"),
        ("shape-v", lambda u, v: (u, np.zeros(12, dtype)), ValueError, "v has shape"),
        ("2d", lambda u, v: (u.reshape(9, 1), v), ValueError, "u has shape"),
        ("dtype", lambda u, v: (u.astype(other), v), TypeError, "u has"),
        ("list", lambda u, v: (list(u), v), TypeError, "u must be a numpy.ndarray"),
        ("strided", lambda u, v: (u, np.zeros(26, dtype)[::2]), ValueError, "C-contiguous"),
        ("readonly", lambda u, v: (u, ro), ValueError, "read-only"),
        ("alias", lambda u, v: (u, u), ValueError, "shape|overlaps"),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(8))
def test_bad_state_raises_before_writing(dtype, case, rng):
    """A bad u or v raises TypeError/ValueError naming it; neither vector is written."""
    name, make, exc, msg = _bad_states(dtype)[case]
    w = rng.standard_normal((9, 13)).astype(dtype)
    u, v = unit(rng, 9, dtype), unit(rng, 13, dtype)
    bu, bv = make(u, v)
    saved = [np.array(x, copy=True) for x in (bu, bv)]
    with pytest.raises(exc, match=msg):
        pb.power_iteration(w, bu, bv, n_iters=3)
    for x, s in zip((bu, bv), saved):
        assert np.array_equal(np.asarray(x), s)


def test_u_overlapping_w_raises(rng):
    """u may not be a view into w."""
    w = rng.standard_normal((9, 9))
    v = unit(rng, 9, np.float64)
    saved = w.copy()
    with pytest.raises(ValueError, match="u overlaps the memory of w"):
        pb.power_iteration(w, w[0], v)
    assert np.array_equal(w, saved)


def test_argument_errors(rng):
    """Bad w, n_iters, eps, sigma, shapes and mixed dtypes raise, naming the argument."""
    w = rng.standard_normal((4, 3))
    u, v = unit(rng, 4, np.float64), unit(rng, 3, np.float64)
    with pytest.raises(ValueError, match="w must be 2-D"):
        pb.power_iteration(w.ravel(), u, v)
    with pytest.raises(ValueError, match="n_iters"):
        pb.power_iteration(w, u, v, n_iters=-1)
    with pytest.raises(ValueError, match="eps"):
        pb.power_iteration(w, u, v, eps=float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        pb.power_iteration(w.astype(np.float32), u, v)
    with pytest.raises(TypeError, match="sigma"):
        pb.spectral_normalize(w, None)
    with pytest.raises(ValueError, match="grad_wsn has shape"):
        pb.spectral_norm_backward(w[:3], w, u, v, 1.0)
    with pytest.raises(ValueError, match="u has shape"):
        pb.spectral_norm_backward(w, w, v, v, 1.0)
    with pytest.raises(ValueError, match="n_squarings"):
        pb.sigma_upper_bound(w, n_squarings=31)
    out = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="out has"):
        pb.spectral_normalize(w, 2.0, out=out)
    assert not out.any()


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


# ---- inputs that are not ndarrays, masked arrays, atomic state --------------------------------
def test_state_inside_a_buffer_w_is_refused(rng):
    """power_iteration with w a memoryview and u inside w's memory raises before writing
    (unchecked, it would give a wrong sigma and overwrite w); so do the out= of
    spectral_normalize, spectral_norm_backward and SpectralNorm.normalize over such a w."""
    buf = rng.standard_normal(4 * 3 + 1)
    before = buf.copy()
    wv = memoryview(buf[:12]).cast("B").cast("d", (4, 3))
    with pytest.raises(ValueError, match="overlaps the memory of w"):
        pb.power_iteration(wv, buf[8:12], np.ones(3) / 3 ** 0.5)
    with pytest.raises(ValueError, match="overlaps the memory of w"):
        pb.spectral_normalize(wv, 2.0, out=buf[1:13].reshape(4, 3))
    with pytest.raises(ValueError, match="overlaps the memory of w"):
        pb.spectral_norm_backward(np.ones((4, 3)), wv, np.ones(4), np.ones(3), 2.0,
                                  out=buf[1:13].reshape(4, 3))
    with pytest.raises(ValueError, match="overlaps the memory of w"):
        pb.SpectralNorm((4, 3), np.float64, seed=0).normalize(wv, out=buf[1:13].reshape(4, 3))
    assert np.array_equal(buf, before)


MASKED_CALLS = [
    ("power_iteration w", lambda m: pb.power_iteration(m, np.ones(2), np.ones(3))),
    ("power_iteration u", lambda m: pb.power_iteration(np.ones((2, 3)), m[:, 0], np.ones(3))),
    ("spectral_normalize", lambda m: pb.spectral_normalize(m, 2.0)),
    ("spectral_normalize out", lambda m: pb.spectral_normalize(np.ones((2, 3)), 2.0, out=m)),
    ("spectral_norm_backward", lambda m: pb.spectral_norm_backward(
        m, np.ones((2, 3)), np.ones(2), np.ones(3), 2.0)),
    ("sigma_upper_bound", lambda m: pb.sigma_upper_bound(m)),
    ("lipschitz_bound", lambda m: pb.lipschitz_bound([m], ["relu"])),
    ("SpectralNorm.normalize", lambda m: pb.SpectralNorm((2, 3), np.float64).normalize(m)),
]


@pytest.mark.parametrize("name,call", MASKED_CALLS, ids=[n for n, _ in MASKED_CALLS])
def test_masked_arrays_are_refused(name, call):
    """A numpy.ma.MaskedArray (weight, state vector or out=) raises TypeError."""
    m = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="MaskedArray"):
        call(m)
    assert np.array_equal(m.data, np.ones((2, 3)))


@pytest.mark.parametrize("bad", [dict(last_sigma="abc"), dict(last_sigma=np.ones(2)),
                                 dict(warmed_up=np.ones(2)), dict(eps=-1.0),
                                 dict(n_iters=-1), dict(warmup=2**31)])
def test_spectral_norm_load_state_dict_is_atomic(bad, rng):
    """A bad entry anywhere in the state raises ValueError and leaves every part of the
    state (u, v, n_iters, eps, warmup, warmed_up, last_sigma) as it was."""
    w = rng.standard_normal((5, 4))
    good = pb.SpectralNorm((5, 4), np.float64, seed=3, n_iters=2)
    good.normalize(w)
    target = pb.SpectralNorm((5, 4), np.float64, seed=4)
    before = target.state_dict()
    with pytest.raises(ValueError):
        target.load_state_dict(dict(good.state_dict(), **bad))
    after = target.state_dict()
    assert np.array_equal(after.pop("u"), before.pop("u"))
    assert np.array_equal(after.pop("v"), before.pop("v"))
    assert after == before


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
