"""Fuzzing of the dense kernels (dense_forward, dense_backward, activation,
activation_backward) and of the argument checks of every public kernel function with
hypothesis.

Each example draws shapes (0 and 1 included), a dtype, a value regime (normal, denormal,
NaN/Inf, huge), a memory layout per input (C, Fortran, strided, negative stride, misaligned
at an odd byte offset of a uint8 buffer, nested list), a dispatch path, and whether ``out=``
is given, fresh or aliasing an input. The result must match an independent oracle, or the
call must raise the documented exception (TypeError for a type or dtype, ValueError for a
shape, option or overlap) naming the argument, with every output buffer and every in-place
argument left bit for bit untouched.

The number of examples comes from the hypothesis profile in conftest.py ("default" for CI,
PYBACKPROP_HYPOTHESIS_PROFILE=thorough for long runs). The tolerances follow the error model
in _fuzz_cases.py. Oracles:
  - dense: x @ w.T + b in long double (64-bit mantissa on x86-64), checked where it can be
    judged exactly: NaN exactly where the exact result is NaN, the exact infinity (through
    the activation) where it is infinite, and the GEMM error bound elsewhere, as long
    as no partial sum can overflow the tested dtype (huge inputs: only those elements).
  - activation, activation_backward: pybackprop.reference in the tested dtype (the
    specification), NaN and Inf positions equal.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import pybackprop
from pybackprop import optim, reference

from conftest import ARCHS  # the CPU configurations under test
from _fuzz_cases import (DIM, DTYPES, ELEM_C, FUZZ, GEMM_C, LAYOUTS, MODES, SEED, SHAPES,
                         TINY_C, _eps, _is_array, assert_close, call_dtype, layout,
                         sentinel_like, values, with_arch)

KINDS = pybackprop.ACTIVATIONS
# the backward oracles here take the output y; the kinds differentiated from z have their
# layouts and special values in test_dense_preact.py and their ulp table in
# test_activation_ulp.py
Y_KINDS = tuple(k for k in KINDS if k not in pybackprop.PREACT_ACTIVATIONS)
# Bad values put in place of one argument.
BAD = ("none", "str", "object", "complex", "float16", "3d", "scalar", "mixed", "shape")


# ---- dense: forward and backward against a long double oracle -----------------------------

LD = np.longdouble


def _act_ld(z, kind, slope):
    with np.errstate(all="ignore"):
        return reference._act(z, kind, LD(slope))


def _lipschitz(kind, slope):
    return {"sigmoid": 0.25, "leaky_relu": max(1.0, slope)}.get(kind, 1.0)


def check_dense_forward(y, x, w, b, kind, slope, dtype):
    """``y`` (ours) against the long double oracle, elementwise (see the module docstring)."""
    x2 = np.atleast_2d(np.asarray(x, LD))
    wl = np.asarray(w, LD)
    bl = np.zeros(wl.shape[0], LD) if b is None else np.asarray(b, LD)
    K = wl.shape[1]
    with np.errstate(all="ignore"):
        z = x2 @ wl.T + bl
        bound = np.abs(x2) @ np.abs(wl).T + np.abs(bl)
        # products of finite terms alone: overflow is possible only where this is large
        fx, fw = np.where(np.isfinite(x2), x2, 0), np.where(np.isfinite(wl), wl, 0)
        fb = np.where(np.isfinite(bl), bl, 0)
        fbound = np.abs(fx) @ np.abs(fw).T + np.abs(fb)
    ref = _act_ld(z, kind, slope)
    y2 = np.atleast_2d(y).astype(LD)
    eps, fi = _eps(dtype), np.finfo(dtype)
    safe = fbound < LD(fi.max) / 4   # no partial sum can overflow in dtype
    nan = np.isnan(ref)
    # NaN exactly where the exact value is NaN (a NaN term, inf * 0, inf - inf, and
    # leaky_relu(-inf) with slope 0, which is 0 * -inf)
    assert (np.isnan(y2) == nan)[safe].all(), "dense_forward: NaN pattern"
    inf = np.isinf(z) & safe
    assert ((y2[inf] == ref[inf]) | (np.isnan(y2[inf]) & np.isnan(ref[inf]))).all(), \
        "dense_forward: infinite pre-activations"
    fin = np.isfinite(z) & safe
    L = _lipschitz(kind, slope)
    lim = (L * GEMM_C * (K + 1) * eps * bound + ELEM_C * eps * np.abs(ref)
           + TINY_C * ((K + 1) * float(fi.smallest_subnormal) + float(fi.tiny)))
    err = np.abs(y2 - ref)
    assert (err[fin] <= lim[fin]).all(), ("dense_forward", float(np.max((err - lim)[fin])))


def _dz_ld(dy, y, kind, slope):
    """Exact dz = dy * act'(y) and a magnitude G >= |terms| for its rounding error."""
    with np.errstate(all="ignore"):
        dz = reference._act_backward(dy, y, kind, LD(slope))
        a = np.abs
        scale = {"identity": 1, "relu": 1, "leaky_relu": max(1.0, slope),
                 "sigmoid": a(y) * (1 + a(y)), "tanh": 1 + y * y,
                 "softplus": a(np.expm1(-y))}[kind]
        return dz, a(dy) * scale


