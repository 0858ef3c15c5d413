"""Tests of pybackprop.optim: Adam, AdamW and AdaMax against pybackprop.reference, their
closed forms, multi-tensor and thread-count invariance, every dispatch path, error paths,
the state_dict round trip, end-to-end training, and (when installed) torch.optim.
Fixtures arch, threads and rng come from conftest.py."""
import itertools

import numpy as np
import pytest

import pybackprop
from pybackprop import optim
from pybackprop import reference as ref

from conftest import ARCHS  # the CPU configurations under test
DTYPES = (np.float32, np.float64)
# 1 element; primes and lengths around the AVX2 (4/8 lanes) and AVX-512 (8/16 lanes) widths.
SIZES = (1, 7, 15, 16, 17, 33, 1000, 1003)
STEPS = 100

# ---- tolerances: one table, derived ----------------------------------------------------------
# eps = np.finfo(dtype).eps.
# C kernels vs reference: 0 ulp. Both perform the same IEEE operations in the same order in
#   the parameter dtype, none fused (see csrc/ops/optim.c), so the parity tests assert equality.
# Closed forms, evaluated in float64 from the gradients:
#   v_t = (1-b2) sum_i b2^(t-i) g_i^2: the kernel's recurrence rounds 3 times per step (the
#   product b2 v, the product (1-b2) g g, the sum), and all terms are >= 0, so its relative
#   error is <= 3 t u <= 1.5 t eps (plus the rounding of 1-b2 and b2 to the dtype, another
#   t eps): CLOSED_V = 3 t eps.
#   u_t = max_i b2^(t-i) |g_i| (eps = 0): each of the <= t multiplications by b2 rounds once,
#   the max is exact: CLOSED_U = 2 t eps (with the rounding of b2).
#   Constant g, eps = 0: every step is exactly lr * sign(g) in exact arithmetic; the kernel
#   rounds about 12 times in forming it (m, v, the bias corrections, sqrt, two quotients):
#   |dp - lr sign(g)| <= CLOSED_STEP * eps * lr with CLOSED_STEP = 16; and p itself rounds
#   once per step (0.5 ulp of |p| <= eps |p|). The bias corrections are formed in double as
#   1 - beta^t, where the rounding of beta^t (<= eps64 beta^t) is amplified by the
#   cancellation to a relative eps64 beta^t / (1 - beta^t) (halved by the square root for
#   beta2): at t = 2, beta2 = 0.999 that is 250 eps64, which float64 results show.
# torch.optim (optional test): PyTorch's vectorised lerp and add-with-alpha use one FMA where
#   we round twice: per step the moments differ by <= 2 eps relative to |m| + |g|, which moves
#   the update by <= 2 eps * lr * max|m_hat / denom| and Adam's |m_hat / denom| is bounded by
#   (1-b1)/sqrt(1-b2) <= 3.2 for the defaults (Kingma & Ba, section 2.1); p's own rounding adds
#   <= eps |p| per step, and the differences add up over the steps:
#   |p - p_torch| <= STEPS * eps * (TORCH_C * lr + max|p|), TORCH_C = 16 (2 * 3.2 with margin).
CLOSED_V = 3
CLOSED_U = 2
CLOSED_STEP = 16
TORCH_C = 16


def _eps(dtype):
    return float(np.finfo(dtype).eps)


# ---- helpers ----------------------------------------------------------------------------------
ADAM_OPTIONS = [dict(beta1=b1, weight_decay=wd, decoupled_weight_decay=dec, amsgrad=ams,
                     maximize=mx)
                for b1, wd, dec, ams, mx in itertools.product(
                    (0.9, 0.3), (0.0, 0.1), (False, True), (False, True), (False, True))
                if not (wd == 0.0 and dec)]
ADAMAX_OPTIONS = [dict(beta1=b1, weight_decay=wd, maximize=mx, eps=eps)
                  for b1, wd, mx, eps in itertools.product(
                      (0.9, 0.3), (0.0, 0.1), (False, True), (1e-8, 0.0))]


def _opt_id(o):
    return ",".join(f"{k}={v}" for k, v in o.items())


def _state(n, dtype, rng, kind, amsgrad=False):
    p = rng.standard_normal(n).astype(dtype)
    st = [np.zeros(n, dtype), np.zeros(n, dtype)]
    if kind == "adam" and amsgrad:
        st.append(np.zeros(n, dtype))
    return p, st


def _grads(n, dtype, rng, steps=STEPS, zeros=False):
    g = rng.standard_normal((steps, n)).astype(dtype)
    if zeros:
        g[:, ::5] = 0  # coordinates that never see a gradient
    return g


def _run_adam(fn, p, st, grads, lr, opts):
    o = dict(opts)
    for t, g in enumerate(grads, 1):
        fn(p, g, st[0], st[1], step=t, lr=lr, v_max=st[2] if o.get("amsgrad") else None, **o)


