"""The input contract of dense_forward, dense_backward and the activations: conversions and
layouts of what they accept, and for what they refuse a clear exception with every buffer
left untouched (dtypes, shapes, options, out= and gradient buffers, overlaps, masked
arrays).
"""
import re

import numpy as np
import pytest

import pybackprop
from pybackprop._bounds import SLOPE
from pybackprop import reference as ref

from _dense_cases import DTYPES, make_backward, make_dense
from _helpers import assert_bitwise


# ---- inputs: conversions and layouts -------------------------------------------------------


def test_lists_and_ints_become_float64(arch):
    """Lists and integer arrays are converted to float64."""
    x = [[1, 2], [3, -4]]
    w = np.array([[1, 0], [2, 1], [-1, 1]])
    y = pybackprop.dense_forward(x, w, [0, 1, 2], activation="relu")
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, ref.dense_forward(x, w, [0, 1, 2], activation="relu"))
    dx, dw, db = pybackprop.dense_backward(np.ones((2, 3), int), x, w, y.tolist(), activation="relu")
    assert dx.dtype == dw.dtype == db.dtype == np.float64
    for got, exp in zip((dx, dw, db), ref.dense_backward(np.ones((2, 3)), x, w, y, activation="relu")):
        np.testing.assert_array_equal(got, exp)
    assert pybackprop.activation([-1, 2], "relu").dtype == np.float64


