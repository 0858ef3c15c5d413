"""bench_dense.py -- fused dense + activation, forward and backward, against numpy and PyTorch.

    python -m pybackprop bench dense [--quick] [--large] [--dtype ...] [--threads ...]
    python -m pybackprop bench dense --subnormal   (only the subnormal-input table)
    python -m pybackprop bench dense --epilogue    (only the fused-epilogue table)
    python -m pybackprop bench dense --train       (only the gelu/silu training-step table)
    python bench/bench_dense.py ...           (same, from a checkout, pybackprop installed)

Dimension letters as everywhere in pybackprop: x (B, K), w (N, K), b (N,), y (B, N).
  forward:  y = act(x @ w.T + b)                              2 B K N flops
  backward: dz = dy * act'(y); dx = dz @ w; dw = dz.T @ x; db   4 B K N flops (2 without dx)
  (gelu, gelu_tanh, silu: act' from the pre-activation z, passed as preact=)
Each (op, dtype, shape, activation) is first VERIFIED against ``pybackprop.reference`` (and
PyTorch's result, when compared, against the same reference); only then timed. Compared in
the same run: the numpy reference (``pybackprop.reference.dense_forward/dense_backward``:
BLAS matmul plus numpy elementwise passes, allocating its results) and PyTorch when
importable (forward ``act(F.linear(x, w, b))`` on tensors without grad; backward
``torch.autograd.grad`` on a retained graph, so only the backward is timed). Ours is timed
like them, allocating its results (``--out``: with preallocated ``out=``/``dx=``/``dw=``/
``db=`` buffers instead, the layer API's way). Ratios are their time / our
time: > 1 means pybackprop is faster. GFLOP/s are also shown as a fraction of this
machine's FMA peak, measured at start-up for the ISA of the configuration's GEMM and each
thread count. Each row also times ours in every other configuration this CPU runs, pinned
one by one (--pinned).

Fused epilogue (a table of the full run, or alone with --epilogue): our forward with each
activation against relu at the same shape, timed in turn, as its cost over relu: sigmoid,
tanh, gelu, gelu_tanh, silu at (1024, 1024, 1024) (target +5 %), gelu, gelu_tanh, silu at
(256, 1024, 1024) (target +10 %), and gelu and silu also storing z (preact=).

Training step (a table of the full run, or alone with --train; bench/_dense_gelu.py): gelu
and silu forward storing z plus backward from z, against PyTorch's F.gelu / F.silu of
F.linear with autograd backward, at (256, 1024, 4096) and (1024, 1024, 1024) (target: 1.2x
PyTorch). Neither table is in --quick: their 1024^3 calls, EPILOGUE_ROUNDS rounds and the
reference's per-element erf (seconds per check) would more than double its time.

Subnormal inputs (the full run's last table, or alone with --subnormal): at (512, 512, 512),
relu, zero bias, the highest thread count, the forward on an x scaled into the subnormal range
(x * 1e-40 in float32, x * 1e-310 in float64; w stays normal) against the same call on the
normal x, as a slowdown factor, for pybackprop (exact, the default), pybackprop with
set_flush_denormal(True), numpy, and PyTorch without and with torch.set_flush_denormal(True)
(set back to False afterwards: torch has no getter). A flushing result must be the
reference's on the flushed input (x = 0), which is exactly 0 everywhere: pybackprop fails
otherwise, torch gets a note with the share of outputs it did not flush.

What it does not do: tune anything, or fail on a slow result (targets are read by people,
see the README); it exits non-zero only when a result is wrong or a call fails.
"""
import argparse
import os
import sys

import numpy as np

try:
    from pybackprop._bench import (_common, _dense_gelu, _dense_markdown, _dense_problem,
                                   _dense_tables)
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common
    import _dense_gelu
    import _dense_markdown
    import _dense_problem
    import _dense_tables

import pybackprop

# (B, K, N): the README's target shapes, and a tall layer with few outputs (the dot-product kernel's
# tall path in the forward; a backward that trails PyTorch, see the README)
SHAPES_DEFAULT = [(32, 128, 128), (256, 1024, 1024), (1024, 1024, 1024), (1, 1024, 1024),
                  (64, 512, 512), (1, 8, 8), (4096, 1024, 16)]
