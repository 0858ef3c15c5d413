"""Fuzzing of every public kernel function with hypothesis.

Each example draws shapes (0 and 1 included), a dtype, a value regime (normal, denormal,
NaN/Inf, huge), a memory layout per input (C, Fortran, strided, negative stride, misaligned
at an odd byte offset of a uint8 buffer, nested list), a dispatch path, and whether ``out=``
is given, fresh or aliasing an input. The result must match an independent oracle, or the
call must raise the documented exception (TypeError for a type or dtype, ValueError for a
shape, option or overlap) naming the argument, with every output buffer and every in-place
argument left bit for bit untouched.

The number of examples comes from the hypothesis profile in conftest.py ("default" for CI,
PYBACKPROP_HYPOTHESIS_PROFILE=thorough for long runs). Oracles:
  - dense: x @ w.T + b in long double (64-bit mantissa on x86-64), checked where it can be
    judged exactly: NaN exactly where the exact result is NaN, the exact infinity (through
    the activation) where it is infinite, and the GEMM error bound below elsewhere, as long
    as no partial sum can overflow the tested dtype (huge inputs: only those elements).
  - elementwise kernels, losses, spectral norm, optimizers: pybackprop.reference in the
    tested dtype (the specification), NaN and Inf positions equal.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import pybackprop
from pybackprop import optim, reference

from conftest import ARCHS  # the CPU configurations under test
DTYPES = (np.float32, np.float64)
KINDS = pybackprop.ACTIVATIONS
# the backward oracles here take the output y; the kinds differentiated from z have their
# layouts and special values in test_dense_preact.py and their ulp table in
# test_activation_ulp.py
Y_KINDS = tuple(k for k in KINDS if k not in pybackprop.PREACT_ACTIVATIONS)
LAYOUTS = ("c", "f", "strided", "negative", "misaligned", "list")
MODES = ("normal", "denormal", "special", "huge")
DIM = st.one_of(st.integers(0, 4), st.sampled_from([7, 9, 17, 33]))
SEED = st.integers(0, 2**32 - 1)
# Bad values put in place of one argument.
BAD = ("none", "str", "object", "complex", "float16", "3d", "scalar", "mixed", "shape")

# ---- error model (every tolerance of this module) ----------------------------------------
# A sum of n terms in any order, with or without FMA: |fl(s) - s| <= gamma_n sum|terms|,
# gamma_n <= 1.01 n u (Higham, Lemma 3.1), u = eps / 2; the long double oracle adds nothing
# measurable. GEMM_C = 1.01 per addend in eps (covers ours; the oracle's is ~2^-11 of it).
# Elementwise functions (exp, log1p, tanh in C and numpy): <= 4 eps each side: ELEM_C = 8.
# Underflow: each product or elementary function may lose up to one smallest subnormal:
# absolute floor TINY_C * (n + 1) * smallest_subnormal, plus TINY_C * tiny for results at
# the underflow threshold (sigmoid(-100) in float32 is subnormal).
# Losses: ours adds terms in order inside fixed blocks (in double: for float64 inputs a
# recursive sum, gamma_n <= GEMM_C n eps), the reference pairwise (less): GEMM_C (n + 1) eps
# relative to the sum of the (non-negative) terms, plus ELEM_C eps for each term's own
# exp/log1p rounding.
GEMM_C = 1.01
ELEM_C = 8.0
TINY_C = 8.0

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def values(rng, shape, dtype, mode):
    """Random values of ``dtype`` in one of the regimes of MODES."""
    fi = np.finfo(dtype)
    a = rng.standard_normal(shape).astype(dtype)
    if a.size == 0:
        return a
    pick = rng.random(shape)
    if mode == "denormal":
        den = (rng.standard_normal(shape) * float(fi.tiny) / 7).astype(dtype)
        a = np.where(pick < 0.4, den, a)
        a = np.where(pick > 0.9, dtype(0) * np.sign(a), a)   # +0 and -0
    elif mode == "special":
        spec = np.array([np.nan, np.inf, -np.inf], dtype)[rng.integers(0, 3, shape)]
        a = np.where(pick < 0.15, spec, a)
    elif mode == "huge":
        huge = (np.sign(a) * float(fi.max) * rng.uniform(0.25, 1, shape)).astype(dtype)
        a = np.where(pick < 0.3, huge, a)
    return a.astype(dtype)


def layout(a, kind, rng=None):
    """The values of ``a`` in the memory layout ``kind`` (equal elementwise)."""
    if kind == "c":
        return np.array(a, order="C")
    if kind == "f":
        return np.array(a, order="F")
    if kind == "strided":
        big = np.zeros(a.shape + (2,), a.dtype)
        big[..., 0] = a
        return big[..., 0]
    if kind == "negative":
        flip = np.array(a[(slice(None, None, -1),) * a.ndim], order="C")
        return flip[(slice(None, None, -1),) * a.ndim]
    if kind == "misaligned":
        buf = np.zeros(a.nbytes + a.itemsize + 3, np.uint8)
        off = 1 + 2 * int(rng.integers(0, 2)) if rng is not None else 1
        view = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        assert not view.flags.aligned or a.size == 0
        return view
    if kind == "list":
        # a nested list cannot hold a shape such as (0, 3); those stay arrays
        return a.tolist() if np.array(a.tolist()).shape == a.shape else a
    raise AssertionError(kind)


def _is_array(a):
    return isinstance(a, np.ndarray)


def call_dtype(dtype, *inputs):
    """The dtype a call computes in: that of its arrays, float64 when all are lists."""
    typed = any(isinstance(a, (np.ndarray, np.generic)) for a in inputs)
    return np.dtype(dtype) if typed else np.dtype(np.float64)


def assert_same_specials(ours, ref, what):
    """NaN exactly where ref is NaN, the same infinity where ref is infinite."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=what + ": NaN")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(ours[inf], ref[inf], err_msg=what + ": Inf")
    np.testing.assert_array_equal(np.isinf(ours), inf, err_msg=what + ": Inf positions")


