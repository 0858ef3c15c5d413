"""bench_activation.py -- the elementwise activations, forward and backward, against numpy
and PyTorch.

    python -m pybackprop bench activation [--quick] [--dtype ...] [--threads ...] [--no-torch]

Kernels and what one call does (kind: relu, leaky_relu (slope 0.01), sigmoid, tanh, softplus;
n = 2^16, 2^20, 2^24 elements):
  <kind> fwd  activation(z, kind)               -> y = act(z)          (n,)
  <kind> bwd  activation_backward(dy, y, kind)  -> dz = dy * act'(z)   (n,), from the output y
Each case is first VERIFIED against ``pybackprop.reference`` (PyTorch's results too, when
compared), then timed, every library allocating its result (at 2^24 elements the page faults
of a fresh 64 or 128 MiB result are part of every figure): ours as called without ``out=``;
the numpy reference as written; PyTorch forward as a user writes it (``torch.relu`` /
``F.leaky_relu`` / ``torch.sigmoid`` / ``torch.tanh`` / ``F.softplus`` on
``torch.from_numpy`` tensors), and
PyTorch backward as the ``torch.ops.aten`` op its autograd calls, given the tensor autograd
saves: ``threshold_backward(dy, y, 0)`` / ``leaky_relu_backward(dy, z, 0.01, False)`` /
``sigmoid_backward(dy, y)`` / ``tanh_backward(dy, y)`` / ``softplus_backward(dy, z, 1, 20)``
-- the backward kernel alone, without graph or autograd overhead, as ours is timed.
Ratios are their time / our time (> 1: pybackprop faster).

Also shown: effective GB/s (bytes the call must move: inputs read once, output written
once; fwd 2n elements, bwd 3n) and that as a fraction of this machine's copy bandwidth
measured at start-up (DRAM, 256 MiB arrays; cache-resident rows can exceed 100%), and ns
per element: sigmoid, tanh and softplus are bound by exp/log1p arithmetic, not memory.

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
KINDS = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus")
QUICK_KINDS = ("relu", "leaky_relu", "sigmoid")
SLOPE = 0.01  # negative_slope of leaky_relu, the default of pybackprop and PyTorch

COLUMNS = _common.ELEMENTWISE_COLUMNS


class Case:
    """Inputs, reference result and the three implementations of one (kind, fwd/bwd, n)."""

    def __init__(self, kind, direction, dtype, n, seed=0):
        rng = np.random.default_rng(seed)
        self.kind, self.direction, self.dtype = kind, direction, np.dtype(dtype)
        self.size_text, self.elements = f"2^{n.bit_length() - 1}", n
        # 3 N(0, 1): |z| < 18 even at 2^24, below 20 where torch's softplus turns linear
        self.z = (3 * rng.standard_normal(n)).astype(dtype)
        self.y = reference.activation(self.z, kind, negative_slope=SLOPE)  # saved output
        self.dy = rng.standard_normal(n).astype(dtype)
        if direction == "fwd":
            self.args, self.bytes = (self.z,), 2 * n * self.dtype.itemsize
            self.fn, self.ref = pybackprop.activation, reference.activation
        else:
            self.args, self.bytes = (self.dy, self.y), 3 * n * self.dtype.itemsize
            self.fn, self.ref = pybackprop.activation_backward, reference.activation_backward

    # -- implementations -------------------------------------------------------------------
    def ours(self):
        fn, args, kind = self.fn, self.args, self.kind
        return lambda: fn(*args, kind, negative_slope=SLOPE)

    def numpy(self):
        fn, args, kind = self.ref, self.args, self.kind
        return lambda: fn(*args, kind, negative_slope=SLOPE)

    def torch(self, torch):
        F, aten = torch.nn.functional, torch.ops.aten
        z, y, dy = (torch.from_numpy(a) for a in (self.z, self.y, self.dy))
        if self.direction == "fwd":
            return {"relu": lambda: torch.relu(z),
                    "leaky_relu": lambda: F.leaky_relu(z, negative_slope=SLOPE),
                    "sigmoid": lambda: torch.sigmoid(z),
                    "tanh": lambda: torch.tanh(z),
                    "softplus": lambda: F.softplus(z)}[self.kind]
        return {"relu": lambda: aten.threshold_backward(dy, y, 0),
                "leaky_relu": lambda: aten.leaky_relu_backward(dy, z, SLOPE, False),
                "sigmoid": lambda: aten.sigmoid_backward(dy, y),
                "tanh": lambda: aten.tanh_backward(dy, y),
                "softplus": lambda: aten.softplus_backward(dy, z, 1.0, 20.0)}[self.kind]

    # -- verification ----------------------------------------------------------------------
    def verify(self, fn, who):
        """Run ``fn`` once and compare its result with the reference (in float64)."""
        got = _as_numpy(fn())
        up = [np.asarray(a, np.float64) for a in self.args]
        want = self.ref(*up, self.kind, negative_slope=SLOPE)
        _common.check_close(f"{who} {self.kind} {self.direction} {self.dtype.name} "
                            f"{self.size_text}", got, want, self.dtype, 1)


def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m pybackprop bench activation",
        description="Elementwise activations, forward and backward (from the output): "
                    "pybackprop vs the numpy reference vs PyTorch, verified before timing.")
    return _common.add_elementwise_arguments(
        p, "sizes 2^16 and 2^20, relu/leaky_relu/sigmoid, short timing",
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
        "pybackprop bench: activations (forward, and backward from the output)", torch, args.quick,
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
    print("  fwd: y = act(z); bwd: dz = dy * act'(z) from y. Every library allocates its "
          "result.")
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
