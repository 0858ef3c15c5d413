"""The error contract of pybackprop.optim: each bad argument of adam_step, adamax_step, the
optimizer constructors, setters and step() raises a clear exception naming it, before any
parameter, state or step count is written (bad hyperparameters, shapes, dtypes, layouts,
overlaps, read-only, masked arrays, a state given as None, arrays changed after
construction). Fixture rng comes from conftest.py."""
import numpy as np
import pytest

from pybackprop import optim

from _optim_cases import _assert_same, _group
from _helpers import assert_masked_refused


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


# ---- every step checks its arrays; buffers and masked arrays -------------------------------------
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
    assert_masked_refused(call)
