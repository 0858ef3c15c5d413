"""Tests of the losses and the maximum merge (pybackprop.losses).

Checks mse_loss, softmax_cross_entropy, binary_cross_entropy_with_logits and
maximum_forward/maximum_backward against the numpy specification in pybackprop.reference on
every dispatch path, both dtypes, odd shapes, both reductions and out= given or not;
thread-count independence; stability for huge logits and NaN propagation; gradients by
finite differences (pybackprop.gradcheck). The error contract is in test_losses_errors.py.
Every tolerance comes from the error model below. Speed is not tested here (bench/).
"""
import numpy as np
import pytest

import pybackprop
from pybackprop import reference as ref
from pybackprop._bounds import XENT_GRAD_C, XENT_LOSS_C, bce_bounds, mse_bounds, xent_bounds

from _helpers import assert_bitwise, assert_within

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum")
# (B, C) for softmax cross-entropy: one class, one row, odd sizes around the vector widths
# (4, 8, 16 lanes), a row longer than a reduction block (4096), and blocks of many rows.
XENT_SHAPES = [(1, 1), (1, 2), (3, 1), (5, 3), (7, 7), (4, 8), (13, 17), (9, 31), (3, 33),
               (2, 4099), (300, 3), (64, 129)]
# Element counts for the elementwise losses and maximum: around the vector widths and the
# 4096-element reduction block.
SIZES = [1, 2, 3, 7, 8, 15, 17, 31, 33, 4095, 4097, 9001]
# Shapes above the one-thread limit (32768 elements), several reduction blocks.
THREAD_XENT = (1000, 41)
THREAD_SIZE = 50001


def _id(shape):
    return "x".join(map(str, shape))


# ---- error model: every tolerance of this file -------------------------------------------
# The bounds of the losses are pybackprop/_bounds.py's (derived there, term by term);
# `python -m pybackprop check` asserts the same ones.
# maximum: a selection, no arithmetic: bitwise equal to the reference.
# gradcheck: central differences with step 1e-6 in float64 err by about eps |f| / h relative
#   to max|grad| (|f| / max|grad| <= 1e3 here: <= 2e-7) plus h^2 |f'''| / 6 (~1e-12);
#   FD_TOL = 1e-6 is above both and 1e4x below the O(1e-2..1) error of a wrong formula.
FD_TOL = 1e-6


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _up(a):
    return np.asarray(a, dtype=np.float64)


def _divisor(reduction, count):
    return count if reduction == "mean" else 1


# ---- inputs -----------------------------------------------------------------------------


def make_logits(rng, shape, dtype, spread=4.0):
    return (spread * rng.standard_normal(shape)).astype(dtype)


def make_rows(rng, shape, dtype):
    """Probability rows (non-negative, summing to 1 up to rounding)."""
    t = rng.random(shape) ** 3
    return (t / t.sum(axis=-1, keepdims=True)).astype(dtype)


# ---- mse_loss ---------------------------------------------------------------------------


