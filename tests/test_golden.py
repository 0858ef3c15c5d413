"""Golden tests: worked examples of a backpropagation course, reproduced with pybackprop.

1. A shared layer with two branches merged by max, softmax cross-entropy (written by hand
   with the functional kernels: examples/two_branch.py).
2. The R^2 -> R^3 -> R^2 ReLU network of the foundation issue, built with nn.Sequential
   and mse_loss(reduction="sum").
3. A sigmoid two-layer network with binary cross-entropy: dJ/dW2 = (y_hat - y) a1^T and
   dJ/db2 = y_hat - y.
4. tanh(z) = 2 sigmoid(2z) - 1 for the activation kernels.
5. A dead ReLU unit gets exactly zero gradient and never moves under Adam; with leaky ReLU
   it gets a gradient and moves.

Tolerances (float64): the course's numbers are printed to 6 decimals, so they are compared
within PRINTED = 5e-7; the closed forms, evaluated here in float64 from the same few
operations, agree to GOLDEN = 1e-12 (each value is a handful of roundings of O(1)
quantities: ~1e-15). Example 2 is exact (small integers). Example 4's bound is derived in
its test.
"""
import runpy
from pathlib import Path

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref

GOLDEN = 1e-12
PRINTED = 5e-7
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_branch.py"


# ---- 1. two branches merged by max ----------------------------------------------------------


@pytest.fixture(scope="module")
def two_branch():
    return runpy.run_path(str(EXAMPLE))["run"]()


def test_two_branch_forward(two_branch):
    """z = (3, 0.5, 1), softmax and loss as printed and as the closed form."""
    r = two_branch
    np.testing.assert_array_equal(r["l1"], [1.0, 2.0])
    np.testing.assert_array_equal(r["l21"], [3.0, 0.0, 1.0])
    np.testing.assert_array_equal(r["l22"], [0.5, 0.5, 0.5])   # sigmoid(0), W22 l1 = 0
    np.testing.assert_array_equal(r["z"], [3.0, 0.5, 1.0])
    z = np.array([3.0, 0.5, 1.0])
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(r["softmax"], p, rtol=0, atol=GOLDEN)
    np.testing.assert_allclose(r["softmax"], [0.821409, 0.067425, 0.111166], rtol=0,
                               atol=PRINTED)
    assert abs(r["loss"] - 2.696734096919617) <= GOLDEN
    assert abs(r["loss"] - (np.log(np.exp(z).sum()) - 0.5)) <= GOLDEN


def test_two_branch_gradients(two_branch):
    """Gradients of W21, W22, l1 and W1 as printed and as the closed form."""
    r = two_branch
    z = np.array([3.0, 0.5, 1.0])
    p0, p1, p2 = np.exp(z) / np.exp(z).sum()
    l1, x = np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0, 1.0])
    # branch 1 won rows 0 and 2 (relu' = 1 there, l21[1] = 0 has relu' = 0); branch 2 won
    # row 1, through sigmoid' = 0.5 * 0.5
    gW21 = np.array([p0 * l1, [0.0, 0.0], p2 * l1])
    gW22 = np.array([[0.0, 0.0], 0.25 * (p1 - 1) * l1, [0.0, 0.0]])
    dl1 = np.array([p0 - p2 + (p1 - 1), p0 + p2 - 0.5 * (p1 - 1)])
    for name, closed, printed in (
            ("grad_W21", gW21, [[0.821409, 1.642818], [0, 0], [0.111166, 0.222331]]),
            ("grad_W22", gW22, [[0, 0], [-0.233144, -0.466287], [0, 0]]),
            ("dl1", dl1, [-0.222331, 1.398862]),
            ("grad_W1", np.outer(dl1, x), [[-0.222331, -0.444662, -0.666994, -0.222331],
                                           [1.398862, 2.797724, 4.196586, 1.398862]])):
        np.testing.assert_allclose(r[name], closed, rtol=0, atol=GOLDEN, err_msg=name)
        np.testing.assert_allclose(r[name], printed, rtol=0, atol=PRINTED, err_msg=name)


# ---- 2. R^2 -> R^3 -> R^2 with Sequential and mse_loss(sum) ------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_network_with_sequential(arch, dtype):
    """z1 = (1,-2,2), out = (2,1), loss 5, grad W2, grad W1 exactly (both dtypes)."""
    model = pb.Sequential(pb.Dense(2, 3, "relu", bias=False, dtype=dtype),
                          pb.Dense(3, 2, "relu", bias=False, dtype=dtype))
    model[0].weight[...] = [[3, -1], [-2, 0], [0, 1]]
    model[1].weight[...] = [[0, -1, 1], [-1, 4, 1]]
    x = np.array([[1, 2]], dtype)
    out = model.forward(x)
    np.testing.assert_array_equal(model[0]._y, [[1, 0, 2]])
    np.testing.assert_array_equal(out, [[2, 1]])
    loss, dout = pb.mse_loss(out, np.zeros((1, 2), dtype), reduction="sum")
    assert loss == 5 and loss.dtype == dtype
    model.zero_grad()
    dx = model.backward(dout)
    np.testing.assert_array_equal(model[1].grad_w, [[4, 0, 8], [2, 0, 4]])
    np.testing.assert_array_equal(model[0].grad_w, [[-2, -4], [0, 0], [6, 12]])
    # delta1 = relu'(z1) * W2^T dout = (-2, 0, 6); dx = W1^T delta1
    np.testing.assert_array_equal(dx, [[-6, 8]])


