"""Large sizes: kernels whose element counts exceed 2^31 (64-bit index arithmetic).

dense_forward with x (2^20 + 1, 1) and w (2048, 1) in float32 writes a (2^20 + 1, 2048)
output: 2^31 + 2048 elements, 8.6 GB; every value is a product of two small integers (exact
in float32), so the closed form x[i] * w[j] + b[j] is checked exactly at sampled rows,
including the rows past element 2^31. The same buffer then serves, in place and without a
second copy, an activation (relu, out=y), spectral_normalize (out=y) and a power iteration
over it (sigma of the rank-one y = x w^T is ||x|| ||w||). Peak memory is the one 8.6 GB
buffer; it is freed at the end of the test.

Not run at this size (each would need 3-4 buffers of 8.6 GB, over this 24 GiB machine):
adam_step, the losses and maximum; their index arithmetic is the same ptrdiff_t code, and
SECURITY.md says so.
"""
import gc

import numpy as np

import pybackprop

ROWS = 2**20 + 1
COLS = 2048


def _sampled_rows():
    first_past = 2**31 // COLS   # the first row whose elements lie past 2^31
    return sorted({0, 1, 12345, first_past - 1, first_past, ROWS - 2, ROWS - 1})


def test_dense_forward_over_2_31_elements():
    """dense_forward, activation, spectral_normalize and power_iteration on 2^31 + 2048
    float32 elements equal their closed forms at sampled rows (incl. the last)."""
    i = np.arange(ROWS, dtype=np.int64)
    x = ((i % 7) - 3).astype(np.float32).reshape(ROWS, 1)      # -3..3
    w = ((np.arange(COLS) % 5) - 2).astype(np.float32).reshape(COLS, 1)  # -2..2
    b = (np.arange(COLS) % 3).astype(np.float32)                 # 0..2
    y = pybackprop.dense_forward(x, w, b, activation="identity")
    try:
        assert y.shape == (ROWS, COLS) and y.size > 2**31
        rows = _sampled_rows()
        expect = x[rows] * w[:, 0] + b                             # exact small integers
        np.testing.assert_array_equal(y[rows], expect)

        pybackprop.activation(y, "relu", out=y)                    # in place, > 2^31
        np.testing.assert_array_equal(y[rows], np.maximum(expect, 0))

        pybackprop.spectral_normalize(y, 2.0, out=y)               # in place, exact halves
        np.testing.assert_array_equal(y[rows], np.maximum(expect, 0) / 2)

        # back to the rank-one x w^T (no bias): its only singular value is ||x|| ||w||
        pybackprop.dense_forward(x, w, activation="identity", out=y)
        u = np.ones(ROWS, np.float32) / np.float32(np.sqrt(ROWS))
        v = np.ones(COLS, np.float32) / np.float32(np.sqrt(COLS))
        sigma = float(pybackprop.power_iteration(y, u, v, n_iters=2))
        exact = float(np.linalg.norm(x.astype(np.float64)) * np.linalg.norm(
            w.astype(np.float64)))
        # float32 sums of 2^31 terms in blocks: relative error ~ 1e-4 at most here
        assert abs(sigma - exact) <= 1e-3 * exact, (sigma, exact)
        np.testing.assert_allclose(np.abs(v), np.abs(w[:, 0]) / np.linalg.norm(w), atol=1e-4)
    finally:
        del y
        gc.collect()
