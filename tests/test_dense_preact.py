"""Tests of the activations differentiated from the pre-activation z (gelu, gelu_tanh, silu)
in the fused dense layer and the elementwise kernels: the forward's ``preact=`` output, the
backward's ``preact=`` input, parity with pybackprop.reference on every CPU configuration,
dtype and awkward shape, the bits of the fused dz against a stored one, thread-count
independence, gradients by finite differences, special values and the error contract.
The other activations: test_dense.py, test_activation.py. Tolerances: pybackprop/_bounds.py
(PREACT_ELEM_C); the elementwise ulp table: test_activation_ulp.py.
"""
import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm
from pybackprop import reference as ref
from pybackprop._bounds import activation_bounds, backward_bounds, forward_bound, up

from _helpers import assert_bitwise, assert_within
from _dense_cases import SHAPES, THREAD_SHAPES, make_dense  # the shapes every path meets

KINDS = pybackprop.PREACT_ACTIVATIONS
DTYPES = (np.float32, np.float64)
FUSED_SHAPES = [(256, 67, 130), (1100, 33, 40), (40, 2050, 1000)]  # dz formed while packing


def _id(s):
    return "B%dK%dN%d" % s


def forward_with_z(x, w, b, kind):
    """(y, z) from one dense_forward call with a preact= buffer."""
    N = w.shape[0]
    z = np.empty(x.shape[:-1] + (N,), x.dtype)
    y = pybackprop.dense_forward(x, w, b, activation=kind, preact=z)
    return y, z


def make_backward(rng, shape, dtype, kind):
    """dy, x, w and the saved pre-activation z (as the forward stores it)."""
    x, w, b = make_dense(rng, shape, dtype)
    _, z = forward_with_z(x, w, b, kind)
    dy = rng.standard_normal(z.shape).astype(dtype)
    return dy, x, w, z


# ---- forward -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_reference_and_stores_z(arch, kind, dtype, shape, rng):
    """y within the error model of the reference; z is the identity forward's bits, and y
    the bits of activation(z): the epilogue runs the elementwise kernel's code."""
    x, w, b = make_dense(rng, shape, dtype)
    y, z = forward_with_z(x, w, b, kind)
    y_ref = ref.dense_forward(up(x), up(w), up(b), activation=kind)
    assert_within(y, y_ref, forward_bound(x, w, b, kind, dtype, y_ref), "y")
    assert_bitwise(z, pybackprop.dense_forward(x, w, b), "z")
    assert_bitwise(y, pybackprop.dense_forward(x, w, b, activation=kind), "y without preact")
    assert_bitwise(y, pybackprop.activation(z, kind), "y vs activation(z)")


@pytest.mark.parametrize("kind", ("relu", "tanh") + KINDS)
def test_preact_output_for_any_activation(kind, rng):
    """preact= is an output of every activation (z is the same whatever act is)."""
    x, w, b = make_dense(rng, (9, 13, 11), np.float64)
    _, z = forward_with_z(x, w, b, kind)
    assert_bitwise(z, pybackprop.dense_forward(x, w, b), "z")


def test_forward_nd_and_one_row(rng):
    """(..., K) inputs and a single row (K,) give z of y's shape, row for row the batch's."""
    x, w, b = make_dense(rng, (24, 7, 5), np.float32)
    y, z = forward_with_z(x, w, b, "gelu")
    y3, z3 = forward_with_z(x.reshape(2, 3, 4, 7), w, b, "gelu")
    assert_bitwise(y3.reshape(24, 5), y, "y")
    assert_bitwise(z3.reshape(24, 5), z, "z")
    y1, z1 = forward_with_z(x[3], w, b, "gelu")
    assert z1.shape == (5,)
    assert_bitwise(y1, pybackprop.activation(z1, "gelu"), "one row")


# ---- backward ------------------------------------------------------------------------------


def check_backward(got, dy, x, w, z, kind, dtype, need_dx=True, old=None):
    expected = list(ref.dense_backward(up(dy), up(x), up(w), None, preact=up(z),
                                       activation=kind, need_dx=need_dx))
    bounds = backward_bounds(dy, x, w, z, kind, dtype, old=old)
    for i, name in enumerate(("dx", "dw", "db")):
        if expected[i] is None:
            assert got[i] is None
            continue
        assert got[i].dtype == dtype
        if old is not None:
            expected[i] = expected[i] + up(old[i])
        assert_within(got[i], expected[i], bounds[i], name)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_reference(arch, kind, dtype, shape, rng):
    """dense_backward from preact=z agrees with the reference, inputs untouched."""
    dy, x, w, z = make_backward(rng, shape, dtype, kind)
    saved = [a.copy() for a in (dy, x, w, z)]
    got = pybackprop.dense_backward(dy, x, w, activation=kind, preact=z)
    check_backward(got, dy, x, w, z, kind, dtype)
    for before, after in zip(saved, (dy, x, w, z)):
        assert_bitwise(before, after, "an input was modified")