def _run_adamax(fn, p, st, grads, lr, opts):
    for t, g in enumerate(grads, 1):
        fn(p, g, st[0], st[1], step=t, lr=lr, **opts)


def _group(sd):
    """A flat state_dict's arrays by state name: {"m": [m.0, m.1, ...], ...}."""
    out = {}
    for key in sorted((k for k in sd if "." in k), key=lambda k: int(k.rsplit(".", 1)[1])):
        out.setdefault(key.rsplit(".", 1)[0], []).append(sd[key])
    return out


def _assert_same(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


# ---- parity with the reference ---------------------------------------------------------------
@pytest.mark.parametrize("opts", ADAM_OPTIONS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_matches_reference(arch, opts, dtype, rng):
    """100 Adam/AdamW steps equal the reference bit for bit, every option, odd sizes."""
    for n in SIZES:
        p, st = _state(n, dtype, rng, "adam", opts["amsgrad"])
        pr, str_ = p.copy(), [s.copy() for s in st]
        grads = _grads(n, dtype, rng)
        _run_adam(optim.adam_step, p, st, grads, 1e-2, opts)
        _run_adam(ref.adam_step, pr, str_, grads, 1e-2, opts)
        assert np.isfinite(p).all()
        _assert_same([p, *st], [pr, *str_])


@pytest.mark.parametrize("opts", ADAMAX_OPTIONS, ids=_opt_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax_matches_reference(arch, opts, dtype, rng):
    """100 AdaMax steps equal the reference bit for bit, every option, odd sizes."""
    for n in SIZES:
        p, st = _state(n, dtype, rng, "adamax")
        pr, str_ = p.copy(), [s.copy() for s in st]
        grads = _grads(n, dtype, rng, zeros=True)
        _run_adamax(optim.adamax_step, p, st, grads, 1e-2, opts)
        _run_adamax(ref.adamax_step, pr, str_, grads, 1e-2, opts)
        assert not np.isnan(p).any()
        _assert_same([p, *st], [pr, *str_])


@pytest.mark.parametrize("cls,kind,kw", [
    (optim.Adam, "adam", dict()),
    (optim.Adam, "adam", dict(weight_decay=0.05, amsgrad=True, maximize=True)),
    (optim.AdamW, "adam", dict()),
    (optim.AdamW, "adam", dict(weight_decay=0.3, amsgrad=True)),
    (optim.AdaMax, "adamax", dict()),
    (optim.AdaMax, "adamax", dict(weight_decay=0.05, eps=0.0, maximize=True)),
])
def test_optimizer_classes_match_reference(arch, cls, kind, kw, rng):
    """Adam/AdamW/AdaMax objects over mixed-dtype tensor lists equal the reference."""
    shapes = [(3, 5), (17,), (), (0, 4), (40, 33)]
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32]
    params = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    expect = [p.copy() for p in params]
    opt = cls(params, lr=3e-3, **kw)
    hp = dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=kw.get("eps", 1e-8),
              weight_decay=opt.weight_decay, maximize=kw.get("maximize", False))
    ams = kw.get("amsgrad", False)
    if kind == "adam":
        hp.update(decoupled_weight_decay=cls is optim.AdamW, amsgrad=ams)
    st = [[np.zeros_like(p) for p in params] for _ in range(3 if ams else 2)]
    for t in range(1, 21):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(grads)
        for i, (p, g) in enumerate(zip(expect, grads)):
            if kind == "adam":
                ref.adam_step(p, g, st[0][i], st[1][i], step=t,
                              v_max=st[2][i] if ams else None, **hp)
            else:
                ref.adamax_step(p, g, st[0][i], st[1][i], step=t, **hp)
    assert opt.t == 20
    _assert_same(params, expect)
    _assert_same(opt.m, st[0])
    _assert_same(opt.v if kind == "adam" else opt.u, st[1])
    if ams:
        _assert_same(opt.v_max, st[2])


def test_class_defaults_are_torchs():
    """Defaults follow torch.optim: Adam lr 1e-3, AdamW weight_decay 1e-2, AdaMax lr 2e-3."""
    p = [np.zeros(3, np.float32)]
    a, w, x = optim.Adam(p), optim.AdamW(p), optim.AdaMax(p)
    assert (a.lr, a.betas, a.eps, a.weight_decay, a.amsgrad, a.maximize) == \
        (1e-3, (0.9, 0.999), 1e-8, 0.0, False, False)
    assert not a.decoupled_weight_decay
    assert (w.lr, w.weight_decay, w.decoupled_weight_decay) == (1e-3, 1e-2, True)
    assert (x.lr, x.betas, x.eps, x.weight_decay) == (2e-3, (0.9, 0.999), 1e-8, 0.0)


# ---- closed forms ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_second_moment_closed_form(arch, dtype, rng):
    """From zero state, v_t = (1-b2) sum_i b2^(t-i) g_i^2 (and m_t likewise for b1)."""
    n, b1, b2 = 37, 0.9, 0.99
    p, (m, v) = _state(n, dtype, rng, "adam")
    grads = _grads(n, dtype, rng, steps=50)
    for t, g in enumerate(grads, 1):
        optim.adam_step(p, g, m, v, step=t, beta1=b1, beta2=b2)
        g64 = grads[:t].astype(np.float64)
        w = (b2 ** np.arange(t - 1, -1, -1))[:, None]
        v_exact = (1 - b2) * (w * g64 ** 2).sum(0)
        tol = CLOSED_V * t * _eps(dtype)
        np.testing.assert_allclose(v, v_exact, rtol=tol, atol=0)
        w1 = (b1 ** np.arange(t - 1, -1, -1))[:, None]
        m_exact = (1 - b1) * (w1 * g64).sum(0)
        # m's terms have mixed signs: bound by the sum of magnitudes
        bound = CLOSED_V * t * _eps(dtype) * (1 - b1) * (w1 * np.abs(g64)).sum(0)
        assert (np.abs(m - m_exact) <= bound).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax_infinity_norm_closed_form(arch, dtype, rng):
    """AdaMax with eps=0: u_t = max_i b2^(t-i) |g_i|."""
    n, b2 = 37, 0.9
    p, (m, u) = _state(n, dtype, rng, "adamax")
    grads = _grads(n, dtype, rng, steps=60)
    for t, g in enumerate(grads, 1):
        optim.adamax_step(p, g, m, u, step=t, beta2=b2, eps=0.0)
        w = (b2 ** np.arange(t - 1, -1, -1))[:, None]
        u_exact = (w * np.abs(grads[:t].astype(np.float64))).max(0)
        np.testing.assert_allclose(u, u_exact, rtol=CLOSED_U * t * _eps(dtype), atol=0)


@pytest.mark.parametrize("kind", ["adam", "adamw", "adamax"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_gradient_moves_by_lr(arch, kind, dtype, rng):
    """With a constant gradient and eps=0, every bias-corrected step is lr * sign(g)."""
    n, lr = 41, 1e-2
    p, st = _state(n, dtype, rng, "adam")
    g = rng.standard_normal(n).astype(dtype)
    for t in range(1, 11):
        before = p.copy()
        if kind == "adamax":
            optim.adamax_step(p, g, st[0], st[1], step=t, lr=lr, eps=0.0)
        else:
            optim.adam_step(p, g, st[0], st[1], step=t, lr=lr, eps=0.0,
                            decoupled_weight_decay=kind == "adamw")
        moved = before.astype(np.float64) - p.astype(np.float64)
        cancel = 0.9 ** t / (1 - 0.9 ** t) + 0.5 * 0.999 ** t / (1 - 0.999 ** t)
        bound = ((CLOSED_STEP * _eps(dtype) + _eps(np.float64) * cancel) * lr
                 + _eps(dtype) * np.abs(before))
        assert (np.abs(moved - lr * np.sign(g)) <= bound).all(), (t, moved - lr * np.sign(g))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax_zero_infinity_norm_leaves_parameter(arch, dtype, rng):
    """AdaMax, eps=0: a coordinate that never had a gradient (u == 0) is unchanged, not NaN."""
    n = 50
    p, (m, u) = _state(n, dtype, rng, "adamax")
    p[3] = -0.0
    before = p.copy()
    mask = np.zeros(n, bool)
    mask[::3] = True
    for t in range(1, 6):
        g = np.where(mask, 0, rng.standard_normal(n)).astype(dtype)
        optim.adamax_step(p, g, m, u, step=t, eps=0.0)
    assert (u[mask] == 0).all() and (m[mask] == 0).all()
    np.testing.assert_array_equal(p[mask], before[mask])
    assert np.signbit(p[3])  # unchanged means the very same bits
    assert (p[~mask] != before[~mask]).all()


def test_nan_gradient_propagates(arch):
    """A NaN gradient makes its coordinate NaN (as torch), others are unaffected."""
    for dtype in DTYPES:
        g = np.array([1.0, np.nan, -2.0] * 7, dtype)
        p, (m, v) = np.ones(21, dtype), (np.zeros(21, dtype), np.zeros(21, dtype))
        vm = np.zeros(21, dtype)
        optim.adam_step(p, g, m, v, step=1, amsgrad=True, v_max=vm)
        assert np.isnan(p[1::3]).all() and np.isnan(vm[1::3]).all()
        assert np.isfinite(np.delete(p, np.s_[1::3])).all()
        p, (m, u) = np.ones(21, dtype), (np.zeros(21, dtype), np.zeros(21, dtype))
        optim.adamax_step(p, g, m, u, step=1)
        assert np.isnan(p[1::3]).all() and np.isnan(u[1::3]).all()


# ---- multi-tensor, threads ----------------------------------------------------------------------
MULTI_SIZES = (1, 7, 0, 1000, 17, 20011, 3, 16, 9000)


@pytest.mark.parametrize("kind", ["adam", "adamax"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_equals_per_tensor(arch, kind, dtype, threads, rng):
    """One call over a list of tensors == one call per tensor, bit for bit (2 threads, so
    spans cut inside tensors)."""
    threads(2)
    params = [rng.standard_normal(n).astype(dtype) for n in MULTI_SIZES]
    states = [[np.zeros_like(p) for p in params] for _ in range(3)]
    single = [p.copy() for p in params]
    sstates = [[s.copy() for s in st] for st in states]
    for t in range(1, 6):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        if kind == "adam":
            optim.adam_step(params, grads, states[0], states[1], step=t, amsgrad=True,
                            v_max=states[2], weight_decay=0.1)
            for i in range(len(params)):
                optim.adam_step(single[i], grads[i], sstates[0][i], sstates[1][i], step=t,
                                amsgrad=True, v_max=sstates[2][i], weight_decay=0.1)
        else:
            optim.adamax_step(params, grads, states[0], states[1], step=t, weight_decay=0.1)
            for i in range(len(params)):
                optim.adamax_step(single[i], grads[i], sstates[0][i], sstates[1][i], step=t,
                                  weight_decay=0.1)
    _assert_same(params, single)
    for st, sst in zip(states, sstates):
        _assert_same(st, sst)


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW, optim.AdaMax])
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(arch, cls, dtype, threads, rng):
    """1 and 2 threads give bitwise equal parameters and state."""
    init = [rng.standard_normal(n).astype(dtype) for n in MULTI_SIZES]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in init] for _ in range(4)]
    results = []
    for nt in (1, 2):
        threads(nt)
        params = [p.copy() for p in init]
        opt = cls(params, amsgrad=True) if cls is not optim.AdaMax else cls(params)
        for g in grads:
            opt.step(g)
        results.append((params, _group(opt.state_dict())))
    _assert_same(results[0][0], results[1][0])
    for name in results[0][1]:
        _assert_same(results[0][1][name], results[1][1][name])


def test_every_dispatch_path_agrees(rng):
    """Every CPU configuration (ref, AVX2 and AVX-512 kernels) gives the same bits (so the
    parity above holds on every path)."""
    saved = pybackprop.get_cpu()
    out = {}
    try:
        for a in ARCHS:
            pybackprop.set_cpu(a)
            p = np.linspace(-1, 1, 1001, dtype=np.float32)
            opt = optim.Adam([p], weight_decay=0.1, amsgrad=True)
            for t in range(3):
                opt.step([np.cos(np.arange(1001, dtype=np.float32) * (t + 1))])
            out[a] = p
    finally:
        pybackprop.set_cpu(saved)
    for a in ARCHS:
        np.testing.assert_array_equal(out[a], out[ARCHS[0]])


# ---- gradients: caching, copies -----------------------------------------------------------------
def test_step_reads_gradient_arrays_each_time(rng):
    """The cached gradient pointers see in-place changes; new arrays are picked up; a
    non-contiguous gradient is copied and gives the same result as a contiguous one."""
    p1 = [rng.standard_normal(30).astype(np.float32)]
    p2 = [p1[0].copy()]
    o1, o2 = optim.Adam(p1), optim.Adam(p2)
    g = np.zeros(30, np.float32)
    for t in range(4):
        g[...] = rng.standard_normal(30)        # same array, new values
        o1.step([g])
        o2.step([g.copy()])                     # a new array every step
    np.testing.assert_array_equal(p1[0], p2[0])
    wide = np.zeros((30, 2), np.float32)
    wide[:, 0] = rng.standard_normal(30)
    o1.step([wide[:, 0]])                       # strided: copied
    o2.step([np.ascontiguousarray(wide[:, 0])])
    np.testing.assert_array_equal(p1[0], p2[0])


# ---- errors: raised before anything is modified --------------------------------------------------
def _snapshot(arrays):
    return [a.copy() for a in arrays]


def _good(dtype=np.float32, n=10):
    return (np.ones(n, dtype), np.full(n, 0.5, dtype), np.zeros(n, dtype), np.zeros(n, dtype),
            np.zeros(n, dtype))


@pytest.mark.parametrize("change,exc,match", [
    (dict(step=0), ValueError, "step"),
    (dict(step=1.5), TypeError, "step"),
    (dict(lr=-1e-3), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(beta2=-0.1), ValueError, "beta2"),
    (dict(eps=-1e-8), ValueError, "eps"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay"),
    (dict(grad=np.zeros(11, np.float32)), ValueError, r"grad has shape \(11,\)"),
    (dict(grad=np.zeros(10, np.float64)), TypeError, "grad has shape .* float64"),
    (dict(m=np.zeros(9, np.float32)), ValueError, "m has shape"),
    (dict(v=np.zeros(10, np.float64)), TypeError, "v has shape"),
    (dict(v=[0.0] * 10), TypeError, "v must be a numpy.ndarray"),
    (dict(param=np.ones(20, np.float32)[::2]), ValueError, "param must be C-contiguous"),
    (dict(param=np.ones(10, np.int64)), TypeError, "param has dtype int64"),
    (dict(amsgrad=True), ValueError, "v_max"),
    (dict(v_max="given"), ValueError, "amsgrad=False"),
    (dict(m="param"), ValueError, "overlaps"),
    (dict(grad="m"), ValueError, "overlaps"),
])
def test_adam_step_errors_modify_nothing(change, exc, match):
    """Each bad argument raises a clear error naming it, and no array is modified."""
    p, g, m, v, vm = _good()
    kw = dict(param=p, grad=g, m=m, v=v, step=1, lr=1e-3)
    kw.update(change)
    if change.get("v_max") == "given":
        kw["v_max"] = vm
    for k in ("m", "grad"):
        if isinstance(kw[k], str):
            kw[k] = {"param": p, "m": m}[kw[k]]
    before = _snapshot([p, g, m, v, vm])
    args = [kw.pop(k) for k in ("param", "grad", "m", "v")]
    with pytest.raises(exc, match=match):
        optim.adam_step(*args, **kw)
    _assert_same([p, g, m, v, vm], before)


def test_adamax_step_errors_modify_nothing():
    """AdaMax checks its arguments the same way (a few representatives)."""
    p, g, m, u, _ = _good(np.float64)
    before = _snapshot([p, g, m, u])
    for kw, exc in ((dict(step=0), ValueError), (dict(eps=-1.0), ValueError),
                    (dict(beta2=1.0), ValueError)):
        with pytest.raises(exc):
            optim.adamax_step(p, g, m, u, **{"step": 1, **kw})
    with pytest.raises(ValueError, match="u has shape"):
        optim.adamax_step(p, g, m, np.zeros(3), step=1)
    with pytest.raises(ValueError, match="grad has 1 arrays"):
        optim.adamax_step([p, p.copy()], [g], [m, m.copy()], [u, u.copy()], step=1)
    _assert_same([p, g, m, u], before)


def test_read_only_parameter_is_rejected():
    """A read-only parameter raises before anything is written."""
    p, g, m, v, _ = _good()
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.adam_step(p, g, m, v, step=1)
    with pytest.raises(ValueError, match="read-only"):
        optim.Adam([p])


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW, optim.AdaMax])
def test_optimizer_step_errors_modify_nothing(cls, rng):
    """A bad gradient list raises before any parameter, state or step count changes."""
    params = [rng.standard_normal((4, 3)).astype(np.float32),
              rng.standard_normal(5).astype(np.float64)]
    opt = cls(params)
    good = [np.ones_like(p) for p in params]
    opt.step(good)
    before_p, before_s, t = _snapshot(params), opt.state_dict(), opt.t
    bad_lists = [
        ([good[0]], ValueError, "grads has 1 arrays"),
        ([good[0], np.ones(4, np.float64)], ValueError, r"grads\[1\] has shape \(4,\)"),
        ([good[0], np.ones(5, np.float32)], TypeError, r"grads\[1\] has shape"),
        ([good[0].T, good[1]], ValueError, r"grads\[0\] has shape \(3, 4\)"),
        ([params[0], good[1]], ValueError, "overlaps"),
        (good[0], TypeError, "grads must be a list"),
    ]
    for grads, exc, match in bad_lists:
        with pytest.raises(exc, match=match):
            opt.step(grads)
        assert opt.t == t
        _assert_same(params, before_p)
        for name, arrays in _group(opt.state_dict()).items():
            _assert_same(arrays, _group(before_s)[name])
    opt.step(good)  # and the optimizer still works
    assert opt.t == t + 1


