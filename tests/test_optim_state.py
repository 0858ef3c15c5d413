"""The state of pybackprop.optim's Adam, AdamW and AdaMax: the state_dict round trip
continues bitwise, loads are atomic (a bad state_dict, step count or flag changes nothing),
pickle and deepcopy carry the state, copy.copy shares the parameters but not the state, and
the flat state_dict goes through np.savez and np.load. Fixture rng comes from conftest.py."""
import numpy as np
import pytest

from pybackprop import optim

from _optim_cases import _assert_same, _group


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


# ---- atomic loads; pickling and copies -----------------------------------------------------------
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