def check_dense_backward(got, dy, x, w, y, kind, slope, dtype, need_dx, init):
    """(dx, dw, db) of ours against the long double oracle (init: the buffers' old values)."""
    dy2, x2, y2 = (np.atleast_2d(np.asarray(a, LD)) for a in (dy, x, y))
    wl = np.asarray(w, LD)
    dz, G = _dz_ld(dy2, y2, kind, slope)
    B, K, N = x2.shape[0], wl.shape[1], wl.shape[0]
    eps, fi = _eps(dtype), np.finfo(dtype)
    # dz itself may overflow in the dtype (dy * y * (1 - y) for a huge y): the outputs it
    # reaches are not judged (such y is no activation's output)
    with np.errstate(all="ignore"):
        ov = (np.nan_to_num(G, nan=0, posinf=np.inf) > LD(fi.max) / 4).astype(np.float64)
    reach = {"dw": ov.T @ np.ones((B, K)) > 0, "db": ov.sum(0) > 0,
             "dx": ov @ np.ones((N, K)) > 0}
    with np.errstate(all="ignore"):
        parts = {"dw": (dz.T @ x2, G.T @ np.abs(x2), B),
                 "db": (dz.sum(0), G.sum(0), B),
                 "dx": (dz @ wl, G @ np.abs(wl), N)}
    for name, out in zip(("dx", "dw", "db"), got):
        if name == "dx" and not need_dx:
            assert out is None
            continue
        exact, mag, n = parts[name]
        old = init.get(name)
        if old is not None:
            with np.errstate(all="ignore"):
                exact, mag, n = exact + old.astype(LD), mag + np.abs(old.astype(LD)), n + 1
        if name == "dx" and np.ndim(x) == 1:
            exact, mag = exact[0], mag[0]
        o = np.asarray(out, LD)
        with np.errstate(all="ignore"):
            fmag = np.where(np.isfinite(mag), mag, 0)
        r = reach[name][0] if name == "dx" and np.ndim(x) == 1 else reach[name]
        safe = (fmag < LD(fi.max) / 4) & ~r
        nan = np.isnan(exact)
        assert (np.isnan(o) == nan)[safe].all(), f"dense_backward {name}: NaN pattern"
        inf = np.isinf(exact) & safe
        assert (o[inf] == exact[inf]).all(), f"dense_backward {name}: Inf"
        fin = np.isfinite(exact) & np.isfinite(mag) & safe
        lim = ((GEMM_C * (n + 1) + ELEM_C) * eps * mag
               + TINY_C * ((n + 2) * float(fi.smallest_subnormal) + float(fi.tiny)))
        err = np.abs(o - exact)
        assert (err[fin] <= lim[fin]).all(), (name, float(np.max((err - lim)[fin])))


@FUZZ
@given(B=DIM, K=DIM, N=DIM, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       kind=st.sampled_from(KINDS), slope=st.sampled_from([0.0, 0.01, 0.5, 3.0]),
       lx=st.sampled_from(LAYOUTS), lw=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS),
       bias=st.booleans(), one_d=st.booleans(), out=st.sampled_from(["none", "given"]),
       arch=st.sampled_from(ARCHS), seed=SEED)
def test_dense_forward_fuzz(B, K, N, dtype, mode, kind, slope, lx, lw, lb, bias, one_d, out,
                            arch, seed):
    """dense_forward on any shape, layout, value regime and path matches the oracle."""
    rng = np.random.default_rng(seed)
    x = values(rng, (K,) if one_d else (B, K), dtype, mode)
    w = values(rng, (N, K), dtype, mode)
    b = values(rng, (N,), dtype, mode) if bias else None
    xi, wi = layout(x, lx, rng), layout(w, lw, rng)
    bi = layout(b, lb, rng) if bias else None
    dt = call_dtype(dtype, xi, wi, bi)
    kw = {}
    if out == "given":
        kw["out"] = sentinel_like((N,) if one_d else (B, N), dt)
    y = with_arch(arch, lambda: pybackprop.dense_forward(
        xi, wi, bi, activation=kind, negative_slope=slope, **kw))
    assert y.dtype == dt and y.shape == ((N,) if one_d else (B, N))
    if out == "given":
        assert y is kw["out"]
    check_dense_forward(y, x, w, b, kind, slope, dt)