def test_constructor_and_setters_validate(rng):
    """Bad hyperparameters raise at construction and when set; nothing is changed."""
    p = [rng.standard_normal(4).astype(np.float32)]
    for kw, match in ((dict(lr=-1.0), "lr"), (dict(betas=(0.9, 1.0)), "beta2"),
                      (dict(betas=(-0.1, 0.9)), "beta1"), (dict(betas=0.9), "betas"),
                      (dict(eps=-1.0), "eps"), (dict(weight_decay=-1.0), "weight_decay")):
        with pytest.raises(ValueError, match=match):
            optim.Adam(p, **kw)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="list of numpy arrays"):
        optim.Adam(p[0])
    with pytest.raises(ValueError, match="overlaps"):
        optim.Adam([p[0], p[0]])
    opt = optim.Adam(p)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    with pytest.raises(ValueError, match="beta1"):
        opt.betas = (1.5, 0.9)
    assert opt.lr == 1e-3 and opt.betas == (0.9, 0.999)
    opt.lr = 5e-4
    assert opt.lr == 5e-4


# ---- state_dict ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", [(optim.Adam, dict(amsgrad=True, weight_decay=0.1)),
                                    (optim.AdamW, dict()), (optim.AdaMax, dict(eps=0.0))])
def test_state_dict_round_trip_continues_bitwise(cls, kw, rng):
    """Save after 7 steps, restore into a fresh optimizer on copies of the parameters: the
    next 7 steps are bitwise identical to the original run."""
    params = [rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (40,), (1,))]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params]
             for _ in range(14)]
    opt = cls(params, lr=2e-2, **kw)
    for g in grads[:7]:
        opt.step(g)
    sd = opt.state_dict()
    saved = [p.copy() for p in params]
    for g in grads[7:]:
        opt.step(g)
    clone = [p.copy() for p in saved]
    other = cls(clone, lr=1.0, betas=(0.5, 0.5), **kw)  # hyperparameters come from sd
    other.load_state_dict(sd)
    assert other.t == 7 and other.lr == 2e-2 and other.betas == (0.9, 0.999)
    for g in grads[7:]:
        other.step(g)
    _assert_same(clone, params)
    for name, arrays in _group(opt.state_dict()).items():
        _assert_same(_group(other.state_dict())[name], arrays)
    # the saved dict is a copy: later steps did not change it
    assert sd["t"] == 7


