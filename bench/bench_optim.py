"""bench_optim.py -- Adam, AdamW and AdaMax steps against the numpy reference and PyTorch.

    python -m pybackprop bench optim [--quick] [--threads N] [--sizes 1e4,1e7]
    python bench/bench_optim.py ...           (same, from a checkout, pybackprop installed)

One step of a memory-bound update: Adam/AdamW/AdaMax read param, grad and two state arrays
and write param and the state once: 28 bytes per float32 element (36 with amsgrad).
Cases: single float32 tensors of 1e4 .. 5e7 elements and a model of 1,000 tensors of 1,000
elements. Every case is first VERIFIED: a few of our steps must equal
``pybackprop.reference`` bit for bit (PyTorch's result is checked against it too, within
its FMA tolerance). Then timed (medians), in one run, against the numpy reference and, when
importable, ``torch.optim.Adam/AdamW/Adamax`` with ``foreach=True`` and ``fused=True``
(whichever exist) and its default for-loop. PyTorch is timed in a child process, in the
same interleaved rounds: its OpenMP runtime and ours, both active in one process, slow
each other down several-fold (measured: 1e4 Adam 6 us -> 15-20 us for us, 30 -> 80 us
for torch fused), which would make every ratio meaningless. Ours is the optimizer object's ``.step(grads)`` with the same gradient
arrays each step (as a training loop passes them), so the pointer arrays are cached.
Ratios are their time / our time (> 1: pybackprop is faster). GB/s count the bytes the
update must move (28 or 36 per element, not cache traffic) and are also shown as a fraction
of this machine's read-modify-write bandwidth (``a += s*b``), probed in this process at
start-up with the same thread count. The VM's large L3 makes 1e6-1e7 partly cache
resident (fractions above 1 there); 5e7 is the DRAM case.

What it does not do: fail on a slow result; it exits non-zero only when a result is wrong.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys

import numpy as np

from pybackprop._bench import _common

import pybackprop
from pybackprop import optim, reference

SIZES = [10_000, 100_000, 1_000_000, 10_000_000, 50_000_000]
SIZES_QUICK = [10_000, 1_000_000]
MULTI = (1000, 1000)  # tensors x elements
OPTIMIZERS = ("Adam", "AdamW", "AdaMax")
TORCH_NAME = {"Adam": "Adam", "AdamW": "AdamW", "AdaMax": "Adamax"}
BYTES_PER_ELEMENT = 28  # float32: read p, g, m, v (or u); write p, m, v

TIMING_FULL = dict(min_time=0.15, warmup=0.03, min_samples=3)  # per round, 3 rounds
TIMING_QUICK = dict(min_time=0.05, warmup=0.01, min_samples=3)

COLUMNS = [
    ("optimizer", "opt", "s"),
    ("case", "case", "s"),
    ("ours us", "ours_us", ".1f"),
    ("functional us", "func_us", ".1f"),
    ("GB/s", "gbs", ".1f"),
    ("x rmw bw", "frac", ".2f"),
    ("numpy ref", "r_ref", ".1f"),
    ("torch loop", "r_loop", ".2f"),
    ("torch foreach", "r_foreach", ".2f"),
    ("torch fused", "r_fused", ".2f"),
]


def _case_name(sizes):
    if len(sizes) == 1:
        return f"{sizes[0]:.0e}".replace("e+0", "e")
    return f"{len(sizes)}x{sizes[0]}"


def _make(sizes, rng):
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    return params, grads


def _ours(name, params):
    return getattr(optim, name)(params)


def _ref_step(name, params, grads, state, t):
    for i, (p, g) in enumerate(zip(params, grads)):
        if name == "AdaMax":
            reference.adamax_step(p, g, state[0][i], state[1][i], step=t)
        else:
            reference.adam_step(p, g, state[0][i], state[1][i], step=t,
                                weight_decay=1e-2 if name == "AdamW" else 0.0,
                                decoupled_weight_decay=name == "AdamW")


def verify(name, sizes, rng, torch):
    """Our first steps equal the reference bit for bit; PyTorch's are close to it."""
    small = [min(n, 4099) for n in sizes[:8]]
    params, grads_seq = _make(small, rng)[0], [_make(small, rng)[1] for _ in range(3)]
    expect = [p.copy() for p in params]
    state = [[np.zeros_like(p) for p in params] for _ in range(2)]
    tparams = [torch.tensor(p.copy()) for p in params] if torch is not None else None
    opt = _ours(name, params)
    topt = getattr(torch.optim, TORCH_NAME[name])(tparams, foreach=False) if torch else None
    for t, grads in enumerate(grads_seq, 1):
        opt.step(grads)
        _ref_step(name, expect, grads, state, t)
        if torch is not None:
            for tp, g in zip(tparams, grads):
                tp.grad = torch.from_numpy(g.copy())
            topt.step()
    for p, e in zip(params, expect):
        if not np.array_equal(p, e):
            raise AssertionError(f"{name}: pybackprop differs from pybackprop.reference")
    if torch is not None:
        eps = float(np.finfo(np.float32).eps)
        for tp, e in zip(tparams, expect):
            # torch's FMA in lerp/add: see the tolerance table of tests/test_optim.py
            bound = len(grads_seq) * eps * (16 * opt.lr + float(np.abs(e).max()))
            err = float(np.max(np.abs(tp.numpy() - e)))
            if err > bound:
                print(f"warning: torch {name} differs from the reference by {err:.3g}",
                      file=sys.stderr)


def _torch_variants(torch, name, tparams):
    """(label, optimizer) for every torch implementation of ``name`` we compare with."""
    cls = getattr(torch.optim, TORCH_NAME[name])
    out = [("loop", cls(tparams, foreach=False))]
    for label, kw in (("foreach", dict(foreach=True)), ("fused", dict(fused=True))):
        try:
            out.append((label, cls(tparams, **kw)))
        except (RuntimeError, TypeError, ValueError):
            pass  # this torch has no such implementation (Adamax: no fused)
    return out


