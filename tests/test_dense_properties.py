"""dense_forward and dense_backward as functions: gradients by finite differences, a worked
golden example, and property tests over random shapes, every configuration (tolerances:
pybackprop/_bounds.py).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pybackprop
from pybackprop._bounds import forward_bound

from _dense_cases import (ACTIVATIONS, DTYPES, FD_STEP, FD_TOL, check_backward, make_backward,
                          make_dense, reference_forward)
from _helpers import assert_within

from conftest import ARCHS  # the CPU configurations under test


# ---- gradients by finite differences --------------------------------------------------------


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_gradient_matches_finite_differences(arch, kind, rng):
    """dx, dw, db equal central differences of L = sum(g * dense_forward(x, w, b)) in float64."""
    B, K, N = 3, 4, 5
    while True:  # away from the kinks of relu and leaky_relu: |z| >= 0.1 everywhere
        x, w, b = make_dense(rng, (B, K, N), np.float64)
        if np.abs(x @ w.T + b).min() >= 0.1:
            break
    g = rng.standard_normal((B, N))

    def loss(x, w, b):
        return float(np.sum(g * pybackprop.dense_forward(x, w, b, activation=kind)))

    y = pybackprop.dense_forward(x, w, b, activation=kind)
    analytic = pybackprop.dense_backward(g, x, w, y, activation=kind)
    params = [x, w, b]
    for name, i, grad in zip(("dx", "dw", "db"), range(3), analytic):
        fd = np.empty_like(grad)
        for idx in np.ndindex(grad.shape):
            plus = [p.copy() for p in params]
            minus = [p.copy() for p in params]
            plus[i][idx] += FD_STEP
            minus[i][idx] -= FD_STEP
            fd[idx] = (loss(*plus) - loss(*minus)) / (2 * FD_STEP)
        np.testing.assert_allclose(grad, fd, rtol=FD_TOL, atol=FD_TOL, err_msg=name)


# ---- golden worked example --------------------------------------------------------------------


@pytest.mark.parametrize("rows", ["1d", "2d"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_golden_two_layer_relu_network(arch, dtype, rows):
    """R^2 -> R^3 -> R^2, ReLU, no bias, loss ||out - t||^2: every number exactly as by hand."""
    def v(a):
        a = np.array(a, dtype)
        return a if rows == "1d" or a.ndim != 1 else a[None, :]

    def check(got, expected):
        np.testing.assert_array_equal(got, v(expected))
        assert got.dtype == dtype

    x, t = v([1, 2]), v([0, 0])
    W1 = np.array([[3, -1], [-2, 0], [0, 1]], dtype)
    W2 = np.array([[0, -1, 1], [-1, 4, 1]], dtype)
    check(pybackprop.dense_forward(x, W1, activation="identity"), [1, -2, 2])     # z1
    x1 = pybackprop.dense_forward(x, W1, activation="relu")
    check(x1, [1, 0, 2])
    out = pybackprop.dense_forward(x1, W2, activation="relu")
    check(out, [2, 1])
    assert float(np.sum((out - t) ** 2)) == 5.0                                    # loss
    dout = 2 * (out - t)                                                           # dC/dout
    dx1, dW2, db2 = pybackprop.dense_backward(dout, x1, W2, out, activation="relu")
    np.testing.assert_array_equal(dW2, np.array([[4, 0, 8], [2, 0, 4]], dtype))
    np.testing.assert_array_equal(db2, np.array([4, 2], dtype))
    check(dx1, [-2, 4, 6])
    check(pybackprop.activation_backward(dx1, x1, "relu"), [-2, 0, 6])            # delta1
    _, dW1, db1 = pybackprop.dense_backward(dx1, x, W1, x1, activation="relu",
                                            need_dx=False)
    np.testing.assert_array_equal(dW1, np.array([[-2, -4], [0, 0], [6, 12]], dtype))
    np.testing.assert_array_equal(db1, np.array([-2, 0, 6], dtype))



# ---- property tests over random shapes ------------------------------------------------------


class _use_arch:
    """Context manager: run in one CPU configuration, restore the previous one."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.saved = pybackprop.get_cpu()
        pybackprop.set_cpu(self.name)

    def __exit__(self, *exc):
        pybackprop.set_cpu(self.saved)


DIMS = st.integers(min_value=0, max_value=48)


@given(B=DIMS, K=DIMS, N=DIMS, kind=st.sampled_from(ACTIVATIONS),
       dtype=st.sampled_from(DTYPES), bias=st.booleans(), arch=st.sampled_from(ARCHS),
       seed=st.integers(0, 2**32 - 1))
def test_forward_property(B, K, N, kind, dtype, bias, arch, seed):
    """For random shapes, dense_forward agrees with the reference."""
    x, w, b = make_dense(np.random.default_rng(seed), (B, K, N), dtype, bias)
    with _use_arch(arch):
        y = pybackprop.dense_forward(x, w, b, activation=kind)
    y_ref = reference_forward(x, w, b, kind)
    assert_within(y, y_ref, forward_bound(x, w, b, kind, dtype, y_ref), "y")


@given(B=DIMS, K=DIMS, N=DIMS, kind=st.sampled_from(ACTIVATIONS),
       dtype=st.sampled_from(DTYPES), need_dx=st.booleans(), accumulate=st.booleans(),
       arch=st.sampled_from(ARCHS), seed=st.integers(0, 2**32 - 1))
def test_backward_property(B, K, N, kind, dtype, need_dx, accumulate, arch, seed):
    """For random shapes, dense_backward (plain or accumulating) agrees with the reference."""
    rng = np.random.default_rng(seed)
    dy, x, w, y = make_backward(rng, (B, K, N), dtype, kind)
    old = [rng.standard_normal(s).astype(dtype) for s in ((B, K), (N, K), (N,))]
    bufs = [o.copy() for o in old] if accumulate else [None, None, None]
    if not need_dx:
        bufs[0] = None
    with _use_arch(arch):
        got = pybackprop.dense_backward(dy, x, w, y, activation=kind, need_dx=need_dx,
                                        accumulate=accumulate,
                                        dx=bufs[0], dw=bufs[1], db=bufs[2])
    check_backward(got, dy, x, w, y, kind, dtype, need_dx=need_dx,
                   old=old if accumulate else None)
