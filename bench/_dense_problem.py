"""_dense_problem.py -- one (dtype, shape, activation) of bench dense: its inputs, reference
results, the calls of pybackprop, numpy and PyTorch on them, and their verification; shared
by bench_dense.py's main table and the tables of _dense_tables.py and _dense_gelu.py."""
import math

import numpy as np

try:
    from pybackprop._bench import _common
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common

import pybackprop
from pybackprop import reference

PREACT = pybackprop.PREACT_ACTIVATIONS  # backward from the pre-activation z, not from y


def _shape_text(shape):
    return "x".join(str(d) for d in shape)


def flops(op, shape, need_dx=True):
    """Floating-point operations of one call: 2BKN forward, 4BKN backward (2BKN per GEMM:
    dw always, dx when needed). Activation, bias and db work is not counted."""
    B, K, N = shape
    if op == "forward":
        return 2.0 * B * K * N
    return (4.0 if need_dx else 2.0) * B * K * N


class Problem:
    """Inputs, reference results and output buffers of one (dtype, shape, activation).

    Data are scaled so that every pre-activation is O(1): x, dy ~ N(0, 1), w ~ N(0, 1/K),
    b ~ N(0, 0.1^2) (sigmoid/tanh neither saturate nor stay linear). For gelu, gelu_tanh and
    silu the backward takes the pre-activation ``z`` (``preact=``) instead of ``y``.
    """

    def __init__(self, dtype, shape, act, slope, seed=0, buffers=False):
        B, K, N = shape
        rng = np.random.default_rng(seed)
        self.dtype, self.shape, self.act, self.slope = np.dtype(dtype), shape, act, slope
        self.buffers = buffers
        self.x = rng.standard_normal((B, K)).astype(dtype)
        self.w = (rng.standard_normal((N, K)) / math.sqrt(K)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(N)).astype(dtype)
        self.dy = rng.standard_normal((B, N)).astype(dtype)
        self.y = reference.dense_forward(self.x, self.w, self.b, activation=act,
                                         negative_slope=slope)
        self.z = reference.preactivation(self.x, self.w, self.b) if act in PREACT else None
        self._grads = None  # the reference gradients, computed when first needed
        self.y_out = np.empty_like(self.y)
        self.z_out = np.empty_like(self.y)  # forward(preact=True)'s preact= buffer
        self.dx_out = np.empty_like(self.x)
        self.dw_out = np.empty_like(self.w)
        self.db_out = np.empty_like(self.b)

    def saved(self):
        """dense_backward's (y, keywords): y, or None and preact=z for gelu/gelu_tanh/silu."""
        kw = dict(activation=self.act, negative_slope=self.slope)
        if self.act in PREACT:
            return None, dict(kw, preact=self.z)
        return self.y, kw

    # -- the three implementations of each op, as zero-argument callables -----------------
    def ours(self, op, preact=False):
        """Ours; ``preact``: the forward also stores z into the ``z_out`` buffer."""
        x, w, b, act, slope = self.x, self.w, self.b, self.act, self.slope
        fwd, bwd = pybackprop.dense_forward, pybackprop.dense_backward
        dy, (y, kw) = self.dy, self.saved()
        if op == "forward":
            y_out, z_out = self.y_out if self.buffers else None, self.z_out
            if preact:
                return lambda: fwd(x, w, b, activation=act, negative_slope=slope, out=y_out,
                                   preact=z_out)
            if y_out is None:
                return lambda: fwd(x, w, b, activation=act, negative_slope=slope)
            return lambda: fwd(x, w, b, activation=act, negative_slope=slope, out=y_out)
        if not self.buffers:
            return lambda: bwd(dy, x, w, y, **kw)
        dx, dw, db = self.dx_out, self.dw_out, self.db_out
        return lambda: bwd(dy, x, w, y, dx=dx, dw=dw, db=db, **kw)

    def numpy(self, op):
        x, w, b, kw = self.x, self.w, self.b, dict(activation=self.act,
                                                   negative_slope=self.slope)
        if op == "forward":
            return lambda: reference.dense_forward(x, w, b, **kw)
        dy, (y, kw) = self.dy, self.saved()
        return lambda: reference.dense_backward(dy, x, w, y, **kw)

    def torch_act(self, torch):
        """The activation as a PyTorch user applies it."""
        F, slope = torch.nn.functional, self.slope
        return {
            "identity": lambda z: z,
            "relu": torch.relu,
            "leaky_relu": lambda z: F.leaky_relu(z, slope),
            "sigmoid": torch.sigmoid,
            "tanh": torch.tanh,
            "softplus": F.softplus,
            "gelu": F.gelu,
            "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
            "silu": F.silu,
        }[self.act]

    def torch(self, op, torch):
        F, act = torch.nn.functional, self.torch_act(torch)
        x, w, b = (torch.from_numpy(a) for a in (self.x, self.w, self.b))
        if op == "forward":
            def fwd():
                with torch.no_grad():
                    return act(F.linear(x, w, b))
            return fwd
        x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
        y = act(F.linear(x, w, b))
        dy = torch.from_numpy(self.dy)
        grad = torch.autograd.grad
        return lambda: grad(y, (x, w, b), dy, retain_graph=True)

    # -- verification ----------------------------------------------------------------------
    def verify(self, op, fn, who, preact=False):
        """Run ``fn`` once and compare with the reference; raise AssertionError if off.
        ``preact``: the forward's ``z_out`` buffer is checked too."""
        if who == "ours":  # outputs prefilled with NaN: every element must be written
            for a in (self.y_out, self.z_out, self.dx_out, self.dw_out, self.db_out):
                a.fill(np.nan)
        res = fn()
        self.check(op, res, who)
        if preact:
            self.check("preact", self.z_out, who)

    def check(self, op, res, who):
        """Compare ``res`` (forward: y; "preact": z; backward: (dx, dw, db)) with the
        reference; raise AssertionError if off."""
        B, K, N = self.shape
        name = f"{who} {op} {self.act} {self.dtype.name} {_shape_text(self.shape)}"
        if op in ("forward", "preact"):
            want = self.y if op == "forward" else self.z if self.z is not None else \
                reference.preactivation(self.x, self.w, self.b)
            _common.check_close(name + (" y" if op == "forward" else " z"), _as_numpy(res),
                                want, self.dtype, K)
            return
        if self._grads is None:
            y, kw = self.saved()
            self._grads = reference.dense_backward(self.dy, self.x, self.w, y, **kw)
        for part, got, want, n in zip(("dx", "dw", "db"), res, self._grads, (N, B, B)):
            _common.check_close(f"{name} {part}", _as_numpy(got), want, self.dtype, n)


def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