def check_mse(pred, target, reduction, loss, dpred):
    dtype = pred.dtype
    loss_ref, d_ref = ref.mse_loss(_up(pred), _up(target), reduction=reduction)
    assert isinstance(loss, dtype.type) and dpred.dtype == dtype
    loss_bound, d_bound = mse_bounds(pred, loss_ref, d_ref)
    assert_within(dpred, d_ref, d_bound, "dpred")
    assert_within(loss, loss_ref, loss_bound, "loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_mse_matches_reference(rng, arch, n, dtype, reduction):
    """mse_loss equals the reference within the error model, every path."""
    pred, target = make_logits(rng, n, dtype), make_logits(rng, n, dtype)
    loss, dpred = pybackprop.mse_loss(pred, target, reduction=reduction)
    check_mse(pred, target, reduction, loss, dpred)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_any_shape_and_out(rng, dtype):
    """A 3-D input keeps its shape; out= receives dpred and is returned."""
    pred, target = make_logits(rng, (3, 5, 7), dtype), make_logits(rng, (3, 5, 7), dtype)
    out = np.full(pred.shape, np.nan, dtype)
    loss, dpred = pybackprop.mse_loss(pred, target, reduction="sum", out=out)
    assert dpred is out
    check_mse(pred, target, "sum", loss, dpred)


# ---- softmax_cross_entropy --------------------------------------------------------------


def check_xent(logits, labels, reduction, loss, dlogits):
    dtype = logits.dtype
    C = logits.shape[-1]
    B = logits.shape[0] if logits.ndim == 2 else 1
    D = _divisor(reduction, B)
    labels_up = _up(labels) if np.ndim(labels) == logits.ndim else labels
    loss_ref, d_ref = ref.softmax_cross_entropy(_up(logits), labels_up, reduction=reduction)
    assert isinstance(loss, dtype.type) and dlogits.dtype == dtype
    # per-row losses of the reference (sum over a single row each)
    x2 = _up(logits).reshape(B, C)
    lab2 = labels_up.reshape(B, C) if np.ndim(labels) == logits.ndim else np.reshape(
        labels, B)
    row_loss = np.array([ref.softmax_cross_entropy(x2[r], lab2[r], reduction="sum")[0]
                         for r in range(B)])
    loss_bound, d_bound = xent_bounds(logits, labels, D, loss_ref, row_loss)
    assert_within(dlogits, d_ref, d_bound, "dlogits")
    assert_within(loss, loss_ref, loss_bound, "loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", XENT_SHAPES, ids=_id)
def test_xent_indices_match_reference(rng, arch, shape, dtype, reduction):
    """Class-index labels: loss and dlogits equal the reference, every path."""
    logits = make_logits(rng, shape, dtype)
    labels = rng.integers(0, shape[1], shape[0])
    loss, d = pybackprop.softmax_cross_entropy(logits, labels, reduction=reduction)
    check_xent(logits, labels, reduction, loss, d)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", XENT_SHAPES, ids=_id)
def test_xent_rows_match_reference(rng, arch, shape, dtype, reduction):
    """Probability-row targets: loss and dlogits equal the reference, every path."""
    logits = make_logits(rng, shape, dtype)
    rows = make_rows(rng, shape, dtype)
    out = np.full(shape, np.nan, dtype)
    loss, d = pybackprop.softmax_cross_entropy(logits, rows, reduction=reduction, out=out)
    assert d is out
    check_xent(logits, rows, reduction, loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_one_hot_rows_equal_indices(rng, arch, dtype):
    """One-hot rows (even as an int matrix) give the loss and gradient of the indices."""
    logits = make_logits(rng, (11, 6), dtype)
    labels = rng.integers(0, 6, 11)
    onehot = np.eye(6, dtype=np.int64)[labels]
    l1, d1 = pybackprop.softmax_cross_entropy(logits, labels)
    l2, d2 = pybackprop.softmax_cross_entropy(logits, onehot)
    eps = _eps(dtype)
    assert_within(d2, d1, (XENT_GRAD_C + 1.01 * 6) * eps * 2 / 11, "dlogits")
    assert_within(l2, l1, (XENT_LOSS_C + 1.01 * 6) * eps * (abs(l1) + 1), "loss")


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_single_row(rng, dtype):
    """1-D logits (C,) with a scalar label or a (C,) row is a batch of one."""
    logits = make_logits(rng, 9, dtype)
    loss, d = pybackprop.softmax_cross_entropy(logits, 4)
    assert d.shape == (9,)
    check_xent(logits, 4, "mean", loss, d)
    rows = make_rows(rng, 9, dtype)
    loss, d = pybackprop.softmax_cross_entropy(logits, rows, reduction="sum")
    check_xent(logits, rows, "sum", loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_huge_logits_are_finite(arch, dtype):
    """Logits of +-1e4 give a finite loss and gradient (log-sum-exp), no warnings."""
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [0.0, 1e4, 1e4]], dtype)
    labels = np.array([1, 2, 0])
    with np.errstate(all="raise"):
        loss, d = pybackprop.softmax_cross_entropy(logits, labels, reduction="sum")
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    # row 0: 2e4; row 1: log 3; row 2: 1e4 + log 2 (exactly representable up to rounding)
    expected = 2e4 + np.log(3) + 1e4 + np.log(2)
    assert abs(float(loss) - expected) <= 4 * _eps(dtype) * expected
    np.testing.assert_array_equal(d[0], np.array([1, -1, 0], dtype))
    check_xent(logits, labels, "sum", loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_underflow_and_minus_inf(arch, dtype):
    """exp underflows to subnormals and to 0 like the reference; -inf logits get p = 0.
    (-88 .. -103: float32's subnormal range of e^(x - max); -720, -740: float64's.)"""
    row = [0.0, -20.0, -50.0, -88.0, -95.0, -103.0, -200.0, -720.0, -740.0, -800.0, -np.inf,
           1.5, -1.0]
    logits = np.array([row, row[::-1]], dtype)
    labels = np.array([0, 1])
    loss, d = pybackprop.softmax_cross_entropy(logits, labels)
    check_xent(logits, labels, "mean", loss, d)
    assert d[0, 10] == 0 and d[1, 2] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_nan_row(arch, dtype):
    """NaN in one row makes that row's gradient and the loss NaN; other rows unaffected."""
    rng = np.random.default_rng(5)
    logits = make_logits(rng, (4, 19), dtype)
    logits[2, 7] = np.nan
    labels = np.array([1, 2, 3, 4])
    loss, d = pybackprop.softmax_cross_entropy(logits, labels)
    assert np.isnan(loss) and np.all(np.isnan(d[2]))
    keep = [0, 1, 3]
    _, d_ok = pybackprop.softmax_cross_entropy(logits[keep], labels[keep], reduction="sum")
    np.testing.assert_array_equal(d[keep] * 4, d_ok)


# ---- binary_cross_entropy_with_logits -----------------------------------------------------


def check_bce(z, t, reduction, loss, d):
    dtype = z.dtype
    D = _divisor(reduction, z.size)
    loss_ref, d_ref = ref.binary_cross_entropy_with_logits(_up(z), _up(t), reduction=reduction)
    assert isinstance(loss, dtype.type) and d.dtype == dtype
    loss_bound, d_bound = bce_bounds(z, t, D, loss_ref)
    assert_within(d, d_ref, d_bound, "dlogits")
    assert_within(loss, loss_ref, loss_bound, "loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_bce_matches_reference(rng, arch, n, dtype, reduction):
    """BCE with logits equals the reference, soft and hard targets, every path."""
    z = make_logits(rng, n, dtype, spread=6.0)
    t = rng.random(n).astype(dtype)
    t[::3] = np.round(t[::3])  # some hard 0/1 targets
    loss, d = pybackprop.binary_cross_entropy_with_logits(z, t, reduction=reduction)
    check_bce(z, t, reduction, loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_huge_logits_are_finite(arch, dtype):
    """|logit| up to 1e4 gives finite, exact-to-rounding losses and no warnings."""
    z = np.array([1e4, -1e4, 1e4, -1e4, 50.0, -50.0, 0.0], dtype)
    t = np.array([1, 0, 0, 1, 1, 0, 0.5], dtype)
    with np.errstate(all="raise"):
        loss, d = pybackprop.binary_cross_entropy_with_logits(z, t, reduction="sum",
                                                             out=np.empty(7, dtype))
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    check_bce(z, t, "sum", loss, d)
    # confident and right: loss ~ 0; confident and wrong: loss = |z|
    expected = 2e4 + np.log(2)
    assert abs(float(loss) - expected) <= 8 * _eps(dtype) * expected


def test_bce_any_shape(rng, arch):
    """A 2-D input keeps its shape; the mean divides by the element count."""
    z, t = make_logits(rng, (6, 5), np.float64), rng.random((6, 5))
    loss, d = pybackprop.binary_cross_entropy_with_logits(z, t)
    assert d.shape == (6, 5)
    check_bce(z, t, "mean", loss, d)


# ---- maximum ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_maximum_matches_reference_bitwise(rng, n, dtype):
    """z, da, db equal the reference bit for bit (with ties, NaN in both inputs)."""
    a, b = make_logits(rng, n, dtype), make_logits(rng, n, dtype)
    b[::4] = a[::4]               # ties
    a[1::9] = np.nan
    b[2::9] = np.nan
    dz = make_logits(rng, n, dtype)
    z = pybackprop.maximum_forward(a, b)
    assert_bitwise(z, ref.maximum_forward(a, b), "z")
    da, db = pybackprop.maximum_backward(dz, a, b)
    da_ref, db_ref = ref.maximum_backward(dz, a, b)
    assert_bitwise(da, da_ref, "da")
    assert_bitwise(db, db_ref, "db")


def test_maximum_ties_go_to_first_argument():
    """A tie sends the whole gradient to a; NaN in either input propagates to z."""
    a = np.array([1.0, 2.0, 3.0, np.nan, 0.0])
    b = np.array([1.0, 5.0, -1.0, 0.0, np.nan])
    z = pybackprop.maximum_forward(a, b)
    np.testing.assert_array_equal(z, [1.0, 5.0, 3.0, np.nan, np.nan])
    da, db = pybackprop.maximum_backward(np.full(5, 7.0), a, b)
    np.testing.assert_array_equal(da, [7.0, 0.0, 7.0, 7.0, 0.0])
    np.testing.assert_array_equal(db, [0.0, 7.0, 0.0, 0.0, 7.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_maximum_buffers_and_shape(rng, dtype):
    """out=, da=, db= are filled and returned; any shape is kept."""
    a, b, dz = (make_logits(rng, (4, 3, 5), dtype) for _ in range(3))
    out, da, db = (np.empty((4, 3, 5), dtype) for _ in range(3))
    assert pybackprop.maximum_forward(a, b, out=out) is out
    r = pybackprop.maximum_backward(dz, a, b, da=da, db=db)
    assert r[0] is da and r[1] is db
    assert_bitwise(out, ref.maximum_forward(a, b), "z")
    assert_bitwise(da + db, dz, "da + db")


# ---- threads --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_bits(rng, arch, threads, dtype):
    """1 and 2 threads give bitwise identical losses and gradients (blocked reduction)."""
    logits = make_logits(rng, THREAD_XENT, dtype)
    labels = rng.integers(0, THREAD_XENT[1], THREAD_XENT[0])
    rows = make_rows(rng, THREAD_XENT, dtype)
    z, t = make_logits(rng, THREAD_SIZE, dtype), rng.random(THREAD_SIZE).astype(dtype)
    a, b = make_logits(rng, THREAD_SIZE, dtype), make_logits(rng, THREAD_SIZE, dtype)
    calls = [
        lambda: pybackprop.softmax_cross_entropy(logits, labels),
        lambda: pybackprop.softmax_cross_entropy(logits, rows, reduction="sum"),
        lambda: pybackprop.binary_cross_entropy_with_logits(z, t),
        lambda: pybackprop.mse_loss(z, t, reduction="sum"),
        lambda: (pybackprop.maximum_forward(a, b),) + pybackprop.maximum_backward(z, a, b),
    ]
    for k, call in enumerate(calls):
        threads(1)
        one = call()
        threads(2)
        two = call()
        for i, (x, y) in enumerate(zip(one, two)):
            assert_bitwise(x, y, f"call {k}, result {i}")


# ---- gradients by finite differences --------------------------------------------------------


def _loss_fn(loss, n_inputs):
    """fn(*inputs) -> (value, grads) for pybackprop.gradcheck: gradient w.r.t. input 0."""
    def fn(*inputs):
        value, grad = loss(*inputs)
        return value, [grad] + [None] * (n_inputs - 1)
    return fn


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_losses(rng, arch, reduction):
    """Every loss's gradient agrees with central differences in float64."""
    x = make_logits(rng, (6, 5), np.float64, spread=2.0)
    cases = [
        (lambda p, t: pybackprop.mse_loss(p, t, reduction=reduction), [x, rng.random((6, 5))]),
        (lambda x, l: pybackprop.softmax_cross_entropy(x, l, reduction=reduction),
         [x, rng.integers(0, 5, 6)]),
        (lambda x, t: pybackprop.softmax_cross_entropy(x, t, reduction=reduction),
         [x, make_rows(rng, (6, 5), np.float64)]),
        (lambda z, t: pybackprop.binary_cross_entropy_with_logits(z, t, reduction=reduction),
         [x, rng.random((6, 5))]),
    ]
    for k, (loss, inputs) in enumerate(cases):
        err = pybackprop.gradcheck(_loss_fn(loss, 2), inputs)
        assert err[0] < FD_TOL and err[1] is None, f"case {k}: {err}"


def test_gradcheck_maximum(rng):
    """maximum_backward is the gradient of sum(r * maximum_forward(a, b)) away from ties."""
    a, b = rng.standard_normal(17), rng.standard_normal(17)
    r = rng.standard_normal(17)

    def fn(a, b):
        z = pybackprop.maximum_forward(a, b)
        da, db = pybackprop.maximum_backward(r, a, b)
        return float(r @ z), [da, db]

    err = pybackprop.gradcheck(fn, [a, b])
    assert max(err) < FD_TOL, err


# ---- zero sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_size(dtype):
    """Empty inputs: mean is NaN (0/0, as numpy and PyTorch), sum is 0, shapes kept."""
    e2 = np.zeros((0, 4), dtype)
    for reduction, check in (("mean", np.isnan), ("sum", lambda v: v == 0)):
        loss, d = pybackprop.softmax_cross_entropy(e2, np.zeros(0, np.int64),
                                                   reduction=reduction)
        assert check(loss) and d.shape == (0, 4) and d.dtype == dtype
        loss, d = pybackprop.mse_loss(e2, e2, reduction=reduction)
        assert check(loss) and d.shape == (0, 4)
        loss, d = pybackprop.binary_cross_entropy_with_logits(e2, e2, reduction=reduction)
        assert check(loss) and d.shape == (0, 4)
    assert pybackprop.maximum_forward(e2, e2).shape == (0, 4)
