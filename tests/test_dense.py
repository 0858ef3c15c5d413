"""Tests of the fused dense + activation kernels and the elementwise activation kernels.

Checks pybackprop.dense_forward / dense_backward / activation / activation_backward against
the numpy specification in pybackprop.reference: parity on every dispatch path, dtype,
activation and awkward shape; buffers (out=, dx/dw/db=, accumulate); thread-count
independence; gradients by finite differences; a worked golden example; the
error contract; property tests over random shapes. Every tolerance comes from the error
model of pybackprop/_bounds.py (one place). Speed is not tested here (bench/).
"""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pybackprop
from pybackprop import _gemm
from pybackprop._bounds import (ELEM_C, GEMM_C, SLOPE, backward_bounds, dz_scale, eps_of,
                                forward_bound, lipschitz, tiny_of, up)
from pybackprop import reference as ref

from _helpers import assert_bitwise, assert_within, at_offset

from conftest import ARCHS  # the CPU configurations under test
DTYPES = (np.float32, np.float64)
# the activations differentiated from the output y (gelu, gelu_tanh and silu, from the
# pre-activation z: test_dense_preact.py)
ACTIVATIONS = tuple(k for k in ref.ACTIVATIONS if k not in ref.PREACT_ACTIVATIONS)

# (B, K, N): batch rows, input features, output features.
SHAPES = [
    (1, 1, 1),
    (1, 7, 5),        # B = 1 (one row)
    (3, 1, 4),        # K = 1
    (5, 6, 1),        # N = 1
    (2, 13, 17),
    (17, 31, 29),     # primes: no dimension is a multiple of any tile
    (33, 65, 47),     # one past multiples of 16/32/64
    (64, 64, 64),     # exact multiples
    (400, 3, 2),      # tall
    (2, 3, 8209),     # wide: N crosses the N cache block (y, and dw's rows)
    (3, 8200, 2),     # deep: K crosses the N cache block of dw and dx
    (1, 520, 70),     # K crosses the K cache block, B = 1
    (130, 300, 70),   # crosses the K and M cache blocks
    (530, 1030, 70),  # crosses the K and M cache blocks of every configuration
]
# (test_shapes_cross_the_cache_blocks checks that these shapes cross the blocks of the
# configuration under test.)
BUFFER_SHAPES = [(1, 1, 1), (5, 6, 1), (17, 31, 29), (130, 300, 70)]
ZERO_SHAPES = [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (0, 5, 0), (1, 0, 1)]
# Big enough that every pass runs threaded: GEMM split by M blocks and by micro-panels, the
# dz/db pass (B*N >= 32768, N > 64 columns) and the elementwise kernels.
THREAD_SHAPES = [(130, 300, 70), (520, 70, 130), (24, 300, 200),  # packed x2, dot-product,
                 (62, 300, 205)]  # transposed-tile
LEAKY_SLOPES = [0.0, 0.2, 1.5]


def _shape_id(s):
    return "B%dK%dN%d" % s


def test_shapes_cross_the_cache_blocks(arch):
    """SHAPES cross the configuration's cache blocks, both dtypes: a forward crossing KC
    and MC at once, one crossing NC, and a K crossing the NC of dw and dx."""
    for dt in DTYPES:
        blk = _gemm.blocks(None, dt)
        assert any(K > blk["kc"] and B > blk["mc"] for B, K, N in SHAPES), (arch, dt, blk)
        assert any(N > blk["nc"] for B, K, N in SHAPES), (arch, dt, blk)
        assert any(K > blk["nc"] for B, K, N in SHAPES), (arch, dt, blk)


# ---- error model: every tolerance of this file ------------------------------------------
# The bounds of dense_forward, dense_backward and the activations are pybackprop/_bounds.py's
# (derived there: Higham's gamma_n per addend, the activations' Lipschitz constants, the
# elementary functions' ulp errors); `python -m pybackprop check` asserts the same ones.
# Central differences in float64 with step h: truncation h^2/6 |L'''| ~ 1e-13 plus roundoff
# ~ eps |L| / h ~ 1e-8 for |L| ~ 50; FD_TOL is 100x that, yet 1e5x below the O(|grad|)
# error of any wrong formula.
FD_STEP = 1e-6
FD_TOL = 1e-6
_eps, _tiny, _up, _lipschitz = eps_of, tiny_of, up, lipschitz


def make_dense(rng, shape, dtype, bias=True):
    """Random x (B, K), w (N, K), b (N,) or None, with pre-activations of order 1."""
    B, K, N = shape
    x = rng.standard_normal((B, K)).astype(dtype)
    w = (rng.standard_normal((N, K)) / np.sqrt(max(K, 1))).astype(dtype)
    b = (0.5 * rng.standard_normal(N)).astype(dtype) if bias else None
    return x, w, b


