"""Tests of pybackprop.gradcheck: it accepts right gradients, rejects wrong ones, reports per
input, and checks the dense kernels of every activation (away from kinks).

Tolerances: central differences with relative step h = 1e-6 in float64 err by about
eps |f| / (h max|g|) (rounding; |f| / max|g| <= 1e3 in these tests: <= 2.2e-7) plus
h^2 max|f'''| / 6 (truncation, ~1e-12). FD_TOL = 1e-6 sits above both; the wrong gradients
below are off by 1e-3 or more relative, which must be reported as >= WRONG_MIN.
"""
import numpy as np
import pytest

import pybackprop
from pybackprop import reference as ref

FD_TOL = 1e-6
WRONG_MIN = 5e-4


def quadratic(a):
    """f(x) = 1/2 x^T A x + sum(x), gradient A x + 1 (A symmetric)."""
    def fn(x):
        return 0.5 * x @ a @ x + x.sum(), [a @ x + 1]
    return fn


def test_right_gradient_passes(rng):
    """An exact gradient gives an error at rounding level."""
    m = rng.standard_normal((6, 6))
    err = pybackprop.gradcheck(quadratic(m + m.T), [rng.standard_normal(6)])
    assert err[0] < FD_TOL


def test_wrong_gradient_fails(rng):
    """A gradient off by 0.1% (or a transposed matrix) is reported."""
    m = rng.standard_normal((6, 6))
    a = m + m.T
    x = rng.standard_normal(6)

    def scaled(x):
        v, g = quadratic(a)(x)
        return v, [g[0] * 1.001]

    def transposed(x):
        return 0.5 * x @ m @ x, [m @ x]  # the gradient of x^T M x / 2 is (M + M^T) x / 2

    assert pybackprop.gradcheck(scaled, [x])[0] >= WRONG_MIN
    assert pybackprop.gradcheck(transposed, [x])[0] >= WRONG_MIN


def test_per_input_results_and_wrt(rng):
    """One entry per input: None for inputs without a gradient or outside wrt."""
    w, x = rng.standard_normal((3, 4)), rng.standard_normal(4)
    labels = np.array([1])

    def fn(w, x, labels):
        y = w @ x
        return float(y[labels[0]]), [np.outer(np.eye(3)[labels[0]], x), w[labels[0]], None]

    err = pybackprop.gradcheck(fn, [w, x, labels])
    assert err[0] < FD_TOL and err[1] < FD_TOL and err[2] is None
    err = pybackprop.gradcheck(fn, [w, x, labels], wrt=[1])
    assert err[0] is None and err[1] < FD_TOL


def test_inputs_are_float64_copies(rng):
    """fn sees float64 copies; the caller's (float32) arrays are not modified."""
    x = rng.standard_normal(5).astype(np.float32)
    keep = x.copy()
    seen = []

    def fn(x):
        seen.append(x.dtype)
        return float(x @ x), [2 * x]

    assert pybackprop.gradcheck(fn, [x])[0] < FD_TOL
    assert seen[-1] == np.float64 and np.array_equal(x, keep)


def test_max_elements_subset(rng):
    """max_elements limits the calls: 2 per checked element, plus the first calls."""
    x = rng.standard_normal(50)
    calls = []

    def fn(x):
        calls.append(1)
        return float((x ** 3).sum()), [3 * x ** 2]

    err = pybackprop.gradcheck(fn, [x], max_elements=7, wrt=[0])
    assert err[0] < FD_TOL and len(calls) == 1 + 2 * 7


def test_nonfinite_is_nan(rng):
    """A NaN in the analytic gradient makes the error NaN (so `err < tol` fails)."""
    def fn(x):
        return float(x.sum()), [np.full_like(x, np.nan)]

    assert np.isnan(pybackprop.gradcheck(fn, [rng.standard_normal(3)])[0])


def test_bad_use_raises(rng):
    """Bad fn results and options raise clear errors."""
    x = rng.standard_normal(3)
    with pytest.raises(ValueError, match="scalar"):
        pybackprop.gradcheck(lambda x: (x, [x]), [x])
    with pytest.raises(ValueError, match="shape"):
        pybackprop.gradcheck(lambda x: (x.sum(), [np.ones(4)]), [x])
    with pytest.raises(ValueError, match="gradients for"):
        pybackprop.gradcheck(lambda x: (x.sum(), [x, x]), [x])
    with pytest.raises(ValueError, match="pair"):
        pybackprop.gradcheck(lambda x: x.sum(), [x])
    with pytest.raises(ValueError, match="h must"):
        pybackprop.gradcheck(lambda x: (x.sum(), [x]), [x], h=0)
    with pytest.raises(ValueError, match="wrt"):
        pybackprop.gradcheck(lambda x: (x.sum(), [x]), [x], wrt=[3])
    with pytest.raises(TypeError, match="callable"):
        pybackprop.gradcheck(None, [x])


@pytest.mark.parametrize("kind", ref.ACTIVATIONS)
def test_dense_kernels_by_gradcheck(rng, arch, threads, kind):
    """dense_backward is the gradient of sum(r * dense_forward(x, w, b)) for x, w, b."""
    threads(1)  # many tiny calls: no parallel regions (thread counts are tested elsewhere)
    B, K, N = 4, 5, 3
    while True:  # pre-activations away from the kink of relu/leaky_relu at 0
        x = rng.standard_normal((B, K))
        w = rng.standard_normal((N, K)) / np.sqrt(K)
        b = 0.5 * rng.standard_normal(N)
        if np.abs(x @ w.T + b).min() > 1e-2:  # FD moves z by < 1e-5
            break
    r = rng.standard_normal((B, N))

    saves_z = kind in pybackprop.PREACT_ACTIVATIONS  # backward from z, not y

    def fn(x, w, b):
        z = np.empty((B, N)) if saves_z else None
        y = pybackprop.dense_forward(x, w, b, activation=kind, negative_slope=0.1, preact=z)
        dx, dw, db = pybackprop.dense_backward(r, x, w, None if saves_z else y, preact=z,
                                               activation=kind, negative_slope=0.1)
        return float((r * y).sum()), [dx, dw, db]

    err = pybackprop.gradcheck(fn, [x, w, b])
    assert max(err) < FD_TOL, err
