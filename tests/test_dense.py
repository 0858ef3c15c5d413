"""dense_forward and dense_backward against the numpy specification in pybackprop.reference:
parity on every dispatch path, dtype, activation (those differentiated from the output y;
gelu, gelu_tanh, silu: test_dense_preact.py) and awkward shape; buffers (out=, dx/dw/db=,
accumulate); one row; zero-size dimensions; thread-count independence; alignment. Every
tolerance comes from the error model of pybackprop/_bounds.py (one place). Speed is not
tested here (bench/). Gradients, the golden example and property tests:
test_dense_properties.py; the error contract: test_dense_errors.py; the elementwise
kernels: test_activation.py.
"""
import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm
from pybackprop._bounds import ELEM_C, GEMM_C, SLOPE, backward_bounds, dz_scale, forward_bound
from pybackprop import reference as ref

from _dense_cases import (ACTIVATIONS, BUFFER_SHAPES, DTYPES, LEAKY_SLOPES, SHAPES, THREAD_SHAPES,
                          ZERO_SHAPES, _eps, _shape_id, _tiny, _up, check_backward, make_backward,
                          make_dense, reference_backward, reference_forward)
from _helpers import assert_bitwise, assert_within, at_offset


def test_shapes_cross_the_cache_blocks(arch):
    """SHAPES cross the configuration's cache blocks, both dtypes: a forward crossing KC
    and MC at once, one crossing NC, and a K crossing the NC of dw and dx."""
    for dt in DTYPES:
        blk = _gemm.blocks(None, dt)
        assert any(K > blk["kc"] and B > blk["mc"] for B, K, N in SHAPES), (arch, dt, blk)
        assert any(N > blk["nc"] for B, K, N in SHAPES), (arch, dt, blk)
        assert any(K > blk["nc"] for B, K, N in SHAPES), (arch, dt, blk)

# ---- parity with the reference -------------------------------------------------------------


# every shape with a bias (the epilogue offsets it per tile), a few without
FORWARD_CASES = ([pytest.param(s, True, id=_shape_id(s) + "-bias") for s in SHAPES]
                 + [pytest.param(s, False, id=_shape_id(s) + "-nobias") for s in BUFFER_SHAPES])