def test_load_state_dict_errors_modify_nothing(rng):
    """A mismatched state_dict raises and leaves the optimizer as it was."""
    params = [rng.standard_normal(6).astype(np.float32)]
    opt = optim.Adam(params)
    opt.step([np.ones(6, np.float32)])
    good = opt.state_dict()
    target = optim.Adam([rng.standard_normal(6).astype(np.float32)])
    before = target.state_dict()

    def variant(**change):
        return {**opt.state_dict(), **{k.replace("_", "."): v for k, v in change.items()}}

    for sd, match in ((variant(type="AdaMax"), "AdaMax"), (variant(t=-1), "'t'"),
                      (variant(amsgrad=True), "amsgrad"), (variant(lr=-1.0), "lr"),
                      (variant(m_0=np.zeros(5, np.float32)), r"\['m.0'\]"),
                      (variant(v_0=np.zeros(6, np.float64)), r"\['v.0'\]"),
                      ({"type": "Adam"}, "missing")):
        with pytest.raises(ValueError, match=match):
            target.load_state_dict(sd)
        after = target.state_dict()
        for key, value in before.items():
            if isinstance(value, np.ndarray):
                _assert_same([after[key]], [value])
            else:
                assert after[key] == value, key
    target.load_state_dict(good)
    assert target.t == 1