def make_backward(rng, shape, dtype, kind, slope=SLOPE):
    """dy, x, w and a genuine saved output y = act(x @ w.T + b) in ``dtype``."""
    x, w, b = make_dense(rng, shape, dtype)
    y = ref.dense_forward(x, w, b, activation=kind, negative_slope=slope)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return dy, x, w, y


def reference_forward(x, w, b, kind, slope=SLOPE):
    return ref.dense_forward(_up(x), _up(w), _up(b), activation=kind, negative_slope=slope)


def reference_backward(dy, x, w, y, kind, slope=SLOPE, need_dx=True):
    return ref.dense_backward(_up(dy), _up(x), _up(w), _up(y), activation=kind,
                              negative_slope=slope, need_dx=need_dx)


def check_backward(got, dy, x, w, y, kind, dtype, slope=SLOPE, need_dx=True, old=None):
    """Compare (dx, dw, db) of ours with the reference (plus ``old`` when accumulating)."""
    expected = list(reference_backward(dy, x, w, y, kind, slope, need_dx))
    bounds = backward_bounds(dy, x, w, y, kind, dtype, slope, old)
    for i, name in enumerate(("dx", "dw", "db")):
        if expected[i] is None:
            assert got[i] is None, f"{name} should be None"
            continue
        assert got[i].dtype == dtype, f"{name} has dtype {got[i].dtype}"
        if old is not None:
            expected[i] = expected[i] + _up(old[i])
        assert_within(got[i], expected[i], bounds[i], name)


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


# ---- gradients by finite differences --------------------------------------------------------


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_gradient_matches_finite_differences(arch, kind, rng):
    """dx, dw, db equal central differences of L = sum(g * dense_forward(x, w, b)) in float64."""
    B, K, N = 3, 4, 5
    while True:  # away from the kinks of relu and leaky_relu: |z| >= 0.1 everywhere
        x, w, b = make_dense(rng, (B, K, N), np.float64)
        if np.abs(x @ w.T + b).min() >= 0.1:
            break
    g = rng.standard_normal((B, N))

    def loss(x, w, b):
        return float(np.sum(g * pybackprop.dense_forward(x, w, b, activation=kind)))

    y = pybackprop.dense_forward(x, w, b, activation=kind)
    analytic = pybackprop.dense_backward(g, x, w, y, activation=kind)
    params = [x, w, b]
    for name, i, grad in zip(("dx", "dw", "db"), range(3), analytic):
        fd = np.empty_like(grad)
        for idx in np.ndindex(grad.shape):
            plus = [p.copy() for p in params]
            minus = [p.copy() for p in params]
            plus[i][idx] += FD_STEP
            minus[i][idx] -= FD_STEP
            fd[idx] = (loss(*plus) - loss(*minus)) / (2 * FD_STEP)
        np.testing.assert_allclose(grad, fd, rtol=FD_TOL, atol=FD_TOL, err_msg=name)


# ---- golden worked example --------------------------------------------------------------------


