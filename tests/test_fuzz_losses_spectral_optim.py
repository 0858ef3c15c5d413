"""Fuzzing of the losses (mse_loss, binary_cross_entropy_with_logits, softmax_cross_entropy,
maximum_forward, maximum_backward), the spectral norm (power_iteration, spectral_normalize,
spectral_norm_backward, sigma_upper_bound) and the optimizer steps (adam_step, adamax_step)
with hypothesis.

Each example draws shapes (0 and 1 included), a dtype, a value regime (normal, denormal,
NaN/Inf, huge), a memory layout per input (C, Fortran, strided, negative stride, misaligned
at an odd byte offset of a uint8 buffer, nested list), a dispatch path, and whether ``out=``
is given, fresh or aliasing an input. The result must match an independent oracle.

The number of examples comes from the hypothesis profile in conftest.py ("default" for CI,
PYBACKPROP_HYPOTHESIS_PROFILE=thorough for long runs). The tolerances follow the error model
in _fuzz_cases.py. Oracles:
  - losses, spectral norm, optimizers: pybackprop.reference in the tested dtype (the
    specification), NaN and Inf positions equal; maximum and the optimizers bit for bit.
  - spectral_normalize: exact division, bit for bit.
  - sigma_upper_bound: at least the exact largest singular value (SVD in float64).
"""
import numpy as np
from hypothesis import given, strategies as st

import pybackprop
from pybackprop import optim, reference

from conftest import ARCHS  # the CPU configurations under test
from _fuzz_cases import (DIM, DTYPES, ELEM_C, FUZZ, GEMM_C, LAYOUTS, MODES, SEED, SHAPES,
                         TINY_C, _eps, _is_array, assert_close, call_dtype, layout,
                         sentinel_like, values, with_arch)


# ---- losses against the reference in the dtype -------------------------------------------

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