# ---- end to end -------------------------------------------------------------------------------
# A 2-layer MLP (4 -> 32 tanh -> 1) fitted to y = sin(x0) + x1 x2 - 0.5 x3 on 256 points,
# full batch, float32, 400 steps. The target's variance is ~1.3; a network that learned
# nothing stays there. Stated loss: mean squared error < 0.03 for each optimizer.
E2E_STEPS = 400
E2E_LOSS = 0.03


@pytest.mark.parametrize("make", [
    lambda ps: optim.Adam(ps, lr=1e-2),
    lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=1e-3),
    lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True),
    lambda ps: optim.AdaMax(ps, lr=2e-2),
], ids=["Adam", "AdamW", "Adam-amsgrad", "AdaMax"])
def test_mlp_learns_with_each_optimizer(make):
    """dense_forward/dense_backward + the optimizer fit a synthetic regression task."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (256, 4)).astype(np.float32)
    y = (np.sin(x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3])[:, None].astype(np.float32)
    w1 = (rng.standard_normal((32, 4)) / 2).astype(np.float32)
    b1 = np.zeros(32, np.float32)
    w2 = (rng.standard_normal((1, 32)) / np.sqrt(32)).astype(np.float32)
    b2 = np.zeros(1, np.float32)
    params = [w1, b1, w2, b2]
    opt = make(params)
    grads = [np.empty_like(p) for p in params]   # reused every step (the cached fast path)
    first = None
    for _ in range(E2E_STEPS):
        h = pybackprop.dense_forward(x, w1, b1, activation="tanh")
        out = pybackprop.dense_forward(h, w2, b2, activation="identity")
        loss = float(np.mean((out - y) ** 2))
        first = loss if first is None else first
        dout = (2.0 / len(x)) * (out - y)
        dh, _, _ = pybackprop.dense_backward(dout, h, w2, out, activation="identity",
                                             dw=grads[2], db=grads[3])
        pybackprop.dense_backward(dh, x, w1, h, activation="tanh", need_dx=False,
                                  dw=grads[0], db=grads[1])
        opt.step(grads)
    assert first > 1.0
    assert loss < E2E_LOSS, (first, loss)


# ---- PyTorch (optional: only when torch is installed) -----------------------------------------
@pytest.mark.parametrize("name,kw", [
    ("Adam", dict()), ("Adam", dict(weight_decay=0.1, amsgrad=True, maximize=True)),
    ("AdamW", dict()), ("AdamW", dict(weight_decay=0.2, amsgrad=True)),
    ("Adamax", dict()), ("Adamax", dict(weight_decay=0.1, maximize=True)),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_optim(name, kw, dtype, rng):
    """Within the derived tolerance of torch.optim's own (FMA-using) CPU update."""
    torch = pytest.importorskip("torch")
    ours_cls = {"Adam": optim.Adam, "AdamW": optim.AdamW, "Adamax": optim.AdaMax}[name]
    n, lr = 1003, 1e-2
    p = rng.standard_normal(n).astype(dtype)
    tp = torch.tensor(p.copy(), requires_grad=True)
    topt = getattr(torch.optim, name)([tp], lr=lr, foreach=False, **kw)
    opt = ours_cls([p], lr=lr, **kw)
    for _ in range(STEPS):
        g = rng.standard_normal(n).astype(dtype)
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step([g])
    expect = tp.detach().numpy()
    bound = STEPS * _eps(dtype) * (TORCH_C * lr + np.abs(expect).max())
    assert np.abs(p.astype(np.float64) - expect).max() <= bound


