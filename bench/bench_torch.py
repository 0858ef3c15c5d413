"""bench_torch.py -- one PyTorch training step, written with torch.nn and with pybackprop.torch.

    python -m pybackprop bench torch [--quick] [--threads 1,2] [--runs 3]

A step is what a PyTorch training loop does: ``zero_grad``, forward, loss, ``backward``,
``optimizer.step()``. The same MLP twice, float32, same initial weights and batch:

- torch: ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``, ``F.cross_entropy``,
  ``torch.optim.Adam`` (its default implementation on the CPU);
- pybackprop: ``pybackprop.torch.Linear(..., activation="relu")`` (the activation fused
  into the layer), ``pybackprop.torch.functional.cross_entropy``, ``pybackprop.torch.Adam``.

Before timing, one step of each from the same state must give the same loss and the same
updated weights within float32 rounding (the summation orders differ). Each model runs in
its own child process (two OpenMP runtimes busy in one process slow each other down), in
turn, ``--runs`` times; each keeps its best median step time. Ratio: torch's time / ours
(> 1: the pybackprop version is faster). Needs torch; without it, says so and exits 0.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from pybackprop._bench import _common

MODELS = [("784-1024-1024-10", (784, 1024, 1024, 10), 128),
          ("784-1024-1024-10", (784, 1024, 1024, 10), 512),
          ("2-64-64-3", (2, 64, 64, 3), 64)]
COLUMNS = [("model", "model", "s"), ("batch", "batch", "d"), ("thr", "threads", "d"),
           ("torch.nn ms", "torch_ms", ".3f"), ("pybackprop ms", "ours_ms", ".3f"),
           ("x torch", "ratio", ".2f")]


def _build(kind, sizes, seed):
    """The MLP of ``kind`` ("torch" or "ours") with weights drawn from ``seed``."""
    import torch
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if kind == "torch":
            lin = torch.nn.Linear(k, n)
        else:
            import pybackprop.torch as pbt
            lin = pbt.Linear(k, n, activation=None if last else "relu")
        with torch.no_grad():
            bound = 1 / k ** 0.5
            lin.weight.copy_(torch.rand((n, k), generator=g) * 2 * bound - bound)
            lin.bias.copy_(torch.rand(n, generator=g) * 2 * bound - bound)
        layers.append(lin)
        if kind == "torch" and not last:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _step_fn(kind, model, x, y):
    import torch
    if kind == "torch":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.functional.cross_entropy
    else:
        import pybackprop.torch as pbt
        opt = pbt.Adam(model.parameters(), lr=1e-3)
        loss_fn = pbt.functional.cross_entropy

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _data(sizes, batch, seed=1):
    import torch
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((batch, sizes[0]), generator=g),
            torch.randint(0, sizes[-1], (batch,), generator=g))


def _worker(args):
    """Time ``args.kind``'s step in this process; print a JSON line."""
    import torch
    import pybackprop
    torch.set_num_threads(args.threads)
    pybackprop.set_num_threads(args.threads)
    sizes = tuple(int(s) for s in args.sizes.split("-"))
    model = _build(args.kind, sizes, seed=0)
    x, y = _data(sizes, args.batch)
    step = _step_fn(args.kind, model, x, y)
    for _ in range(3):
        step()
    n = max(3, min(200, int(args.min_time / max(_once(step), 1e-6))))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    print(json.dumps({"step": float(np.median(ts))}))


def _once(step):
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def verify(sizes, batch):
    """One step of each model from the same state: the same loss and updated weights
    within float32 rounding of the layers' dot products (K terms)."""
    import torch
    x, y = _data(sizes, batch)
    out = {}
    for kind in ("torch", "ours"):
        model = _build(kind, sizes, seed=0)
        loss = _step_fn(kind, model, x, y)()
        out[kind] = (loss.item(), [p.detach().clone() for p in model.parameters()])
    (l0, p0), (l1, p1) = out["torch"], out["ours"]
    tol = _common.tolerance(np.float32, max(sizes))
    if abs(l0 - l1) > tol * max(1.0, abs(l0)):
        raise AssertionError(f"loss after one step: torch {l0!r}, pybackprop {l1!r}")
    # Adam's first step moves each weight by lr * g / (|g| + eps), at most lr = 1e-3 either
    # way; a gradient near 0 may round to either sign in the two orders: |difference| <= 2 lr
    for a, b in zip(p0, p1):
        if not torch.allclose(a, b, rtol=0, atol=2e-3 * (1 + 1e-6)):
            raise AssertionError("updated weights differ by more than one Adam step")


def _launch(kind, sizes, batch, threads, args):
    cmd = [sys.executable, "-m", "pybackprop._bench.bench_torch", "--worker", "--kind", kind,
           "--sizes", "-".join(map(str, sizes)), "--batch", str(batch),
           "--threads", str(threads), "--min-time", str(args.min_time)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])["step"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pybackprop bench torch",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 threads, one run, short timing")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts "
                    "(default 1 and 2; --quick: 2)")
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 3; --quick 1)")
    ap.add_argument("--min-time", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="ours", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.min_time = args.min_time or (0.3 if args.quick else 1.0)
    if args.worker:
        args.threads = int(args.threads)
        _worker(args)
        return 0
    print("pybackprop bench torch: one training step (zero_grad, forward, cross-entropy, "
          "backward, Adam), float32")
    torch = _common.import_torch()
    if torch is None:
        print("  skipped: needs PyTorch (pip install 'pybackprop[torch]')")
        return 0
    threads = _common.parse_threads(args.threads or ("2" if args.quick else "1,2"))
    runs = args.runs or (1 if args.quick else 3)
    for line in _common.machine_lines(torch):
        print(line)
    print(f"  median step time in a child process per model, best of {runs} round(s)")
    print()
    rows = []
    for name, sizes, batch in MODELS:
        verify(sizes, batch)
        for thr in threads:
            best = {"torch": None, "ours": None}
            for _ in range(runs):
                for kind in best:
                    t = _launch(kind, sizes, batch, thr, args)
                    best[kind] = t if best[kind] is None else min(best[kind], t)
            rows.append({"model": name, "batch": batch, "threads": thr,
                         "torch_ms": best["torch"] * 1e3, "ours_ms": best["ours"] * 1e3,
                         "ratio": best["torch"] / best["ours"]})
    _common.print_table(rows, COLUMNS)
    print("  verified first: one step of each from the same weights gives the same loss and "
          "weights within float32 rounding.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