SHAPES_QUICK = [(1, 8, 8), (32, 128, 128), (256, 1024, 1024)]
SHAPES_LARGE = [(2048, 2048, 2048)]
# Full mode also times these activations at this shape (the fused epilogue of sigmoid/tanh
# should cost < 5% over relu).
EXTRA_ACTS = ("sigmoid", "tanh")
EXTRA_SHAPE = (1024, 1024, 1024)
ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu",
               "gelu_tanh", "silu")
PREACT = _dense_problem.PREACT
OPS = ("forward", "backward")

COLUMNS = [
    ("op", "op", "s"),
    ("act", "act", "s"),
    ("dtype", "dtype", "s"),
    ("thr", "threads", "d"),
    ("B x K x N", "shape", "s"),
    ("ours us", "ours_us", _common.fmt_us),
    ("GFLOP/s", "gflops", ".1f"),
    ("% peak", "peak_pct", ".0f"),
    ("numpy us", "numpy_us", _common.fmt_us),
    ("vs numpy", "vs_numpy", "s"),
    ("torch us", "torch_us", _common.fmt_us),
    ("vs torch", "vs_torch", "s"),
    ("best pinned", "best_cpu", "s"),
    ("auto/best", "auto_vs_best", "s"),
    ("note", "note", "s"),
]


def _parse_shape(text):
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape B x K x N expected (e.g. 256x1024x1024), "
                                         f"got {text!r}")
    return shape


def _ratio(theirs, ours, star=False):
    if theirs is None or ours is None:
        return None
    return f"{theirs / ours:.2f}" + ("*" if star else "")


def _peak_pct(gflops, dtype, threads):
    return 100.0 * gflops / _common.fma_peak(dtype, threads)


def _recheck_peaks(rows, seconds):
    """Measure the FMA peaks again after the table's rows (keeping the higher reading),
    recompute the rows' "% peak" from them; returns the lines that report it."""
    rechecked = _common.recheck_fma_peaks(seconds)
    for row in rows:
        if row.get("gflops") is not None:
            dtype = np.dtype(row["dtype"].replace("f", "float"))
            row["peak_pct"] = _peak_pct(row["gflops"], dtype, row["threads"])
    if not rechecked:
        return []
    text = ", ".join(f"{dt} {t} thr {again:.1f} (first {first:.1f})"
                     for dt, t, first, again in rechecked)
    lines = [f"FMA peak measured again after the rows: {text} GFLOP/s; \"% peak\" uses the "
             "higher reading."]
    if any(abs(again - first) > 0.1 * max(again, first) for _, _, first, again in rechecked):
        lines.append("WARNING: the two peak readings differ by more than 10 %: the host ran "
                     "other work during part of this run. Ratios compare calls timed in turn "
                     "within a row; rerun before trusting a row's absolute figures.")
    return lines


def _pinned(cpu, fn):
    """fn run in CPU configuration ``cpu``, the automatic choice restored after it."""
    def call():
        auto = pybackprop.get_cpu()
        pybackprop.set_cpu(cpu)
        try:
            return fn()
        finally:
            pybackprop.set_cpu(auto)
    return call