@pytest.mark.parametrize("fn, state", [("adam_step", "m"), ("adam_step", "v"),
                                       ("adamax_step", "m"), ("adamax_step", "u")])
def test_functional_state_none_is_named(fn, state):
    """A required state given as None raises TypeError naming it (it used to reach C as a
    NULL pointer and come back as an anonymous 'invalid dimension or option')."""
    p = np.ones(4)
    kw = {"param": p, "grad": np.ones(4), "m": np.zeros(4),
          ("v" if fn == "adam_step" else "u"): np.zeros(4)}
    kw[state] = None
    with pytest.raises(TypeError, match=f"^{state} must be"):
        getattr(optim, fn)(**kw, step=1)
    assert (p == 1).all()


# ---- every step checks its arrays; atomic loads; pickling and copies --------------------------
OPTIMIZERS = [optim.Adam, optim.AdamW, optim.AdaMax]


def _changes():
    """(name, change(params, grads)) made after construction, each of which step() refuses."""
    def readonly(ps, gs):
        ps[1].flags.writeable = False

    def param_dtype(ps, gs):
        ps[1].dtype = np.float32  # the same bytes seen as twice as many float32

    def grad_dtype(ps, gs):
        gs[0].dtype = np.float32

    def grad_resized(ps, gs):
        gs[1].resize(20, refcheck=False)

    def param_resized(ps, gs):
        ps[0].resize(3, refcheck=False)

    return [readonly, param_dtype, grad_dtype, grad_resized, param_resized]


