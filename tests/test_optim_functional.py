"""The functional steps called again on the same arrays (the loop that a training script
runs): the C arguments of the last call are reused only while every check still passes."""
import gc

import numpy as np
import pytest

from pybackprop import optim
from pybackprop import reference as ref

N = 37


def _arrays(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(N).astype(dtype)
    return p, rng.standard_normal(N).astype(dtype), np.zeros(N, dtype), np.zeros(N, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["adam", "adamw_amsgrad", "adamax"])
def test_repeated_calls_match_the_reference(kind, dtype):
    ours, want = _arrays(dtype), _arrays(dtype)
    vmax = [np.zeros(N, dtype), np.zeros(N, dtype)]
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        g = rng.standard_normal(N).astype(dtype)
        ours[1][...] = g
        want[1][...] = g
        for (p, grad, m, v), (mod, vm) in ((ours, (optim, vmax[0])), (want, (ref, vmax[1]))):
            if kind == "adam":
                mod.adam_step(p, grad, m, v, step=t, lr=1e-2)
            elif kind == "adamw_amsgrad":
                mod.adam_step(p, grad, m, v, step=t, lr=1e-2, weight_decay=0.1,
                              decoupled_weight_decay=True, amsgrad=True, v_max=vm)
            else:
                mod.adamax_step(p, grad, m, v, step=t, lr=1e-2)
        for a, b in zip(ours, want):
            np.testing.assert_array_equal(a, b)


def _read_only(name):
    def change(arrays):
        arrays[name].flags.writeable = False
    return change


def _reshaped(name):
    def change(arrays):
        arrays[name].shape = (1, N)
    return change


def _retyped(name):
    def change(arrays):
        arrays[name].dtype = np.int32  # same itemsize as float32: a view cast in place
    return change


CHANGES = [(_read_only("param"), ValueError, "param is read-only"),
           (_read_only("m"), ValueError, "m is read-only"),
           (_reshaped("v"), ValueError, r"v has shape \(1, 37\)"),
           (_reshaped("param"), ValueError, r"m has shape \(37,\) but param has shape"),
           (_retyped("m"), TypeError, "m has .*int32")]


@pytest.mark.parametrize("change,exc,match", CHANGES,
                         ids=["param-read-only", "m-read-only", "v-reshaped", "param-reshaped",
                              "m-retyped"])
def test_changes_in_place_after_a_call_are_caught(change, exc, match):
    p, g, m, v = _arrays()
    optim.adam_step(p, g, m, v, step=1)
    arrays = dict(param=p, grad=g, m=m, v=v)
    change(arrays)
    before = [a.copy() for a in arrays.values()]
    with pytest.raises(exc, match=match):
        optim.adam_step(p, g, m, v, step=2)
    for a, b in zip(arrays.values(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change,exc", [
    (dict(step=0), ValueError), (dict(step=2.0), TypeError), (dict(lr=True), TypeError),
    (dict(lr=-1.0), ValueError), (dict(beta2=1.0), ValueError),
    (dict(amsgrad=True), ValueError)])
def test_arguments_are_checked_on_every_call(change, exc):
    p, g, m, v = _arrays()
    optim.adam_step(p, g, m, v, step=1, lr=1.0)
    before = [a.copy() for a in (p, g, m, v)]
    with pytest.raises(exc):
        optim.adam_step(p, g, m, v, **{"step": 2, "lr": 1.0, **change})
    for a, b in zip((p, g, m, v), before):
        np.testing.assert_array_equal(a, b)


def test_new_arrays_at_recycled_addresses():
    # Arrays freed and allocated again (often at the same addresses) are new arrays.
    for seed in range(5):
        p, g, m, v = _arrays(seed=seed)
        want = [a.copy() for a in (p, g, m, v)]
        optim.adam_step(p, g, m, v, step=1)
        ref.adam_step(*want, step=1)
        for a, b in zip((p, g, m, v), want):
            np.testing.assert_array_equal(a, b)
        del p, g, m, v
        gc.collect()


def test_a_strided_gradient_is_read_through_a_copy_each_time():
    p, _, m, v = _arrays()
    want = [a.copy() for a in (p, m, v)]
    big = np.random.default_rng(2).standard_normal(2 * N).astype(np.float32)
    for t in (1, 2, 3):
        big *= -1.0  # the strided view's values change between calls
        optim.adam_step(p, big[::2], m, v, step=t)
        ref.adam_step(want[0], big[::2].copy(), want[1], want[2], step=t)
    for a, b in zip((p, m, v), want):
        np.testing.assert_array_equal(a, b)
