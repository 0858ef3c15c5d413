"""Benchmark of the spectral norm: one training-mode step (power iteration with
n_iters=1, sigma included) against the numpy reference and PyTorch's parametrization.

    python -m pybackprop bench spectral [--quick] [--dtype float32|float64|both]
                                        [--threads 1,2] [--shapes 512x512,4096x4096]

Per shape (N, K) and dtype, in one run: our step ``power_iteration(w, u, v, n_iters=1)``
(one pass over w), our step plus ``spectral_normalize`` into a buffer (what PyTorch's
forward also does), the numpy reference (two matvecs plus one for sigma), and
``torch.nn.utils.parametrizations.spectral_norm`` -- the time of one access of the
parametrized weight in training mode (power iteration, sigma, w / sigma; under no_grad, so
autograd bookkeeping is not counted against it). Reported: medians in microseconds, ratios,
the effective GB/s of our pass over w (w's bytes / time of the step) and its fraction of the
machine's streaming bandwidth measured now (pb_probe_bandwidth_copy, read + write bytes).
Every result is verified against pybackprop.reference before it is timed.
Assumes nothing about the machine; does not require torch.
"""
import argparse
import sys

import numpy as np

import pybackprop as pb
from pybackprop import reference as ref

from pybackprop._bench import _common

SHAPES = [(512, 512), (1024, 1024), (4096, 4096), (1024, 4096)]
QUICK_SHAPES = [(512, 512), (1024, 4096)]
# Per core 2 MiB of L2 on the target machine; above the total, w streams from memory.
CACHE_BYTES = 4 << 20


def _unit(rng, n, dtype):
    x = rng.standard_normal(n)
    return (x / np.linalg.norm(x)).astype(dtype)


def _torch_step(torch, w, dtype):
    """A closure computing the parametrized weight of a Linear in training mode."""
    N, K = w.shape
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    lin = torch.nn.Linear(K, N, bias=False).to(tdt)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    torch.nn.utils.parametrizations.spectral_norm(lin, n_power_iterations=1)
    lin.train()

    def step():
        with torch.no_grad():
            return lin.weight
    return step, lin


def _verify(w, dtype, rng):
    """Ours vs the reference from the same start: u, v, sigma and w / sigma."""
    N, K = w.shape
    u0, v0 = _unit(rng, N, dtype), _unit(rng, K, dtype)
    u, v, ur, vr = u0.copy(), v0.copy(), u0.copy(), v0.copy()
    s = pb.power_iteration(w, u, v, n_iters=1)
    sr = ref.power_iteration(w, ur, vr, n_iters=1)
    _common.check_close("sigma", s, sr, dtype, N + K)
    _common.check_close("u", u, ur, dtype, N + K)
    _common.check_close("v", v, vr, dtype, N + K)
    if not np.array_equal(pb.spectral_normalize(w, s), ref.spectral_normalize(w, s)):
        raise AssertionError("spectral_normalize differs from w / sigma")


def run_case(shape, dtype, threads, torch, quick):
    N, K = shape
    rng = np.random.default_rng(N * 7919 + K)
    w = (rng.standard_normal(shape) / np.sqrt(K)).astype(dtype)
    _verify(w, dtype, rng)
    u, v = _unit(rng, N, dtype), _unit(rng, K, dtype)
    ur, vr = u.copy(), v.copy()
    out = np.empty_like(w)
    min_time = 0.1 if quick else 0.3

    def ours():
        pb.power_iteration(w, u, v, n_iters=1)

    def ours_full():
        pb.spectral_normalize(w, pb.power_iteration(w, u, v, n_iters=1), out=out)

    def numpy_ref():
        ref.power_iteration(w, ur, vr, n_iters=1)

    row = {"dtype": np.dtype(dtype).name, "shape": f"{N}x{K}", "threads": threads,
           "MiB": w.nbytes / 2**20}
    row["ours"] = _common.measure(ours, min_time=min_time) * 1e6
    row["ours_full"] = _common.measure(ours_full, min_time=min_time) * 1e6
    row["numpy"] = _common.measure(numpy_ref, min_time=min_time) * 1e6
    if torch is not None:
        step, _ = _torch_step(torch, w, dtype)  # parity with torch: tests/test_spectral.py
        row["torch"] = _common.measure(step, min_time=min_time) * 1e6
        row["x_torch"] = row["torch"] / row["ours"]
        row["x_torch_full"] = row["torch"] / row["ours_full"]
    row["x_numpy"] = row["numpy"] / row["ours"]
    row["GBs"] = w.nbytes / (row["ours"] * 1e-6) / 1e9
    row["in_cache"] = "cache" if w.nbytes <= CACHE_BYTES else "DRAM"
    return row


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pybackprop bench spectral",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two shapes, shorter timing")
    p.add_argument("--dtype", default="both", help="float32, float64 or both")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: pybackprop's count)")
    p.add_argument("--shapes", default=None, help="e.g. 512x512,4096x4096")
    p.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch")
    args = p.parse_args(argv)
    dtypes = _common.parse_dtypes(args.dtype)
    threads = ([pb.get_num_threads()] if args.threads is None
               else _common.parse_threads(args.threads))
    if args.shapes:
        shapes = [tuple(int(d) for d in s.lower().split("x")) for s in args.shapes.split(",")]
    else:
        shapes = QUICK_SHAPES if args.quick else SHAPES
    torch = None if args.no_torch else _common.import_torch()
    print("pybackprop bench spectral: one training step (n_iters=1, sigma included)")
    for line in _common.machine_lines(torch):
        print("  " + line)
    saved = pb.get_num_threads()
    rows = []
    try:
        for nt in threads:
            _common.set_threads(nt, torch)
            copy_bw, _ = _common.bandwidth()
            print(f"  measured copy bandwidth with {nt} thread(s): {copy_bw:.1f} GB/s")
            for dtype in dtypes:
                for shape in shapes:
                    row = run_case(shape, dtype, nt, torch, args.quick)
                    row["bw"] = row["GBs"] / copy_bw if copy_bw > 0 else None
                    rows.append(row)
    finally:
        pb.set_num_threads(saved)
    cols = [("dtype", "dtype", "s"), ("N x K", "shape", "s"), ("thr", "threads", "d"),
            ("MiB", "MiB", ".1f"), ("w in", "in_cache", "s"),
            ("ours us", "ours", ".1f"), ("+normalize us", "ours_full", ".1f"),
            ("numpy us", "numpy", ".1f"), ("torch us", "torch", ".1f"),
            ("x numpy", "x_numpy", ".2f"), ("x torch", "x_torch", ".2f"),
            ("x torch (+norm)", "x_torch_full", ".2f"),
            ("GB/s", "GBs", ".1f"), ("of copy bw", "bw", lambda x: f"{100 * x:.0f}%")]
    print()
    _common.print_table(rows, cols)
    print("\nx numpy / x torch: their time / ours for the step (ours: one pass over w; numpy"
          " reads w 3 times, torch 3 times plus w / sigma). '+norm': ours including"
          " w / sigma, the same work as torch's forward.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