@pytest.mark.parametrize("cls", OPTIMIZERS)
@pytest.mark.parametrize("change", _changes(), ids=lambda f: f.__name__)
def test_step_checks_arrays_changed_after_construction(cls, change, rng):
    """A parameter made read-only, or a parameter or gradient whose dtype or size changed
    after the optimizer was built (or after the last step bound the gradients), makes
    step() raise before anything is written: no parameter, state or step count changes."""
    params = [rng.standard_normal(6), rng.standard_normal(10)]
    grads = [rng.standard_normal(6), rng.standard_normal(10)]
    opt = cls(params)
    opt.step(grads)  # binds the gradients: the next step takes the cached path
    before_p, before_s = _snapshot(params), opt.state_dict()
    change(params, grads)
    with pytest.raises((ValueError, TypeError), match=r"params\[|grads\["):
        opt.step(grads)
    for p, b in zip(params, before_p):
        assert p.tobytes() == b.tobytes()[:p.nbytes]  # (a resized array keeps a prefix)
    after = opt.state_dict()
    assert after["t"] == before_s["t"] == 1
    for name in _group(before_s):
        _assert_same(_group(after)[name], _group(before_s)[name])


@pytest.mark.parametrize("fn", [optim.adam_step, optim.adamax_step])
def test_functional_grad_as_buffer_over_the_param_is_refused(fn):
    """A gradient handed over as a memoryview over the parameter's memory is an overlap."""
    p = np.linspace(-1.0, 1.0, 8)
    m, s = np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="overlaps"):
        fn(p, memoryview(p), m, s, step=1)
    assert np.array_equal(p, np.linspace(-1.0, 1.0, 8))


