"""The error contract of the spectral norm (pybackprop/spectral.py): a bad u or v, w, n_iters,
eps, sigma, shape or dtype raises naming the argument before anything is written (u and v are
updated in place); state vectors or out= inside w's memory, masked arrays and a bad
SpectralNorm state are refused, the state left as it was.
"""
import numpy as np
import pytest

import pybackprop as pb

from _spectral_cases import DTYPES, unit
from _helpers import assert_masked_refused


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
    assert_masked_refused(call)


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
