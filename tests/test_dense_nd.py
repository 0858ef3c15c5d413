"""dense_forward / dense_backward as a PyTorch user calls them: leading dimensions, no
activation by default, and a backward that needs its activation spelled out."""
import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref
from pybackprop.nn import Dense


@pytest.mark.parametrize("lead", [(2, 3), (1, 1, 4), (0, 5), (3,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leading_dimensions_are_rows(lead, dtype):
    """(..., K) gives (..., N), bitwise the rows of the (B, K) call, without a copy of x."""
    rng = np.random.default_rng(0)
    K, N = 7, 5
    x = rng.standard_normal(lead + (K,)).astype(dtype)
    w, b = rng.standard_normal((N, K)).astype(dtype), rng.standard_normal(N).astype(dtype)
    flat = x.reshape(-1, K)
    y = pb.dense_forward(x, w, b, activation="tanh")
    assert y.shape == lead + (N,) and y.dtype == dtype
    np.testing.assert_array_equal(y.reshape(-1, N), pb.dense_forward(flat, w, b,
                                                                      activation="tanh"))
    out = np.empty(lead + (N,), dtype)
    assert pb.dense_forward(x, w, b, activation="tanh", out=out) is out
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = pb.dense_backward(dy, x, w, y, activation="tanh")
    dx2, dw2, db2 = pb.dense_backward(dy.reshape(-1, N), flat, w, y.reshape(-1, N),
                                      activation="tanh")
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(-1, K), dx2)
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)
    # the reference agrees on shapes
    assert ref.dense_forward(x, w, b, activation="tanh").shape == y.shape
    assert ref.dense_backward(dy, x, w, y, activation="tanh")[0].shape == x.shape


def test_leading_dimensions_must_match():
    x, w = np.ones((2, 3, 4)), np.ones((5, 4))
    y = pb.dense_forward(x, w)
    with pytest.raises(ValueError, match=r"dy has shape \(6, 5\)"):
        pb.dense_backward(np.ones((6, 5)), x, w, y, activation=None)
    with pytest.raises(ValueError, match=r"out has shape \(6, 5\)"):
        pb.dense_forward(x, w, out=np.empty((6, 5)))


def test_no_activation_by_default():
    """dense_forward, activation and Dense are linear unless told otherwise (nn.Linear);
    None means identity wherever an activation is taken."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), np.zeros(2)
    lin = pb.dense_forward(x, w, b, activation="identity")
    np.testing.assert_array_equal(pb.dense_forward(x, w, b), lin)
    np.testing.assert_array_equal(pb.dense_forward(x, w, b, activation=None), lin)
    assert (lin < 0).any()  # a relu default would have zeroed these
    np.testing.assert_array_equal(pb.activation(x), x)
    np.testing.assert_array_equal(ref.dense_forward(x, w, b), ref.dense_forward(
        x, w, b, activation="identity"))
    layer = Dense(3, 2, rng=0, dtype=np.float64)
    assert layer.activation == "identity"
    np.testing.assert_array_equal(layer(x), pb.dense_forward(x, layer.weight, layer.bias))
    assert pb.lipschitz_constant(None) == 1.0


def test_backward_needs_the_activation():
    """A forgotten activation is a TypeError, never the gradient of another activation."""
    x, w = np.ones((2, 3)), np.ones((4, 3))
    y = pb.dense_forward(x, w, activation="tanh")
    with pytest.raises(TypeError, match="activation"):
        pb.dense_backward(np.ones_like(y), x, w, y)
    with pytest.raises(TypeError, match="kind"):
        pb.activation_backward(np.ones_like(y), y)
    with pytest.raises(TypeError, match="activation"):
        ref.dense_backward(np.ones_like(y), x, w, y)
    dx, _, _ = pb.dense_backward(np.ones_like(y), x, w, y, activation=None)
    np.testing.assert_array_equal(dx, np.ones((2, 4)) @ w)