def run_case(problem, op, threads, torch, timing, numpy_unmatched, runs=1, pinned=()):
    """Verify, then time ours (the automatic configuration), numpy, torch and ours in each
    configuration of ``pinned`` for one row; returns (row dict, ok).

    With ``runs`` > 1 they are timed in turn ``runs`` times (so slow drifts of a shared
    host hit all of them alike) and each keeps its best median. A pinned configuration is
    switched to once per measurement (its calls run in it; the switch is not timed).
    """
    row = dict(op=op, act=problem.act, dtype=problem.dtype.name.replace("float", "f"),
               threads=threads, shape=_dense_problem._shape_text(problem.shape))
    ok = True
    try:
        ours = problem.ours(op)
        problem.verify(op, ours, "ours")
        for cpu in pinned:
            problem.verify(op, _pinned(cpu, ours), f"ours ({cpu})")
    except Exception as e:  # a wrong result or a failing call: report, keep going
        row["note"] = f"FAIL {type(e).__name__}: {e}"
        return row, False
    fns = {"ours": ours, "numpy": problem.numpy(op)}
    if torch is not None:
        try:
            t_fn = problem.torch(op, torch)
            problem.verify(op, t_fn, "torch")
            fns["torch"] = t_fn
        except Exception as e:  # the comparison is broken, not our kernel: note it
            row["note"] = f"torch: {type(e).__name__}: {e}"
            ok = False
    auto = pybackprop.get_cpu()
    fns.update({"cpu:" + cpu: (cpu, ours) for cpu in pinned})
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            if isinstance(fn, tuple):
                pybackprop.set_cpu(fn[0])
                try:
                    t = _common.measure(fn[1], **timing)
                finally:
                    pybackprop.set_cpu(auto)
            else:
                t = _common.measure(fn, **timing)
            key = name + "_us"
            row[key] = t if row.get(key) is None else min(row[key], t)
    if pinned:
        best = min(pinned, key=lambda c: row["cpu:" + c + "_us"])
        row["best_cpu"] = best
        # The automatic choice runs the code of its configuration pinned: both timings are
        # samples of the same calls, and the faster stands for it.
        t_auto = min(row["ours_us"], row.get("cpu:" + auto + "_us") or row["ours_us"])
        if best != auto and t_auto > row["cpu:" + best + "_us"] / 0.95:
            # more than 5 % behind: the two timed again in turn, as many rounds, to tell a
            # slower configuration from a disturbed sample; each keeps its best
            for _ in range(max(1, runs)):
                t_auto = min(t_auto, _common.measure(ours, **timing))
                pybackprop.set_cpu(best)
                try:
                    t = _common.measure(ours, **timing)
                finally:
                    pybackprop.set_cpu(auto)
                row["cpu:" + best + "_us"] = min(row["cpu:" + best + "_us"], t)
            row["note"] = ((row.get("note") or "") + " rechecked").strip()
        row["auto_vs_best"] = _ratio(row["cpu:" + best + "_us"], t_auto)
    row["gflops"] = _dense_problem.flops(op, problem.shape) / row["ours_us"] * 1e-9
    row["peak_pct"] = _peak_pct(row["gflops"], problem.dtype, threads)
    row["vs_numpy"] = _ratio(row["numpy_us"], row["ours_us"], star=numpy_unmatched)
    row["vs_torch"] = _ratio(row.get("torch_us"), row["ours_us"])
    return row, ok