@FUZZ
@given(B=DIM, K=DIM, N=DIM, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       kind=st.sampled_from(Y_KINDS), slope=st.sampled_from([0.0, 0.01, 2.0]),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=4, max_size=4),
       need_dx=st.booleans(), accumulate=st.booleans(), given_=st.booleans(),
       one_d=st.booleans(), arch=st.sampled_from(ARCHS), seed=SEED)
def test_dense_backward_fuzz(B, K, N, dtype, mode, kind, slope, layouts, need_dx, accumulate,
                             given_, one_d, arch, seed):
    """dense_backward on any shape, layout, value regime and path matches the oracle."""
    rng = np.random.default_rng(seed)
    xs = (K,) if one_d else (B, K)
    ys = (N,) if one_d else (B, N)
    dy, x, w, y = (values(rng, s, dtype, mode) for s in (ys, xs, (N, K), ys))
    args = [layout(a, l, rng) for a, l in zip((dy, x, w, y), layouts)]
    dt = call_dtype(dtype, *args)
    kw, init = {}, {}
    if given_:
        for name, shape in (("dx", xs), ("dw", (N, K)), ("db", (N,))):
            if name == "dx" and not need_dx:
                continue
            kw[name] = rng.standard_normal(shape).astype(dt)
            if accumulate:
                init[name] = kw[name].copy()
    got = with_arch(arch, lambda: pybackprop.dense_backward(
        *args, activation=kind, negative_slope=slope, need_dx=need_dx,
        accumulate=accumulate, **kw))
    for name, g in zip(("dx", "dw", "db"), got):
        if name in kw:
            assert g is kw[name]
        if g is not None:
            assert g.dtype == dt
    check_dense_backward(got, dy, x, w, y, kind, slope, dt, need_dx, init)


# ---- activations against the reference in the dtype -------------------------------------


@FUZZ
@given(shape=SHAPES, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       kind=st.sampled_from(KINDS), slope=st.sampled_from([0.0, 0.01, 3.0]),
       lz=st.sampled_from(LAYOUTS), out=st.sampled_from(["none", "given", "inplace"]),
       arch=st.sampled_from(ARCHS), seed=SEED)
def test_activation_fuzz(shape, dtype, mode, kind, slope, lz, out, arch, seed):
    """activation matches the reference in any layout, in place or not (out=z)."""
    rng = np.random.default_rng(seed)
    z = values(rng, shape, dtype, mode)
    zi = layout(z, "c" if out == "inplace" else lz, rng)
    dt = call_dtype(dtype, zi)
    ref = reference.activation(np.asarray(z, dt), kind, negative_slope=slope)
    kw = {"out": zi} if out == "inplace" else (
        {"out": sentinel_like(shape, dt)} if out == "given" else {})
    y = with_arch(arch, lambda: pybackprop.activation(zi, kind, negative_slope=slope, **kw))
    assert y.shape == shape and y.dtype == dt
    if out != "none":
        assert y is kw["out"]
    fi = np.finfo(dt)
    assert_close(y, ref, ELEM_C * _eps(dt), TINY_C * float(fi.tiny), "activation")


@FUZZ
@given(shape=SHAPES, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       kind=st.sampled_from(Y_KINDS), slope=st.sampled_from([0.0, 0.01, 3.0]),
       ld=st.sampled_from(LAYOUTS), ly=st.sampled_from(LAYOUTS),
       out=st.sampled_from(["none", "given", "inplace_dy", "inplace_y"]),
       arch=st.sampled_from(ARCHS), seed=SEED)
