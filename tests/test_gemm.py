"""Tests of the C core's GEMM (pb_gemm_f32/f64 through the private pybackprop._gemm) on every
dispatch path: all register-tile edge cases, every cache-block boundary, beta 0 (C never
read) and 1, strided and transposed operands, and bitwise equality across thread counts.
The ``arch`` and ``threads`` fixtures come from conftest.py."""
import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm

from _helpers import at_offset

DTYPES = (np.float32, np.float64)


def tol(dtype, k):
    """Bound on |C - exact| in units of (|A| @ |B| + |C0|): the recursive-summation bound
    gamma_k = k u / (1 - k u) with u = eps / 2, plus one rounding for beta * C0 and one for the
    store; we allow (k + 2) eps, i.e. about twice the classical bound."""
    return (k + 2) * np.finfo(dtype).eps


def layout(rng, rows, cols, dtype, kind):
    """A (rows, cols) operand stored row-major ("C"), column-major ("F") or as a strided view
    with gaps between rows and columns ("S")."""
    full = rng.standard_normal((rows * 2 + 1, cols * 3 + 1)).astype(dtype)
    if kind == "C":
        return np.ascontiguousarray(full[:rows, :cols])
    if kind == "F":
        return np.asfortranarray(full[:rows, :cols])
    return full[1::2, 1::3][:rows, :cols]


def exact(a, b):
    """The product in float64 (float32 inputs: exact up to float64 rounding, far below the
    float32 tolerance; float64 inputs: in the same precision, covered by the tolerance's
    factor two)."""
    return a.astype(np.float64) @ b.astype(np.float64)