@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 31, 29), (130, 300, 70)], ids=_id)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_buffers_accumulate_and_need_dx(arch, kind, shape, rng):
    """accumulate=True adds the plain result into the buffers; need_dx=False gives the same
    dw, db and no dx."""
    dtype = np.float32
    dy, x, w, z = make_backward(rng, shape, dtype, kind)
    plain = pybackprop.dense_backward(dy, x, w, activation=kind, preact=z)
    old = [rng.standard_normal(s).astype(dtype) for s in (x.shape, w.shape, (shape[2],))]
    bufs = [o.copy() for o in old]
    got = pybackprop.dense_backward(dy, x, w, activation=kind, preact=z, dx=bufs[0],
                                    dw=bufs[1], db=bufs[2], accumulate=True)
    assert all(g is buf for g, buf in zip(got, bufs))
    check_backward(got, dy, x, w, z, kind, dtype, old=old)
    dx, dw, db = pybackprop.dense_backward(dy, x, w, activation=kind, preact=z, need_dx=False)
    assert dx is None
    assert_bitwise(dw, plain[1], "dw")
    assert_bitwise(db, plain[2], "db")


@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=_id)
@pytest.mark.parametrize("kind", KINDS)
def test_fused_dz_has_the_bits_of_a_stored_dz(arch, threads, kind, shape, rng):
    """dw, dx and db are the bits of the GEMMs on dz = activation_backward(dy, preact=z)
    (db: dz summed row by row), on 1 and 2 threads."""
    dtype = np.float32
    dy, x, w, z = make_backward(rng, shape, dtype, kind)
    dz = pybackprop.activation_backward(dy, None, kind, preact=z)
    db_rows = np.zeros(shape[2], dtype)
    for row in dz:
        db_rows += row
    expected = [_gemm.gemm(np.empty(x.shape, dtype), dz, w),
                _gemm.gemm(np.empty(w.shape, dtype), dz.T, x), db_rows]
    for nt in (1, 2):
        threads(nt)
        got = pybackprop.dense_backward(dy, x, w, activation=kind, preact=z)
        for name, g, e in zip(("dx", "dw", "db"), got, expected):
            assert_bitwise(g, e, f"{name}, {nt} threads")


@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=_id)
@pytest.mark.parametrize("kind", KINDS)
def test_thread_count_does_not_change_bits(arch, threads, kind, shape, rng):
    """Forward (y and z) and backward give the same bits on 1 and 2 threads."""
    dtype = np.float32
    x, w, b = make_dense(rng, shape, dtype)
    dy = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    runs = []
    for nt in (1, 2):
        threads(nt)
        y, z = forward_with_z(x, w, b, kind)
        runs.append((y, z) + pybackprop.dense_backward(dy, x, w, activation=kind, preact=z))
    for a, c, name in zip(*runs, ("y", "z", "dx", "dw", "db")):
        assert_bitwise(a, c, name)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_finite_differences(kind, rng):
    """dense_backward is the gradient of sum(r * dense_forward(x, w, b)) (float64)."""
    B, K, N = 4, 5, 3
    x, w, b = (rng.standard_normal((B, K)), rng.standard_normal((N, K)) / np.sqrt(K),
               0.5 * rng.standard_normal(N))
    r = rng.standard_normal((B, N))

    def fn(x, w, b):
        y, z = forward_with_z(x, w, b, kind)
        dx, dw, db = pybackprop.dense_backward(r, x, w, activation=kind, preact=z)
        return float((r * y).sum()), [dx, dw, db]

    # central differences, step 1e-6: truncation ~1e-13, roundoff ~1e-10 (_dense_cases.py)
    assert max(pybackprop.gradcheck(fn, [x, w, b])) < 1e-6