MASKED_CALLS = [
    ("Adam params", lambda m: optim.Adam([m])),
    ("Adam.step grads", lambda m: optim.Adam([np.ones((2, 3))]).step([m])),
    ("adam_step param", lambda m: optim.adam_step(m, np.ones((2, 3)), np.zeros((2, 3)),
                                                  np.zeros((2, 3)), step=1)),
    ("adam_step m", lambda m: optim.adam_step(np.ones((2, 3)), np.ones((2, 3)), m,
                                              np.zeros((2, 3)), step=1)),
    ("adamax_step grad", lambda m: optim.adamax_step(np.ones((2, 3)), m, np.zeros((2, 3)),
                                                     np.zeros((2, 3)), step=1)),
]


@pytest.mark.parametrize("name,call", MASKED_CALLS, ids=[n for n, _ in MASKED_CALLS])
def test_masked_arrays_are_refused(name, call):
    """A numpy.ma.MaskedArray as parameter, gradient or state raises TypeError."""
    m = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TypeError, match="MaskedArray"):
        call(m)
    assert np.array_equal(m.data, np.ones((2, 3)))


@pytest.mark.parametrize("t", [2**63 - 1, optim.MAX_STEPS + 1, -1, 1.0, True])
def test_load_state_dict_bounds_the_step_count(t, rng):
    """A step count above MAX_STEPS (after which a step could overflow the C int64) or not
    an int raises ValueError naming 't'; MAX_STEPS itself loads and steps."""
    params = [rng.standard_normal(4)]
    opt = optim.Adam(params)
    with pytest.raises(ValueError, match="'t'"):
        opt.load_state_dict(dict(opt.state_dict(), t=t))
    assert opt.t == 0
    with pytest.raises(ValueError, match="t must be"):
        opt.t = t
    opt.load_state_dict(dict(opt.state_dict(), t=optim.MAX_STEPS))
    opt.step([np.ones(4)])
    assert opt.t == optim.MAX_STEPS + 1


def test_load_state_dict_bad_flag_modifies_nothing(rng):
    """A flag that is not a bool (an array) raises ValueError before any state is copied."""
    params = [rng.standard_normal(4)]
    src = optim.Adam([rng.standard_normal(4)])
    src.step([np.ones(4)])
    sd = src.state_dict()
    sd["maximize"] = np.ones(3)
    opt = optim.Adam(params)
    with pytest.raises(ValueError, match="bool"):
        opt.load_state_dict(sd)
    assert opt.t == 0 and not opt.m[0].any() and not opt.v[0].any()


@pytest.mark.parametrize("cls,kw", [(optim.Adam, dict(amsgrad=True)), (optim.AdamW, {}),
                                    (optim.AdaMax, {})])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_pickle_and_deepcopy_carry_the_state(cls, kw, how, rng):
    """An optimizer pickled (with its parameters) or deep-copied continues bitwise as the
    original does, on its own copies of the parameters and state."""
    import copy
    import pickle
    params = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5)]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(6)]
    opt = cls(params, lr=1e-2, **kw)
    for g in grads[:3]:
        opt.step(g)
    if how == "pickle":
        twin = pickle.loads(pickle.dumps(opt))
    else:
        twin = copy.deepcopy(opt)
    assert twin.t == 3 and all(a is not b for a, b in zip(twin.params, opt.params))
    for g in grads[3:]:
        opt.step(g)
        twin.step(g)
    _assert_same(twin.params, opt.params)
    for name, arrays in _group(opt.state_dict()).items():
        _assert_same(_group(twin.state_dict())[name], arrays)
    assert twin.t == opt.t == 6


def test_copy_shares_the_parameters_not_the_state(rng):
    """copy.copy gives an optimizer over the same parameter arrays with its own moments and
    step count: stepping the copy leaves the original's state alone."""
    import copy
    params = [rng.standard_normal(5)]
    opt = optim.Adam(params)
    opt.step([np.ones(5)])
    twin = copy.copy(opt)
    assert twin.params[0] is params[0] and twin.m[0] is not opt.m[0]
    m, v = opt.m[0].copy(), opt.v[0].copy()
    twin.step([np.ones(5)])
    assert twin.t == 2 and opt.t == 1
    assert np.array_equal(opt.m[0], m) and np.array_equal(opt.v[0], v)


def test_generator_of_parameters_and_savez_round_trip(tmp_path, rng):
    """Any iterable of parameters; the state_dict is flat arrays and scalars that np.savez
    stores without pickles and load_state_dict reads back as np.load returns them."""
    params = [rng.standard_normal(5), rng.standard_normal((2, 3))]
    opt = optim.AdamW(p for p in params)
    assert len(opt.params) == 2
    opt.step([np.ones(5), np.ones((2, 3))])
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    twin = optim.AdamW([p.copy() for p in params], lr=0.5)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        twin.load_state_dict(f)
    assert twin.t == 1 and twin.lr == opt.lr
    for name, arrays in _group(opt.state_dict()).items():
        _assert_same(_group(twin.state_dict())[name], arrays)
