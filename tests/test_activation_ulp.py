"""The error of gelu, gelu_tanh and silu (and their derivatives) in ulps, on every CPU
configuration this machine runs, against the same formulas evaluated in x87 long double
(core/activation.h with erfcl/expl, 64-bit significand: its own error is ~2^-63, below
1/1000 ulp of float64).

Forward: |y - f(z)| in ulps of f(z) in the tested dtype (a subnormal f(z): in units of the
smallest subnormal). Derivative: |g - f'(z)| in ulps of S(z), the sum of the magnitudes of
the two terms that form f'(z) (|Phi(z)| + |z phi(z)|; s + |z s (1 - s) w'(z)|): f'
crosses zero (gelu at z = -0.752, silu at z = -1.278) where no method gives it to a few
ulps of itself, and S(z) is the scale its rounding errors have. The bounds asserted are the
ones the guide's table states (docs/guide.md, "Accuracy of the activations");
``ULP_BOUNDS`` is that table.
"""
import numpy as np
import pytest

import pybackprop
from pybackprop._native import ffi, lib

PREACT = pybackprop.PREACT_ACTIVATIONS
_CODE = {"gelu": lib.PB_ACT_GELU, "gelu_tanh": lib.PB_ACT_GELU_TANH, "silu": lib.PB_ACT_SILU}
_LD = np.longdouble

# (kind, dtype) -> (forward bound, derivative bound) in ulps. float32 gelu_tanh and silu:
# every path evaluates in float64 and rounds once: 0.5 ulp plus exp's fitted polynomial's
# 1.9e-9 relative (0.031 ulp; csrc/simd/vmath_wide.inc), so 0.6. float32 gelu and float64:
# the largest error measured on the vector paths over these samples with six seeds, rounded
# up to the next half ulp with at least 0.15 to spare (the scalar path rounds a long double
# evaluation once: 0.5 ulp).
ULP_BOUNDS = {
    ("gelu", np.float32): (1.5, 2.0), ("gelu", np.float64): (4.0, 4.0),
    ("gelu_tanh", np.float32): (0.6, 0.6), ("gelu_tanh", np.float64): (3.0, 4.5),
    ("silu", np.float32): (0.6, 0.6), ("silu", np.float64): (2.5, 3.0),
}


def _long_double(z, kind, derivative):
    zl = np.ascontiguousarray(z, dtype=_LD)
    out = np.empty_like(zl)
    st = lib.pb_test_preact_ld(ffi.from_buffer("long double[]", out),
                               ffi.from_buffer("long double[]", zl), zl.size, _CODE[kind],
                               1 if derivative else 0)
    assert st == lib.PB_OK
    return out


def _scale(z, kind):
    """S(z) in long double (see the module docstring)."""
    zl = z.astype(_LD)
    if kind == "gelu":
        cdf = _long_double(z, "gelu", False) / np.where(zl == 0, 1, zl)  # Phi(z), z != 0
        cdf = np.where(zl == 0, _LD(0.5), cdf)
        return cdf + np.abs(zl) * np.exp(-zl * zl / 2) / np.sqrt(2 * np.pi, dtype=_LD)
    c1 = _LD(2) * np.sqrt(_LD(2) / _LD(np.pi))
    w = zl if kind == "silu" else c1 * (zl + _LD("0.044715") * zl ** 3)
    dw = _LD(1) if kind == "silu" else c1 * (1 + 3 * _LD("0.044715") * zl * zl)
    s = 1 / (1 + np.exp(-w))
    return s + np.abs(zl) * s * (1 - s) * dw


def _ulp(t, dtype):
    """ulp of the values t (long double) in dtype, the smallest subnormal at least."""
    mag = np.abs(t).astype(dtype)
    return np.maximum(np.spacing(mag), np.finfo(dtype).smallest_subnormal).astype(_LD)


def _samples(dtype, rng):
    """Every region: the bulk (N(0, 3)), a sweep over [-45, 45], the tails in log steps up to
    where the results underflow or saturate, tiny |z|, and the derivatives' zero crossings."""
    top = 20.0 if dtype == np.float32 else 40.0
    parts = [3 * rng.standard_normal(50000), np.linspace(-45, 45, 90001),
             -np.logspace(-1, np.log10(top), 20000), np.logspace(-1, np.log10(top), 5000),
             np.logspace(-30, -1, 2000) * rng.choice([-1, 1], 2000),
             -0.7518 + 1e-3 * rng.standard_normal(2000), -1.2785 + 1e-3 * rng.standard_normal(2000)]
    z = np.concatenate(parts).astype(dtype)
    return z[np.isfinite(z)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", PREACT)
def test_ulp_error_within_the_table(arch, kind, dtype, rng):
    """activation and activation_backward (and so the dense epilogue and dz, which run the
    same vector code) stay within ULP_BOUNDS of the long-double values."""
    z = _samples(dtype, rng)
    y = pybackprop.activation(z, kind)
    g = pybackprop.activation_backward(np.ones_like(z), None, kind, preact=z)
    t, dt = _long_double(z, kind, False), _long_double(z, kind, True)
    fwd = np.abs(y.astype(_LD) - t) / _ulp(t, dtype)
    bwd = np.abs(g.astype(_LD) - dt) / _ulp(_scale(z, kind), dtype)
    bound_f, bound_b = ULP_BOUNDS[(kind, dtype)]
    i, j = int(np.argmax(fwd)), int(np.argmax(bwd))
    assert fwd[i] <= bound_f, f"{kind} {np.dtype(dtype)} y: {float(fwd[i]):.2f} ulp at z={z[i]!r}"
    assert bwd[j] <= bound_b, f"{kind} {np.dtype(dtype)} dz: {float(bwd[j]):.2f} ulp at z={z[j]!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", PREACT)
def test_vector_paths_give_the_same_bits(kind, dtype, rng):
    """Every configuration whose elementwise kernels are vector ones gives the same bits,
    forward and derivative (IEEE operations in the same order on every ISA): so a dense
    epilogue that runs on another ISA than the standalone activation matches it."""
    z = _samples(dtype, rng)
    dy = rng.standard_normal(z.size).astype(dtype)
    saved = pybackprop.get_cpu()
    got = {}
    try:
        for name, conf in pybackprop.cpu_info()["configurations"].items():
            if conf["runs_here"] and conf["kernels"]["vector"] != "ref":
                pybackprop.set_cpu(name)
                got[name] = (pybackprop.activation(z, kind),
                             pybackprop.activation_backward(dy, None, kind, preact=z))
    finally:
        pybackprop.set_cpu(saved)
    if len(got) < 2:
        pytest.skip(f"one vector configuration runs here ({', '.join(got) or 'none'})")
    first, (y0, g0) = next(iter(got.items()))
    for name, (y, g) in got.items():
        assert np.array_equal(y.view(np.uint8), y0.view(np.uint8)), f"{kind} y: {name} vs {first}"
        assert np.array_equal(g.view(np.uint8), g0.view(np.uint8)), f"{kind} dz: {name} vs {first}"


@pytest.mark.parametrize("kind", PREACT)
def test_long_double_reference_matches_the_numpy_reference(kind):
    """The long-double hook and pybackprop.reference (numpy, math.erfc per element) agree
    within 3 ulp of float64 (math.erfc's own error and the final rounding): the two
    references the ulp table and the parity tests use."""
    from pybackprop import reference as ref
    z = np.linspace(-30, 30, 6001)
    t = _long_double(z, kind, False)
    r = ref.activation(z, kind)
    assert np.all(np.abs(r - t) <= 3 * _ulp(t, np.float64)), kind
