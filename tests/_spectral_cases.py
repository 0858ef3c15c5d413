"""What the spectral-norm tests share: the dispatch paths and dtypes under test, the error
model behind every tolerance, the test matrices with a known spectrum (gapped, rank one),
the exact sigma and the bound on the power iteration's lag."""
import contextlib
import math

import numpy as np

import pybackprop as pb

ARCHS = tuple(pb.available_archs())
DTYPES = (np.float32, np.float64)
ITERS = (1, 5, 50)
# (N, K): square, tall, wide, a single row, a single column, odd sizes past vector widths.
SHAPES = [(1, 1), (1, 37), (37, 1), (2, 3), (17, 17), (33, 65), (130, 31), (31, 130),
          (67, 203), (300, 257)]
THREAD_SHAPES = [(300, 257), (1031, 129)]
RHO = 0.5  # s_2 / s_1 of the gapped test matrices

# ---- error model: every tolerance of the spectral-norm tests ---------------------------
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
