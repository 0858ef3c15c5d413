"""Assertions and helpers shared by the test modules (imported as ``from _helpers import ...``)."""
import numpy as np
import pytest


def assert_within(ours, expected, bound, what):
    """ours ~ expected elementwise within ``bound`` (broadcast); non-finite values of the
    reference must be matched exactly, and a NaN of ours where it is finite fails."""
    ours = np.asarray(ours, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert ours.shape == expected.shape, f"{what}: shape {ours.shape} != {expected.shape}"
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), expected.shape)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(ours[~finite], expected[~finite],
                                  err_msg=f"{what}: non-finite values differ")
    err = np.where(finite, np.abs(ours - np.where(finite, expected, 0)), 0)
    excess = err - np.where(finite, bound, np.inf)
    bad = ~(excess <= 0)  # also catches NaN in ours where expected is finite
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(np.isnan(excess), np.inf, excess)),
                             expected.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements outside the error bound; "
            f"worst at {i}: ours {ours[i]!r}, reference {expected[i]!r}, "
            f"|diff| {err[i]:.3g} > bound {bound[i]:.3g}")


def assert_bitwise(a, b, what=""):
    """Same shape, dtype and bits (NaN payloads and signed zeros included)."""
    # contiguous and at least 1-d, as a byte view needs
    a, b = (np.ascontiguousarray(np.atleast_1d(np.asarray(v))) for v in (a, b))
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), \
        f"{what}: results differ in their bits"


def at_offset(a, offset):
    """A copy of ``a`` whose data starts ``offset`` bytes past a 64-byte boundary."""
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def assert_masked_refused(call):
    """``call(m)`` with ``m`` a numpy.ma.MaskedArray of shape (2, 3), one entry masked,
    raises TypeError naming MaskedArray and leaves ``m``'s data as it was."""
    m = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="MaskedArray"):
        call(m)
    assert np.array_equal(m.data, np.ones((2, 3)))