def assert_close(ours, ref, rtol, atol, what):
    """Specials as ref, finite elements within rtol * |ref| + atol (atol may be an array)."""
    assert_same_specials(ours, ref, what)
    fin = np.isfinite(np.asarray(ref, np.float64))
    o, r = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    atol = np.broadcast_to(atol, r.shape)
    err = np.abs(o[fin] - r[fin])
    lim = rtol * np.abs(r[fin]) + atol[fin]
    assert (err <= lim).all(), (what, float(np.max(err - lim, initial=0)))


def sentinel_like(shape, dtype):
    """An output buffer filled with a recognisable value, to show it is never written."""
    return np.full(shape, -1234.5, dtype)


def with_arch(name, fn):
    """fn() in CPU configuration ``name``, then the previous one again."""
    saved = pybackprop.get_cpu()
    pybackprop.set_cpu(name)
    try:
        return fn()
    finally:
        pybackprop.set_cpu(saved)


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


# ---- elementwise kernels and losses against the reference in the dtype ---------------------

SHAPES = st.lists(DIM, min_size=0, max_size=3).map(tuple)


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


@FUZZ
@given(shape=SHAPES, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       la=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS),
       reduction=st.sampled_from(["mean", "sum"]), fn=st.sampled_from(["mse", "bce"]),
       given_=st.booleans(), arch=st.sampled_from(ARCHS), seed=SEED)
def test_elementwise_losses_fuzz(shape, dtype, mode, la, lb, reduction, fn, given_, arch,
                                 seed):
    """mse_loss and binary_cross_entropy_with_logits match the reference."""
    rng = np.random.default_rng(seed)
    a = values(rng, shape, dtype, mode)
    b = values(rng, shape, dtype, "normal" if fn == "bce" else mode)
    if fn == "bce":
        b = rng.uniform(0, 1, shape).astype(dtype) if mode != "special" else b
    ai, bi = layout(a, la, rng), layout(b, lb, rng)
    dt = call_dtype(dtype, ai, bi)
    ours_fn = {"mse": pybackprop.mse_loss,
               "bce": pybackprop.binary_cross_entropy_with_logits}[fn]
    ref_fn = {"mse": reference.mse_loss, "bce": reference.binary_cross_entropy_with_logits}[fn]
    kw = {"out": sentinel_like(shape, dt)} if given_ else {}
    loss, grad = with_arch(arch, lambda: ours_fn(ai, bi, reduction=reduction, **kw))
    with np.errstate(all="ignore"):
        rloss, rgrad = ref_fn(np.asarray(a, dt), np.asarray(b, dt), reduction=reduction)
    assert np.asarray(loss).dtype == dt and grad.dtype == dt and grad.shape == shape
    if given_:
        assert grad is kw["out"]
    eps, fi = _eps(dt), np.finfo(dt)
    n = int(np.prod(shape))
    if mode != "huge":
        # huge inputs: the loss may overflow in one order of summation and not the other
        # summation (GEMM_C n) plus each term's exp/log1p rounding (ELEM_C), relative
        # to the loss (the terms are >= 0)
        assert_close(loss, rloss, (GEMM_C * (n + 1) + ELEM_C) * eps,
                     TINY_C * float(fi.tiny), fn + " loss")
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    D = max(n, 1) if reduction == "mean" else 1
    # the gradient's terms: 2 (p - t) / D or (sigmoid(z) - t) / D, rounding relative to them
    mag = (2 * (np.abs(a64) + np.abs(b64)) if fn == "mse" else 1 + np.abs(b64)) / D
    keep = ~(mag * D > float(fi.max) / 8)   # 2 (p - t) / D may overflow in one order only
    with np.errstate(all="ignore"):
        assert_close(grad[keep], rgrad[keep], ELEM_C * eps,
                     ELEM_C * eps * np.nan_to_num(mag[keep]) + TINY_C * float(fi.tiny),
                     fn + " grad")


