"""Tests of the C core's GEMM kernels behind its dispatch rules (pybackprop._gemm): the
row-major-B GEMV, the outer product, the transposed-tile, tall dot-product, shallow (small
k), in-place A and A^T B paths, each on the shapes its rule takes, against the exact product
and bitwise against the packed path or across thread counts. The ``arch`` and ``threads``
fixtures come from conftest.py."""
import numpy as np
import pytest

import pybackprop
from pybackprop import _gemm

from _gemm_cases import DTYPES, check, tt_shapes
from _helpers import at_offset


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


def same_bits_on_1_and_2_threads(a, b, path, threads):
    """a @ b takes `path` on 1 and 2 threads, within the error bound, with the same bits."""
    m, n = a.shape[0], b.shape[1]
    got = {}
    for nt in (1, 2):
        threads(nt)
        assert _gemm.path(a, b) == path
        got[nt] = _gemm.gemm(np.full((m, n), np.nan, a.dtype), a, b)
        check(got[nt], np.zeros((m, n), a.dtype), a, b, 0)
    assert np.array_equal(got[1], got[2]), (m, a.shape[1], n)


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
    its own (or its row-major-B family's, B being row-major here): the family and path
    pb_gemm_path reports, and results within the error bound, the same bits on 1 and 2
    threads. Without such a rule every product names the GEMM's own family."""
    name = np.dtype(dtype).name
    small_k = _gemm.blocks(None, dtype)["small_k"]
    kernels = pybackprop.cpu_info()["kernels"]
    own = f"{name} gemm"
    if small_k == 0:
        assert kernels[f"{name} small k"] == kernels[own]
    rowb_rule = kernels[f"{name} row-major B"] != kernels[own]  # test_row_major_b_products
    rng = np.random.default_rng(11)
    for m, k, n in small_k_shapes(max(small_k, 16)):
        for deeper in (0, 1):
            kk = k + deeper * max(small_k, 16)
            b = rng.standard_normal((kk, n)).astype(dtype)
            for a in (rng.standard_normal((m, kk)).astype(dtype),
                      rng.standard_normal((kk, m)).astype(dtype).T):
                p, fam = _gemm.path(a, b, family=True)
                if p == "packed" and small_k and kk <= small_k:
                    assert fam == f"{name} small k", (m, kk, n)
                elif p == "packed" and rowb_rule:  # B is row-major here
                    assert fam == f"{name} row-major B", (m, kk, n)
                else:
                    assert fam == own, (m, kk, n, p, fam)
                same_bits_on_1_and_2_threads(a, b, p, threads)


def row_major_b_shapes(small_k):
    """(m, k, n) deeper than small_k, as a backward's products have them: dx = dz @ w (A and
    B row-major) and dw = dz^T x (A transposed); one and several row tiles and NR column
    panels, one and two KC panels."""
    d = max(small_k, 16)
    return [(300, d + 1, 520), (129, d + 64, 257), (257, 2 * d + 600, 200), (97, d + 3, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_major_b_products(arch, dtype, threads):
    """A configuration that runs the products it would pack with a row-major B on another
    ISA's kernels (cpu_info's "<dtype> row-major B" family) runs every such product that is
    not shallow (small k) on them, and never those with a column-major B (the forward's
    w^T): the family and path pb_gemm_path reports, and results within the error bound, the
    same bits on 1 and 2 threads. Without such a rule no product names that family."""
    name = np.dtype(dtype).name
    small_k = _gemm.blocks(None, dtype)["small_k"]
    kernels = pybackprop.cpu_info()["kernels"]
    rowb = f"{name} row-major B"
    has_rule = kernels[rowb] != kernels[f"{name} gemm"]  # a rule names another ISA's kernels
    rng = np.random.default_rng(12)
    for m, k, n in row_major_b_shapes(small_k):
        b_row = rng.standard_normal((k, n)).astype(dtype)
        b_col = np.asfortranarray(b_row)
        for a in (rng.standard_normal((m, k)).astype(dtype),
                  rng.standard_normal((k, m)).astype(dtype).T):
            for b in (b_row, b_col):
                p, fam = _gemm.path(a, b, family=True)
                if p == "packed" and b is b_row and has_rule:
                    assert fam == rowb, (m, k, n, fam)
                else:  # its own family (or another rule's, as the tall one's)
                    assert fam != rowb, (m, k, n, p, fam)
                same_bits_on_1_and_2_threads(a, b, p, threads)


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


def atb_shapes(blk, dtype):
    """(m, k, n) that the A^T B rule (pb_use_atb_: m <= 64, or n <= 16 with m <= 256) sends
    to that kernel where there is one: row groups of 2 to 8 rows (m = 2, 3, 5, 8, 9, 16, 17,
    24, 33, 64, 100: balanced groups of at most 8 on AVX-512, 4 on AVX2), every kind of last
    column group (n = 1, 15, 16, 17, 47, 48, 49, 130, 300: full tiles of 3 vectors and 1, 2 or
    3 masked ones), k from 1 across the 32-row blocks (31, 32, 33, 300) and one and two KC
    panels (the partial sums carried between blocks, C added once per panel); rows of B
    4 KiB and 8 KiB apart (n = 1024: the blocks of B that a configuration may copy to a
    padded stride first, pb_atb_ldq_, whole and as each thread's half), also with B as
    large as the configuration's least copied size (``atb_copy_min``)."""
    kc = blk["kc"]
    k_copied = -(-blk["atb_copy_min"] // (1024 * np.dtype(dtype).itemsize))
    return [(2, 1, 100), (5, 31, 17), (8, 32, 48), (9, 33, 49), (16, 300, 47), (17, 65, 1),
            (24, kc + 1, 130), (33, 2 * kc + 33, 64), (64, 100, 300), (100, 70, 16),
            (3, 40, 15), (16, 300, 300), (16, 70, 1024), (9, kc + 1, 1024),
            (3, max(k_copied, 1), 1024)]


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
    for m, k, n in atb_shapes(blk, dtype):
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
