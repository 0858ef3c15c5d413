"""What the GEMM tests share: the dtypes, the error bound and its check against the exact
product, the operand layouts, and the shapes the transposed-tile rule takes."""
import numpy as np

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


def tt_shapes(blk, itemsize):
    """(m, k, n, B's layout) that the transposed-tile rule sends to that kernel (on any
    thread count): full and nearly full A^T panels (m within 15 % of a multiple of tw), every
    kind of last tile (tj - 1 columns, 1, 5, full), k from 1 across one and two KC
    boundaries (also with few columns, which two threads split by rows), n from 2 (past 16
    with m > 64, where fewer columns take the dot-product kernel); column-major B ("F", the
    forward's w: m <= 32 with n >= 48 or k <= 32, m <= 64 with k >= 64, or k >= 256) and
    row-major B ("C", dx = dz @ w: m <= 64, k rows of at most 2 KiB), m at most the path's
    tm (AVX2: 64, float64 32). The padded rows (d1, d2, d3) stay within the rule's 15 % of
    A^T's panels whatever tw (AVX2 float64: 8)."""
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