def _unaligned(a):
    """A copy of ``a`` whose data pointer is 1 byte past an aligned address."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


LAYOUTS = ["strided", "fortran", "reversed", "unaligned"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_inputs(arch, dtype, layout, rng):
    """Strided, Fortran-ordered, negatively strided and unaligned inputs give the same bits."""
    dy, x, w, y = make_backward(rng, (23, 41, 19), dtype, "tanh")
    b = rng.standard_normal(19).astype(dtype)

    def relayout(a):
        if layout == "strided":
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype)
            big[..., ::2] = a
            return big[..., ::2]
        if layout == "fortran":
            return np.asfortranarray(a)
        if layout == "reversed":
            return a[::-1].copy()[::-1]
        return _unaligned(a)

    ins = [relayout(a) for a in (dy, x, w, y, b)]
    assert all(not (a.flags.c_contiguous and a.flags.aligned) for a in ins if a.ndim == 2)
    assert_bitwise(pybackprop.dense_forward(ins[1], ins[2], ins[4], activation="tanh"),
                         pybackprop.dense_forward(x, w, b, activation="tanh"), "y")
    got = pybackprop.dense_backward(*ins[:4], activation="tanh")
    for name, g, e in zip(("dx", "dw", "db"), got,
                          pybackprop.dense_backward(dy, x, w, y, activation="tanh")):
        assert_bitwise(g, e, name)
    assert_bitwise(pybackprop.activation(ins[1], "tanh"),
                         pybackprop.activation(x, "tanh"), "activation")


# ---- errors: each raises what it should and leaves every buffer untouched -------------------

BAD_DTYPES = [np.float16, np.complex64, object]


def _sentinel(shape, dtype):
    return np.full(shape, 7.25, dtype)


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("arg", ["x", "w", "b"])
def test_rejects_unsupported_dtype(arg, bad, rng):
    """float16, complex and object inputs raise TypeError naming the argument and dtype."""
    args = dict(zip("xwb", make_dense(rng, (4, 3, 5), np.float32)))
    args[arg] = args[arg].astype(bad)
    out = _sentinel((4, 5), np.float32)
    with pytest.raises(TypeError, match=rf"(?s)\b{arg}\b.*{np.dtype(bad).name}"
                       rf"|{np.dtype(bad).name}.*\b{arg}\b"):
        pybackprop.dense_forward(args["x"], args["w"], args["b"], out=out, activation="relu")
    assert_bitwise(out, _sentinel((4, 5), np.float32), "out")


@pytest.mark.parametrize("arg", ["dy", "x", "w", "y"])
def test_backward_rejects_mixed_float_dtypes(arg, rng):
    """Mixing float32 and float64 raises TypeError naming both dtypes; buffers untouched."""
    args = dict(zip(("dy", "x", "w", "y"), make_backward(rng, (4, 3, 5), np.float32, "relu")))
    args[arg] = args[arg].astype(np.float64)
    bufs = [_sentinel(s, np.float32) for s in ((4, 3), (5, 3), (5,))]
    with pytest.raises(TypeError, match=r"(?s)(float32.*float64|float64.*float32)") as e:
        pybackprop.dense_backward(*args.values(), dx=bufs[0], dw=bufs[1], db=bufs[2], activation="relu")
    assert re.search(rf"\b{arg}\b", str(e.value)), str(e.value)
    for buf, s in zip(bufs, ((4, 3), (5, 3), (5,))):
        assert_bitwise(buf, _sentinel(s, np.float32), "buffer")


def test_forward_rejects_mixed_float_dtypes(rng):
    """float32 x with float64 w or b raises TypeError naming both dtypes."""
    x, w, b = make_dense(rng, (4, 3, 5), np.float32)
    for args in ((x, w.astype(np.float64), b), (x, w, b.astype(np.float64))):
        with pytest.raises(TypeError, match=r"(?s)(float32.*float64|float64.*float32)"):
            pybackprop.dense_forward(*args, activation="relu")
    with pytest.raises(TypeError, match=r"(?s)(float32.*float64|float64.*float32)"):
        pybackprop.activation_backward(x, x.astype(np.float64), kind="relu")


def _s(shape):
    return str(tuple(shape))


# (x shape, w shape, b shape or None, the offending shape, acceptable partner shapes)
FORWARD_SHAPE_ERRORS = {
    "K_mismatch": ((4, 3), (5, 4), None, (4, 3), [(5, 4)]),
    "b_length": ((4, 3), (5, 3), (6,), (6,), [(5,), (5, 3)]),
    "b_2d": ((4, 3), (5, 3), (1, 5), (1, 5), [(5,), (5, 3)]),
    "x_0d": ((), (5, 3), None, (), []),   # no K: its own shape suffices
    "w_1d": ((4, 3), (3,), None, (3,), []),
}


@pytest.mark.parametrize("case", FORWARD_SHAPE_ERRORS)
def test_forward_rejects_shape_mismatch(case, rng):
    """Shape mismatches raise ValueError naming both shapes; out untouched."""
    xs, ws, bs, culprit, partners = FORWARD_SHAPE_ERRORS[case]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = None if bs is None else rng.standard_normal(bs)
    out = _sentinel((4, 5), np.float64)
    with pytest.raises(ValueError) as e:
        pybackprop.dense_forward(x, w, b, out=out, activation="relu")
    msg = str(e.value)
    assert _s(culprit) in msg, msg
    assert not partners or any(_s(p) in msg for p in partners), msg
    assert_bitwise(out, _sentinel((4, 5), np.float64), "out")


# (dy, x, w, y shapes, the offending shape, acceptable partner shapes)
BACKWARD_SHAPE_ERRORS = {
    "dy_N": ((4, 6), (4, 3), (5, 3), (4, 5), (4, 6), [(4, 5), (5, 3)]),
    "y_N": ((4, 5), (4, 3), (5, 3), (4, 6), (4, 6), [(4, 5), (5, 3)]),
    "dy_B": ((3, 5), (4, 3), (5, 3), (4, 5), (3, 5), [(4, 5), (4, 3)]),
    "K_mismatch": ((4, 5), (4, 3), (5, 4), (4, 5), (5, 4), [(4, 3)]),
    "x_1d_dy_2rows": ((2, 5), (3,), (5, 3), (2, 5), (2, 5), [(3,), (5,), (1, 5)]),
}


@pytest.mark.parametrize("case", BACKWARD_SHAPE_ERRORS)
def test_backward_rejects_shape_mismatch(case, rng):
    """Shape mismatches raise ValueError naming both shapes; buffers untouched."""
    *shapes, culprit, partners = BACKWARD_SHAPE_ERRORS[case]
    dy, x, w, y = (rng.standard_normal(s) for s in shapes)
    dw = _sentinel(w.shape, np.float64)
    with pytest.raises(ValueError) as e:
        pybackprop.dense_backward(dy, x, w, y, dw=dw, activation="relu")
    msg = str(e.value)
    assert _s(culprit) in msg and any(_s(p) in msg for p in partners), msg
    assert_bitwise(dw, _sentinel(w.shape, np.float64), "dw")


def test_activation_backward_rejects_shape_mismatch():
    """activation_backward with dy and y of different shapes raises ValueError naming both."""
    with pytest.raises(ValueError, match=r"(?s)\(3,\).*\(4,\)|\(4,\).*\(3,\)"):
        pybackprop.activation_backward(np.ones(3), np.ones(4), "sigmoid")


@pytest.mark.parametrize("fn", ["dense_forward", "dense_backward", "activation",
                                "activation_backward"])
@pytest.mark.parametrize("bad", [{"kind": "mish"}, {"kind": "ReLU "},
                                 {"kind": "leaky_relu", "negative_slope": -0.1}],
                         ids=["unknown", "spaced", "negative_slope"])
def test_rejects_bad_activation_options(fn, bad, rng):
    """An unknown activation or a negative slope raises ValueError; out untouched."""
    kind = bad["kind"]
    slope = bad.get("negative_slope", SLOPE)
    x, w, b = make_dense(rng, (4, 3, 5), np.float64)
    y = np.abs(rng.standard_normal((4, 5)))
    out = _sentinel(y.shape, np.float64)
    with pytest.raises(ValueError):
        if fn == "dense_forward":
            pybackprop.dense_forward(x, w, b, activation=kind, negative_slope=slope, out=out)
        elif fn == "dense_backward":
            pybackprop.dense_backward(y, x, w, y, activation=kind, negative_slope=slope,
                                      dw=np.zeros_like(w), db=out[0])
        elif fn == "activation":
            pybackprop.activation(y, kind, negative_slope=slope, out=out)
        else:
            pybackprop.activation_backward(y, y, kind, negative_slope=slope, out=out)
    assert_bitwise(out, _sentinel(y.shape, np.float64), "out")


def _bad_buffer(case, shape, dtype):
    """A buffer that violates the out= contract in one way (``case``)."""
    if case == "dtype":
        return _sentinel(shape, np.float32 if dtype == np.float64 else np.float64)
    if case == "shape":
        return _sentinel(shape[:-1] + (shape[-1] + 1,), dtype)
    if case == "flat":
        return _sentinel((int(np.prod(shape)),) if len(shape) > 1 else (1,) + shape, dtype)
    if case == "fortran":
        return np.asfortranarray(_sentinel(shape, dtype))
    if case == "strided":
        return _sentinel(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
    if case == "readonly":
        a = _sentinel(shape, dtype)
        a.flags.writeable = False
        return a
    raise AssertionError(case)


OUT_CASES = ["dtype", "shape", "flat", "fortran", "strided", "readonly"]


@pytest.mark.parametrize("case", OUT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_rejects_bad_out(dtype, case, rng):
    """out with wrong dtype, shape or layout, or read-only, raises ValueError naming out."""
    x, w, b = make_dense(rng, (4, 3, 5), dtype)
    out = _bad_buffer(case, (4, 5), dtype)
    before = out.copy()
    with pytest.raises(ValueError, match=r"\bout\b"):
        pybackprop.dense_forward(x, w, b, out=out, activation="relu")
    assert_bitwise(np.ascontiguousarray(out), np.ascontiguousarray(before), "out")


@pytest.mark.parametrize("case", ["dtype", "shape", "flat", "strided", "readonly"])
def test_forward_rejects_bad_out_for_1d_x(case, rng):
    """With a 1-D x, out must be exactly (N,): a (1, N) out ("flat") is rejected too."""
    x, w, b = make_dense(rng, (1, 3, 5), np.float64)
    out = _bad_buffer(case, (5,), np.float64)
    with pytest.raises(ValueError, match=r"\bout\b"):
        pybackprop.dense_forward(x[0], w, b, out=out, activation="relu")
    assert (out == 7.25).all(), "out was written"


@pytest.mark.parametrize("case", ["alias_x", "overlap_x", "overlap_b", "overlap_w"])
def test_forward_rejects_out_overlapping_an_input(case, rng):
    """out sharing memory with x, w or b raises ValueError; out and inputs untouched."""
    B, K, N = 4, 5, 5
    x, w, b = make_dense(rng, (B, K, N), np.float64)
    base = np.zeros(B * K + B * N + N * K)
    if case == "alias_x":
        out = x
    elif case == "overlap_x":     # out starts on the last element of x
        base[:B * K] = x.ravel()
        x = base[:B * K].reshape(B, K)
        out = base[B * K - 1:B * K - 1 + B * N].reshape(B, N)
    elif case == "overlap_b":     # b is the first row of out
        out = base[:B * N].reshape(B, N)
        out[0] = b
        b = out[0]
    else:                         # w and out share their last/first row
        base[:N * K] = w.ravel()
        w = base[:N * K].reshape(N, K)
        out = base[(N - 1) * K:(N - 1) * K + B * N].reshape(B, N)
    snapshot = base.copy(), x.copy(), w.copy(), b.copy()
    with pytest.raises(ValueError, match=r"\bout\b"):
        pybackprop.dense_forward(x, w, b, out=out, activation="relu")
    for before, after in zip(snapshot, (base, x, w, b)):
        assert_bitwise(before, after, "memory changed")


@pytest.mark.parametrize("name,case", [(n, c) for n in ("dx", "dw", "db") for c in OUT_CASES
                                       if (n, c) != ("db", "fortran")])  # 1-D: always C
def test_backward_rejects_bad_buffer(name, case, rng):
    """A bad dx, dw or db raises ValueError naming it; no buffer is written."""
    shape = (7, 5, 6)
    dy, x, w, y = make_backward(rng, shape, np.float64, "relu")
    shapes = {"dx": x.shape, "dw": w.shape, "db": (6,)}
    bufs = {n: _sentinel(s, np.float64) for n, s in shapes.items()}
    bufs[name] = _bad_buffer(case, shapes[name], np.float64)
    before = {n: np.ascontiguousarray(a).copy() for n, a in bufs.items()}
    for accumulate in (False, True):
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            pybackprop.dense_backward(dy, x, w, y, accumulate=accumulate,
                                      activation="relu", **bufs)
        for n, a in bufs.items():
            assert_bitwise(np.ascontiguousarray(a), before[n], n)


# buffer name -> the input memory it is made to share (B = K = N so that shapes fit)
BUFFER_OVERLAPS = {
    "dx=dy": ("dx", lambda i: i["dy"]),
    "dx=x": ("dx", lambda i: i["x"]),
    "dw=w": ("dw", lambda i: i["w"]),
    "dw=x": ("dw", lambda i: i["x"]),
    "db=y[0]": ("db", lambda i: i["y"][0]),
    "db=dy[1]": ("db", lambda i: i["dy"][1]),
}


@pytest.mark.parametrize("case", BUFFER_OVERLAPS)
def test_backward_rejects_buffer_overlapping_an_input(case, rng):
    """dx, dw or db sharing memory with an input raises ValueError; nothing is written."""
    dy, x, w, y = make_backward(rng, (5, 5, 5), np.float64, "sigmoid")
    ins = {"dy": dy, "x": x, "w": w, "y": y}
    name, alias = BUFFER_OVERLAPS[case]
    bufs = {"dx": np.zeros((5, 5)), "dw": np.zeros((5, 5)), "db": np.zeros(5)}
    bufs[name] = alias(ins)
    snapshot = {n: a.copy() for n, a in ins.items()}
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        pybackprop.dense_backward(dy, x, w, y, activation="sigmoid", **bufs)
    for n, a in ins.items():
        assert_bitwise(a, snapshot[n], n)


@pytest.mark.parametrize("case", ["dw=dx", "db in dw", "db in dx"])
def test_backward_rejects_buffers_overlapping_each_other(case, rng):
    """Two of dx, dw, db sharing memory raise ValueError naming the later one; nothing is
    written (plain and accumulating)."""
    dy, x, w, y = make_backward(rng, (5, 5, 5), np.float64, "relu")
    base = np.full(60, 7.0)
    dx, dw = base[:25].reshape(5, 5), base[30:55].reshape(5, 5)
    db = base[55:60]
    if case == "dw=dx":
        dw, later = dx, "dw"
    elif case == "db in dw":
        db, later = base[40:45], "db"
    else:
        db, later = base[20:25], "db"
    for accumulate in (False, True):
        with pytest.raises(ValueError, match=rf"\b{later}\b overlaps"):
            pybackprop.dense_backward(dy, x, w, y, dx=dx, dw=dw, db=db, accumulate=accumulate, activation="relu")
        assert (base == 7.0).all()


def test_c_core_rejects_overlapping_outputs(rng):
    """The C entry points themselves return PB_ERR_OVERLAP, writing nothing, when an output
    overlaps an input or another output (the Python layer relies on it on its fast path)."""
    from pybackprop._core import ffi, lib
    B = K = N = 4
    dy, x, w, y = make_backward(rng, (B, K, N), np.float64, "relu")
    fb = ffi.from_buffer
    mem = np.full(3 * 16 + 4, 5.0)
    dx, dw, db = mem[:16], mem[16:32], mem[32:36]
    ins = [fb("double[]", a) for a in (dy, x, w, y)]
    args = (B, K, N, lib.PB_ACT_RELU, 0.0, 0)
    for outs in ((dx, dx, db), (dx, dw, mem[14:18]), (fb("double[]", x), dw, db),
                 (dx, dw, fb("double[]", y))):
        ptrs = [o if not isinstance(o, np.ndarray) else fb("double[]", o) for o in outs]
        before = (mem.copy(), x.copy(), y.copy())
        assert lib.pb_dense_backward_f64(*ptrs, *ins, *args) == lib.PB_ERR_OVERLAP
        for a, b in zip(before, (mem, x, y)):
            assert_bitwise(a, b, "memory changed")
    ok, z = np.empty((B, N)), np.empty((B, N))
    # y over x; the pre-activation z over x, over w, over y
    for yp, zp in ((fb("double[]", x), ffi.NULL), (fb("double[]", ok), fb("double[]", x)),
                   (fb("double[]", ok), ins[2]), (fb("double[]", ok), fb("double[]", ok))):
        before = x.copy()
        assert lib.pb_dense_forward_f64(yp, zp, fb("double[]", x), ins[2], ffi.NULL,
                                        B, K, N, lib.PB_ACT_RELU, 0.0) == lib.PB_ERR_OVERLAP
        assert_bitwise(before, x, "memory changed")
    assert lib.pb_dense_forward_f64(fb("double[]", ok), fb("double[]", z), ins[1], ins[2],
                                    ffi.NULL, B, K, N, lib.PB_ACT_RELU, 0.0) == lib.PB_OK
    assert "overlaps" in ffi.string(lib.pb_strerror(lib.PB_ERR_OVERLAP)).decode()


@pytest.mark.parametrize("case", OUT_CASES)
@pytest.mark.parametrize("fn", ["activation", "activation_backward"])
def test_activation_rejects_bad_out(fn, case, rng):
    """Elementwise kernels check out= as strictly as dense_forward."""
    z = rng.standard_normal((6, 7))
    out = _bad_buffer(case, z.shape, np.float64)
    before = np.ascontiguousarray(out).copy()
    with pytest.raises(ValueError, match=r"\bout\b"):
        if fn == "activation":
            pybackprop.activation(z, "tanh", out=out)
        else:
            pybackprop.activation_backward(z, np.tanh(z), "tanh", out=out)
    assert_bitwise(np.ascontiguousarray(out), before, "out")



# ---- inputs that are not ndarrays, masked arrays ---------------------------------------------
def _buffer_overlap_calls(dtype):
    """(name, call(buf)) pairs: each kernel given an input that is a memoryview over a
    window of ``buf`` (12 elements) and an output that is another, overlapping window.
    (A memoryview counts as dtype-less, as a list: float64 unless an ndarray says else.)"""
    def windows(buf, n):
        return memoryview(buf[:n]), buf[2:2 + n]  # an input view and an output over it
    return [
        ("activation", lambda buf: pybackprop.activation(
            windows(buf, 8)[0], "relu", out=windows(buf, 8)[1])),
        ("activation_backward", lambda buf: pybackprop.activation_backward(
            windows(buf, 8)[0], np.ones(8, dtype), "sigmoid", out=windows(buf, 8)[1])),
        ("dense_forward", lambda buf: pybackprop.dense_forward(
            memoryview(buf[:8]).cast("B").cast(buf.dtype.char, (2, 4)), np.ones((2, 4), dtype),
            out=buf[2:6].reshape(2, 2), activation="relu")),
        ("dense_backward", lambda buf: pybackprop.dense_backward(
            np.ones((2, 3), dtype), memoryview(buf[:8]).cast("B").cast(buf.dtype.char, (2, 4)),
            np.ones((3, 4), dtype), np.ones((2, 3), dtype), dx=buf[4:12].reshape(2, 4), activation="relu")),
    ]


@pytest.mark.parametrize("which", range(4))
def test_out_overlapping_a_buffer_input_is_refused(which):
    """An input handed over as a memoryview over an output's memory is an overlap too."""
    dtype = np.float64
    name, call = _buffer_overlap_calls(dtype)[which]
    buf = np.arange(12, dtype=dtype)
    with pytest.raises(ValueError, match="overlaps"):
        call(buf)
    assert np.array_equal(buf, np.arange(12, dtype=dtype)), name