def run_train(dtypes, threads, torch, timing, args):
    """Print the gelu/silu training-step table (bench/_dense_gelu.py); False if wrong."""
    return _dense_gelu.run_train(_dense_problem.Problem, dtypes, threads, torch, timing,
                                 args.runs, args.out)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m pybackprop bench dense",
        description="Fused dense + activation forward/backward: pybackprop vs the numpy "
                    "reference vs PyTorch, verified before timing.")
    p.add_argument("--quick", action="store_true",
                   help="few shapes, one thread count, short timing (CI / README smoke)")
    p.add_argument("--large", action="store_true",
                   help="also (2048, 2048, 2048)")
    p.add_argument("--epilogue", action="store_true",
                   help="only the fused-epilogue table (sigmoid/tanh/gelu/gelu_tanh/silu "
                        "forward against relu at 1024^3 and 256x1024x1024, timed in turn; "
                        "part of the full run)")
    p.add_argument("--train", action="store_true",
                   help="only the training-step table (gelu/silu forward storing z + "
                        "backward, against PyTorch autograd; part of the full run)")
    p.add_argument("--subnormal", action="store_true",
                   help="only the subnormal-input table (slowdown on all-subnormal x, with "
                        "and without flush-to-zero; part of the full run)")
    p.add_argument("--dtype", default="both",
                   help="float32, float64 or both (default both)")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default 1 and pybackprop's "
                        "default; --quick: the default only)")
    p.add_argument("--shapes", nargs="+", type=_parse_shape, default=None,
                   metavar="BxKxN", help="shapes to run instead of the defaults")
    p.add_argument("--act", default="relu", choices=ACTIVATIONS,
                   help="activation of the main rows (default relu)")
    p.add_argument("--negative-slope", type=float, default=0.01,
                   help="slope of leaky_relu (default 0.01)")
    p.add_argument("--ops", default="forward,backward",
                   help="forward, backward or both (default both)")
    p.add_argument("--arch", default=None,
                   help="cap the instruction set (pybackprop.available_archs()); default: "
                        "the configuration chosen at load time")
    p.add_argument("--cpu", default=None,
                   help="CPU configuration to use as ours (pybackprop.available_cpus()); "
                        "default: the one chosen at load time")
    p.add_argument("--pinned", default="all",
                   help="configurations also timed in each row, each pinned in turn: "
                        "'all' (default: every runnable one but the portable 'generic' "
                        "when another runs), 'none', or a comma-separated list")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write the main table as markdown into PATH (e.g. README.md), "
                        "in a section of its own for this CPU model and configuration")
    p.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch")
    p.add_argument("--out", action="store_true",
                   help="time ours with preallocated out=/dx=/dw=/db= buffers (default: "
                        "allocating its results, like numpy and torch)")
    p.add_argument("--runs", type=int, default=1,
                   help="time ours/numpy/torch in turn this many times, keep each one's "
                        "best median (default 1; 2 steadies a noisy host)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed samples per measurement (default 0.2, "
                        "--quick 0.03)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    shown_args = " ".join(sys.argv[1:] if argv is None else argv)
    default_threads = pybackprop.get_num_threads()
    try:
        if args.arch is not None:
            pybackprop.set_arch(args.arch)
        if args.cpu is not None:
            pybackprop.set_cpu(args.cpu)
        pinned = _parse_pinned(args.pinned)
        dtypes = _common.parse_dtypes(args.dtype)
        if args.threads is not None:
            thread_counts = _common.parse_threads(args.threads)
        else:
            thread_counts = [default_threads] if args.quick else \
                _common.parse_threads("default")
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        if not ops or any(o not in OPS for o in ops):
            raise ValueError(f"--ops: forward and/or backward expected, got {args.ops!r}")
    except ValueError as e:
        print(f"bench_dense: {e}", file=sys.stderr)
        return 2
    timing = dict(_common.TIMING_QUICK if args.quick else _common.TIMING_FULL)
    if args.min_time is not None:
        timing["min_time"] = args.min_time
    if args.shapes is not None:
        shapes = list(args.shapes)
    else:
        shapes = list(SHAPES_QUICK if args.quick else SHAPES_DEFAULT)
    if args.large:
        shapes += SHAPES_LARGE
    extra = []  # (act, shape) rows of the full mode, at the highest thread count
    if not args.quick and args.shapes is None:
        extra = [(a, EXTRA_SHAPE) for a in EXTRA_ACTS if a != args.act]
    torch = None if args.no_torch else _common.import_torch()

    print("pybackprop bench: dense + activation, forward and backward")
    for line in _common.machine_lines(torch):
        print("  " + line)
    print(f"  CPU configuration: {pybackprop.get_cpu()} "
          f"({pybackprop.cpu_info()['reason']}); also timed, pinned in turn: "
          f"{', '.join(pinned) or 'none'}")
    peak_seconds = 0.05 if args.quick else 0.15
    for dt in dtypes:
        peaks = ", ".join(f"{t} thr {_common.fma_peak(dt, t, seconds=peak_seconds):.1f}"
                          for t in thread_counts)
        print(f"  measured FMA peak {dt.name} ({_common._gemm_isa(dt)}): {peaks} GFLOP/s")
    copy, rmw = _common.bandwidth((64 << 20) if args.quick else (256 << 20),
                                  3 if args.quick else 5, threads=max(thread_counts))
    print(f"  measured bandwidth ({max(thread_counts)} thr): copy {copy:.1f} GB/s, "
          f"read-modify-write {rmw:.1f} GB/s")
    if max(thread_counts) > 1:
        region = _common.parallel_region_us(max(thread_counts))
        print(f"  measured OpenMP parallel region ({max(thread_counts)} thr, empty): "
              f"{region:.2f} us per call")
    print(f"  timing: median per call of >= {timing['min_samples']} samples over >= "
          f"{timing['min_time']} s after a {timing['warmup']} s warm-up; best of "
          f"{args.runs} run(s); arguments: {shown_args or '(none)'}")
    print()
    # the subnormal-input, epilogue and training-step tables: alone with --subnormal /
    # --epilogue / --train, after the main table in a full run
    subnormal = args.subnormal or (not args.quick and args.shapes is None)
    epilogue = args.epilogue or (not args.quick and args.shapes is None)
    train = args.train or (not args.quick and args.shapes is None)
    if args.epilogue:
        ok = _dense_tables.run_epilogue(dtypes, max(thread_counts), timing)
        _common.set_threads(default_threads, torch)
        return 0 if ok else 1
    if args.train:
        ok = run_train(dtypes, max(thread_counts), torch, timing, args)
        _common.set_threads(default_threads, torch)
        return 0 if ok else 1
    if args.subnormal:
        ok = _dense_tables.run_subnormal(dtypes, max(thread_counts), torch, timing)
        _common.set_threads(default_threads, torch)
        return 0 if ok else 1

    rows, all_ok = [], True
    for threads in thread_counts:
        blas_matched = _common.set_threads(threads, torch)
        numpy_unmatched = not blas_matched and threads < (_blas_default_threads())
        cases = [(args.act, s) for s in shapes]
        if threads == max(thread_counts):
            cases += extra
        for dt in dtypes:
            for act, shape in cases:
                problem = _dense_problem.Problem(dt, shape, act, args.negative_slope,
                                                 buffers=args.out)
                for op in ops:
                    row, ok = run_case(problem, op, threads, torch, timing, numpy_unmatched,
                                       args.runs, pinned)
                    rows.append(row)
                    all_ok = all_ok and ok
                    if sys.stderr.isatty():  # progress: the table prints at the end
                        print(f"\r  {len(rows)} rows", end="", file=sys.stderr, flush=True)
                del problem
    _common.set_threads(default_threads, torch)
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    peak_lines = _recheck_peaks(rows, peak_seconds)

    _common.print_table(rows, COLUMNS)
    print()
    for line in peak_lines:
        print("  " + line)
    print("  ours: " + ("preallocated out=/dx=/dw=/db= buffers; numpy reference and torch "
                        "allocate their results." if args.out else
                        "allocating its results, as the numpy reference and torch do "
                        "(--out: with buffers)."))
    print("  ratios: their time / our time (> 1: pybackprop faster). GFLOP/s: forward "
          "2BKN, backward 4BKN (dx, dw, db).")
    print("  torch backward: torch.autograd.grad on a retained graph (backward only).")
    if pinned:
        print(f"  best pinned: the fastest of {', '.join(pinned)} pinned one by one in the "
              f"same run; auto/best: its time / the automatic choice's ({pybackprop.get_cpu()}: "
              f"the faster of its own timing and that of {pybackprop.get_cpu()} pinned, the "
              f"same code) (>= 0.95: within 5 %); a row more than 5 % behind is timed again, "
              f"the two in turn (note: rechecked).")
    if args.markdown:
        _dense_markdown.write_section(args.markdown, rows, shown_args, torch)
    if epilogue:
        print()
        all_ok = _dense_tables.run_epilogue(dtypes, max(thread_counts), timing) and all_ok
        _common.set_threads(default_threads, torch)
    if train:
        print()
        all_ok = run_train(dtypes, max(thread_counts), torch, timing, args) and all_ok
        _common.set_threads(default_threads, torch)
    if subnormal:
        print()
        all_ok = _dense_tables.run_subnormal(dtypes, max(thread_counts), torch, timing) and all_ok
        _common.set_threads(default_threads, torch)
    if any(isinstance(r.get("vs_numpy"), str) and r["vs_numpy"].endswith("*")
           for r in rows):
        print("  *: numpy's BLAS used its default thread count here, more than ours.")
    if not all_ok:
        print("bench_dense: some results were WRONG or failed (see note column)",
              file=sys.stderr)
        return 1
    return 0


def _parse_pinned(text):
    """--pinned: the configurations to time pinned, each one this CPU runs."""
    runnable = pybackprop.available_cpus()
    if text == "none":
        return []
    if text == "all":
        simd = [c for c in runnable if c != "generic"]
        return simd or runnable
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in runnable]
    if bad:
        raise ValueError(f"--pinned: {bad} not among this CPU's configurations {runnable}")
    return names


def _blas_default_threads():
    """numpy's BLAS thread count when it cannot be queried: what OpenBLAS/MKL default to
    (the environment variables, else every CPU)."""
    for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(v, "").isdigit():
            return int(os.environ[v])
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
