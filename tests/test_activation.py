"""activation and activation_backward (the elementwise kernels of the activations
differentiated from the output y) against pybackprop.reference: parity, IEEE special
values and signed zeros, the derivatives' conventions at 0, bitwise equality where the
maths is exact, stability at extreme inputs. gelu, gelu_tanh, silu: test_dense_preact.py
and test_activation_ulp.py.
"""
import warnings

import numpy as np
import pytest

import pybackprop
from pybackprop._bounds import ELEM_C, dz_scale
from pybackprop import reference as ref

from _dense_cases import ACTIVATIONS, DTYPES, _eps, _tiny, _up
from _helpers import assert_bitwise, assert_within


# ---- elementwise activation kernels ----------------------------------------------------------

ACT_SHAPES = [(0,), (1,), (7,), (33,), (1000,), (13, 17), (3, 0, 5)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_matches_reference(arch, kind, dtype, shape, rng):
    """activation and activation_backward agree with the reference, with and without out=."""
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    y_ref = ref.activation(_up(z), kind)
    y = pybackprop.activation(z, kind)
    assert y.dtype == dtype
    assert_within(y, y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")
    out = np.full(shape, np.nan, dtype)
    assert pybackprop.activation(z, kind, out=out) is out
    assert_bitwise(out, y, "out")

    dy = rng.standard_normal(shape).astype(dtype)
    dz_ref = ref.activation_backward(_up(dy), _up(y), kind)
    dz = pybackprop.activation_backward(dy, y, kind)
    assert dz.dtype == dtype
    assert_within(dz, dz_ref, ELEM_C * _eps(dtype) * dz_scale(dy, y, kind) + _tiny(dtype),
                  "dz")
    out = np.full(shape, np.nan, dtype)
    assert pybackprop.activation_backward(dy, y, kind, out=out) is out
    assert_bitwise(out, dz, "out")


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30]


# softplus' backward, dy * -expm1(-y): on SIMD paths a vector expm1 (csrc/simd/vmath_f*.inc,
# the reduction of exp and a Taylor polynomial far below an ulp, then one FMA: <= 1.5 ulp;
# measured 0.87 float32, 1.11 float64); elsewhere glibc's expm1 (0.76).
SOFTPLUS_BWD_ULPS = 1.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_backward_ulps(arch, dtype):
    """activation_backward for softplus stays within SOFTPLUS_BWD_ULPS of -expm1(-y) over
    y in [0, 110] (float64: [0, 750]) and near 0, maps inf to 1, NaN to NaN and a large
    negative y to -inf; the dense
    backward's dz pass (seen through db with B = 1, db = 0 + dz) gives the same bits."""
    hi = 110 if dtype == np.float32 else 750
    y = np.concatenate([np.linspace(0, hi, 2 ** 17), np.geomspace(1e-30, 1, 2 ** 14),
                        np.linspace(0, 1, 2 ** 15)]).astype(dtype)
    g = pybackprop.activation_backward(np.ones_like(y), y, "softplus")
    wide = np.float64 if dtype == np.float32 else np.longdouble
    exact = -np.expm1(-y.astype(wide))
    ulp = (np.abs(g.astype(wide) - exact) / np.spacing(np.abs(exact).astype(dtype)))
    assert ulp.astype(np.float64).max() <= SOFTPLUS_BWD_ULPS, f"at y = {y[np.argmax(ulp)]!r}"
    # y < 0 is no softplus output, but the kernel takes any y: -expm1(-y) overflows to -inf
    # there as the scalar path does (not NaN from an overflowing 2^n)
    special = pybackprop.activation_backward(
        np.ones(4, dtype), np.array([np.inf, np.nan, -np.inf, -1000], dtype), "softplus")
    assert special[0] == 1 and np.isnan(special[1]) and special[2] == special[3] == -np.inf
    n = 4099  # several 64-column blocks of the dz pass and a masked vector tail
    _, _, db = pybackprop.dense_backward(np.ones((1, n), dtype), np.ones((1, 3), dtype),
                                         np.ones((n, 3), dtype), y[None, :n],
                                         activation="softplus")
    assert_bitwise(db, g[:n], "db == softplus' of y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_ieee_special_values(arch, kind, dtype):
    """NaN, +-inf, +-0 and tiny values go through every activation as the reference says."""
    z = np.array(SPECIAL * 5, dtype)  # long enough for the vector body and the tail
    y_ref = ref.activation(_up(z), kind)
    y = pybackprop.activation(z, kind)
    assert_within(y, y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")
    # and inside the dense epilogue: x = z as a column, w = [[1]], K = 1
    yd = pybackprop.dense_forward(z[:, None], np.ones((1, 1), dtype), activation=kind)
    assert_within(yd[:, 0], y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_signed_zeros(arch, kind, dtype):
    """act(+-0) and act'(...) * (+-0) carry the reference's sign of zero on every path (the
    vector body and the scalar tail both: 37 elements)."""
    z = np.array([0.0, -0.0] * 18 + [-0.0], dtype)
    y_ref = ref.activation(z, kind)
    y = pybackprop.activation(z, kind)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(y_ref), err_msg="y")
    np.testing.assert_array_equal(y, y_ref)
    yb = np.array([0.0, -0.0, 0.5, 0.25] * 9 + [-0.0], dtype)
    if kind in ("sigmoid", "softplus"):  # outputs in (0, 1) / (0, inf)
        yb = np.abs(yb) + dtype(0.5)
    dz_ref = ref.activation_backward(z, yb, kind)
    dz = pybackprop.activation_backward(z, yb, kind)
    np.testing.assert_array_equal(np.signbit(dz), np.signbit(dz_ref), err_msg="dz")


@pytest.mark.parametrize("dtype", DTYPES)
def test_derivative_conventions_at_zero(arch, dtype):
    """relu'(0) = 0 exactly (even for NaN or inf dy), leaky_relu'(0) = slope, as PyTorch."""
    y = np.array([0.0, 0.0, 0.0, -0.0, 2.0, -1.0] * 3, dtype)
    dy = np.array([1.0, np.nan, np.inf, 3.0, 5.0, np.nan] * 3, dtype)
    dz = pybackprop.activation_backward(dy, y, "relu")
    np.testing.assert_array_equal(dz, np.array([0, 0, 0, 0, 5, 0] * 3, dtype))
    dz = pybackprop.activation_backward(dy[:1] * np.ones_like(y), y, "leaky_relu",
                                        negative_slope=0.25)
    np.testing.assert_array_equal(dz, np.array([0.25, 0.25, 0.25, 0.25, 1, 0.25] * 3, dtype))


# Standalone activations whose SIMD kernels do pb_dact's / pb_act's scalar operations in
# vector form (csrc/core/activation.h, csrc/gemm/simd_act.inc): the same bits as "ref". Not the
# exp-based forwards, nor softplus' backward (vector exp / expm1 against libm's).
EXACT_FWD = ["identity", "relu", "leaky_relu"]
EXACT_BWD = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_activations_same_bits_as_ref(arch, dtype, rng):
    """EXACT_FWD / EXACT_BWD on this path give ref's bits: special values (NaN payloads and
    signed zeros included), a vector body and every tail length of one vector or two."""
    z = np.concatenate([np.array(SPECIAL * 3, dtype),
                        (3 * rng.standard_normal(1000)).astype(dtype)])
    dy = np.concatenate([np.array(SPECIAL[::-1] * 3, dtype),
                         rng.standard_normal(1000).astype(dtype)])
    lengths = [z.size] + list(range(1, 34))

    def run(path):
        pybackprop.set_cpu(path)
        return ([pybackprop.activation(z[:n], k, negative_slope=0.3)
                 for k in EXACT_FWD for n in lengths],
                [pybackprop.activation_backward(dy[:n], z[:n], k, negative_slope=0.3)
                 for k in EXACT_BWD for n in lengths])

    want_fwd, want_bwd = run("generic")
    got_fwd, got_bwd = run(arch)
    for got, want, what in zip(got_fwd + got_bwd, want_fwd + want_bwd,
                               [f"{k} n={n}" for k in EXACT_FWD for n in lengths]
                               + [f"{k}' n={n}" for k in EXACT_BWD for n in lengths]):
        assert_bitwise(got, want, what)


EXTREMES = [-1e4, -1e3, -710.0, -100.0, -89.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 89.0, 100.0,
            710.0, 1e3, 1e4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sigmoid", "softplus", "tanh"])
def test_stable_for_large_inputs(arch, kind, dtype):
    """|z| up to 1e4: no warning, finite results, as the reference; also in the dense epilogue."""
    z = np.array(EXTREMES * 3, dtype)
    y_ref = ref.activation(_up(z), kind)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise",
                                                divide="raise"):
        warnings.simplefilter("error")
        y = pybackprop.activation(z, kind)
        yd = pybackprop.dense_forward(z[:, None], np.ones((1, 1), dtype), activation=kind)
        dz = pybackprop.activation_backward(np.ones_like(y), y, kind)
        grads = pybackprop.dense_backward(np.ones_like(yd), z[:, None],
                                          np.ones((1, 1), dtype), yd, activation=kind)
        y_ref32 = ref.activation(z, kind)  # the reference must not warn either
    bound = ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype)
    assert_within(y, y_ref, bound, "y")
    assert_within(yd[:, 0], y_ref, bound, "y (dense)")
    assert np.isfinite(y_ref32).all()
    for r in (dz, *grads):
        assert np.isfinite(r).all()
    if kind == "sigmoid":
        assert ((y >= 0) & (y <= 1)).all()
    if kind == "softplus":
        assert (y >= 0).all() and y[z == 1e4].tolist() == [1e4] * 3