# ---- elementwise ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_matches_reference(arch, kind, dtype, rng):
    """activation and activation_backward (from preact=z) agree with the reference, over
    the bulk and the tails, with and without out=."""
    z = np.concatenate([3 * rng.standard_normal(3001), np.linspace(-60, 60, 2401)]).astype(dtype)
    dy = rng.standard_normal(z.shape).astype(dtype)
    y_ref = ref.activation(up(z), kind)
    dz_ref = ref.activation_backward(up(dy), None, kind, preact=up(z))
    y_bound, dz_bound = activation_bounds(dy, y_ref, kind, dtype, z=z)
    y = pybackprop.activation(z, kind)
    assert_within(y, y_ref, y_bound, "y")
    dz = pybackprop.activation_backward(dy, None, kind, preact=z)
    assert_within(dz, dz_ref, dz_bound, "dz")
    out = np.empty_like(z)
    assert pybackprop.activation(z, kind, out=out) is out
    assert_bitwise(out, y, "out=")
    assert pybackprop.activation_backward(dy, None, kind, preact=z, out=out) is out
    assert_bitwise(out, dz, "out= backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_value_does_not_depend_on_neighbours(arch, kind, dtype, rng):
    """Each element's bits are a function of its own z: alone, or in a vector whose other
    lanes lie in another region of the formula (|z| < 3 or not), forward and backward."""
    z = (3 * rng.standard_normal(257)).astype(dtype)
    dy = rng.standard_normal(z.shape).astype(dtype)
    y = pybackprop.activation(z, kind)
    g = pybackprop.activation_backward(dy, None, kind, preact=z)
    for i in range(z.size):
        assert_bitwise(pybackprop.activation(z[i:i + 1], kind), y[i:i + 1], f"y[{i}]")
        assert_bitwise(pybackprop.activation_backward(dy[i:i + 1], None, kind,
                                                      preact=z[i:i + 1]), g[i:i + 1], f"dz[{i}]")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_special_values(arch, kind, dtype):
    """Signs, zeros, infinities and NaN as the reference (f(-0) = -0, f(+inf) = inf,
    f(-inf) = NaN as PyTorch's formulas give; f' NaN at +-inf), the vector lanes and
    the scalar tail alike (lengths 1 to 19)."""
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e30, -1e30,
                         np.finfo(dtype).max, -np.finfo(dtype).max, np.finfo(dtype).tiny,
                         -np.finfo(dtype).tiny, 50.0, -50.0, 1e4, -1e4, 5e-45, -5e-45],
                        dtype)
    for n in range(1, specials.size + 1):
        z = specials[:n]
        y, y_ref = pybackprop.activation(z, kind), ref.activation(z, kind)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref), err_msg=f"NaN {z}")
        fin = np.isfinite(y_ref)
        np.testing.assert_array_equal(y[~fin & ~np.isnan(y_ref)], y_ref[~fin & ~np.isnan(y_ref)])
        num = ~np.isnan(y_ref)
        np.testing.assert_array_equal(np.signbit(y[num]), np.signbit(y_ref[num]),
                                      err_msg=f"signs {z}")
        g = pybackprop.activation_backward(np.ones_like(z), None, kind, preact=z)
        g_ref = ref.activation_backward(np.ones_like(z), None, kind, preact=z)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(g_ref), err_msg=f"NaN' {z}")
    big = pybackprop.activation(np.array([-1e30, 1e30], dtype), kind)
    assert big[0] == 0 and big[1] == dtype(1e30)


# ---- the error contract ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_backward_requires_preact(kind, rng):
    """Without preact (y alone, or nothing) the backward raises, naming preact; nothing is
    written to the given buffers."""
    dy, x, w, z = make_backward(rng, (4, 3, 5), np.float64, kind)
    y = pybackprop.activation(z, kind)
    dw = np.full(w.shape, 7.0)
    for call in (lambda: pybackprop.dense_backward(dy, x, w, y, activation=kind, dw=dw),
                 lambda: pybackprop.dense_backward(dy, x, w, activation=kind, dw=dw)):
        with pytest.raises(ValueError, match="preact"):
            call()
    assert (dw == 7.0).all()
    with pytest.raises(ValueError, match="preact"):
        pybackprop.activation_backward(dy, y, kind)


@pytest.mark.parametrize("kind", ("relu", "tanh", None))
def test_preact_refused_where_the_output_is_used(kind, rng):
    """preact= for an activation differentiated from y raises (it would be ignored)."""
    dy, x, w, z = make_backward(rng, (4, 3, 5), np.float64, "gelu")
    with pytest.raises(ValueError, match="preact"):
        pybackprop.dense_backward(dy, x, w, z, activation=kind, preact=z)
    with pytest.raises(ValueError, match="preact"):
        pybackprop.activation_backward(dy, z, kind, preact=z)


def test_preact_buffer_is_checked_before_anything_is_written(rng):
    """A preact= buffer of the wrong shape, dtype or layout, or overlapping out= or an
    input, raises ValueError naming preact, and neither out nor preact is written."""
    x, w, b = make_dense(rng, (6, 4, 5), np.float32)
    out = np.full((6, 5), 3.0, np.float32)
    bad = {"shape": np.zeros((6, 4), np.float32), "dtype": np.zeros((6, 5), np.float64),
           "layout": np.zeros((5, 6), np.float32).T, "out": out,
           "x": x[:, :4].reshape(6, 4)}
    for what, z in bad.items():
        z_before = z.copy()
        with pytest.raises((ValueError, TypeError), match="preact"):
            pybackprop.dense_forward(x, w, b, activation="gelu", out=out, preact=z)
        assert (out == 3.0).all(), what
        assert_bitwise(z, z_before, what)
    xs = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match="preact"):  # z overlapping x
        pybackprop.dense_forward(xs[:24].reshape(6, 4), w, b, activation="gelu",
                                 preact=xs[10:40].reshape(6, 5))
