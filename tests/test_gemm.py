"""Tests of the C core's GEMM (pb_gemm_f32/f64 through the private pybackprop._gemm) on every
dispatch path: all register-tile edge cases, every cache-block boundary, beta 0 (C never
read) and 1, strided and transposed operands, bitwise equality across thread counts and
under work stealing, argument checks, and the fused sigmoid/tanh/softplus epilogues' error
in ulps. The ``arch`` and ``threads`` fixtures come from conftest.py."""
import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm

from _gemm_cases import DTYPES, check, exact, layout, tol, tt_shapes


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
    shapes = (block_sizes(arch, dtype)[:4] + block_sizes(arch, dtype)[-1:]
              + [(1, 300, 200), (7, 5, 3), (2 * blk["mr"], 64, 1)])
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