def check(c, c0, a, b, beta):
    """Assert c == beta * c0 + a @ b within tol(); NaN in c fails."""
    k = a.shape[1]
    ref = exact(a, b) + (c0.astype(np.float64) if beta else 0.0)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    if beta:
        scale += np.abs(c0)
    err = np.abs(c.astype(np.float64) - ref)
    bad = ~(err <= tol(c.dtype, k) * scale + np.finfo(c.dtype).tiny)
    assert not bad.any(), f"{bad.sum()} wrong elements, first at {np.argwhere(bad)[0]}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_edge_tile(arch, dtype):
    """Every combination of m in 1..3*MR, n in 1..3*NR and k in 0..3*MR against the exact
    product, both betas and every operand layout (cycled with k); C is a window of a
    NaN-filled buffer, so a read of C under beta 0 or a write outside the window shows up as
    NaN or a changed sentinel. (m or n == 0 is test_empty_dimensions.)"""
    blk = _gemm.blocks(arch, dtype)
    M, N = 3 * blk["mr"], 3 * blk["nr"]
    rng = np.random.default_rng(1)
    layouts = [("C", "C"), ("F", "C"), ("C", "F"), ("S", "S"), ("F", "F"), ("C", "S")]
    cases = [(k,) + layouts[k % len(layouts)] + (k % 2,) for k in range(3 * blk["mr"] + 1)]
    for k, la, lb, beta in cases:
        a = layout(rng, M, k, dtype, la)
        b = layout(rng, k, N, dtype, lb)
        ref = exact(a, b)
        c0 = rng.standard_normal((M, N)).astype(dtype)
        for m in range(1, M + 1):
            # out[ni] holds the result of n = ni + 1 in its top-left (m, n) window; the row
            # below and the columns right of the window must keep their NaN.
            out = np.full((N, m + 1, N + 1), np.nan, dtype)
            for n in range(1, N + 1):
                if beta:
                    out[n - 1, :m, :n] = c0[:m, :n]
                _gemm.gemm(out[n - 1, :m, :n], a[:m], b[:, :n], beta)
            inside = np.arange(N + 1)[None, :] < np.arange(1, N + 1)[:, None]  # (ni, col)
            inside = np.broadcast_to(inside[:, None, :], out.shape).copy()
            inside[:, m, :] = False
            assert np.isnan(out[~inside]).all(), f"written outside C (m={m}, k={k})"
            got = out[:, :m, :N]
            exp = ref[:m][None] + (c0[:m].astype(np.float64)[None] if beta else 0.0)
            scale = (np.abs(a[:m]).astype(np.float64) @ np.abs(b).astype(np.float64))[None]
            if beta:
                scale = scale + np.abs(c0[:m])[None]
            mask = inside[:, :m, :N]
            err = np.abs(got.astype(np.float64) - exp)
            bad = mask & ~(err <= tol(dtype, k) * scale + np.finfo(dtype).tiny)
            assert not bad.any(), (f"m={m} k={k} beta={beta} layouts {la}{lb}: wrong at "
                                   f"(n-1, i, j) = {tuple(np.argwhere(bad)[0])}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_dimensions(arch, dtype):
    """m == 0 or n == 0 writes nothing; k == 0 gives beta * c (zeros for beta 0)."""
    blk = _gemm.blocks(arch, dtype)
    rng = np.random.default_rng(2)
    for m, n, k in ((0, blk["nr"] + 1, 3), (blk["mr"] + 1, 0, 3), (0, 0, 0)):
        buf = np.full((m + 1, n + 1), np.nan, dtype)
        _gemm.gemm(buf[:m, :n], layout(rng, m, k, dtype, "C"), layout(rng, k, n, dtype, "C"), 0)
        assert np.isnan(buf).all()
    for beta in (0, 1):
        c0 = rng.standard_normal((blk["mr"] + 1, blk["nr"] + 1)).astype(dtype)
        c = c0.copy()
        _gemm.gemm(c, np.empty((c.shape[0], 0), dtype), np.empty((0, c.shape[1]), dtype), beta)
        np.testing.assert_array_equal(c, c0 if beta else np.zeros_like(c0))


def block_sizes(arch, dtype):
    """Odd sizes on both sides of every cache block boundary of this path."""
    blk = _gemm.blocks(arch, dtype)
    mr, nr, mc, kc, nc = (blk[x] for x in ("mr", "nr", "mc", "kc", "nc"))
    return [
        (mc - 1, kc + 1, 2 * nr + 3),
        (mc + 1, kc - 1, nr - 1),
        (2 * mc + mr + 1, 2 * kc + 3, 3 * nr + 5),
        (mr + 1, kc, nc + nr + 1),
        (3, 2 * kc + 1, nc - 1),
        (mc + 5, 1, nc + 3),
        (1, 2 * kc + 3, 1000),  # GEMV path (m == 1), split across threads
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", (0, 1))
def test_cache_block_boundaries(arch, dtype, beta):
    """Sizes crossing MC, KC and NC (and the register tile inside them) against the exact
    product; beta 0 on a NaN-filled C proves C is not read."""
    rng = np.random.default_rng(2)
    for i, (m, k, n) in enumerate(block_sizes(arch, dtype)):
        la, lb = "CFS"[i % 3], "FCS"[(i + beta) % 3]
        a = layout(rng, m, k, dtype, la)
        b = layout(rng, k, n, dtype, lb)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        c = c0.copy() if beta else np.full((m, n), np.nan, dtype)
        _gemm.gemm(c, a, b, beta)
        check(c, c0, a, b, beta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_bitwise(arch, dtype, threads):
    """1 and 2 threads give bitwise identical results (K is never split across threads)."""
    rng = np.random.default_rng(3)
    blk = _gemm.blocks(arch, dtype)
    shapes = block_sizes(arch, dtype)[:4] + block_sizes(arch, dtype)[-1:] + [(1, 300, 200), (7, 5, 3), (2 * blk["mr"], 64, 1)]
    for m, k, n in shapes:
        a = layout(rng, m, k, dtype, "C")
        b = layout(rng, k, n, dtype, "F")
        res = []
        for nt in (1, 2):
            threads(nt)
            res.append(_gemm.gemm(np.full((m, n), np.nan, dtype), a, b, 0))
        assert np.array_equal(res[0], res[1]), f"thread counts differ at {(m, k, n)}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_work_stealing_bitwise(arch, dtype, threads):
    """Threads run their static share of the work, then take what is left of the others'
    (docs/gemm.md, "Threads and determinism"). In the steal test mode thread 0 leaves all of
    its share to thread 1, so every unit of it runs on a thread that does not own it: the
    packed path (an M split; an N split of a transposed B, the forward's layout; A read in
    place; several K and N panels) and the transposed-tile path (split by columns, and by
    rows where B is small, the thief then packing the rows it takes; several K panels, beta
    1, a bias and relu) give one thread's bits, and units were taken (the code ran)."""
    rng = np.random.default_rng(12)
    blk = _gemm.blocks(arch, dtype)
    mr, nr, mc, kc, nc = (blk[x] for x in ("mr", "nr", "mc", "kc", "nc"))
    # the forward's layout ("F") goes to the tt path up to m = tm, packed above it
    mf = max(mc - 1, blk["tm"] + 1)
    packed = [(2 * mc + mr + 1, 2 * kc + 3, 3 * nr + 5, "C"), (mf, kc + 1, 16 * nr + 3, "F"),
              (max(mc + 1, blk["tm"] + 1), 100, nc + nr + 1, "F"), (4 * mf + 1, 64, 2 * nr, "F"),
              (3 * mr, 2 * kc + 1, 4 * nr, "S")]
    isz = np.dtype(dtype).itemsize
    tt = [(m, k, n, lay) for m, k, n, lay in tt_shapes(blk, isz)
          if 2 * m * n * k >= 400000] if blk["tw"] else []
    # two threads split the tt path by rows where A^T's panels pair up and B is at most
    # 256 KiB (pb_tt_msplit_ in csrc/gemm/driver_paths.inc), else by columns: both are here
    by_rows = {-(-m // blk["tw"]) % 2 == 0 and n * k * isz <= blk["tt_msplit"]
               for m, k, n, _ in tt}
    assert by_rows == ({True, False} if tt else set())
    for group in (packed, tt):
        stolen = 0
        for m, k, n, lay in group:
            a = layout(rng, m, k, dtype, "C")
            b = layout(rng, k, n, dtype, lay)
            assert _gemm.path(a, b) == ("tt" if group is tt else "packed"), (m, k, n, lay)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            for beta in (0, 1):
                res = []
                for nt, test in ((1, False), (2, True)):
                    threads(nt)
                    _gemm.steal_test(test)
                    try:
                        res.append(_gemm.gemm(c0.copy() if beta else
                                              np.full((m, n), np.nan, dtype), a, b, beta))
                    finally:
                        stolen += _gemm.steal_test(False)
                assert np.array_equal(res[0], res[1]), (m, k, n, lay, beta)
            if lay == "F":  # the dense forward: bias and relu in the epilogue
                w = np.ascontiguousarray(b.T)
                bias = rng.standard_normal(n).astype(dtype)
                threads(1)
                y1 = pybackprop.dense_forward(a, w, bias, activation="relu")
                threads(2)
                _gemm.steal_test(True)
                try:
                    y2 = pybackprop.dense_forward(a, w, bias, activation="relu")
                finally:
                    stolen += _gemm.steal_test(False)
                assert np.array_equal(y1, y2), (m, k, n)
        assert stolen > 0 or not group, "no unit of work was taken from thread 0's share"


def test_bad_arguments():
    """The wrapper rejects mismatched shapes, mixed dtypes and a strided C column; the path
    query rejects what the GEMM would."""
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError):
        _gemm.gemm(np.empty((3, 4), np.float32), a, b)
    with pytest.raises(TypeError):
        _gemm.gemm(np.empty((3, 5), np.float64), a, b)
    with pytest.raises(ValueError):
        _gemm.gemm(np.empty((3, 10), np.float32)[:, ::2], a, b)
    with pytest.raises(ValueError):
        _gemm.gemm(np.empty((3, 5), np.float32), a, b, beta=2)
    # pb_gemm_path: only problems with m, n >= 1 and beta 0 or 1 have a path
    assert _gemm.path(a, b) in _gemm.PATHS.values()
    with pytest.raises(ValueError):
        _gemm.path(np.ones((0, 4), np.float32), b)
    with pytest.raises(ValueError):
        _gemm.path(a, b, beta=2)


# Error bound of the fused float32 sigmoid/tanh/softplus epilogues in ulps of the result
# (documented in csrc/simd/vmath_f32.inc): exp <= 1 ulp, then 1 + e and one division; for sigmoid's
# e / (1 + e) branch the exp error passes through unscaled, giving <= 2.5 ulp -- the scalar
# libm path with the same formula reaches 2.25. The vector tanh measures 1.5 ulp, but the ref
# path calls glibc's tanhf, which reaches 2.1 by this measure, so both share the 2.5 bound.
# softplus: for z < 0 the result is log1p(e) ~ e, so e's error (<= 1 ulp) passes through,
# plus the final rounding: <= 2 ulp; measured 1.5 (vector, s = e / (2 + e) carried in two
# parts) and 1.45 (glibc's log1pf(expf)).
ACT_ULPS = {"sigmoid": 2.5, "tanh": 2.5, "softplus": 2.0}
ACT_EXACT = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
             "softplus": lambda z: np.logaddexp(z.dtype.type(0), z)}
ACT_SPECIAL = {"sigmoid": (1, 0), "tanh": (1, -1), "softplus": (np.inf, 0)}  # at inf, -inf


@pytest.mark.parametrize("act", sorted(ACT_ULPS))
def test_epilogue_activation_ulps(arch, act):
    """The fused sigmoid/tanh/softplus epilogue (vectorised on SIMD paths) stays within
    ACT_ULPS of the double-precision function over [-110, 110] (dense_forward with an
    identity weight feeds z through the GEMM unchanged), and the standalone activation gives
    the same bits; inf, -inf and NaN map as in the scalar path."""
    K = 64
    rng = np.random.default_rng(4)
    z = np.concatenate([np.linspace(-110, 110, 2 ** 18), rng.standard_normal(2 ** 18) * 3,
                        np.linspace(-1, 1, 2 ** 17), [0.0, 1e-30, -1e-30, 88, 89, -104, -105]])
    z = np.concatenate([z, np.zeros(-len(z) % K)]).astype(np.float32)
    y = pybackprop.dense_forward(z.reshape(-1, K), np.eye(K, dtype=np.float32),
                                 activation=act).ravel()
    exact = ACT_EXACT[act](z.astype(np.float64))
    ulp = np.abs(y - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulp.max() <= ACT_ULPS[act], f"{ulp.max():.2f} ulp at z = {z[np.argmax(ulp)]!r}"
    assert np.array_equal(pybackprop.activation(z, act), y)
    special = pybackprop.dense_forward(np.array([[np.inf], [-np.inf], [np.nan]], np.float32),
                                       np.ones((1, 1), np.float32), activation=act).ravel()
    assert (special[0], special[1]) == ACT_SPECIAL[act]
    assert np.isnan(special[2])


# The float64 epilogues (csrc/simd/vmath_f64.inc on AVX-512, glibc elsewhere): exp/expm1 from a
# Taylor polynomial whose truncation is far below an ulp, within ~1 ulp by rounding; then
# 1 + e (or 2 + em) and one division, 0.5 ulp each, with the exp error passing through
# unscaled in sigmoid's e / (1 + e) and tanh's em / (2 + em): <= 3 ulp. Measured: sigmoid 2.16
# (as glibc's exp through the same formula), tanh 2.50 (glibc's tanh: 2.09). softplus as in
# float32 (<= 2 ulp; measured 1.50, glibc 1.46). Exact values from long double (64-bit
# significand).
ACT_ULPS_F64 = {"sigmoid": 3.0, "tanh": 3.0, "softplus": 2.0}


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60,
                    reason="needs an extended long double for the exact values")
@pytest.mark.parametrize("act", sorted(ACT_ULPS_F64))
def test_epilogue_activation_ulps_float64(arch, act):
    """The float64 sigmoid/tanh/softplus epilogue stays within ACT_ULPS_F64 of the exact
    function over [-750, 750] and near 0 (where tanh must not cancel), and the standalone
    activation gives the same bits; inf, -inf, NaN as the scalar path."""
    K = 64
    rng = np.random.default_rng(5)
    z = np.concatenate([np.linspace(-750, 750, 2 ** 17), rng.standard_normal(2 ** 17) * 3,
                        np.linspace(-1, 1, 2 ** 16), np.geomspace(1e-300, 1, 2 ** 13),
                        -np.geomspace(1e-300, 1, 2 ** 13), [0.0, 709, 710, -745, -746, 19, 20]])
    z = np.concatenate([z, np.zeros(-len(z) % K)])
    y = pybackprop.dense_forward(z.reshape(-1, K), np.eye(K), activation=act).ravel()
    exact = ACT_EXACT[act](z.astype(np.longdouble))
    ulp = (np.abs(y.astype(np.longdouble) - exact)
           / np.spacing(np.abs(exact).astype(np.float64))).astype(np.float64)
    assert ulp.max() <= ACT_ULPS_F64[act], f"{ulp.max():.2f} ulp at z = {z[np.argmax(ulp)]!r}"
    assert np.array_equal(pybackprop.activation(z, act), y)
    special = pybackprop.dense_forward(np.array([[np.inf], [-np.inf], [np.nan]]),
                                       np.ones((1, 1)), activation=act).ravel()
    assert (special[0], special[1]) == ACT_SPECIAL[act]
    assert np.isnan(special[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_row_major_b(arch, dtype, threads):
    """m == 1 with a row-major B (the B = 1 backward's dx = dz w, the axpy form): n across
    several of AVX2's column strips (1024 float32 / 512 float64 columns) with a ragged last
    one, k below and not a multiple of the 4 rows it sweeps at a time, both betas, against
    the exact product (beta 0 on a NaN-filled C); 1 and 2 threads bitwise equal."""
    rng = np.random.default_rng(11)
    for k, n in ((1, 2500), (6, 1031), (37, 2049)):
        a = rng.standard_normal((1, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        assert _gemm.path(a, b) == "gemv"
        for beta in (0, 1):
            c0 = rng.standard_normal((1, n)).astype(dtype)
            res = []
            for nt in (1, 2):
                threads(nt)
                c = c0.copy() if beta else np.full((1, n), np.nan, dtype)
                _gemm.gemm(c, a, b, beta)
                check(c, c0, a, b, beta)
                res.append(c)
            assert np.array_equal(res[0], res[1]), f"thread counts differ at {(k, n, beta)}"


# C of 4.2 / 8.5 MB (plain stores) and of 34 / 68 MB (streaming stores, from 32 MiB:
# PB_OUTER_STREAM_BYTES in csrc/gemm/gemm_driver.inc), float32 / float64
OUTER_SHAPES = [(1031, 1029), (2053, 4099)]


@pytest.mark.parametrize("shape", OUTER_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_outer_product_path(arch, dtype, threads, shape):
    """k == 1 with a large C (the outer-product path, >= 2^20 elements; plain stores, or
    streaming ones for a C of 32 MiB or more) gives exactly the rounded products a[i] * b[j],
    like the micro-kernel, on unaligned rows of a window of a NaN-filled buffer, for 1 and 2
    threads; nothing outside the window is written."""
    rng = np.random.default_rng(5)
    m, n = shape
    a = rng.standard_normal((m, 1)).astype(dtype)
    b = rng.standard_normal((1, n)).astype(dtype)
    assert _gemm.path(a, b) == "outer"
    for nt in (1, 2):
        threads(nt)
        buf = np.full((m + 1, n + 3), np.nan, dtype)
        _gemm.gemm(buf[:m, 1:n + 1], a, b, 0)
        assert np.array_equal(buf[:m, 1:n + 1], np.multiply.outer(a[:, 0], b[0]))
        assert np.isnan(buf[m]).all() and np.isnan(buf[:, 0]).all()
        assert np.isnan(buf[:, n + 1:]).all()
    small = _gemm.gemm(np.empty((7, 9), dtype), a[:7], b[:, :9], 0)  # the packed path
    assert np.array_equal(small, np.multiply.outer(a[:7, 0], b[0, :9]))


def tt_shapes(blk, itemsize):
    """(m, k, n, B's layout) that the transposed-tile rule sends to that kernel (on any
    thread count): full and nearly full A^T panels (m within 15 % of a multiple of tw), every
    kind of last tile (tj - 1 columns, 1, 5, full), k from 1 across one and two KC
    boundaries (also with few columns, which two threads split by rows), n from 2 (past 16 with m > 64, where fewer columns take the dot-product
    kernel); column-major B ("F", the forward's w: m <= 32 with n >= 48 or k <= 32, m <= 64
    with k >= 64, or k >= 256) and row-major B ("C", dx = dz @ w: m <= 64, k rows of at most
    2 KiB), m at most the path's tm (AVX2: 64, float64 32). The padded rows (d1, d2, d3)
    stay within the rule's 15 % of A^T's panels whatever tw (AVX2 float64: 8)."""
    tw, tj, kc = blk["tw"] or 32, blk["tj"] or 12, blk["kc"]  # (the AVX-512 float32 sizes)
    tm = blk["tm"] or 256
    n0 = -(-192 // tj) * tj
    d1, d2, d3 = min(2, 3 * tw // 23), min(3, 6 * tw // 23), min(5, 3 * tm // 23)
    # past 32 rows, also the rule's k >= 64 (past 64 rows: k >= 256) with few columns
    m4 = min(4 * tw, tm)
    return [(tw, 1, n0, "F"), (tw - 1, 5, n0 + tj - 1, "F"), (tw - d1, 33, n0 + 1, "F"),
            (tw, 4, 16, "F"), (tw, 300, 48, "F"), (2 * tw, 64, max(4 * tj, 48) + 17, "F"),
            (2 * tw, kc + 1, n0 + 3 * tj + 5, "F"), (2 * tw - d2, 2 * kc + 3, n0 + tj, "F"),
            (tm - d3, 300, n0 + 7, "F"), (m4, 256, 2 * n0 + 11, "F"),
            (m4, 300, 17 if m4 > 32 else 48, "F"),
            (m4, max(2 * kc + 3, 259), 17 if m4 > 32 else 48, "F"),
            (tw, 1, 2, "C"), (tw - 1, 7, tj - 1, "C"), (tw - d1, 130, 2 * tj + 1, "C"),
            (2 * tw, 2048 // itemsize, 5 * tj + 5, "C"), (2 * tw - d2, 200, 100, "C")]


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_tile_path(arch, dtype, threads):
    """Products of a row-major A with a column-major B (the dense forward's x @ w.T) or a
    row-major B (the backward's dz @ w) that take the transposed-tile kernel on paths that
    have one, on 1 and 2 threads: the same bits as the packed path on a copy of B with no
    unit stride (the kernel's contract: the micro-kernel's products in its order, KC panel
    by KC panel), with beta 0 into NaN (C never read) and beta 1, within the error bound of
    the exact product; the fused dense forward with a bias and relu gives relu(that + b)
    bitwise. Paths without the kernel pack every layout (the same bits too)."""
    blk = _gemm.blocks(arch, dtype)
    rng = np.random.default_rng(6)
    for m, k, n, lay in tt_shapes(blk, np.dtype(dtype).itemsize):
        a = rng.standard_normal((m, k)).astype(dtype)
        w = rng.standard_normal((n, k)).astype(dtype)
        b = w.T
        if lay == "C":
            b = np.empty((k, n), dtype)  # (a fresh array: strides (n, 1) even for k == 1)
            b[...] = w.T
        bias = rng.standard_normal(n).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        b_packed = np.empty((2 * k, 2 * n), dtype)[::2, ::2]  # strides (4n, 2): packed
        b_packed[...] = w.T
        results = []
        for nt in (1, 2):
            threads(nt)
            assert _gemm.path(a, b) == ("tt" if blk["tw"] else "packed"), (m, k, n, lay, nt)
            assert _gemm.path(a, b_packed) == "packed"
            for beta in (0, 1):
                got = c0.copy() if beta else np.full((m, n), np.nan, dtype)
                _gemm.gemm(got, a, b, beta)
                packed = c0.copy() if beta else np.full((m, n), np.nan, dtype)
                _gemm.gemm(packed, a, b_packed, beta)
                assert np.array_equal(got, packed), (m, k, n, lay, nt, beta)
                check(got, c0, a, b, beta)
                results.append(got)
            # C one column off its cache lines (threads' slices are cut at lines of C)
            buf = np.full((m + 1, n + 3), np.nan, dtype)
            _gemm.gemm(buf[:m, 1:n + 1], a, b, 0)
            assert np.array_equal(buf[:m, 1:n + 1], results[-2]), (m, k, n, lay, nt)
            assert np.isnan(buf[m]).all() and np.isnan(buf[:, [0, n + 1, n + 2]]).all()
            if lay == "F":
                y = pybackprop.dense_forward(a, w, bias, activation="relu")
                assert np.array_equal(y, np.maximum(results[-2] + bias, 0)), (m, k, n, nt)
        assert np.array_equal(results[0], results[2]) and np.array_equal(results[1], results[3])


def tall_dot_shapes():
    """(m, k, n) that the tall rule (pb_use_dot_tall_: m > 64, n <= 16, 64 <= k <= 4096) sends
    to the dot-product kernel where there is one: m not a multiple of the kernel's 3 rows,
    several ~256 KiB row blocks per thread (k = 1000 and 4096), n = 1 to 16 (one or two
    groups of 8 columns, full and partial), and shapes the transposed-tile rule would take."""
    return [(65, 64, 16), (97, 100, 1), (128, 784, 10), (200, 1000, 9), (131, 4096, 8),
            (1000, 64, 15), (257, 300, 16)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_dot_path(arch, dtype, threads):
    """Tall products with few columns in the dense forward's layout take the dot-product
    kernel on blocks of rows of A read in place (paths without the kernel pack): on 1 and 2
    threads and with A and B 0, 16 or one element past a cache line (B's rows are copied
    aligned once per thread), the same bits everywhere, and the
    first 30 rows the same bits as the small-batch path computes them alone (which reads
    aligned copies of misaligned rows); beta 0 into NaN (nothing outside C written) and beta
    1 within the error bound; the fused forward with a bias and relu is relu(that + b)."""
    rng = np.random.default_rng(7)
    has_dot = _gemm.path(np.ones((8, 256), dtype), np.ones((8, 256), dtype).T) == "dot"
    # A configuration may run these products on another ISA's kernels (the zen4
    # configuration's float32 on AVX2's, which has no dot kernel and packs past its tm rows)
    kernels = pybackprop.cpu_info()["kernels"]
    gemm_isa = kernels[f"{np.dtype(dtype).name} gemm"]
    elsewhere = kernels[f"{np.dtype(dtype).name} tall"] != gemm_isa
    want = "dot" if has_dot and not elsewhere else "packed"
    for m, k, n in tall_dot_shapes():
        a = rng.standard_normal((m, k)).astype(dtype)
        w = rng.standard_normal((n, k)).astype(dtype)
        b, bias = w.T, rng.standard_normal(n).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        assert _gemm.path(a[:30], b) == ("dot" if has_dot else "packed")
        head = _gemm.gemm(np.full((30, n), np.nan, dtype), at_offset(a[:30], 16), b, 0)
        results = {0: [], 1: []}
        for nt in (1, 2):
            threads(nt)
            assert _gemm.path(a, b) == want, (m, k, n, nt)
            for offset in (0, 16, np.dtype(dtype).itemsize):
                for beta in (0, 1):
                    buf = np.full((m + 1, n + 2), np.nan, dtype)
                    if beta:
                        buf[:m, 1:n + 1] = c0
                    _gemm.gemm(buf[:m, 1:n + 1], at_offset(a, offset), at_offset(w, offset).T,
                               beta)
                    assert np.isnan(buf[m]).all() and np.isnan(buf[:, [0, n + 1]]).all()
                    check(buf[:m, 1:n + 1], c0, a, b, beta)
                    results[beta].append(buf[:m, 1:n + 1].copy())
        for beta in (0, 1):
            for got in results[beta][1:]:
                assert np.array_equal(got, results[beta][0]), (m, k, n, beta)
        if not elsewhere:  # (30 rows are not tall: the configuration's own kernels)
            assert np.array_equal(results[0][0][:30], head), (m, k, n)
        y = pybackprop.dense_forward(a, w, bias, activation="relu")
        assert np.array_equal(y, np.maximum(results[0][0] + bias, 0)), (m, k, n)


def small_k_shapes(small_k):
    """(m, k, n) with k <= small_k, as a backward's products have them: dx = dz @ w with few
    outputs (k = N) and dw = dz^T x on a small batch (k = B); one and several row tiles and
    NR column panels, k = 1, 16, 64 and small_k itself."""
    return [(200, 1, 300), (300, 16, 520), (129, 64, 257), (257, small_k, 200)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_k_products(arch, dtype, threads):
    """A configuration that runs its shallow products on another ISA's kernels (cpu_info's
    "<dtype> small k" family) runs every product its own table would pack with k <=
    blocks()["small_k"] on them, A row-major or transposed (dw's layout), and deeper ones on
    its own: the family and path pb_gemm_path reports, and results within the error bound,
    the same bits on 1 and 2 threads. Without such a rule every product names the GEMM's
    own family."""
    name = np.dtype(dtype).name
    small_k = _gemm.blocks(None, dtype)["small_k"]
    kernels = pybackprop.cpu_info()["kernels"]
    own = f"{name} gemm"
    if small_k == 0:
        assert kernels[f"{name} small k"] == kernels[own]
    rng = np.random.default_rng(11)
    for m, k, n in small_k_shapes(max(small_k, 16)):
        for deeper in (0, 1):
            kk = k + deeper * max(small_k, 16)
            b = rng.standard_normal((kk, n)).astype(dtype)
            for a in (rng.standard_normal((m, kk)).astype(dtype),
                      rng.standard_normal((kk, m)).astype(dtype).T):
                p, fam = _gemm.path(a, b, family=True)
                if p != "packed" or small_k == 0 or kk > small_k:
                    assert fam == own, (m, kk, n, p, fam)
                else:
                    assert fam == f"{name} small k", (m, kk, n)
                got = {}
                for nt in (1, 2):
                    threads(nt)
                    assert _gemm.path(a, b) == p
                    got[nt] = _gemm.gemm(np.full((m, n), np.nan, dtype), a, b)
                    check(got[nt], np.zeros((m, n), dtype), a, b, 0)
                assert np.array_equal(got[1], got[2]), (m, kk, n)


def inplace_a_shapes(blk):
    """(m, k, n) of the packed path with one or two micro-panels of B per thread, where a
    row-major A is read in place (ukr_a, on paths that have it): every kind of last row tile
    (m = MR - 1, MR + 1), several MC blocks with a short last one, k from 1 across one and
    two KC panels, n of 1, NR - 1, NR, NR + 1 and 2 NR columns (one, or two, micro-panels,
    full or zero-padded). k = 40 with few columns keeps (MR + 1) rows off the
    transposed-tile rule (m <= 32 takes k <= 32 or n >= 48), and more than tm rows keep the
    two-KC-panel shape off it. On AVX-512, which has no ukr_a, the dot-product kernel takes
    some of these (m <= 32, or n <= 16)."""
    mr, nr, mc, kc, tm = blk["mr"], blk["nr"], blk["mc"], blk["kc"], blk["tm"]
    return [(mr - 1, 1, 1), (mr + 1, 40, nr - 1), (2 * mc + mr + 1, kc + 3, nr),
            (max(mc, tm) + 5, 2 * kc + 1, nr + 1), (3 * mr + 2, 64, 2 * nr),
            (65, kc - 1, 2 * nr - 3)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_inplace_a_path(arch, dtype, threads):
    """Products whose threads each hold one or two micro-panels of B, with A row-major (read
    in place where the path has ukr_a) or column-major and strided (always packed): the same
    bits on 1 and 2 threads, with A contiguous and as a slice of wider rows (lda > k), beta
    0 into NaN (nothing outside C written, C never read) and beta 1 within the error bound;
    the fused dense forward with a bias and relu gives relu(that + b) bitwise."""
    blk = _gemm.blocks(arch, dtype)
    rng = np.random.default_rng(8)
    packed_shapes = 0
    for m, k, n in inplace_a_shapes(blk):
        wide = rng.standard_normal((m, k + 5)).astype(dtype)
        a = np.ascontiguousarray(wide[:, :k])
        a_packed = np.empty((2 * m, 2 * k), dtype)[::2, ::2]  # strides (4k, 2): packed
        a_packed[...] = a
        w = rng.standard_normal((n, k)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        taken = _gemm.path(a, w.T)
        if taken != "packed":  # the dot-product or transposed-tile kernel: their own tests
            assert blk["dot_m"] if taken == "dot" else (taken == "tt" and blk["tw"]), \
                (m, k, n, taken)
            continue
        packed_shapes += 1
        for nt in (1, 2):
            threads(nt)
            assert _gemm.path(a, w.T) == "packed", (m, k, n, nt)
            for beta in (0, 1):
                packed = _gemm.gemm(c0.copy() if beta else np.full((m, n), np.nan, dtype),
                                    a_packed, w.T, beta)
                check(packed, c0, a, w.T, beta)
                for src in (a, wide[:, :k]):
                    buf = np.full((m + 1, n + 2), np.nan, dtype)
                    if beta:
                        buf[:m, 1:n + 1] = c0
                    _gemm.gemm(buf[:m, 1:n + 1], src, w.T, beta)
                    assert np.array_equal(buf[:m, 1:n + 1], packed), (m, k, n, nt, beta)
                    assert np.isnan(buf[m]).all() and np.isnan(buf[:, [0, n + 1]]).all()
            if nt == 1:
                first = packed
            y = pybackprop.dense_forward(a, w, bias, activation="relu")
            assert np.array_equal(y, np.maximum(_gemm.gemm(np.empty((m, n), dtype), a_packed,
                                                           w.T, 0) + bias, 0)), (m, k, n, nt)
        assert np.array_equal(packed, first), (m, k, n)
    # the last three pack in every configuration (n > 16, off the dot-product kernel's rules)
    assert packed_shapes >= 3, packed_shapes


def atb_shapes(blk):
    """(m, k, n) that the A^T B rule (pb_use_atb_: m <= 64, or n <= 16 with m <= 256) sends
    to that kernel where there is one: row groups of 2 to 8 rows (m = 2, 3, 5, 8, 9, 16, 17,
    24, 33, 64, 100: balanced groups of at most 8 on AVX-512, 4 on AVX2), every kind of last
    column group (n = 1, 15, 16, 17, 47, 48, 49, 130, 300: full tiles of 3 vectors and 1, 2 or
    3 masked ones), k from 1 across the 32-row blocks (31, 32, 33, 300) and one and two KC
    panels (the partial sums carried between blocks, C added once per panel); rows of B
    4 KiB and 8 KiB apart (n = 1024: the blocks of B that AVX2 copies to a padded stride
    first, pb_atb_ldq_, whole and as each thread's half)."""
    kc = blk["kc"]
    return [(2, 1, 100), (5, 31, 17), (8, 32, 48), (9, 33, 49), (16, 300, 47), (17, 65, 1),
            (24, kc + 1, 130), (33, 2 * kc + 33, 64), (64, 100, 300), (100, 70, 16),
            (3, 40, 15), (16, 300, 300), (16, 70, 1024), (9, kc + 1, 1024)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_atb_path(arch, dtype, threads):
    """Products of a transposed row-major A (A^T stored row-major: the backward's dw = dz^T x)
    with a row-major B and few rows of C take the A^T B kernel on paths that have one, on 1
    and 2 threads: the same bits as the packed path on a copy of B with no unit stride (the
    kernel's contract: the micro-kernel's FMA chains KC panel by KC panel), with beta 0 into
    NaN (C never read, nothing outside it written) and beta 1, within the error bound of the
    exact product, also with C one column off its cache lines (the threads' slices are cut
    at lines of C). The reference path packs every layout (the same bits too)."""
    blk = _gemm.blocks(arch, dtype)
    rng = np.random.default_rng(8)
    for m, k, n in atb_shapes(blk):
        a = rng.standard_normal((k, m)).astype(dtype).T  # strides (1, m): A^T row-major
        b = rng.standard_normal((k, n)).astype(dtype)
        b_packed = np.empty((2 * k, 2 * n), dtype)[::2, ::2]  # no unit stride: packed
        b_packed[...] = b
        c0 = rng.standard_normal((m, n)).astype(dtype)
        results = []
        for nt in (1, 2):
            threads(nt)
            assert _gemm.path(a, b) == ("atb" if blk["atb_m"] else "packed"), (m, k, n, nt)
            assert _gemm.path(a, b_packed) == "packed"
            for beta in (0, 1):
                buf = np.full((m + 1, n + 2), np.nan, dtype)
                if beta:
                    buf[:m, 1:n + 1] = c0
                _gemm.gemm(buf[:m, 1:n + 1], a, b, beta)
                assert np.isnan(buf[m]).all() and np.isnan(buf[:, [0, n + 1]]).all()
                got = buf[:m, 1:n + 1]
                packed = c0.copy() if beta else np.full((m, n), np.nan, dtype)
                _gemm.gemm(packed, a, b_packed, beta)
                assert np.array_equal(got, packed), (m, k, n, nt, beta)
                check(got, c0, a, b, beta)
                results.append(got.copy())
        assert np.array_equal(results[0], results[2]) and np.array_equal(results[1], results[3])
