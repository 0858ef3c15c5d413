"""Cases shared by the thread, memory and runtime tests: every kernel on seeded data, and the
check that subnormals survive the kernels' threads."""
import numpy as np

import pybackprop
from pybackprop import optim
from pybackprop._core import lib


def kernel_set(seed, dtype):
    """Every kernel on data drawn from ``seed``: returns a list of result arrays."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, w, b = r(37, 29), r(23, 29), r(23)
    out = []
    y = pybackprop.dense_forward(x, w, b, activation="tanh")
    out.append(y)
    out += [a for a in pybackprop.dense_backward(r(37, 23), x, w, y, activation="tanh")]
    out.append(pybackprop.activation(r(1000), "softplus"))
    out.append(pybackprop.activation_backward(r(1000), r(1000), "sigmoid"))
    for fn, args in ((pybackprop.mse_loss, (r(500), r(500))),
                     (pybackprop.binary_cross_entropy_with_logits, (r(500), r(500))),
                     (pybackprop.softmax_cross_entropy, (r(40, 11), rng.integers(0, 11, 40)))):
        loss, g = fn(*args)
        out += [np.array(loss), g]
    out.append(pybackprop.maximum_forward(x, x.T.copy().T[::-1]))
    out += list(pybackprop.maximum_backward(x, x, x[::-1]))
    u, v = r(23), r(29)
    out += [np.array(pybackprop.power_iteration(w, u, v, n_iters=3)), u, v]
    out.append(pybackprop.spectral_normalize(w, 2.5))
    out.append(pybackprop.spectral_norm_backward(r(23, 29), w, u, v, 2.5))
    out.append(np.array(pybackprop.sigma_upper_bound(w)))
    p, g, m, s = r(301), r(301), np.zeros(301, dtype), np.zeros(301, dtype)
    optim.adam_step(p, g, m, s, step=1)
    optim.adamax_step(p, g, m, s, step=2)
    out += [p, m, s]
    return out


def assert_subnormals_survive(dt):
    """Neither this thread nor an OpenMP team of the current thread count holds FTZ or DAZ
    between kernels (read from MXCSR by pb_probe_ftz_daz, in a region that leaves them as
    they are: the kernels' own regions clear them with the flush mode off), and subnormal
    arithmetic is exact in this thread (numpy) and in a kernel run with the current thread
    count: a GEMM by 1 (2 x 4096 x 64 flops, split across threads) and an elementwise
    product (65536 elements, split too)."""
    assert lib.pb_probe_ftz_daz() == 0, "FTZ/DAZ left set in MXCSR"
    tiny = np.finfo(dt).smallest_subnormal
    sub = np.full(4096, tiny * 3, dt)
    assert (sub * dt(1) == sub).all() and sub[0] != 0     # this thread
    y = pybackprop.dense_forward(sub.reshape(-1, 1), np.ones((64, 1), dt),
                                 activation="identity")
    np.testing.assert_array_equal(y, np.repeat(sub.reshape(-1, 1), 64, axis=1))
    quarter = pybackprop.activation_backward(np.full(65536, tiny * 4, dt),
                                             np.full(65536, 0.5, dt), "sigmoid")
    np.testing.assert_array_equal(quarter, np.full(65536, tiny, dt))  # 4 tiny * 0.25
