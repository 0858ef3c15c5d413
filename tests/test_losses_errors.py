"""The error contract of the losses and the maximum merge (pybackprop.losses): bad labels,
out= buffers, reductions, shapes and dtypes raise naming the argument before anything is
written; buffers that overlap, inputs handed over as memoryviews over out='s memory and
masked arrays are refused.
"""
import numpy as np
import pytest

import pybackprop

from _helpers import assert_masked_refused


# ---- errors: raised before anything is written --------------------------------------------------

BAD_LABELS = [
    (np.array([0, 1, 5]), ValueError, "outside"),           # out of range (C = 5)
    (np.array([0, -1, 2]), ValueError, "negative"),
    (np.array([0, 1]), ValueError, "shape"),                # wrong length
    (np.array([0, 1, 2, 3]), ValueError, "shape"),
    (np.array([0.0, 1.5, 2.0]), ValueError, "non-integer"),
    (np.array([0.0, np.nan, 2.0]), ValueError, "non-integer"),
    (np.array([True, False, True]), TypeError, "integers"),
    (np.array(["a", "b", "c"]), TypeError, "integers"),
    (np.array([[0, 1, 2]]), ValueError, "shape"),           # 2-D but not (B, C)
    (np.array([0, 2**40, 1]), ValueError, "outside"),
]


@pytest.mark.parametrize("labels,exc,match", BAD_LABELS,
                         ids=[f"bad{i}" for i in range(len(BAD_LABELS))])
def test_bad_labels_raise_before_writing(labels, exc, match):
    """Bad class labels raise a clear error and leave out= untouched."""
    logits = np.zeros((3, 5))
    out = np.full((3, 5), 42.0)
    with pytest.raises(exc, match=match):
        pybackprop.softmax_cross_entropy(logits, labels, out=out)
    assert np.all(out == 42.0)


def test_float_labels_that_are_whole_numbers_are_indices():
    """[0.0, 2.0] counts as class indices (as they are integral)."""
    logits = np.arange(6.0).reshape(2, 3)
    l1, d1 = pybackprop.softmax_cross_entropy(logits, [0.0, 2.0])
    l2, d2 = pybackprop.softmax_cross_entropy(logits, np.array([0, 2]))
    assert l1 == l2 and np.array_equal(d1, d2)


def _calls(dtype=np.float64):
    x = np.zeros((3, 4), dtype)
    lab = np.array([0, 1, 2])
    return {
        "mse": lambda **k: pybackprop.mse_loss(x, x, **k),
        "xent": lambda **k: pybackprop.softmax_cross_entropy(x, lab, **k),
        "bce": lambda **k: pybackprop.binary_cross_entropy_with_logits(x, x, **k),
        "max": lambda **k: pybackprop.maximum_forward(x, x, **k),
    }


@pytest.mark.parametrize("name", ["mse", "xent", "bce", "max"])
def test_bad_out_buffers(name):
    """out of the wrong dtype, shape or layout raises ValueError and is not written."""
    call = _calls()[name]
    for out in (np.full((3, 4), 7.0, np.float32), np.full((4, 3), 7.0),
                np.full((3, 8), 7.0)[:, ::2]):
        with pytest.raises(ValueError, match="out"):
            call(out=out)
        assert np.all(out == 7.0)


@pytest.mark.parametrize("name,bad", [("mse", "none"), ("xent", "avg"), ("bce", "none")])
def test_bad_reduction(name, bad):
    """An unknown reduction raises ValueError naming the choices ("none": softmax
    cross-entropy only)."""
    with pytest.raises(ValueError, match="reduction"):
        _calls()[name](reduction=bad)


