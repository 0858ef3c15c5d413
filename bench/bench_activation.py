"""bench_activation.py -- the elementwise activations, forward and backward, against numpy
and PyTorch.

    python -m pybackprop bench activation [--quick] [--dtype ...] [--threads ...] [--no-torch]

Kernels and what one call does (kind: relu, leaky_relu (slope 0.01), sigmoid, tanh, softplus,
gelu (erf form), gelu_tanh, silu; n = 2^16, 2^20, 2^24 elements):
  <kind> fwd  activation(z, kind)                       -> y = act(z)          (n,)
  <kind> bwd  activation_backward(dy, y, kind)          -> dz = dy * act'(z)   (n,), from the
              output y; for gelu, gelu_tanh and silu (PREACT_ACTIVATIONS), whose derivative
              y does not determine, activation_backward(dy, None, kind, preact=z), from z
Each case is first VERIFIED against ``pybackprop.reference`` (PyTorch's results too, when
compared, and the numpy column where it is not the reference itself), then timed, every
library allocating its result (at 2^24 elements the page faults of a fresh 64 or 128 MiB
result are part of every figure): ours as called without ``out=``; numpy: the numpy
reference as written for relu ... softplus, and for gelu, gelu_tanh and silu a vectorized
numpy expression in the input's dtype (the reference evaluates those in long double, gelu's
erf per element through ``math.erfc``, at ~2 us per element: not what a numpy user runs):
silu ``z / (1 + exp(-z))``, gelu_tanh PyTorch's tanh formula, gelu ``z erfc(-z/sqrt 2) / 2``
with erfc from Cephes' rational approximations (double accuracy; numpy has no erf), their
backward likewise (PyTorch's formulas); the reference checks these kinds on an evenly
strided sample of VERIFY_SAMPLE elements. PyTorch forward as a user writes it
(``torch.relu`` / ``F.leaky_relu`` / ``torch.sigmoid`` / ``torch.tanh`` / ``F.softplus`` /
``F.gelu`` / ``F.gelu(approximate="tanh")`` / ``F.silu`` on ``torch.from_numpy`` tensors), and
PyTorch backward as the ``torch.ops.aten`` op its autograd calls, given the tensor autograd
saves: ``threshold_backward(dy, y, 0)`` / ``leaky_relu_backward(dy, z, 0.01, False)`` /
``sigmoid_backward(dy, y)`` / ``tanh_backward(dy, y)`` / ``softplus_backward(dy, z, 1, 20)`` /
``gelu_backward(dy, z, approximate="none" | "tanh")`` / ``silu_backward(dy, z)``
-- the backward kernel alone, without graph or autograd overhead, as ours is timed.
Ratios are their time / our time (> 1: pybackprop faster).

Also shown: effective GB/s (bytes the call must move: inputs read once, output written
once; fwd 2n elements, bwd 3n) and that as a fraction of this machine's copy bandwidth
measured at start-up (DRAM, 256 MiB arrays; cache-resident rows can exceed 100%), and ns
per element: sigmoid, tanh, softplus, gelu, gelu_tanh and silu are bound by
exp/log1p/erf arithmetic, not memory.

It exits non-zero only when a result is wrong or a call fails, never on a slow result.
"""
import argparse
import sys

import numpy as np

try:
    from pybackprop._bench import _common
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common

import pybackprop
from pybackprop import reference

SIZES = [2**16, 2**20, 2**24]
QUICK_SIZES = [2**16, 2**20]
KINDS = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "gelu_tanh", "silu")
QUICK_KINDS = ("relu", "leaky_relu", "sigmoid", "gelu")
SLOPE = 0.01  # negative_slope of leaky_relu, the default of pybackprop and PyTorch
PREACT = pybackprop.PREACT_ACTIVATIONS  # backward from z: gelu, gelu_tanh, silu
# Elements of the PREACT kinds checked against the reference (evenly strided; all below it)
VERIFY_SAMPLE = 2**16

COLUMNS = _common.ELEMENTWISE_COLUMNS

# ---- the numpy column of the PREACT kinds: vectorized expressions in z's dtype ------------
# erf and erfc by Cephes' rational approximations (S. L. Moshier, ndtr.c), highest degree
# first: erf(x) = x T(x^2) / U(x^2) for |x| < 1; erfc(x) = e^(-x^2) P(x) / Q(x) for
# 1 <= x < 8, e^(-x^2) R(x) / S(x) beyond.
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
      7.00332514112805075473e3, 5.55923013010394962768e4)