# ---- 3. sigmoid network with binary cross-entropy ----------------------------------------------


@pytest.mark.parametrize("B", [1, 5])
def test_sigmoid_network_bce(rng, arch, B):
    """dJ/dW2 = (y_hat - y)^T a1 and dJ/db2 = sum(y_hat - y) for logits z2 = W2 a1 + b2."""
    model = pb.Sequential(pb.Dense(3, 4, activation="sigmoid", dtype=np.float64, rng=rng),
                          pb.Dense(4, 1, activation="identity", dtype=np.float64, rng=rng))
    model[0].bias[...] = rng.standard_normal(4)
    model[1].bias[...] = rng.standard_normal(1)
    x = rng.standard_normal((B, 3))
    y = rng.integers(0, 2, (B, 1)).astype(np.float64)
    z2 = model.forward(x)
    J, dz2 = pb.binary_cross_entropy_with_logits(z2, y, reduction="sum")
    model.zero_grad()
    model.backward(dz2, need_dx=False)
    a1 = ref.dense_forward(x, model[0].weight, model[0].bias, activation="sigmoid")
    y_hat = ref.activation(ref.dense_forward(a1, model[1].weight, model[1].bias,
                                             activation="identity"), "sigmoid")
    np.testing.assert_allclose(model[1].grad_w, (y_hat - y).T @ a1, rtol=0, atol=GOLDEN)
    np.testing.assert_allclose(model[1].grad_b, (y_hat - y).sum(axis=0), rtol=0,
                               atol=GOLDEN)
    J_ref = -(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat)).sum()
    assert abs(J - J_ref) <= GOLDEN * max(1.0, abs(J_ref))


# ---- 4. tanh(z) = 2 sigmoid(2z) - 1 -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_sigmoid_identity(arch, dtype):
    """|tanh(z) - (2 sigmoid(2z) - 1)| <= 6 eps over z in [-20, 20] and tiny z.

    Bound: sigmoid = (1 or e) / (1 + e) with e = exp(-|2z|) is within 1 ulp (exp) + 2
    roundings <= 2 eps relatively, times 2 (exact), minus 1 (u): <= 4.5 eps absolutely since
    sigmoid <= 1; tanh within 1 ulp <= eps; 6 eps covers both."""
    z = np.concatenate([np.linspace(-20, 20, 4001), [1e-30, -1e-20, 1e-8, 0.0]]).astype(dtype)
    t = pb.activation(z, "tanh")
    s = pb.activation((2 * z).astype(dtype), "sigmoid")
    rhs = 2 * s - 1                               # evaluated in the dtype
    assert t.dtype == rhs.dtype == dtype
    err = np.abs(t.astype(np.float64) - rhs.astype(np.float64))
    assert err.max() <= 6 * float(np.finfo(dtype).eps)


# ---- 5. a dead ReLU unit under Adam ----------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_dead_relu_unit_under_adam(rng, activation):
    """Unit 1 has a negative pre-activation for every input (x >= 0, w = (-1, -1), b = -1):
    with ReLU its gradient is exactly 0 at every step and Adam never moves it (m = v = 0 give
    a zero step); with leaky ReLU it gets a non-zero gradient and moves."""
    model = pb.Sequential(pb.Dense(2, 3, activation, dtype=np.float64, rng=rng),
                          pb.Dense(3, 2, "identity", dtype=np.float64, rng=rng))
    model[0].weight[1] = [-1.0, -1.0]
    model[0].bias[1] = -1.0
    w_dead, b_dead = model[0].weight[1].copy(), model[0].bias[1].copy()
    others = model[0].weight[[0, 2]].copy()
    opt = pb.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        x = rng.random((8, 2))                      # inputs >= 0
        labels = rng.integers(0, 2, 8)
        model.zero_grad()
        loss, d = pb.softmax_cross_entropy(model.forward(x), labels)
        model.backward(d, need_dx=False)
        g_w, g_b = model[0].grad_w[1], model[0].grad_b[1]
        if activation == "relu":
            assert np.all(g_w == 0) and g_b == 0
        else:
            assert np.all(g_w != 0) and g_b != 0
        opt.step(model.gradients())
    moved = not np.array_equal(model[0].weight[1], w_dead) and model[0].bias[1] != b_dead
    if activation == "relu":
        np.testing.assert_array_equal(model[0].weight[1], w_dead)   # bit for bit
        assert model[0].bias[1] == b_dead
    else:
        assert moved
    assert not np.array_equal(model[0].weight[[0, 2]], others)      # the live units learn
