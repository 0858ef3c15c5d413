"""What the dense tests share: dtypes, activations, shapes that meet every path and block,
random layers, and the reference comparisons with pybackprop/_bounds.py's error model."""
import numpy as np

from pybackprop import reference as ref
from pybackprop._bounds import SLOPE, backward_bounds, eps_of, lipschitz, tiny_of, up

from _helpers import assert_within

DTYPES = (np.float32, np.float64)
# the activations differentiated from the output y (gelu, gelu_tanh and silu, from the
# pre-activation z: test_dense_preact.py)
ACTIVATIONS = tuple(k for k in ref.ACTIVATIONS if k not in ref.PREACT_ACTIVATIONS)

# (B, K, N): batch rows, input features, output features.
SHAPES = [
    (1, 1, 1),
    (1, 7, 5),        # B = 1 (one row)
    (3, 1, 4),        # K = 1
    (5, 6, 1),        # N = 1
    (2, 13, 17),
    (17, 31, 29),     # primes: no dimension is a multiple of any tile
    (33, 65, 47),     # one past multiples of 16/32/64
    (64, 64, 64),     # exact multiples
    (400, 3, 2),      # tall
    (2, 3, 8209),     # wide: N crosses the N cache block (y, and dw's rows)
    (3, 8200, 2),     # deep: K crosses the N cache block of dw and dx
    (1, 520, 70),     # K crosses the K cache block, B = 1
    (130, 300, 70),   # crosses the K and M cache blocks
    (530, 1030, 70),  # crosses the K and M cache blocks of every configuration
]
# (test_shapes_cross_the_cache_blocks checks that these shapes cross the blocks of the
# configuration under test.)
BUFFER_SHAPES = [(1, 1, 1), (5, 6, 1), (17, 31, 29), (130, 300, 70)]
ZERO_SHAPES = [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (0, 5, 0), (1, 0, 1)]
# Big enough that every pass runs threaded: GEMM split by M blocks and by micro-panels, the
# dz/db pass (B*N >= 32768, N > 64 columns) and the elementwise kernels.
THREAD_SHAPES = [(130, 300, 70), (520, 70, 130), (24, 300, 200),  # packed x2, dot-product,
                 (62, 300, 205)]  # transposed-tile
LEAKY_SLOPES = [0.0, 0.2, 1.5]


def _shape_id(s):
    return "B%dK%dN%d" % s




# ---- error model: every tolerance of this file ------------------------------------------
# The bounds of dense_forward, dense_backward and the activations are pybackprop/_bounds.py's
# (derived there: Higham's gamma_n per addend, the activations' Lipschitz constants, the
# elementary functions' ulp errors); `python -m pybackprop check` asserts the same ones.
# Central differences in float64 with step h: truncation h^2/6 |L'''| ~ 1e-13 plus roundoff
# ~ eps |L| / h ~ 1e-8 for |L| ~ 50; FD_TOL is 100x that, yet 1e5x below the O(|grad|)
# error of any wrong formula.
FD_STEP = 1e-6
FD_TOL = 1e-6
_eps, _tiny, _up, _lipschitz = eps_of, tiny_of, up, lipschitz


def make_dense(rng, shape, dtype, bias=True):
    """Random x (B, K), w (N, K), b (N,) or None, with pre-activations of order 1."""
    B, K, N = shape
    x = rng.standard_normal((B, K)).astype(dtype)
    w = (rng.standard_normal((N, K)) / np.sqrt(max(K, 1))).astype(dtype)
    b = (0.5 * rng.standard_normal(N)).astype(dtype) if bias else None
    return x, w, b


def make_backward(rng, shape, dtype, kind, slope=SLOPE):
    """dy, x, w and a genuine saved output y = act(x @ w.T + b) in ``dtype``."""
    x, w, b = make_dense(rng, shape, dtype)
    y = ref.dense_forward(x, w, b, activation=kind, negative_slope=slope)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return dy, x, w, y


def reference_forward(x, w, b, kind, slope=SLOPE):
    return ref.dense_forward(_up(x), _up(w), _up(b), activation=kind, negative_slope=slope)


def reference_backward(dy, x, w, y, kind, slope=SLOPE, need_dx=True):
    return ref.dense_backward(_up(dy), _up(x), _up(w), _up(y), activation=kind,
                              negative_slope=slope, need_dx=need_dx)


def check_backward(got, dy, x, w, y, kind, dtype, slope=SLOPE, need_dx=True, old=None):
    """Compare (dx, dw, db) of ours with the reference (plus ``old`` when accumulating)."""
    expected = list(reference_backward(dy, x, w, y, kind, slope, need_dx))
    bounds = backward_bounds(dy, x, w, y, kind, dtype, slope, old)
    for i, name in enumerate(("dx", "dw", "db")):
        if expected[i] is None:
            assert got[i] is None, f"{name} should be None"
            continue
        assert got[i].dtype == dtype, f"{name} has dtype {got[i].dtype}"
        if old is not None:
            expected[i] = expected[i] + _up(old[i])
        assert_within(got[i], expected[i], bounds[i], name)