_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4)
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
      4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
      9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
      9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
      1.65666309194161350182e3, 5.57535340817727675546e2)
_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
      6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
      1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)
_RSQRT2, _RSQRT2PI = 0.7071067811865476, 0.3989422804014327
_K_TANH, _KAPPA = 0.7978845608028654, 0.044715  # sqrt(2/pi); gelu_tanh's cubic term


def _poly(x, c):
    acc = c[0] * x + c[1]
    for ci in c[2:]:
        acc = acc * x + ci
    return acc


def _np_ncdf(z):
    """(Phi(z), e^(-z^2/2)) of an array: Phi(z) = erfc(a) / 2, a = -z / sqrt 2."""
    a = z * -_RSQRT2
    x = np.minimum(np.abs(a), 28.0)  # erfc(x) = 0 in float64 beyond 27.3: P, R stay finite
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e = np.exp(-(x * x))
        s = a * a
        tail = e * np.where(x < 8, _poly(x, _P) / _poly(x, _Q), _poly(x, _R) / _poly(x, _S))
        c = np.where(x < 1, 1 - a * _poly(s, _T) / _poly(s, _U),
                     np.where(a < 0, 2 - tail, tail))
    return c * 0.5, e


def _np_sigmoid(z):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def _np_gelu_tanh_parts(z):
    zz = z * z
    return zz, np.tanh(_K_TANH * (z + _KAPPA * zz * z))


def _np_forward(kind, z):
    if kind == "gelu":
        return z * _np_ncdf(z)[0]
    if kind == "gelu_tanh":
        return 0.5 * z * (1 + _np_gelu_tanh_parts(z)[1])
    return z * _np_sigmoid(z)  # silu


def _np_backward(kind, dy, z):
    if kind == "gelu":
        phi, e = _np_ncdf(z)
        return dy * (phi + z * (e * _RSQRT2PI))
    if kind == "gelu_tanh":
        zz, t = _np_gelu_tanh_parts(z)
        return dy * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _K_TANH * (1 + 3 * _KAPPA * zz))
    s = _np_sigmoid(z)  # silu
    return dy * (s * (1 + z * (1 - s)))


def _from_z(backward):
    """``backward(dy, None, kind, preact=z)`` called as ``f(dy, z, kind)``."""
    return lambda dy, z, kind, **kw: backward(dy, None, kind, preact=z, **kw)