@FUZZ
@given(B=DIM, C=st.integers(1, 12), dtype=st.sampled_from(DTYPES),
       mode=st.sampled_from(MODES), target=st.sampled_from(["index", "rows", "list"]),
       lx=st.sampled_from(LAYOUTS), reduction=st.sampled_from(["mean", "sum"]),
       one_d=st.booleans(), arch=st.sampled_from(ARCHS), seed=SEED)
def test_softmax_cross_entropy_fuzz(B, C, dtype, mode, target, lx, reduction, one_d, arch,
                                    seed):
    """softmax_cross_entropy matches the reference for index labels and target rows."""
    rng = np.random.default_rng(seed)
    shape = (C,) if one_d else (B, C)
    x = values(rng, shape, dtype, mode)
    labels = rng.integers(0, C, shape[:-1])
    if target == "rows":
        labels = np.eye(C, dtype=dtype)[labels]
    elif target == "list":
        labels = labels.tolist()
    xi = layout(x, lx, rng)
    dt = call_dtype(dtype, xi, labels if target == "rows" else None)
    loss, d = with_arch(arch, lambda: pybackprop.softmax_cross_entropy(
        xi, labels, reduction=reduction))
    with np.errstate(all="ignore"):
        rloss, rd = reference.softmax_cross_entropy(np.asarray(x, dt), labels,
                                                    reduction=reduction)
    eps, fi = _eps(dt), np.finfo(dt)
    rows = 1 if one_d else B
    if mode != "huge":
        # the loss sums |x| - sized terms: relative to the sum of |row maxima| and log C
        mag = float(np.sum(np.abs(np.nan_to_num(np.asarray(x, np.float64))))) + rows * np.log(C + 1)
        D = rows if reduction == "mean" else 1
        assert_close(loss, rloss, 0, (ELEM_C + GEMM_C * (C * rows + 1)) * eps
                     * mag / max(D, 1) + TINY_C * float(fi.tiny), "softmax CE loss")
    assert_close(d, rd, ELEM_C * eps * C, TINY_C * float(fi.tiny) + ELEM_C * eps * C,
                 "softmax CE grad")


@FUZZ
@given(shape=SHAPES, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=3, max_size=3),
       given_=st.booleans(), ties=st.booleans(), arch=st.sampled_from(ARCHS), seed=SEED)
def test_maximum_fuzz(shape, dtype, mode, layouts, given_, ties, arch, seed):
    """maximum_forward / maximum_backward equal the reference exactly (ties to a)."""
    rng = np.random.default_rng(seed)
    a, b, dz = (values(rng, shape, dtype, mode) for _ in range(3))
    if ties:
        b = np.where(rng.random(shape) < 0.5, a, b)
    ai, bi, dzi = (layout(v, l, rng) for v, l in zip((a, b, dz), layouts))
    dt = call_dtype(dtype, ai, bi)
    kw = {"out": sentinel_like(shape, dt)} if given_ else {}
    z = with_arch(arch, lambda: pybackprop.maximum_forward(ai, bi, **kw))
    np.testing.assert_array_equal(z, reference.maximum_forward(np.asarray(a, dt),
                                                               np.asarray(b, dt)))
    dtb = call_dtype(dtype, dzi, ai, bi)
    kw = {"da": sentinel_like(shape, dtb), "db": sentinel_like(shape, dtb)} if given_ else {}
    da, db = with_arch(arch, lambda: pybackprop.maximum_backward(dzi, ai, bi, **kw))
    rda, rdb = reference.maximum_backward(*(np.asarray(v, dtb) for v in (dz, a, b)))
    np.testing.assert_array_equal(da, rda)
    np.testing.assert_array_equal(db, rdb)