@pytest.mark.parametrize("rows", ["1d", "2d"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_golden_two_layer_relu_network(arch, dtype, rows):
    """R^2 -> R^3 -> R^2, ReLU, no bias, loss ||out - t||^2: every number exactly as by hand."""
    def v(a):
        a = np.array(a, dtype)
        return a if rows == "1d" or a.ndim != 1 else a[None, :]

    def check(got, expected):
        np.testing.assert_array_equal(got, v(expected))
        assert got.dtype == dtype

    x, t = v([1, 2]), v([0, 0])
    W1 = np.array([[3, -1], [-2, 0], [0, 1]], dtype)
    W2 = np.array([[0, -1, 1], [-1, 4, 1]], dtype)
    check(pybackprop.dense_forward(x, W1, activation="identity"), [1, -2, 2])     # z1
    x1 = pybackprop.dense_forward(x, W1, activation="relu")
    check(x1, [1, 0, 2])
    out = pybackprop.dense_forward(x1, W2, activation="relu")
    check(out, [2, 1])
    assert float(np.sum((out - t) ** 2)) == 5.0                                    # loss
    dout = 2 * (out - t)                                                           # dC/dout
    dx1, dW2, db2 = pybackprop.dense_backward(dout, x1, W2, out, activation="relu")
    np.testing.assert_array_equal(dW2, np.array([[4, 0, 8], [2, 0, 4]], dtype))
    np.testing.assert_array_equal(db2, np.array([4, 2], dtype))
    check(dx1, [-2, 4, 6])
    check(pybackprop.activation_backward(dx1, x1, "relu"), [-2, 0, 6])            # delta1
    _, dW1, db1 = pybackprop.dense_backward(dx1, x, W1, x1, activation="relu",
                                            need_dx=False)
    np.testing.assert_array_equal(dW1, np.array([[-2, -4], [0, 0], [6, 12]], dtype))
    np.testing.assert_array_equal(db1, np.array([-2, 0, 6], dtype))


# ---- elementwise activation kernels ----------------------------------------------------------

ACT_SHAPES = [(0,), (1,), (7,), (33,), (1000,), (13, 17), (3, 0, 5)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_matches_reference(arch, kind, dtype, shape, rng):
    """activation and activation_backward agree with the reference, with and without out=."""
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    y_ref = ref.activation(_up(z), kind)
    y = pybackprop.activation(z, kind)
    assert y.dtype == dtype
    assert_within(y, y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")
    out = np.full(shape, np.nan, dtype)
    assert pybackprop.activation(z, kind, out=out) is out
    assert_bitwise(out, y, "out")

    dy = rng.standard_normal(shape).astype(dtype)
    dz_ref = ref.activation_backward(_up(dy), _up(y), kind)
    dz = pybackprop.activation_backward(dy, y, kind)
    assert dz.dtype == dtype
    assert_within(dz, dz_ref, ELEM_C * _eps(dtype) * dz_scale(dy, y, kind) + _tiny(dtype),
                  "dz")
    out = np.full(shape, np.nan, dtype)
    assert pybackprop.activation_backward(dy, y, kind, out=out) is out
    assert_bitwise(out, dz, "out")


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30]


# softplus' backward, dy * -expm1(-y): on SIMD paths a vector expm1 (csrc/simd/vmath_f*.inc,
# the reduction of exp and a Taylor polynomial far below an ulp, then one FMA: <= 1.5 ulp;
# measured 0.87 float32, 1.11 float64); elsewhere glibc's expm1 (0.76).
SOFTPLUS_BWD_ULPS = 1.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_backward_ulps(arch, dtype):
    """activation_backward for softplus stays within SOFTPLUS_BWD_ULPS of -expm1(-y) over
    y in [0, 110] (float64: [0, 750]) and near 0, maps inf to 1, NaN to NaN and a large
    negative y to -inf; the dense
    backward's dz pass (seen through db with B = 1, db = 0 + dz) gives the same bits."""
    hi = 110 if dtype == np.float32 else 750
    y = np.concatenate([np.linspace(0, hi, 2 ** 17), np.geomspace(1e-30, 1, 2 ** 14),
                        np.linspace(0, 1, 2 ** 15)]).astype(dtype)
    g = pybackprop.activation_backward(np.ones_like(y), y, "softplus")
    wide = np.float64 if dtype == np.float32 else np.longdouble
    exact = -np.expm1(-y.astype(wide))
    ulp = (np.abs(g.astype(wide) - exact) / np.spacing(np.abs(exact).astype(dtype)))
    assert ulp.astype(np.float64).max() <= SOFTPLUS_BWD_ULPS, f"at y = {y[np.argmax(ulp)]!r}"
    # y < 0 is no softplus output, but the kernel takes any y: -expm1(-y) overflows to -inf
    # there as the scalar path does (not NaN from an overflowing 2^n)
    special = pybackprop.activation_backward(
        np.ones(4, dtype), np.array([np.inf, np.nan, -np.inf, -1000], dtype), "softplus")
    assert special[0] == 1 and np.isnan(special[1]) and special[2] == special[3] == -np.inf
    n = 4099  # several 64-column blocks of the dz pass and a masked vector tail
    _, _, db = pybackprop.dense_backward(np.ones((1, n), dtype), np.ones((1, 3), dtype),
                                         np.ones((n, 3), dtype), y[None, :n],
                                         activation="softplus")
    assert_bitwise(db, g[:n], "db == softplus' of y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_ieee_special_values(arch, kind, dtype):
    """NaN, +-inf, +-0 and tiny values go through every activation as the reference says."""
    z = np.array(SPECIAL * 5, dtype)  # long enough for the vector body and the tail
    y_ref = ref.activation(_up(z), kind)
    y = pybackprop.activation(z, kind)
    assert_within(y, y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")
    # and inside the dense epilogue: x = z as a column, w = [[1]], K = 1
    yd = pybackprop.dense_forward(z[:, None], np.ones((1, 1), dtype), activation=kind)
    assert_within(yd[:, 0], y_ref, ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype), "y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_signed_zeros(arch, kind, dtype):
    """act(+-0) and act'(...) * (+-0) carry the reference's sign of zero on every path (the
    vector body and the scalar tail both: 37 elements)."""
    z = np.array([0.0, -0.0] * 18 + [-0.0], dtype)
    y_ref = ref.activation(z, kind)
    y = pybackprop.activation(z, kind)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(y_ref), err_msg="y")
    np.testing.assert_array_equal(y, y_ref)
    yb = np.array([0.0, -0.0, 0.5, 0.25] * 9 + [-0.0], dtype)
    if kind in ("sigmoid", "softplus"):  # outputs in (0, 1) / (0, inf)
        yb = np.abs(yb) + dtype(0.5)
    dz_ref = ref.activation_backward(z, yb, kind)
    dz = pybackprop.activation_backward(z, yb, kind)
    np.testing.assert_array_equal(np.signbit(dz), np.signbit(dz_ref), err_msg="dz")


@pytest.mark.parametrize("dtype", DTYPES)
def test_derivative_conventions_at_zero(arch, dtype):
    """relu'(0) = 0 exactly (even for NaN or inf dy), leaky_relu'(0) = slope, as PyTorch."""
    y = np.array([0.0, 0.0, 0.0, -0.0, 2.0, -1.0] * 3, dtype)
    dy = np.array([1.0, np.nan, np.inf, 3.0, 5.0, np.nan] * 3, dtype)
    dz = pybackprop.activation_backward(dy, y, "relu")
    np.testing.assert_array_equal(dz, np.array([0, 0, 0, 0, 5, 0] * 3, dtype))
    dz = pybackprop.activation_backward(dy[:1] * np.ones_like(y), y, "leaky_relu",
                                        negative_slope=0.25)
    np.testing.assert_array_equal(dz, np.array([0.25, 0.25, 0.25, 0.25, 1, 0.25] * 3, dtype))


# Standalone activations whose SIMD kernels do pb_dact's / pb_act's scalar operations in
# vector form (csrc/core/activation.h, csrc/gemm/simd_act.inc): the same bits as "ref". Not the
# exp-based forwards, nor softplus' backward (vector exp / expm1 against libm's).
EXACT_FWD = ["identity", "relu", "leaky_relu"]
EXACT_BWD = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_activations_same_bits_as_ref(arch, dtype, rng):
    """EXACT_FWD / EXACT_BWD on this path give ref's bits: special values (NaN payloads and
    signed zeros included), a vector body and every tail length of one vector or two."""
    z = np.concatenate([np.array(SPECIAL * 3, dtype),
                        (3 * rng.standard_normal(1000)).astype(dtype)])
    dy = np.concatenate([np.array(SPECIAL[::-1] * 3, dtype),
                         rng.standard_normal(1000).astype(dtype)])
    lengths = [z.size] + list(range(1, 34))

    def run(path):
        pybackprop.set_cpu(path)
        return ([pybackprop.activation(z[:n], k, negative_slope=0.3)
                 for k in EXACT_FWD for n in lengths],
                [pybackprop.activation_backward(dy[:n], z[:n], k, negative_slope=0.3)
                 for k in EXACT_BWD for n in lengths])

    want_fwd, want_bwd = run("generic")
    got_fwd, got_bwd = run(arch)
    for got, want, what in zip(got_fwd + got_bwd, want_fwd + want_bwd,
                               [f"{k} n={n}" for k in EXACT_FWD for n in lengths]
                               + [f"{k}' n={n}" for k in EXACT_BWD for n in lengths]):
        assert_bitwise(got, want, what)


EXTREMES = [-1e4, -1e3, -710.0, -100.0, -89.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 89.0, 100.0,
            710.0, 1e3, 1e4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sigmoid", "softplus", "tanh"])
def test_stable_for_large_inputs(arch, kind, dtype):
    """|z| up to 1e4: no warning, finite results, as the reference; also in the dense epilogue."""
    z = np.array(EXTREMES * 3, dtype)
    y_ref = ref.activation(_up(z), kind)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise",
                                                divide="raise"):
        warnings.simplefilter("error")
        y = pybackprop.activation(z, kind)
        yd = pybackprop.dense_forward(z[:, None], np.ones((1, 1), dtype), activation=kind)
        dz = pybackprop.activation_backward(np.ones_like(y), y, kind)
        grads = pybackprop.dense_backward(np.ones_like(yd), z[:, None],
                                          np.ones((1, 1), dtype), yd, activation=kind)
        y_ref32 = ref.activation(z, kind)  # the reference must not warn either
    bound = ELEM_C * _eps(dtype) * np.abs(y_ref) + _tiny(dtype)
    assert_within(y, y_ref, bound, "y")
    assert_within(yd[:, 0], y_ref, bound, "y (dense)")
    assert np.isfinite(y_ref32).all()
    for r in (dz, *grads):
        assert np.isfinite(r).all()
    if kind == "sigmoid":
        assert ((y >= 0) & (y <= 1)).all()
    if kind == "softplus":
        assert (y >= 0).all() and y[z == 1e4].tolist() == [1e4] * 3


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


# ---- dispatch and build information ---------------------------------------------------------


def test_dispatch_and_build_info(threads):
    """available_cpus has the portable configuration and set_cpu round-trips; set_arch
    caps the instruction set (its configuration's highest ISA is the one asked for on this
    CPU); set_num_threads round-trips; build_info and cpu_info have their keys."""
    cpus = pybackprop.available_cpus()
    assert "generic" in cpus and pybackprop.get_cpu() in cpus
    archs = pybackprop.available_archs()
    assert archs[0] == "ref" and pybackprop.get_arch() in archs
    saved = pybackprop.get_cpu()
    try:
        for c in cpus:
            pybackprop.set_cpu(c)
            assert pybackprop.get_cpu() == c and pybackprop.build_info()["cpu"] == c
            assert pybackprop.get_arch() == max(pybackprop.cpu_info()["kernels"].values(),
                                                key=archs.index)
        for a in archs:
            pybackprop.set_arch(a)
            assert pybackprop.get_arch() == a
            assert pybackprop.build_info()["arch"] == a
        with pytest.raises(ValueError, match="cpu must be one of"):
            pybackprop.set_cpu("no-such-cpu")
    finally:
        pybackprop.set_cpu(saved)
    info = pybackprop.build_info()
    assert {"version", "compiler", "cflags", "cpu", "cpu_reason", "arch", "openmp",
            "num_threads"} <= set(info)
    threads(1)
    assert pybackprop.get_num_threads() == 1
    threads(2)
    assert pybackprop.get_num_threads() == (2 if info["openmp"] else 1)


# ---- property tests over random shapes ------------------------------------------------------


class _use_arch:
    """Context manager: run in one CPU configuration, restore the previous one."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.saved = pybackprop.get_cpu()
        pybackprop.set_cpu(self.name)

    def __exit__(self, *exc):
        pybackprop.set_cpu(self.saved)


DIMS = st.integers(min_value=0, max_value=48)


@given(B=DIMS, K=DIMS, N=DIMS, kind=st.sampled_from(ACTIVATIONS),
       dtype=st.sampled_from(DTYPES), bias=st.booleans(), arch=st.sampled_from(ARCHS),
       seed=st.integers(0, 2**32 - 1))
def test_forward_property(B, K, N, kind, dtype, bias, arch, seed):
    """For random shapes, dense_forward agrees with the reference."""
    x, w, b = make_dense(np.random.default_rng(seed), (B, K, N), dtype, bias)
    with _use_arch(arch):
        y = pybackprop.dense_forward(x, w, b, activation=kind)
    y_ref = reference_forward(x, w, b, kind)
    assert_within(y, y_ref, forward_bound(x, w, b, kind, dtype, y_ref), "y")


@given(B=DIMS, K=DIMS, N=DIMS, kind=st.sampled_from(ACTIVATIONS),
       dtype=st.sampled_from(DTYPES), need_dx=st.booleans(), accumulate=st.booleans(),
       arch=st.sampled_from(ARCHS), seed=st.integers(0, 2**32 - 1))
def test_backward_property(B, K, N, kind, dtype, need_dx, accumulate, arch, seed):
    """For random shapes, dense_backward (plain or accumulating) agrees with the reference."""
    rng = np.random.default_rng(seed)
    dy, x, w, y = make_backward(rng, (B, K, N), dtype, kind)
    old = [rng.standard_normal(s).astype(dtype) for s in ((B, K), (N, K), (N,))]
    bufs = [o.copy() for o in old] if accumulate else [None, None, None]
    if not need_dx:
        bufs[0] = None
    with _use_arch(arch):
        got = pybackprop.dense_backward(dy, x, w, y, activation=kind, need_dx=need_dx,
                                        accumulate=accumulate,
                                        dx=bufs[0], dw=bufs[1], db=bufs[2])
    check_backward(got, dy, x, w, y, kind, dtype, need_dx=need_dx,
                   old=old if accumulate else None)


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