class Case:
    """Inputs, reference result and the three implementations of one (kind, fwd/bwd, n)."""

    def __init__(self, kind, direction, dtype, n, seed=0):
        rng = np.random.default_rng(seed)
        self.kind, self.direction, self.dtype = kind, direction, np.dtype(dtype)
        self.size_text, self.elements = f"2^{n.bit_length() - 1}", n
        self.preact = kind in PREACT
        # the numpy column is the reference itself but for the PREACT kinds: check it too
        self.verify_numpy = self.preact
        self.step = max(1, n // VERIFY_SAMPLE) if self.preact else 1  # checked: [::step]
        self.want = None  # the reference's result on the checked elements, once computed
        # 3 N(0, 1): |z| < 18 even at 2^24, below 20 where torch's softplus turns linear
        self.z = (3 * rng.standard_normal(n)).astype(dtype)
        # saved output (the PREACT kinds' backward takes z instead)
        self.y = None if self.preact else reference.activation(self.z, kind,
                                                               negative_slope=SLOPE)
        self.dy = rng.standard_normal(n).astype(dtype)
        if direction == "fwd":
            self.args, self.bytes = (self.z,), 2 * n * self.dtype.itemsize
            self.fn, self.ref = pybackprop.activation, reference.activation
        else:
            saved = self.z if self.preact else self.y
            self.args, self.bytes = (self.dy, saved), 3 * n * self.dtype.itemsize
            self.fn, self.ref = pybackprop.activation_backward, reference.activation_backward
            if self.preact:
                self.fn, self.ref = _from_z(self.fn), _from_z(self.ref)

    # -- implementations -------------------------------------------------------------------
    def ours(self):
        fn, args, kind = self.fn, self.args, self.kind
        return lambda: fn(*args, kind, negative_slope=SLOPE)

    def numpy(self):
        fn, args, kind = self.ref, self.args, self.kind
        if self.preact:
            fn = _np_forward if self.direction == "fwd" else _np_backward
            return lambda: fn(kind, *args)
        return lambda: fn(*args, kind, negative_slope=SLOPE)

    def torch(self, torch):
        F, aten = torch.nn.functional, torch.ops.aten
        z, dy = torch.from_numpy(self.z), torch.from_numpy(self.dy)
        y = None if self.y is None else torch.from_numpy(self.y)
        if self.direction == "fwd":
            return {"relu": lambda: torch.relu(z),
                    "leaky_relu": lambda: F.leaky_relu(z, negative_slope=SLOPE),
                    "sigmoid": lambda: torch.sigmoid(z),
                    "tanh": lambda: torch.tanh(z),
                    "softplus": lambda: F.softplus(z),
                    "gelu": lambda: F.gelu(z),
                    "gelu_tanh": lambda: F.gelu(z, approximate="tanh"),
                    "silu": lambda: F.silu(z)}[self.kind]
        return {"relu": lambda: aten.threshold_backward(dy, y, 0),
                "leaky_relu": lambda: aten.leaky_relu_backward(dy, z, SLOPE, False),
                "sigmoid": lambda: aten.sigmoid_backward(dy, y),
                "tanh": lambda: aten.tanh_backward(dy, y),
                "softplus": lambda: aten.softplus_backward(dy, z, 1.0, 20.0),
                "gelu": lambda: aten.gelu_backward(dy, z, approximate="none"),
                "gelu_tanh": lambda: aten.gelu_backward(dy, z, approximate="tanh"),
                "silu": lambda: aten.silu_backward(dy, z)}[self.kind]

    # -- verification ----------------------------------------------------------------------
    def verify(self, fn, who):
        """Run ``fn`` once and compare its result (every ``step``-th element) with the
        reference (in float64, computed once per case)."""
        got = _as_numpy(fn())
        if self.want is None:
            up = [np.asarray(a[::self.step], np.float64) for a in self.args]
            self.want = self.ref(*up, self.kind, negative_slope=SLOPE)
        checked = "" if self.step == 1 else f" (every {self.step}th element)"
        _common.check_close(f"{who} {self.kind} {self.direction} {self.dtype.name} "
                            f"{self.size_text}{checked}", got[::self.step], self.want,
                            self.dtype, 1)


def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m pybackprop bench activation",
        description="Elementwise activations, forward and backward (from the output; "
                    "gelu, gelu_tanh and silu from the pre-activation): "
                    "pybackprop vs the numpy reference vs PyTorch, verified before timing.")
    return _common.add_elementwise_arguments(
        p, "sizes 2^16 and 2^20, relu/leaky_relu/sigmoid/gelu, short timing",
        f"comma-separated subset of {','.join(KINDS)} (default: all; "
        f"--quick: {','.join(QUICK_KINDS)})", None)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        dtypes, thread_counts, default_threads, timing = \
            _common.parse_elementwise_arguments(args)
    except ValueError as e:
        print(f"bench_activation: {e}", file=sys.stderr)
        return 2
    if args.kernels is None:
        kinds = QUICK_KINDS if args.quick else KINDS
    else:
        kinds = [k for k in KINDS if k in args.kernels.split(",")]
    sizes = QUICK_SIZES if args.quick else SIZES
    torch = None if args.no_torch else _common.import_torch()

    copy = _common.print_elementwise_header(
        "pybackprop bench: activations (forward, and backward from the output or, for gelu, "
        "gelu_tanh, silu, the pre-activation)", torch, args.quick,
        max(thread_counts))

    rows, all_ok = [], True
    for threads in thread_counts:
        _common.set_threads(threads, torch)
        for dt in dtypes:
            for kind in kinds:
                for direction in ("fwd", "bwd"):
                    for n in sizes:
                        case = Case(kind, direction, dt, n)
                        row, ok = _common.run_elementwise_case(
                            case, f"{kind} {direction}", threads, torch, timing, copy)
                        rows.append(row)
                        all_ok = all_ok and ok
    _common.set_threads(default_threads, torch)

    _common.print_table(rows, COLUMNS)
    print()
    print("  fwd: y = act(z); bwd: dz = dy * act'(z) from y (gelu, gelu_tanh, silu: from z). "
          "Every library allocates its result.")
    if any(k in PREACT for k in kinds):
        print("  numpy for gelu/gelu_tanh/silu: vectorized expressions in the dtype (gelu's "
              "erfc: Cephes' rational approximations), not the long-double reference.")
    print("  torch: torch.<act>/F.<act> forward; backward = the aten *_backward op autograd "
          "calls, no graph. ratios: their time / our time (> 1: pybackprop faster).")
    print("  GB/s: bytes that must move (inputs once, output once); % bw: of the copy "
          "bandwidth above (in-cache rows can exceed 100%).")
    if not all_ok:
        print("bench_activation: some results were WRONG or failed (see note column)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