# ---- spectral norm ------------------------------------------------------------------------

@FUZZ
@given(N=DIM, K=DIM, dtype=st.sampled_from(DTYPES),
       mode=st.sampled_from(["normal", "denormal", "special"]), lw=st.sampled_from(LAYOUTS),
       n_iters=st.integers(0, 3), arch=st.sampled_from(ARCHS), seed=SEED)
def test_power_iteration_fuzz(N, K, dtype, mode, lw, n_iters, arch, seed):
    """power_iteration matches the reference (NaN in w: NaN out), u, v updated in place."""
    rng = np.random.default_rng(seed)
    w = values(rng, (N, K), dtype, mode)
    u = rng.standard_normal(N).astype(dtype)
    v = rng.standard_normal(K).astype(dtype)
    ru, rv = u.astype(np.float64), v.astype(np.float64)
    wi = layout(w, lw, rng)
    if not _is_array(wi):
        wi = np.asarray(wi, dtype)  # a list follows u, v: the same dtype
    sigma = with_arch(arch, lambda: pybackprop.power_iteration(wi, u, v, n_iters=n_iters))
    with np.errstate(all="ignore"):
        rs = reference.power_iteration(w.astype(np.float64), ru, rv, n_iters=n_iters)
    assert np.asarray(sigma).dtype == dtype
    eps = _eps(dtype)
    mag = float(np.sum(np.abs(np.nan_to_num(w.astype(np.float64))))) + 1
    tol = 64 * (N + K + 4) * (n_iters + 1) * eps
    if np.isnan(rs):
        assert np.isnan(sigma)
    else:
        assert_close(sigma, rs, tol, tol * mag, "sigma")
        assert_close(u, ru, tol, tol, "u")
        assert_close(v, rv, tol, tol, "v")


@FUZZ
@given(N=DIM, K=DIM, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=4, max_size=4),
       sigma=st.sampled_from([1.0, 3.5, 1e-30, 0.0, -2.0, float("inf"), float("nan")]),
       out=st.sampled_from(["none", "given", "inplace"]), arch=st.sampled_from(ARCHS),
       seed=SEED)
def test_spectral_normalize_and_backward_fuzz(N, K, dtype, mode, layouts, sigma, out, arch,
                                              seed):
    """spectral_normalize is exact division; spectral_norm_backward matches the reference."""
    rng = np.random.default_rng(seed)
    w, g = values(rng, (N, K), dtype, mode), values(rng, (N, K), dtype, mode)
    u, v = rng.standard_normal(N).astype(dtype), rng.standard_normal(K).astype(dtype)
    wi = layout(w, "c" if out == "inplace" else layouts[0], rng)
    dt = call_dtype(dtype, wi)
    kw = {"inplace": {"out": wi}, "given": {"out": sentinel_like((N, K), dt)},
          "none": {}}[out] if _is_array(wi) else {}
    with np.errstate(all="ignore"):
        ref = np.asarray(w, dt) / dt.type(sigma)
    o = with_arch(arch, lambda: pybackprop.spectral_normalize(wi, sigma, **kw))
    np.testing.assert_array_equal(o, ref)
    gi, ui, vi = (layout(a, l, rng) for a, l in zip((g, u, v), layouts[1:]))
    wi = layout(w, layouts[0], rng)
    dt = call_dtype(dtype, gi, wi, ui, vi)
    dw = with_arch(arch, lambda: pybackprop.spectral_norm_backward(gi, wi, ui, vi, sigma))
    with np.errstate(all="ignore"):
        rdw = reference.spectral_norm_backward(*(np.asarray(a, np.float64)
                                                 for a in (g, w, u, v)), sigma)
    assert dw.shape == (N, K) and dw.dtype == dt
    if mode in ("normal", "denormal") and np.isfinite(sigma) and abs(sigma) >= 1:
        eps = _eps(dt)
        mag = (np.abs(g.astype(np.float64)) + np.sum(np.abs(g.astype(np.float64) * w))
               * np.abs(np.outer(u, v))) / abs(sigma)
        assert_close(dw, rdw, 0, 8 * (N * K + 4) * eps * mag + TINY_C * float(
            np.finfo(dt).tiny), "spectral_norm_backward")
    elif mode == "special":
        # a NaN or Inf anywhere in g or w reaches every element through <g, w / sigma>
        if not (np.isfinite(g).all() and np.isfinite(w).all()) and N * K:
            assert not np.isfinite(dw).all()