def test_shape_and_dtype_errors():
    """Mismatched shapes raise ValueError naming both; mixed float dtypes raise TypeError."""
    a, b = np.zeros((3, 4)), np.zeros((4, 3))
    for call in (pybackprop.mse_loss, pybackprop.binary_cross_entropy_with_logits,
                 pybackprop.maximum_forward):
        with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
            call(a, b)
        with pytest.raises(TypeError, match="float32"):
            call(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        pybackprop.softmax_cross_entropy(a, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="float32"):
        pybackprop.softmax_cross_entropy(a, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"labels has shape \(2, 4\); expected \(2, 3\)"):
        pybackprop.softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="at least one class"):
        pybackprop.softmax_cross_entropy(np.zeros((3, 0)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dz"):
        pybackprop.maximum_backward(np.zeros(3), np.zeros(4), np.zeros(4))


def test_maximum_backward_buffers_must_not_overlap():
    """da and db may not share memory with each other or with an input."""
    a = np.zeros(6)
    buf = np.full(6, 3.0)
    with pytest.raises(ValueError, match="overlaps"):
        pybackprop.maximum_backward(a, a, a, da=buf, db=buf)
    with pytest.raises(ValueError, match="overlaps"):
        pybackprop.maximum_backward(buf, a, a, da=buf)
    assert np.all(buf == 3.0)


# ---- inputs that are not ndarrays, masked arrays ---------------------------------------------
BUFFER_OVERLAPS = [
    ("mse_loss", lambda buf: pybackprop.mse_loss(memoryview(buf[:6]), np.ones(6),
                                                 out=buf[3:9])),
    ("softmax_cross_entropy", lambda buf: pybackprop.softmax_cross_entropy(
        memoryview(buf[:6]).cast("B").cast("d", (2, 3)), [0, 2], out=buf[:6].reshape(2, 3))),
    ("softmax_cross_entropy rows", lambda buf: pybackprop.softmax_cross_entropy(
        np.ones((2, 3)), memoryview(buf[:6]).cast("B").cast("d", (2, 3)),
        out=buf[3:9].reshape(2, 3))),
    ("binary_cross_entropy_with_logits", lambda buf: pybackprop.binary_cross_entropy_with_logits(
        np.ones(6), memoryview(buf[:6]), out=buf[1:7])),
    ("maximum_forward", lambda buf: pybackprop.maximum_forward(memoryview(buf[:6]), np.ones(6),
                                                               out=buf[5:11])),
    ("maximum_backward", lambda buf: pybackprop.maximum_backward(
        np.ones(6), memoryview(buf[4:10]), np.ones(6), db=buf[:6])),
]


@pytest.mark.parametrize("name,call", BUFFER_OVERLAPS, ids=[n for n, _ in BUFFER_OVERLAPS])
def test_out_overlapping_a_buffer_input_is_refused(name, call):
    """A loss input handed over as a memoryview over out='s memory is an overlap too (the
    gradient would overwrite the values the loss still reads)."""
    buf = np.linspace(-1.0, 1.0, 12)
    before = buf.copy()
    with pytest.raises(ValueError, match="overlaps"):
        call(buf)
    assert np.array_equal(buf, before)


MASKED_CALLS = [
    ("mse_loss", lambda m: pybackprop.mse_loss(m, np.zeros((2, 3)))),
    ("mse_loss out", lambda m: pybackprop.mse_loss(np.zeros((2, 3)), np.zeros((2, 3)), out=m)),
    ("softmax_cross_entropy", lambda m: pybackprop.softmax_cross_entropy(m, [0, 1])),
    ("softmax_cross_entropy labels", lambda m: pybackprop.softmax_cross_entropy(
        np.zeros((2, 3)), np.ma.masked_array([0, 5], mask=[0, 1]))),
    ("binary_cross_entropy_with_logits", lambda m: pybackprop.binary_cross_entropy_with_logits(
        np.zeros((2, 3)), m)),
    ("maximum_forward", lambda m: pybackprop.maximum_forward(m, np.zeros((2, 3)))),
    ("maximum_backward", lambda m: pybackprop.maximum_backward(
        np.ones((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), da=m)),
]


@pytest.mark.parametrize("name,call", MASKED_CALLS, ids=[n for n, _ in MASKED_CALLS])
def test_masked_arrays_are_refused(name, call):
    """A numpy.ma.MaskedArray (input, labels or out=) raises TypeError: the losses would
    count the masked entries."""
    assert_masked_refused(call)