def test_activation_in_place_through_a_memoryview():
    """out= the very memory of a memoryview input is in place, as out=z is."""
    buf = np.array([-1.0, 2.0, -3.0])
    y = pybackprop.activation(memoryview(buf), "relu", out=buf)
    assert y is buf and np.array_equal(buf, [0.0, 2.0, 0.0])


MASKED_CALLS = [
    ("dense_forward", lambda m: pybackprop.dense_forward(m, np.ones((3, 4)), activation="relu")),
    ("dense_forward w", lambda m: pybackprop.dense_forward(np.ones((2, 4)), m[:, :4], activation="relu")),
    ("dense_forward out", lambda m: pybackprop.dense_forward(
        np.ones((2, 4)), np.ones((4, 4)), out=m, activation="relu")),
    ("dense_backward", lambda m: pybackprop.dense_backward(
        m, np.ones((2, 4)), np.ones((4, 4)), np.ones((2, 4)), activation="relu")),
    ("activation", lambda m: pybackprop.activation(m, kind="relu")),
    ("activation out", lambda m: pybackprop.activation(np.ones((2, 4)), out=m, kind="relu")),
    ("activation_backward", lambda m: pybackprop.activation_backward(np.ones((2, 4)), m, kind="relu")),
]


@pytest.mark.parametrize("name,call", MASKED_CALLS, ids=[n for n, _ in MASKED_CALLS])
def test_masked_arrays_are_refused(name, call):
    """A numpy.ma.MaskedArray, as input or out=, raises TypeError (the mask would be
    ignored) and nothing is written."""
    m = np.ma.masked_array(np.ones((2, 4)), mask=[[0, 1, 0, 0]] * 2)
    with pytest.raises(TypeError, match="MaskedArray"):
        call(m)
    assert np.array_equal(m.data, np.ones((2, 4)))
