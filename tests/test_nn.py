"""Tests of the layer API, pybackprop.nn: Dense and Sequential.

Initialisation (He / Xavier statistics, seeding), forward/backward against the kernels and
the reference, gradient accumulation and zero_grad, gradients of whole networks by finite
differences, predict without side effects, exact save/load, and the error contract.

Tolerances: the layers call the dense kernels and nothing else, so their results are
compared with direct kernel calls bit for bit; whole-network gradients are checked by
pybackprop.gradcheck in float64 (FD_TOL: see tests/test_gradcheck.py). Initialisation
statistics are checked within STAT_SIGMAS standard errors of the sample statistic.
"""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import reference as ref
from pybackprop.nn import Dense, Sequential

from _helpers import assert_bitwise

FD_TOL = 1e-6
STAT_SIGMAS = 5.0
DTYPES = (np.float32, np.float64)


# ---- initialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation,slope", [("relu", 0.01), ("softplus", 0.01),
                                              ("leaky_relu", 0.3)])
def test_he_init_statistics(activation, slope):
    """He normal: mean 0 and std gain / sqrt(in) within STAT_SIGMAS standard errors."""
    K, N = 300, 400
    w = Dense(K, N, activation=activation, negative_slope=slope, dtype=np.float64,
              rng=1).weight
    std = np.sqrt(2.0 / (1 + (slope ** 2 if activation == "leaky_relu" else 0)) / K)
    n = w.size
    assert abs(w.mean()) <= STAT_SIGMAS * std / np.sqrt(n)
    # the sample std of n normals has standard error ~ std / sqrt(2n)
    assert abs(w.std() - std) <= STAT_SIGMAS * std / np.sqrt(2 * n)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity"])
def test_xavier_init_statistics(activation):
    """Xavier uniform: within (-a, a), a = sqrt(6 / (in + out)), variance a^2 / 3."""
    K, N = 250, 350
    w = Dense(K, N, activation=activation, dtype=np.float64, rng=2).weight
    a = np.sqrt(6.0 / (K + N))
    assert np.abs(w).max() < a
    var = a * a / 3
    # the sample variance of U(-a, a) has standard error sqrt((9/5 - 1) var^2 / n)
    assert abs(w.var() - var) <= STAT_SIGMAS * np.sqrt(0.8 / w.size) * var


def test_init_is_seeded_and_dtype_rounds():
    """Same seed, same weights; float32 weights are the float64 ones rounded; bias 0."""
    a = Dense(7, 5, dtype=np.float64, rng=3)
    b = Dense(7, 5, dtype=np.float64, rng=np.random.default_rng(3))
    c = Dense(7, 5, dtype=np.float32, rng=3)
    assert_bitwise(a.weight, b.weight)
    assert_bitwise(c.weight, a.weight.astype(np.float32))
    assert c.weight.dtype == c.bias.dtype == c.grad_w.dtype == np.float32
    assert np.all(a.bias == 0) and np.all(a.grad_w == 0) and np.all(a.grad_b == 0)
    assert not np.array_equal(Dense(7, 5, rng=4).weight, c.weight)


# ---- one layer ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_dense_layer_is_the_kernels(rng, arch, activation, dtype):
    """forward/backward are dense_forward/dense_backward; backward accumulates."""
    layer = Dense(13, 6, activation=activation, negative_slope=0.2, dtype=dtype, rng=rng)
    layer.bias[...] = rng.standard_normal(6)
    x = rng.standard_normal((9, 13)).astype(dtype)
    dy = rng.standard_normal((9, 6)).astype(dtype)
    y = layer.forward(x)
    kw = dict(activation=activation, negative_slope=0.2)
    assert_bitwise(y, pb.dense_forward(x, layer.weight, layer.bias, **kw), "y")
    assert_bitwise(layer.predict(x), y, "predict")
    dx = layer.backward(dy)
    if activation in pb.PREACT_ACTIVATIONS:  # the backward takes the pre-activation
        kw["preact"] = pb.dense_forward(x, layer.weight, layer.bias)
        y = None
    dx_k, dw_k, db_k = pb.dense_backward(dy, x, layer.weight, y, **kw)
    assert_bitwise(dx, dx_k, "dx")
    assert_bitwise(layer.grad_w, dw_k, "grad_w")
    assert_bitwise(layer.grad_b, db_k, "grad_b")
    # a second backward adds the same gradients again (dense_backward accumulate=True)
    layer.backward(dy, need_dx=False)
    _, dw2, db2 = pb.dense_backward(dy, x, layer.weight, y, need_dx=False, dw=dw_k.copy(),
                                    db=db_k.copy(), accumulate=True, **kw)
    assert_bitwise(layer.grad_w, dw2, "grad_w accumulated")
    assert_bitwise(layer.grad_b, db2, "grad_b accumulated")
    grads = layer.gradients()
    layer.zero_grad()
    assert all(np.all(g == 0) for g in grads) and grads[0] is layer.grad_w