def test_activation_backward_fuzz(shape, dtype, mode, kind, slope, ld, ly, out, arch, seed):
    """activation_backward matches the reference; out=dy and out=y are in place."""
    rng = np.random.default_rng(seed)
    dy, y = values(rng, shape, dtype, mode), values(rng, shape, dtype, mode)
    dyi = layout(dy, "c" if out == "inplace_dy" else ld, rng)
    yi = layout(y, "c" if out == "inplace_y" else ly, rng)
    dt = call_dtype(dtype, dyi, yi)
    ref = reference.activation_backward(np.asarray(dy, dt), np.asarray(y, dt), kind,
                                        negative_slope=slope)
    kw = {"none": {}, "given": {"out": sentinel_like(shape, dt)}, "inplace_dy": {"out": dyi},
          "inplace_y": {"out": yi}}[out]
    if kw.get("out") is not None and not _is_array(kw["out"]):
        kw = {}
    dz = with_arch(arch, lambda: pybackprop.activation_backward(
        dyi, yi, kind, negative_slope=slope, **kw))
    assert dz.shape == shape and dz.dtype == dt
    with np.errstate(all="ignore"):
        _, G = _dz_ld(np.asarray(dy, LD), np.asarray(y, LD), kind, slope)
    fi = np.finfo(dt)
    assert_close(dz, ref, ELEM_C * _eps(dt),
                 ELEM_C * _eps(dt) * np.where(np.isfinite(G), G, 0).astype(np.float64)
                 + TINY_C * float(fi.tiny), "activation_backward")


# ---- bad input: the documented exception, naming the argument, nothing written -------------

def _valid_call(fn, dtype, rng):
    """(callable, kwargs, out_names, inplace_names, any_shape_args) of a valid call."""
    B, K, N = 3, 4, 5
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    if fn == "dense_forward":
        return (pybackprop.dense_forward, dict(x=r(B, K), w=r(N, K), b=r(N),
                                               out=sentinel_like((B, N), dtype)),
                ("out",), (), ())
    if fn == "dense_backward":
        return (pybackprop.dense_backward,
                dict(dy=r(B, N), x=r(B, K), w=r(N, K), y=r(B, N), dx=sentinel_like((B, K), dtype),
                     dw=sentinel_like((N, K), dtype), db=sentinel_like((N,), dtype),
                     activation="relu"),
                ("dx", "dw", "db"), (), ())
    if fn == "activation":
        return pybackprop.activation, dict(z=r(B, K), out=sentinel_like((B, K), dtype)), \
            ("out",), (), ("z",)
    if fn == "activation_backward":
        return pybackprop.activation_backward, dict(dy=r(B, K), y=r(B, K), kind="relu",
                                                    out=sentinel_like((B, K), dtype)), \
            ("out",), (), ("dy", "y")
    if fn in ("mse_loss", "binary_cross_entropy_with_logits"):
        names = ("pred", "target") if fn == "mse_loss" else ("logits", "targets")
        return getattr(pybackprop, fn), {names[0]: r(B, K), names[1]: r(B, K),
                                         "out": sentinel_like((B, K), dtype)}, \
            ("out",), (), names
    if fn == "softmax_cross_entropy":
        return pybackprop.softmax_cross_entropy, dict(
            logits=r(B, K), labels=rng.integers(0, K, B), out=sentinel_like((B, K), dtype)), \
            ("out",), (), ()
    if fn == "maximum_forward":
        return pybackprop.maximum_forward, dict(a=r(B, K), b=r(B, K),
                                                out=sentinel_like((B, K), dtype)), \
            ("out",), (), ("a", "b")
    if fn == "maximum_backward":
        return pybackprop.maximum_backward, dict(
            dz=r(B, K), a=r(B, K), b=r(B, K), da=sentinel_like((B, K), dtype),
            db=sentinel_like((B, K), dtype)), ("da", "db"), (), ("dz", "a", "b")
    if fn == "power_iteration":
        return pybackprop.power_iteration, dict(w=r(N, K), u=r(N), v=r(K)), (), ("u", "v"), ()
    if fn == "spectral_normalize":
        return pybackprop.spectral_normalize, dict(w=r(N, K), sigma=2.0,
                                                   out=sentinel_like((N, K), dtype)), \
            ("out",), (), ("w",)
    if fn == "spectral_norm_backward":
        return pybackprop.spectral_norm_backward, dict(
            grad_wsn=r(N, K), w=r(N, K), u=r(N), v=r(K), sigma=2.0,
            out=sentinel_like((N, K), dtype)), ("out",), (), ()
    if fn == "sigma_upper_bound":
        return pybackprop.sigma_upper_bound, dict(w=r(N, K)), (), (), ()
    if fn == "adam_step":
        return optim.adam_step, dict(param=r(B, K), grad=r(B, K), m=r(B, K), v=np.abs(r(B, K)),
                                     step=1), (), ("param", "m", "v"), ()
    if fn == "adamax_step":
        return optim.adamax_step, dict(param=r(B, K), grad=r(B, K), m=r(B, K),
                                       u=np.abs(r(B, K)), step=1), (), ("param", "m", "u"), ()
    raise AssertionError(fn)