def _torch_worker(name, sizes, threads, quick):
    """Child process: time every torch implementation of ``name``, print JSON times."""
    torch = _common.import_torch()
    _common.set_threads(threads, torch)
    params, grads = _make(sizes, np.random.default_rng(1))
    tparams = [torch.from_numpy(p) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g)
    verify(name, [1, 7, 1000, 1003, 4099], np.random.default_rng(2), torch)
    timing = TIMING_QUICK if quick else TIMING_FULL
    times = {label: _common.measure(topt.step, **timing)
             for label, topt in _torch_variants(torch, name, tparams)}
    print(json.dumps(times))


def _torch_times(name, sizes, threads, quick):
    """PyTorch's times, measured in a child process: two OpenMP runtimes active in one
    process wake each other's sleeping threads and slow both down several-fold."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", name,
           ",".join(map(str, sizes)), "--threads", str(threads)] + (["--quick"] if quick else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    sys.stderr.write(res.stderr)  # the worker's warnings, if any
    return json.loads(res.stdout.strip().splitlines()[-1])


def _functional(name, params, grads):
    """The functional form's step on its own copies (one array, or the list)."""
    ps = [p.copy() for p in params]
    s1, s2 = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    args = (ps, grads, s1, s2) if len(ps) > 1 else (ps[0], grads[0], s1[0], s2[0])
    steps = itertools.count(1)
    if name == "AdaMax":
        return lambda: optim.adamax_step(*args, step=next(steps), lr=2e-3)
    kw = dict(weight_decay=1e-2, decoupled_weight_decay=True) if name == "AdamW" else {}
    return lambda: optim.adam_step(*args, step=next(steps), lr=1e-3, **kw)


def bench_case(name, sizes, rng, torch, timing, rounds, threads, quick):
    params, grads = _make(sizes, rng)
    opt = _ours(name, params)
    contenders = {"ours": lambda: opt.step(grads), "func": _functional(name, params, grads)}
    ref_params = [p.copy() for p in params]
    state = [[np.zeros_like(p) for p in params] for _ in range(2)]
    t = [0]

    def ref_step():
        t[0] += 1
        _ref_step(name, ref_params, grads, state, t[0])
    contenders["ref"] = ref_step
    times = {label: [] for label in contenders}
    for _ in range(rounds):  # interleaved: a change of load hits every contender alike
        for label, fn in contenders.items():
            times[label].append(_common.measure(fn, **timing))
        if torch is not None:
            for label, secs in _torch_times(name, [len(p) for p in params] if len(params) < 8
                                         else [params[0].size] * len(params),
                                         threads, quick).items():
                times.setdefault(label, []).append(secs)
    times = {label: float(np.median(ts)) for label, ts in times.items()}
    t_ours = times.pop("ours")
    row = {"opt": name, "case": _case_name(sizes), "ours_us": t_ours * 1e6,
           "func_us": times.pop("func") * 1e6,
           "gbs": BYTES_PER_ELEMENT * sum(sizes) / t_ours / 1e9}
    for label, t_theirs in times.items():
        row["r_" + label] = t_theirs / t_ours
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pybackprop bench optim",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 1e4 and 1e6, short timing")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for pybackprop and torch (default: pybackprop's)")
    ap.add_argument("--sizes", default=None, help="comma-separated element counts")
    ap.add_argument("--no-multi", action="store_true", help="skip the 1000-tensor case")
    ap.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch")
    ap.add_argument("--torch-worker", nargs=2, metavar=("OPTIMIZER", "SIZES"),
                    help=argparse.SUPPRESS)  # internal: the child that times PyTorch
    args = ap.parse_args(argv)
    if args.torch_worker:
        name, sizes = args.torch_worker
        _torch_worker(name, [int(n) for n in sizes.split(",")],
                      args.threads or pybackprop.get_num_threads(), args.quick)
        return 0
    torch = None if args.no_torch else _common.import_torch()
    threads = args.threads or pybackprop.get_num_threads()
    _common.set_threads(threads, torch)
    sizes = ([int(float(s)) for s in args.sizes.split(",")] if args.sizes
             else SIZES_QUICK if args.quick else SIZES)
    timing = TIMING_QUICK if args.quick else TIMING_FULL
    rounds = 1 if args.quick else 3
    rng = np.random.default_rng(0)

    print("pybackprop bench optim: one optimizer step, float32, time per step")
    for line in _common.machine_lines(torch):
        print(line)
    copy_bw, rmw_bw = _common.bandwidth(threads=threads)
    print(f"threads: {threads}; measured bandwidth (256 MiB arrays): copy {copy_bw:.1f} GB/s,"
          f" read-modify-write {rmw_bw:.1f} GB/s")
    print("ratios: their time / our time (> 1: pybackprop faster); GB/s: "
          f"{BYTES_PER_ELEMENT} bytes per element per step")
    for name in OPTIMIZERS:
        verify(name, [1, 7, 1000, 1003, 4099], rng, None)  # torch: in its worker
    print("verified: bitwise equal to pybackprop.reference (Adam, AdamW, AdaMax); "
          "torch checked against it in its worker")
    print()
    cases = [[n] for n in sizes] + ([] if args.no_multi else [[MULTI[1]] * MULTI[0]])
    rows = []
    for case in cases:
        for name in OPTIMIZERS:
            row = bench_case(name, case, rng, torch, timing, rounds, threads, args.quick)
            row["frac"] = row["gbs"] / rmw_bw
            rows.append(row)
    _common.print_table(rows, COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