def test_dense_without_bias_and_1d_input(rng):
    """bias=False: no bias parameter or gradient; a 1-D input gives a 1-D output."""
    layer = Dense(4, 3, "relu", bias=False, dtype=np.float64, rng=rng)
    assert layer.bias is None and layer.grad_b is None
    assert len(layer.parameters()) == len(layer.gradients()) == 1
    x = rng.standard_normal(4)
    y = layer.forward(x)
    assert y.shape == (3,)
    dx = layer.backward(np.ones(3))
    assert dx.shape == (4,)
    np.testing.assert_array_equal(layer.grad_w, np.outer((y > 0).astype(float), x))


def test_predict_keeps_nothing(rng):
    """predict leaves no cache: backward without a forward raises."""
    layer = Dense(3, 2, rng=rng)
    layer.predict(np.ones((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((1, 2), np.float32))


# ---- Sequential -------------------------------------------------------------------------------


def make_mlp(rng, dtype=np.float64, sizes=(5, 8, 7, 3),
             activations=("tanh", "softplus", "identity")):
    layers = [Dense(k, n, activation=a, dtype=dtype, rng=rng)
              for k, n, a in zip(sizes[:-1], sizes[1:], activations)]
    for layer in layers:
        layer.bias[...] = 0.1 * rng.standard_normal(layer.bias.shape)
    return Sequential(*layers)


def test_sequential_forward_is_the_composition(rng):
    """forward = the layers' kernels in order; parameters/gradients are aligned lists."""
    model = make_mlp(rng)
    x = rng.standard_normal((6, 5))
    h = x
    for layer in model.layers:
        h = ref.dense_forward(h, layer.weight, layer.bias, activation=layer.activation)
    np.testing.assert_allclose(model.forward(x), h, rtol=1e-13, atol=1e-14)
    params, grads = model.parameters(), model.gradients()
    assert len(params) == len(grads) == 6
    assert all(p.shape == g.shape and p.dtype == g.dtype for p, g in zip(params, grads))
    assert params[2] is model[1].weight and grads[5] is model[2].grad_b


def test_sequential_gradients_by_gradcheck(rng, threads):
    """Softmax-CE loss of a 3-layer MLP: every parameter's gradient and dx agree with
    central differences."""
    threads(1)  # ~700 tiny calls: no parallel regions (thread counts are tested elsewhere)
    model = make_mlp(rng)
    x = rng.standard_normal((6, 5))
    labels = rng.integers(0, 3, 6)
    params = model.parameters()

    def fn(x, *values):
        for p, v in zip(params, values):
            p[...] = v
        model.zero_grad()
        loss, d = pb.softmax_cross_entropy(model.forward(x), labels)
        dx = model.backward(d)
        return float(loss), [dx] + [g.copy() for g in model.gradients()]

    err = pb.gradcheck(fn, [x] + [p.copy() for p in params])
    assert max(err) < FD_TOL, err


def test_sequential_backward_without_dx(rng):
    """need_dx=False returns None and leaves the parameter gradients unchanged."""
    model = make_mlp(rng)
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    model.forward(x)
    dx = model.backward(dy)
    g1 = [g.copy() for g in model.gradients()]
    model.zero_grad()
    assert model.backward(dy, need_dx=False) is None and dx.shape == (4, 5)
    for a, b in zip(g1, model.gradients()):
        assert_bitwise(a, b)


def test_sequential_rejects_non_layers():
    """Objects without the layer methods are refused at construction."""
    with pytest.raises(TypeError, match="layer 1"):
        Sequential(Dense(2, 2), object())


# ---- save / load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip(rng, tmp_path, dtype):
    """Every array comes back bit for bit; the loaded model computes the same bits."""
    model = Sequential(Dense(4, 9, activation="leaky_relu", negative_slope=0.2, dtype=dtype,
                             rng=rng),
                       Dense(9, 5, activation="sigmoid", bias=False, dtype=dtype, rng=rng),
                       Dense(5, 2, activation="identity", dtype=dtype, rng=rng))
    for p in model.parameters():
        p[...] = rng.standard_normal(p.shape)  # not the initial values
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Sequential.load(path)
    assert repr(loaded) == repr(model)
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert_bitwise(a, b)
    x = rng.standard_normal((7, 4)).astype(dtype)
    dy = rng.standard_normal((7, 2)).astype(dtype)
    assert_bitwise(model.forward(x), loaded.forward(x))
    assert_bitwise(model.backward(dy), loaded.backward(dy))
    for a, b in zip(model.gradients(), loaded.gradients()):
        assert_bitwise(a, b)


def test_save_adds_suffix_and_load_rejects_other_files(tmp_path, rng):
    """numpy adds .npz when missing; files not written by save are refused."""
    Sequential(Dense(2, 3, rng=rng)).save(str(tmp_path / "m"))
    assert (tmp_path / "m.npz").exists()
    np.savez(tmp_path / "other.npz", weight=np.zeros(3))
    with pytest.raises(ValueError, match="not written by Sequential.save"):
        Sequential.load(tmp_path / "other.npz")


def test_load_rejects_mismatched_arrays(tmp_path, rng):
    """A saved array of the wrong shape is refused with its name."""
    Sequential(Dense(2, 3, rng=rng)).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    arrays["0.weight"] = np.zeros((2, 2), np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="weight"):
        Sequential.load(tmp_path / "bad.npz")


# ---- errors --------------------------------------------------------------------------------------


def test_layer_errors(rng):
    """Bad constructor arguments and inputs raise clear errors."""
    with pytest.raises(ValueError, match="in_features"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        Dense(3, 2.5)
    with pytest.raises(ValueError, match="activation"):
        Dense(3, 2, activation="mish")
    with pytest.raises(ValueError, match="negative_slope"):
        Dense(3, 2, negative_slope=-1)
    with pytest.raises(TypeError, match="dtype"):
        Dense(3, 2, dtype=np.float16)
    layer = Dense(3, 2, rng=rng)  # float32
    with pytest.raises(TypeError, match="float64"):
        layer.forward(np.ones((2, 3)))  # a float64 array into a float32 layer
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        layer.forward(np.ones((2, 4), np.float32))
    y = layer.forward([[1, 2, 3]])  # lists follow the layer's dtype
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((1, 3), np.float32))


# ---- spectral norm and the Lipschitz bound ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_spectral_norm_forward_uses_w_over_sigma(rng, dtype):
    """forward multiplies by weight / sigma from the layer's power iteration (one iteration
    per training forward, state kept); predict uses the stored vectors without updating."""
    layer = Dense(6, 4, activation="tanh", spectral_norm=True, dtype=dtype, rng=rng)
    layer.bias[...] = rng.standard_normal(4)
    x = rng.standard_normal((5, 6)).astype(dtype)
    sn = layer.spectral_norm
    u0, v0 = sn.u.copy(), sn.v.copy()
    y = layer.forward(x)
    u, v = u0.copy(), v0.copy()  # the same iterations (warm-up + 1) from the same start
    sigma = pb.power_iteration(layer.weight, u, v, n_iters=sn.warmup + sn.n_iters,
                               eps=sn.eps)
    assert_bitwise(sn.u, u, "u")
    w_sn = pb.spectral_normalize(layer.weight, sigma)
    assert_bitwise(y, pb.dense_forward(x, w_sn, layer.bias, activation="tanh"), "y")
    u1, v1 = sn.u.copy(), sn.v.copy()
    layer.predict(x)
    assert_bitwise(sn.u, u1, "u after predict")  # evaluation does not advance the iteration
    layer.forward(x)                             # training does, by one iteration
    pb.power_iteration(layer.weight, u1, v1, n_iters=1, eps=sn.eps)
    assert_bitwise(sn.u, u1, "u after a second forward")
    assert_bitwise(sn.v, v1, "v after a second forward")


def test_spectral_norm_gradients_by_gradcheck(rng):
    """With u, v held (n_iters = 0 after warm-up), backward is the exact gradient of the
    loss of x -> act(x (W / u^T W v)^T + b), through the spectral-norm backward."""
    model = Sequential(Dense(3, 5, "tanh", spectral_norm=True, dtype=np.float64, rng=rng),
                       Dense(5, 2, "identity", spectral_norm=True, dtype=np.float64, rng=rng))
    x = rng.standard_normal((4, 3))
    labels = np.array([0, 1, 1, 0])
    model.forward(x)  # warm-up iterations
    for layer in model.layers:
        layer.spectral_norm.n_iters = 0
    params = model.parameters()

    def fn(*values):
        for p, v in zip(params, values):
            p[...] = v
        model.zero_grad()
        loss, d = pb.softmax_cross_entropy(model.forward(x), labels)
        model.backward(d)
        return float(loss), [g.copy() for g in model.gradients()]

    err = pb.gradcheck(fn, [p.copy() for p in params])
    assert max(err) < FD_TOL, err


def test_spectral_norm_save_load(rng, tmp_path):
    """The power-iteration state round-trips: the loaded model continues bit for bit."""
    model = Sequential(Dense(4, 6, spectral_norm=True, rng=rng),
                       Dense(6, 3, "identity", spectral_norm=True, rng=rng))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    model.forward(x)
    model.save(tmp_path / "sn.npz")
    loaded = Sequential.load(tmp_path / "sn.npz")
    for a, b in zip(model.layers, loaded.layers):
        assert_bitwise(a.spectral_norm.u, b.spectral_norm.u)
        assert_bitwise(a.spectral_norm.v, b.spectral_norm.v)
    assert_bitwise(model.forward(x), loaded.forward(x))
    assert_bitwise(model.predict(x), loaded.predict(x))


def test_lipschitz_bound_is_the_product_of_layer_factors(rng):
    """bound = prod sigma(W_l) lip(act_l); sigmoid contributes 1/4, leaky_relu
    max(1, slope); the certified bound is >= the estimate and >= sigma from the SVD."""
    model = Sequential(Dense(5, 7, "leaky_relu", negative_slope=2.0, dtype=np.float64,
                             rng=rng),
                       Dense(7, 6, "sigmoid", dtype=np.float64, rng=rng),
                       Dense(6, 2, "identity", dtype=np.float64, rng=rng))
    bound, factors = model.lipschitz_bound(n_iters=500)
    sig = [np.linalg.norm(layer.weight, 2) for layer in model.layers]
    expected = [sig[0] * 2.0, sig[1] * 0.25, sig[2]]
    np.testing.assert_allclose(factors, expected, rtol=1e-9)
    assert bound == pytest.approx(np.prod(factors), rel=1e-12)
    cert, cert_factors = model.lipschitz_bound(certified=True)
    assert all(c >= e * (1 - 1e-12) for c, e in zip(cert_factors, expected))
    assert cert >= bound * (1 - 1e-12)


# ---- bad inputs change no state; crafted files ----------------------------------------------
@pytest.mark.parametrize("x", [np.ones((2, 5), np.float32), np.ones(5, np.float32),
                               np.ones((2, 2, 5), np.float32)], ids=["2-D", "1-D", "3-D"])
def test_spectral_norm_forward_with_wrong_input_changes_nothing(x, rng):
    """Dense(spectral_norm=True).forward with a wrong K raises ValueError before
    the power iteration runs: u, v, warmed_up and the saved input stay as they were."""
    layer = Dense(4, 3, spectral_norm=True, rng=rng)
    sn = layer.spectral_norm
    u, v = sn.u.copy(), sn.v.copy()
    with pytest.raises(ValueError, match="x has shape"):
        layer.forward(x)
    assert sn.warmed_up is False and sn.last_sigma is None and layer._x is None
    assert_bitwise(sn.u, u)
    assert_bitwise(sn.v, v)


def _npy(a):
    bio = io.BytesIO()
    np.save(bio, a)
    return bio.getvalue()


def _npy_header(shape, dtype):
    """A .npy image that declares ``shape`` and ``dtype`` and holds no data."""
    bio = io.BytesIO()
    np.lib.format.write_array_header_1_0(bio, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": shape})
    return bio.getvalue()


def _write_npz(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return path


def _saved_members(rng, **config):
    """The members of a saved 1-layer model, with its configuration entries overridden."""
    layer = Dense(3, 2, rng=rng)
    cfg = dict(layer._config(), **config)
    return {"format": _npy(np.array("pybackprop.nn/1")),
            "config": _npy(np.array(json.dumps([cfg]))),
            "0.weight": _npy(layer.weight), "0.bias": _npy(layer.bias)}


CRAFTED = {
    "not a zip": lambda rng: b"not a zip archive at all",
    "config not a list": lambda rng: dict(_saved_members(rng),
                                          config=_npy(np.array(json.dumps({"a": 1})))),
    "layer not an object": lambda rng: dict(_saved_members(rng),
                                            config=_npy(np.array("[1]"))),
    "missing keys": lambda rng: dict(_saved_members(rng),
                                     config=_npy(np.array('[{"type": "Dense"}]'))),
    "bad types": lambda rng: _saved_members(rng, in_features="3"),
    "bad activation": lambda rng: _saved_members(rng, activation="mish"),
    "bool as int": lambda rng: _saved_members(rng, in_features=True),
    "config not JSON": lambda rng: dict(_saved_members(rng), config=_npy(np.array("[{"))),
    "config not a string": lambda rng: dict(_saved_members(rng), config=_npy(np.zeros(3))),
    "missing array": lambda rng: {k: v for k, v in _saved_members(rng).items()
                                  if k != "0.bias"},
    "huge declared array": lambda rng: dict(
        _saved_members(rng, in_features=4096, out_features=4096),
        **{"0.weight": _npy_header((4096, 4096), np.float32),
           "0.bias": _npy(np.zeros(4096, np.float32))}),
    "huge declared config": lambda rng: dict(_saved_members(rng),
                                             config=_npy_header((), "<U100000000")),
    "truncated array": lambda rng: dict(_saved_members(rng),
                                        **{"0.weight": _npy(np.zeros((2, 3), np.float32))[:-4]}),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_load_of_a_crafted_file_raises_value_error_before_allocating(case, tmp_path, rng):
    """A file that is not a save of this library (bad archive, configuration of the wrong
    shape or types, arrays missing, or declaring more data than the file holds) raises
    ValueError, and nothing near the declared sizes is allocated (traced peak < 4 MiB)."""
    content = CRAFTED[case](rng)
    path = tmp_path / "crafted.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write_npz(path, content)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            Sequential.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_load_from_an_open_file(tmp_path, rng):
    """load takes an open binary file as well as a path."""
    model = Sequential(Dense(3, 2, rng=rng))
    model.save(tmp_path / "m.npz")
    with open(tmp_path / "m.npz", "rb") as f:
        loaded = Sequential.load(f)
    assert_bitwise(loaded[0].weight, model[0].weight)


# ---- the habits of PyTorch users ------------------------------------------------------------
def test_layers_are_callable_and_name_their_parameters(rng):
    model = Sequential(Dense(3, 4, "relu", rng=rng), Dense(4, 2, bias=False, rng=rng))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    assert_bitwise(model(x), model.predict(x))
    assert_bitwise(model[0](x), model[0].predict(x))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight"]
    assert all(a is b for (_, a), b in zip(model.named_parameters(), model.parameters()))


def test_state_dict_round_trip_through_savez(rng, tmp_path):
    """state_dict is flat arrays: np.savez stores it without pickles; load_state_dict takes
    it back bit for bit, and refuses a wrong one before writing anything."""
    model = Sequential(Dense(3, 4, "tanh", spectral_norm=True, rng=rng), Dense(4, 2, rng=rng))
    model(rng.standard_normal((2, 3)).astype(np.float32))  # advance the power iteration
    np.savez(tmp_path / "sd.npz", **model.state_dict())
    other = Sequential(Dense(3, 4, "tanh", spectral_norm=True, rng=1), Dense(4, 2, rng=1))
    with np.load(tmp_path / "sd.npz", allow_pickle=False) as f:
        other.load_state_dict(dict(f))
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert_bitwise(a, b, name)
    before = {k: v.copy() for k, v in other.state_dict().items()}
    bad = dict(model.state_dict(), **{"1.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"1\.bias"):
        other.load_state_dict(bad)
    for k, v in other.state_dict().items():
        assert_bitwise(v, before[k], k)


def test_save_and_load_take_the_same_name(rng, tmp_path):
    model = Sequential(Dense(3, 2, "relu", rng=rng))
    model.save(str(tmp_path / "model"))          # numpy writes model.npz
    loaded = Sequential.load(str(tmp_path / "model"))
    assert_bitwise(loaded[0].weight, model[0].weight)


def test_leading_dimensions_through_a_model(rng):
    model = Sequential(Dense(3, 4, "relu", rng=rng), Dense(4, 2, rng=rng))
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 5, 2)
    assert_bitwise(y.reshape(-1, 2), model.predict(x.reshape(-1, 3)))
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