@pytest.mark.parametrize("shape,bias", FORWARD_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_forward_matches_reference(arch, kind, dtype, shape, bias, rng):
    """dense_forward agrees with the reference within the error model, inputs untouched."""
    x, w, b = make_dense(rng, shape, dtype, bias)
    saved = [a.copy() for a in (x, w, b) if a is not None]
    y = pybackprop.dense_forward(x, w, b, activation=kind)
    assert y.dtype == dtype and y.flags.c_contiguous
    y_ref = reference_forward(x, w, b, kind)
    assert_within(y, y_ref, forward_bound(x, w, b, kind, dtype, y_ref), "y")
    for before, after in zip(saved, [a for a in (x, w, b) if a is not None]):
        assert_bitwise(before, after, "an input was modified")


@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_matches_reference(arch, kind, dtype, shape, rng):
    """dense_backward agrees with the reference within the error model, inputs untouched."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    saved = [a.copy() for a in (dy, x, w, y)]
    got = pybackprop.dense_backward(dy, x, w, y, activation=kind)
    check_backward(got, dy, x, w, y, kind, dtype)
    for before, after in zip(saved, (dy, x, w, y)):
        assert_bitwise(before, after, "an input was modified")


@pytest.mark.parametrize("shape", BUFFER_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_without_dx(arch, kind, dtype, shape, rng):
    """need_dx=False returns dx None and the same dw, db as with dx."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    dx, dw, db = pybackprop.dense_backward(dy, x, w, y, activation=kind, need_dx=False)
    assert dx is None
    _, dw_full, db_full = pybackprop.dense_backward(dy, x, w, y, activation=kind)
    check_backward((None, dw, db), dy, x, w, y, kind, dtype, need_dx=False)
    assert_bitwise(dw, dw_full, "dw")
    assert_bitwise(db, db_full, "db")


# Layers whose two gradient GEMMs both take the packed path (dw: or, N <= 64 on the SIMD
# paths, the A^T B kernel), with B * N >= 32768: the backward forms dz while packing, or dw
# for each block of rows (never stored). Crossing KC (float32 1024, float64 512) in dw's
# depth B or dx's depth N, MC (192) in the rows of either, partial micro-panels and (1100,
# 33, 40) a partial last block of the A^T B kernel; K >= 2048 (each GEMM split over the
# threads instead of one task per thread; two NC panels, so dw's packing must sum db in the
# first only; (600, 2050, 56): the A^T B kernel's column slices, the first alone summing db).
FUSED_SHAPES = [(256, 67, 130), (1100, 33, 40), (300, 45, 1030), (40, 2050, 1000),
                (600, 2050, 56)]


def assert_bits_of_stored_dz(rng, shape, dtype, kind, threads):
    """dense_backward gives the bits of the GEMMs on a stored dz (activation_backward):
    dw = dz^T x and dx = dz w, db = dz summed row by row from 0; plain and accumulating, on
    1 and 2 threads; and lies within the error bound of the reference."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    dz = pybackprop.activation_backward(dy, y, kind, negative_slope=SLOPE)
    old = [rng.standard_normal(s).astype(dtype) for s in (x.shape, w.shape, (shape[2],))]
    db_rows = np.zeros(shape[2], dtype)
    for row in dz:
        db_rows += row
    expected = [_gemm.gemm(np.empty(x.shape, dtype), dz, w),
                _gemm.gemm(np.empty(w.shape, dtype), dz.T, x), db_rows]
    expected_acc = [_gemm.gemm(old[0].copy(), dz, w, 1), _gemm.gemm(old[1].copy(), dz.T, x, 1),
                    old[2] + db_rows]
    for nt in (1, 2):
        threads(nt)
        got = pybackprop.dense_backward(dy, x, w, y, activation=kind, negative_slope=SLOPE)
        acc = [o.copy() for o in old]
        pybackprop.dense_backward(dy, x, w, y, activation=kind, negative_slope=SLOPE,
                                  accumulate=True, dx=acc[0], dw=acc[1], db=acc[2])
        for name, g, e, ga, ea in zip(("dx", "dw", "db"), got, expected, acc, expected_acc):
            assert_bitwise(g, e, f"{name}, {nt} threads")
            assert_bitwise(ga, ea, f"{name} accumulated, {nt} threads")
    check_backward(got, dy, x, w, y, kind, dtype)


@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_forms_dz_while_packing(arch, kind, dtype, shape, threads, rng):
    """The fused backward (both GEMMs on the packed path or dw on the A^T B kernel, dz formed
    while packing or block by block) gives the bits of the GEMMs on a stored dz."""
    B, K, N = shape
    dz, x, w = (np.empty(s, dtype) for s in ((B, N), (B, K), (N, K)))
    assert _gemm.path(dz, w) == "packed"
    atb_m = _gemm.blocks(None, dtype)["atb_m"]  # 0: no A^T B kernel in this configuration
    by_atb = N <= atb_m or (K <= 16 and N <= 4 * atb_m)  # pb_use_atb_
    assert _gemm.path(dz.T, x) == ("atb" if by_atb else "packed")
    assert_bits_of_stored_dz(rng, shape, dtype, kind, threads)


# Layers with few outputs (N <= 64) and K >= 256 whose two gradient GEMMs run as tasks: dw
# is cut into chunks of 128 columns shared by both threads (csrc/ops/dense.c, dw_chunks_*).
# K = 300: two full chunks and one of 44 columns. (200, 300, 24): each task forms its own
# dz (B * N < 32768), or with identity dz is dy itself; (1100, 300, 40): dz formed while
# packing, and only the first chunk may sum db.
CHUNK_SHAPES = [(200, 300, 24), (1100, 300, 40)]


@pytest.mark.parametrize("shape", CHUNK_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["identity", "relu", "sigmoid"])
def test_backward_dw_in_chunks(arch, kind, dtype, shape, threads, rng):
    """dw computed in column chunks by whichever thread takes them gives the bits of one
    GEMM on the stored dz (and db those of dz summed row by row)."""
    assert_bits_of_stored_dz(rng, shape, dtype, kind, threads)


@pytest.mark.parametrize("slope", LEAKY_SLOPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_slopes(arch, dtype, slope, rng):
    """leaky_relu forward and backward agree with the reference for slopes 0, < 1 and > 1."""
    shape = (33, 65, 47)
    x, w, b = make_dense(rng, shape, dtype)
    y = pybackprop.dense_forward(x, w, b, activation="leaky_relu", negative_slope=slope)
    y_ref = reference_forward(x, w, b, "leaky_relu", slope)
    assert_within(y, y_ref, forward_bound(x, w, b, "leaky_relu", dtype, y_ref, slope), "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = pybackprop.dense_backward(dy, x, w, y, activation="leaky_relu",
                                    negative_slope=slope)
    check_backward(got, dy, x, w, y, "leaky_relu", dtype, slope)


# ---- buffers: out=, dx/dw/db=, accumulate ----------------------------------------------------


@pytest.mark.parametrize("shape", BUFFER_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_forward_out_is_written_not_read(arch, kind, dtype, shape, rng):
    """out= prefilled with NaN is returned, fully written, and equal to the result without out."""
    x, w, b = make_dense(rng, shape, dtype)
    out = np.full((shape[0], shape[2]), np.nan, dtype)
    y = pybackprop.dense_forward(x, w, b, activation=kind, out=out)
    assert y is out
    assert_bitwise(out, pybackprop.dense_forward(x, w, b, activation=kind), "y")


@pytest.mark.parametrize("shape", BUFFER_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_buffers_are_written_not_read(arch, kind, dtype, shape, rng):
    """dx/dw/db prefilled with NaN are returned, fully written, equal to the plain results."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    B, K, N = shape
    bufs = [np.full(s, np.nan, dtype) for s in ((B, K), (N, K), (N,))]
    got = pybackprop.dense_backward(dy, x, w, y, activation=kind,
                                    dx=bufs[0], dw=bufs[1], db=bufs[2])
    plain = pybackprop.dense_backward(dy, x, w, y, activation=kind)
    for name, g, buf, p in zip(("dx", "dw", "db"), got, bufs, plain):
        assert g is buf, f"{name} buffer not returned"
        assert_bitwise(g, p, name)


@pytest.mark.parametrize("shape", BUFFER_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_accumulate(arch, kind, dtype, shape, rng):
    """accumulate=True adds dx, dw, db into the given buffers."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    B, K, N = shape
    old = [rng.standard_normal(s).astype(dtype) for s in ((B, K), (N, K), (N,))]
    bufs = [o.copy() for o in old]
    got = pybackprop.dense_backward(dy, x, w, y, activation=kind, accumulate=True,
                                    dx=bufs[0], dw=bufs[1], db=bufs[2])
    for name, g, buf in zip(("dx", "dw", "db"), got, bufs):
        assert g is buf, f"{name} buffer not returned"
    check_backward(got, dy, x, w, y, kind, dtype, old=old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_sums_two_branches(arch, dtype, rng):
    """Two accumulating calls sum the dx of an input that feeds two layers."""
    B, K, N1, N2 = 9, 37, 21, 18
    x = rng.standard_normal((B, K)).astype(dtype)
    grads = []
    for N in (N1, N2):
        _, w, b = make_dense(rng, (B, K, N), dtype)
        y = ref.dense_forward(x, w, b, activation="tanh")
        dy = rng.standard_normal(y.shape).astype(dtype)
        grads.append((dy, w, y))
    dx = np.zeros((B, K), dtype)
    for dy, w, y in grads:
        pybackprop.dense_backward(dy, x, w, y, activation="tanh", dx=dx, accumulate=True)
    expected = sum(reference_backward(dy, x, w, y, "tanh")[0] for dy, w, y in grads)
    # one accumulated sum over N1 + N2 products, plus the zero start
    g = np.concatenate([dz_scale(dy, y, "tanh") for dy, w, y in grads], axis=1)
    wcat = np.abs(_up(np.concatenate([w for _, w, _ in grads])))
    bound = (GEMM_C * (N1 + N2 + 1) + ELEM_C) * _eps(dtype) * (g @ wcat) + _tiny(dtype)
    assert_within(dx, expected, bound, "dx")


@pytest.mark.parametrize("given_", ["none", "dw_only"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_without_buffers_is_plain(arch, dtype, given_, rng):
    """accumulate=True allocates missing buffers as zeros: those results are plain."""
    dy, x, w, y = make_backward(rng, (17, 31, 29), dtype, "sigmoid")
    dw0 = rng.standard_normal(w.shape).astype(dtype)
    dw = dw0.copy() if given_ == "dw_only" else None
    got = pybackprop.dense_backward(dy, x, w, y, activation="sigmoid", accumulate=True,
                                    dw=dw)
    dx_ref, dw_ref, db_ref = reference_backward(dy, x, w, y, "sigmoid")
    bdx, bdw, bdb = backward_bounds(dy, x, w, y, "sigmoid", dtype)
    assert_within(got[0], dx_ref, bdx, "dx")
    assert_within(got[2], db_ref, bdb, "db")
    if dw is None:
        assert_within(got[1], dw_ref, bdw, "dw")
    else:
        assert got[1] is dw
        bdw = backward_bounds(dy, x, w, y, "sigmoid", dtype, old=(0 * x, dw0, 0 * y[0]))[1]
        assert_within(got[1], dw_ref + dw0, bdw, "dw")


# ---- one row: 1-D x ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_forward_1d_x(arch, kind, dtype, rng):
    """A 1-D x (K,) gives y (N,), the same bits as the one-row batch, also with out=(N,)."""
    x, w, b = make_dense(rng, (1, 67, 33), dtype)
    y = pybackprop.dense_forward(x[0], w, b, activation=kind)
    assert y.shape == (33,)
    y_ref = reference_forward(x[0], w, b, kind)
    assert_within(y, y_ref, forward_bound(x[0], w, b, kind, dtype, y_ref), "y")
    assert_bitwise(y, pybackprop.dense_forward(x, w, b, activation=kind)[0], "y")
    out = np.full(33, np.nan, dtype)
    assert pybackprop.dense_forward(x[0], w, b, activation=kind, out=out) is out
    assert_bitwise(out, y, "out")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_backward_1d_x(arch, kind, dtype, rng):
    """1-D x, dy, y give dx (K,), dw (N, K), db (N,) with the bits of the one-row batch."""
    dy, x, w, y = make_backward(rng, (1, 67, 33), dtype, kind)
    got = pybackprop.dense_backward(dy[0], x[0], w, y[0], activation=kind)
    assert [g.shape for g in got] == [(67,), (33, 67), (33,)]
    check_backward(got, dy[0], x[0], w, y[0], kind, dtype)
    batch = pybackprop.dense_backward(dy, x, w, y, activation=kind)
    assert_bitwise(got[0], batch[0][0], "dx")
    assert_bitwise(got[1], batch[1], "dw")
    assert_bitwise(got[2], batch[2], "db")


# ---- zero-size dimensions --------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", ZERO_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["relu", "softplus"])
def test_zero_size_forward(arch, kind, dtype, shape, bias, rng):
    """B, K or N = 0 gives y of shape (B, N); K = 0 gives act(b) (or act(0)), even into out."""
    x, w, b = make_dense(rng, shape, dtype, bias)
    out = np.full((shape[0], shape[2]), np.nan, dtype)
    y = pybackprop.dense_forward(x, w, b, activation=kind, out=out)
    assert y is out
    y_ref = reference_forward(x, w, b, kind)
    assert_within(y, y_ref, forward_bound(x, w, b, kind, dtype, y_ref), "y")


@pytest.mark.parametrize("accumulate", [False, True], ids=["plain", "accumulate"])
@pytest.mark.parametrize("shape", ZERO_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["relu", "softplus"])
def test_zero_size_backward(arch, kind, dtype, shape, accumulate, rng):
    """Zero-size backward gives shaped results; B = 0 gives dw = 0 and db = 0 (or unchanged)."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    B, K, N = shape
    old = [rng.standard_normal(s).astype(dtype) for s in ((B, K), (N, K), (N,))]
    bufs = ([o.copy() for o in old] if accumulate
            else [np.full(o.shape, np.nan, dtype) for o in old])
    got = pybackprop.dense_backward(dy, x, w, y, activation=kind, accumulate=accumulate,
                                    dx=bufs[0], dw=bufs[1], db=bufs[2])
    check_backward(got, dy, x, w, y, kind, dtype, old=old if accumulate else None)
    if B == 0:
        for name, g, o in zip(("dx", "dw", "db"), got, old):
            np.testing.assert_array_equal(g, o if accumulate else np.zeros_like(o), name)


# ---- threads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["relu", "sigmoid"])
def test_results_do_not_depend_on_thread_count(arch, kind, dtype, shape, threads, rng):
    """Forward, backward (plain and accumulating) and activations: same bits on 1 and 2 threads."""
    dy, x, w, y = make_backward(rng, shape, dtype, kind)
    b = rng.standard_normal(shape[2]).astype(dtype)
    old = [rng.standard_normal(s).astype(dtype) for s in (x.shape, w.shape, (shape[2],))]
    z = rng.standard_normal(100_003).astype(dtype)

    def run():
        acc = [o.copy() for o in old]
        pybackprop.dense_backward(dy, x, w, y, activation=kind, accumulate=True,
                                  dx=acc[0], dw=acc[1], db=acc[2])
        a = pybackprop.activation(z, kind)
        return [pybackprop.dense_forward(x, w, b, activation=kind),
                *pybackprop.dense_backward(dy, x, w, y, activation=kind), *acc,
                a, pybackprop.activation_backward(z, a, kind)]

    threads(1)
    one = run()
    threads(2)
    two = run()
    names = ["y", "dx", "dw", "db", "dx+=", "dw+=", "db+=", "act", "act_backward"]
    for name, r1, r2 in zip(names, one, two):
        assert_bitwise(r1, r2, name)


# ---- alignment --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 16, 9), (5, 37, 24), (32, 128, 70), (64, 1024, 17),
                                   (3, 4096, 8)], ids=_shape_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_does_not_depend_on_alignment(arch, dtype, shape, rng):
    """Small-batch forwards may read x and w in place or from aligned copies (the dot-product
    kernel copies rows that are not 64-byte aligned); either way, the same bits."""
    B, K, N = shape
    x, w, b = make_dense(rng, shape, dtype, True)
    base = pybackprop.dense_forward(at_offset(x, 0), at_offset(w, 0), b, activation="relu")
    for offset in (16, 32, 3 * np.dtype(dtype).itemsize):
        got = pybackprop.dense_forward(at_offset(x, offset), at_offset(w, offset), b, activation="relu")
        assert_bitwise(got, base, f"y with inputs {offset} bytes past 64-byte alignment")
    y_ref = reference_forward(x, w, b, "relu")
    assert_within(base, y_ref, forward_bound(x, w, b, "relu", dtype, y_ref), "y")
