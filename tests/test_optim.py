"""Tests of pybackprop.optim: Adam, AdamW and AdaMax against pybackprop.reference, their
closed forms, multi-tensor and thread-count invariance, every dispatch path, gradient arrays
read at every step, end-to-end training, and (when installed) torch.optim. The error
contract: test_optim_errors.py; state_dict, pickling and copies: test_optim_state.py.
Fixtures arch, threads and rng come from conftest.py."""
import itertools

import numpy as np
import pytest

import pybackprop
from pybackprop import optim
from pybackprop import reference as ref

from conftest import ARCHS  # the CPU configurations under test
from _optim_cases import _assert_same, _group

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
