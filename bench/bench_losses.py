"""bench_losses.py -- losses with their gradient, and the maximum merge, against numpy and
PyTorch.

    python -m pybackprop bench losses [--quick] [--dtype ...] [--threads ...] [--no-torch]

Kernels and what one call does (loss AND gradient, as a training step needs):
  xent     softmax_cross_entropy(logits (B, C), labels (B,))  -> loss, dlogits (B, C)
  bce      binary_cross_entropy_with_logits(z (n,), t (n,))   -> loss, dlogits (n,)
  mse      mse_loss(pred (n,), target (n,))                   -> loss, dpred (n,)
  maximum  maximum_forward(a, b) then maximum_backward(dz, a, b) -> z, da, db
Each case is first VERIFIED against ``pybackprop.reference`` (PyTorch's results too, when
compared), then timed: ours with a preallocated ``out=``; the numpy reference as written
(it allocates); PyTorch as a user writes it -- ``F.cross_entropy`` /
``F.binary_cross_entropy_with_logits`` / ``F.mse_loss`` / ``torch.maximum`` forward plus
``torch.autograd.grad`` of the loss (or of ``(z * dz).sum()``), graph built every call.
Ratios are their time / our time (> 1: pybackprop faster).

Also shown: effective GB/s (bytes the call must move: inputs read once, outputs written
once) and that as a fraction of this machine's copy bandwidth measured at start-up (DRAM,
256 MiB arrays; cache-resident rows can exceed 100%), and ns per element: softmax CE and
BCE are bound by their exp/log1p arithmetic rather than memory at these sizes.

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

XENT_SHAPES = [(256, 10), (4096, 10), (256, 1000), (4096, 1000), (32, 32000)]
ELEM_SIZES = [10_000, 1_000_000, 10_000_000]
QUICK_XENT = [(256, 10), (4096, 1000)]
QUICK_SIZES = [10_000, 1_000_000]
KERNELS = ("xent", "bce", "mse", "maximum")

COLUMNS = _common.ELEMENTWISE_COLUMNS


class Case:
    """Inputs, reference results and the three implementations of one (kernel, size)."""

    def __init__(self, kernel, dtype, size, seed=0):
        rng = np.random.default_rng(seed)
        self.kernel, self.dtype = kernel, np.dtype(dtype)
        item = self.dtype.itemsize
        if kernel == "xent":
            B, C = size
            self.size_text, self.elements = f"{B}x{C}", B * C
            self.x = (3 * rng.standard_normal((B, C))).astype(dtype)
            self.labels = rng.integers(0, C, B)
            self.args = (self.x, self.labels)
            self.bytes = 2 * B * C * item + 8 * B           # logits in, dlogits out, labels
            self.fn = pybackprop.softmax_cross_entropy
            self.ref = reference.softmax_cross_entropy
        else:
            n = size
            self.size_text, self.elements = f"{n:.0e}".replace("+0", ""), n
            a = (3 * rng.standard_normal(n)).astype(dtype)
            b = rng.random(n).astype(dtype) if kernel == "bce" else \
                (3 * rng.standard_normal(n)).astype(dtype)
            self.args = (a, b)
            if kernel == "maximum":
                self.dz = rng.standard_normal(n).astype(dtype)
                self.bytes = 3 * n * item + 5 * n * item     # fwd: a, b -> z; bwd: dz, a, b -> da, db
            else:
                self.bytes = 3 * n * item                    # two inputs in, gradient out
                self.fn = {"bce": pybackprop.binary_cross_entropy_with_logits,
                           "mse": pybackprop.mse_loss}[kernel]
                self.ref = {"bce": reference.binary_cross_entropy_with_logits,
                            "mse": reference.mse_loss}[kernel]
        self.out = np.empty_like(self.args[0])

    # -- implementations -------------------------------------------------------------------
    def ours(self):
        if self.kernel == "maximum":
            a, b, dz, z = self.args[0], self.args[1], self.dz, self.out
            da, db = np.empty_like(a), np.empty_like(a)
            fwd, bwd = pybackprop.maximum_forward, pybackprop.maximum_backward
            return lambda: (fwd(a, b, out=z),) + bwd(dz, a, b, da=da, db=db)
        fn, args, out = self.fn, self.args, self.out
        return lambda: fn(*args, out=out)

    def numpy(self):
        if self.kernel == "maximum":
            a, b, dz = self.args[0], self.args[1], self.dz
            return lambda: (reference.maximum_forward(a, b),) + \
                reference.maximum_backward(dz, a, b)
        fn, args = self.ref, self.args
        return lambda: fn(*args)

    def torch(self, torch):
        F = torch.nn.functional
        grad = torch.autograd.grad
        a = torch.from_numpy(self.args[0])
        if self.kernel == "maximum":
            b, dz = torch.from_numpy(self.args[1]), torch.from_numpy(self.dz)

            def run():
                ar, br = a.detach().requires_grad_(), b.detach().requires_grad_()
                z = torch.maximum(ar, br)
                return (z.detach(),) + grad(z, (ar, br), dz)
            return run
        if self.kernel == "xent":
            lab = torch.from_numpy(self.labels)
            loss_fn = lambda x: F.cross_entropy(x, lab)  # noqa: E731
        elif self.kernel == "bce":
            t = torch.from_numpy(self.args[1])
            loss_fn = lambda x: F.binary_cross_entropy_with_logits(x, t)  # noqa: E731
        else:
            t = torch.from_numpy(self.args[1])
            loss_fn = lambda x: F.mse_loss(x, t)  # noqa: E731

        def run():
            x = a.detach().requires_grad_()
            loss = loss_fn(x)
            return loss.detach(), grad(loss, x)[0]
        return run

    # -- verification ----------------------------------------------------------------------
    def verify(self, fn, who):
        """Run ``fn`` once and compare every result with the reference (in float64)."""
        if who == "ours":
            self.out.fill(np.nan)
        got = [_as_numpy(r) for r in fn()]
        if self.kernel == "maximum":
            up = [np.asarray(a, np.float64) for a in self.args]
            want = [reference.maximum_forward(*up)] + list(
                reference.maximum_backward(np.asarray(self.dz, np.float64), *up))
            terms = 1
        else:
            up = [np.asarray(a, np.float64) if a.dtype.kind == "f" else a for a in self.args]
            want = list(self.ref(*up))
            terms = self.x.shape[1] if self.kernel == "xent" else 1
        # the loss is compared relatively (a mean of many terms); gradients elementwise
        names = ["z", "da", "db"] if self.kernel == "maximum" else ["loss", "grad"]
        for name, g, w in zip(names, got, want):
            _common.check_close(f"{who} {self.kernel} {self.dtype.name} {self.size_text} "
                                f"{name}", g, w, self.dtype, terms)


def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m pybackprop bench losses",
        description="Losses (value and gradient in one call) and the maximum merge: "
                    "pybackprop vs the numpy reference vs PyTorch, verified before timing.")
    return _common.add_elementwise_arguments(
        p, "few sizes, short timing", f"comma-separated subset of {','.join(KERNELS)}",
        ",".join(KERNELS))


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        dtypes, thread_counts, default_threads, timing = \
            _common.parse_elementwise_arguments(args)
    except ValueError as e:
        print(f"bench_losses: {e}", file=sys.stderr)
        return 2
    kernels = [k for k in KERNELS if k in args.kernels.split(",")]
    torch = None if args.no_torch else _common.import_torch()

    copy = _common.print_elementwise_header(
        "pybackprop bench: losses (value + gradient) and maximum", torch, args.quick,
        max(thread_counts))

    rows, all_ok = [], True
    for threads in thread_counts:
        _common.set_threads(threads, torch)
        for dt in dtypes:
            for kernel in kernels:
                sizes = (QUICK_XENT if args.quick else XENT_SHAPES) if kernel == "xent" \
                    else (QUICK_SIZES if args.quick else ELEM_SIZES)
                for size in sizes:
                    case = Case(kernel, dt, size)
                    row, ok = _common.run_elementwise_case(case, case.kernel, threads, torch,
                                                           timing, copy)
                    rows.append(row)
                    all_ok = all_ok and ok
    _common.set_threads(default_threads, torch)

    _common.print_table(rows, COLUMNS)
    print()
    print("  one call = loss AND gradient (maximum: forward AND backward). ours: out= "
          "preallocated; numpy reference and torch allocate.")
    print("  torch: F.<loss> forward + torch.autograd.grad, graph built each call. "
          "ratios: their time / our time (> 1: pybackprop faster).")
    print("  GB/s: bytes that must move (inputs once, outputs once); % bw: of the copy "
          "bandwidth above (in-cache rows can exceed 100%).")
    if not all_ok:
        print("bench_losses: some results were WRONG or failed (see note column)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