FUNCS = ("dense_forward", "dense_backward", "activation", "activation_backward", "mse_loss",
         "binary_cross_entropy_with_logits", "softmax_cross_entropy", "maximum_forward",
         "maximum_backward", "power_iteration", "spectral_normalize",
         "spectral_norm_backward", "sigma_upper_bound", "adam_step", "adamax_step")
SCALAR_ARGS = {"sigma", "step", "activation", "kind"}


def _bad_value(bad, a, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    shape = np.shape(a)
    return {"none": None, "str": "abc", "object": object(),
            "complex": np.ones(shape, np.complex128), "float16": np.ones(shape, np.float16),
            "3d": np.ones((2, 2, 2), dtype), "scalar": dtype(1.5),
            "mixed": np.ones(shape, other),
            "shape": np.ones(tuple(d + 1 for d in shape) or (2,), dtype)}[bad]


@FUZZ
@given(fn=st.sampled_from(FUNCS), dtype=st.sampled_from(DTYPES), data=st.data(), seed=SEED)
def test_bad_argument_raises_and_writes_nothing(fn, dtype, data, seed):
    """A bad argument raises TypeError/ValueError naming it; no output or state is written."""
    rng = np.random.default_rng(seed)
    call, kw, outs, inplace, any_shape = _valid_call(fn, dtype, rng)
    arg = data.draw(st.sampled_from(sorted(kw)), label="arg")
    bads = [b for b in BAD if not (arg in any_shape and b in ("3d", "scalar"))
            and not (fn == "dense_forward" and arg == "b" and b == "none")]  # b is optional
    if fn in ("activation", "spectral_normalize", "sigma_upper_bound"):
        bads.remove("mixed")   # one float array: its dtype is the call's
    if fn == "sigma_upper_bound":
        bads.remove("shape")   # any (N, K) is valid
    if arg in SCALAR_ARGS:
        bads = ["none", "str", "object", "3d"]
        if arg in ("activation", "kind"):
            bads.remove("none")  # None: no activation
    if arg in outs:
        bads = [b for b in bads if b != "none"] + ["misaligned", "strided", "readonly", "alias"]
    if fn == "softmax_cross_entropy" and arg == "labels":
        bads = ["none", "str", "object", "complex", "shape", "3d", "negative", "too_big",
                "fraction"]
    bad = data.draw(st.sampled_from(bads), label="bad")
    a = kw[arg]
    if bad == "misaligned":
        kw[arg] = layout(a, "misaligned")
    elif bad == "strided":
        kw[arg] = np.full(a.shape + (2,), -1234.5, dtype)[..., 0]
    elif bad == "readonly":
        a.flags.writeable = False
    elif bad == "alias":
        # the out buffer overlaps an input's memory, shifted by one element (a partial
        # overlap: an error even where out= may be exactly an input, i.e. in place)
        src = next(k for k in sorted(kw) if k not in outs and isinstance(kw[k], np.ndarray)
                   and kw[k].dtype == a.dtype)
        base = np.zeros(max(kw[src].size, a.size) + 1, a.dtype)
        base[:kw[src].size] = kw[src].reshape(-1)
        kw[src] = base[:kw[src].size].reshape(kw[src].shape)
        kw[arg] = base[1:1 + a.size].reshape(a.shape)
    elif bad in ("negative", "too_big", "fraction"):
        lab = a.copy()
        lab[-1] = {"negative": -1, "too_big": 99}.get(bad, 0)
        kw[arg] = lab.astype(np.float64) + 0.5 if bad == "fraction" else lab
    else:
        kw[arg] = _bad_value(bad, a, dtype)
    snapshot = {k: np.array(v, copy=True) for k, v in kw.items()
                if (k in outs or k in inplace) and isinstance(v, np.ndarray)}
    with pytest.raises((TypeError, ValueError)) as exc:
        call(**kw)
    msg = str(exc.value)
    if bad not in ("mixed",):
        # a wrong shape of an any-shape input may be reported as the out buffer's mismatch
        # (and a wrong shape may show as the mismatch of the argument checked against it)
        named = [arg] + ([src] if bad == "alias" else []) + (
            list(kw) if bad == "shape" else [])
        assert any(n in msg for n in named), (fn, arg, bad, msg)
    for k, before in snapshot.items():
        np.testing.assert_array_equal(kw[k], before, err_msg=f"{fn}: {k} was written")