@FUZZ
@given(N=DIM, K=DIM, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       lw=st.sampled_from(LAYOUTS), n_squarings=st.integers(0, 6), arch=st.sampled_from(ARCHS),
       seed=SEED)
def test_sigma_upper_bound_fuzz(N, K, dtype, mode, lw, n_squarings, arch, seed):
    """sigma_upper_bound >= the exact sigma (SVD in float64); NaN -> NaN, Inf -> inf."""
    rng = np.random.default_rng(seed)
    w = values(rng, (N, K), dtype, mode)
    up = with_arch(arch, lambda: pybackprop.sigma_upper_bound(layout(w, lw, rng),
                                                              n_squarings=n_squarings))
    assert isinstance(up, float)
    w64 = w.astype(np.float64)
    if np.isnan(w64).any():
        assert np.isnan(up)
    elif np.isinf(w64).any():
        assert up == np.inf
    elif w.size == 0:
        assert up == 0.0
    elif np.isfinite(np.linalg.norm(w64)):
        exact = float(np.linalg.norm(w64, 2))
        assert up >= exact * (1 - 1e-12), (up, exact)   # SVD's own rounding: ~1e-15
        assert np.isfinite(up) or not np.isfinite(exact)


# ---- optimizers: bitwise equal to the reference ------------------------------------------

@FUZZ
@given(shape=SHAPES, dtype=st.sampled_from(DTYPES), mode=st.sampled_from(MODES),
       kind=st.sampled_from(["adam", "adamw", "amsgrad", "adamax"]), lg=st.sampled_from(LAYOUTS),
       step=st.integers(1, 3), wd=st.sampled_from([0.0, 0.1]), maximize=st.booleans(),
       eps=st.sampled_from([0.0, 1e-8]), n=st.integers(1, 3), arch=st.sampled_from(ARCHS),
       seed=SEED)
def test_optimizer_steps_fuzz(shape, dtype, mode, kind, lg, step, wd, maximize, eps, n, arch,
                              seed):
    """adam_step / adamax_step (single arrays and lists) equal the reference bit for bit."""
    rng = np.random.default_rng(seed)
    shapes = [shape] + [tuple(rng.integers(0, 9, rng.integers(0, 3))) for _ in range(n - 1)]
    p = [values(rng, s, dtype, mode) for s in shapes]
    g = [values(rng, s, dtype, mode) for s in shapes]
    m = [values(rng, s, dtype, "normal") for s in shapes]
    s2 = [np.array(np.abs(values(rng, s, dtype, "normal"))) for s in shapes]
    vmax = [np.array(np.abs(values(rng, s, dtype, "normal"))) for s in shapes]
    gi = [layout(a, lg, rng) for a in g]
    copies = [[a.copy() for a in arrs] for arrs in (p, m, s2, vmax)]
    single = n == 1

    def pick(lst):
        return lst[0] if single else lst

    def run(fn_lib, P, M, S, V, G):
        if kind == "adamax":
            fn_lib.adamax_step(pick(P), pick(G), pick(M), pick(S), step=step, weight_decay=wd,
                               maximize=maximize, eps=eps)
        else:
            fn_lib.adam_step(pick(P), pick(G), pick(M), pick(S), step=step, weight_decay=wd,
                             maximize=maximize, eps=eps,
                             decoupled_weight_decay=kind == "adamw",
                             amsgrad=kind == "amsgrad",
                             v_max=pick(V) if kind == "amsgrad" else None)

    with_arch(arch, lambda: run(optim, p, m, s2, vmax, gi))
    with np.errstate(all="ignore"):
        run(reference, *copies, [np.asarray(a, dtype) for a in g])
    for ours, ref in zip((p, m, s2, vmax), copies):
        for o, r in zip(ours, ref):
            np.testing.assert_array_equal(o, r)


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
