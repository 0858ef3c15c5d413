"""Shared helpers of the benchmarks: timing, machine peaks, threads, PyTorch, tables.

Every bench module (``bench_<kernel>.py``) imports this as ``pybackprop._bench._common``.
What it assumes: pybackprop is importable (installed, editable or not). What it does not
do: decide what to time or check; each bench verifies its own results against
``pybackprop.reference`` before it calls :func:`measure`.

Conventions:
  - Times are medians of per-call times in seconds (printed in microseconds).
  - Peaks are measured on this machine in this process (``pb_probe_*`` in csrc/testing/probe.c),
    for the ISA of the active configuration's GEMM and the thread count in force, never taken from a data sheet.
  - PyTorch is optional: :func:`import_torch` returns ``None`` when it is missing.
  - numpy's BLAS thread count can only be changed at run time through threadpoolctl; when
    it is not installed, numpy runs with its library default and the tables say so.
"""
import datetime
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

import pybackprop

__all__ = [
    "measure", "fma_peak", "recheck_fma_peaks", "parallel_region_us", "bandwidth",
    "import_torch", "set_threads", "blas_threads_note",
    "tolerance", "check_close", "print_table", "machine_lines", "parse_threads",
    "parse_dtypes", "DTYPES", "run_elementwise_case", "add_elementwise_arguments",
    "parse_elementwise_arguments", "ELEMENTWISE_COLUMNS", "print_elementwise_header",
]

DTYPES = {"float32": np.float32, "float64": np.float64}


# ---- timing ------------------------------------------------------------------------------
# Timing budgets (seconds) of one measurement, as keyword arguments of measure().
TIMING_FULL = dict(min_time=0.2, warmup=0.03, min_samples=3)
TIMING_QUICK = dict(min_time=0.03, warmup=0.01, min_samples=3)


def fmt_us(seconds):
    """A time in microseconds with 3-4 significant digits, for the tables."""
    us = seconds * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def measure(fn, *, min_time=0.25, min_samples=3, max_samples=200, sample_time=2e-3,
            warmup=0.05, settle=0.2):
    """Median time of one call of ``fn()`` in seconds.

    Settle: first sleep ``settle`` seconds, so that the idle worker threads of whichever
    library ran before (OpenBLAS, PyTorch's and our OpenMP pools spin for a while after a
    call) have gone to sleep and do not compete with ``fn`` for the cores.

    Warm-up: ``fn`` runs at least twice and for at least ``warmup`` seconds, untimed (first
    calls pay page faults, lazy allocation and thread start-up). Then calls are grouped so
    that one sample lasts about ``sample_time`` (timer overhead stays negligible for calls
    of a microsecond), and samples are taken until both ``min_time`` seconds and
    ``min_samples`` samples are reached (at most ``max_samples``). Returns the median of the
    samples' per-call times: robust to the noise of a shared host.
    """
    clock = time.perf_counter
    time.sleep(settle)
    t_end = clock() + warmup
    calls = 0
    t0 = clock()
    while calls < 2 or clock() < t_end:
        fn()
        calls += 1
    per_call = max((clock() - t0) / calls, 1e-9)
    number = max(1, int(sample_time / per_call))
    samples = []
    t_stop = clock() + min_time
    while len(samples) < max_samples and (len(samples) < min_samples or clock() < t_stop):
        t0 = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - t0) / number)
    return statistics.median(samples)


# ---- machine peaks (measured) ------------------------------------------------------------
_peak_cache = {}


def _lib():
    from pybackprop import _native
    return _native.lib


def fma_peak(dtype, threads=None, seconds=0.15, runs=2):
    """Peak FMA throughput in GFLOP/s of ``dtype`` on the ISA of the active configuration's
    GEMM for it.

    Measured by ``pb_probe_fma_peak_*`` with ``threads`` threads (default: the current
    pybackprop setting), best of ``runs`` runs of ``seconds`` each; cached per
    (dtype, threads, ISA). The thread setting in force before the call is restored.
    """
    dtype = np.dtype(dtype)
    old = pybackprop.get_num_threads()
    threads = old if threads is None else threads
    key = (dtype.name, threads, _gemm_isa(dtype))
    if key not in _peak_cache:
        probe = _lib().pb_probe_fma_peak_f64 if dtype == np.float64 else \
            _lib().pb_probe_fma_peak_f32
        pybackprop.set_num_threads(threads)
        try:
            _peak_cache[key] = max(probe(seconds) for _ in range(runs))
        finally:
            pybackprop.set_num_threads(old)
    return _peak_cache[key]


def _gemm_isa(dtype):
    """The ISA of the active configuration's GEMM for dtype (the FMA peak's loop)."""
    kind = "float64 gemm" if np.dtype(dtype) == np.float64 else "float32 gemm"
    return pybackprop.cpu_info()["kernels"][kind]


def recheck_fma_peaks(seconds=0.15, runs=2):
    """Measure every FMA peak of the active configuration's ISAs that :func:`fma_peak` has cached once
    more, and keep the higher of the two: a probe that ran while the host was busy elsewhere
    (one of the two vCPUs taken for a second or two) reads low, and would put rows above
    100 %. Returns ``[(dtype name, threads, first, again)]`` for the report."""
    out = []
    for key in [k for k in _peak_cache if k[2] == _gemm_isa(k[0])]:
        first = _peak_cache.pop(key)
        again = fma_peak(key[0], key[1], seconds=seconds, runs=runs)
        _peak_cache[key] = max(first, again)
        out.append((key[0], key[1], first, again))
    return out


def parallel_region_us(threads=None, repeats=5):
    """The cost in microseconds of an empty OpenMP parallel region with ``threads`` threads
    (default: the current setting), measured by ``pb_probe_parallel_region_us``: what every
    threaded kernel call pays once, on top of its work. 0 with one thread."""
    old = pybackprop.get_num_threads()
    pybackprop.set_num_threads(old if threads is None else threads)
    try:
        return _lib().pb_probe_parallel_region_us(repeats)
    finally:
        pybackprop.set_num_threads(old)


def bandwidth(n_bytes=256 << 20, repeats=5, threads=None):
    """Streaming bandwidth in GB/s as ``(copy, rmw)``, measured by ``pb_probe_bandwidth_*``.

    copy counts read + write bytes of b = a; rmw counts 3 x n_bytes of a += s * b. Arrays
    of ``n_bytes`` each, best of ``repeats``; a value < 0 means the allocation failed.
    """
    old = pybackprop.get_num_threads()
    pybackprop.set_num_threads(old if threads is None else threads)
    try:
        lib = _lib()
        return (lib.pb_probe_bandwidth_copy(n_bytes, repeats),
                lib.pb_probe_bandwidth_rmw(n_bytes, repeats))
    finally:
        pybackprop.set_num_threads(old)


# ---- threads and the libraries we compare with -------------------------------------------
def import_torch():
    """``torch`` if it imports, else ``None`` (PyTorch is compared, never required)."""
    try:
        import torch
    except Exception:  # ImportError, or a broken install (OSError from a shared library)
        return None
    return torch


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def set_threads(n, torch=None):
    """Use ``n`` threads in pybackprop, in PyTorch (if given) and, if threadpoolctl is
    installed, in numpy's BLAS (for the rest of the process). Returns True if numpy's BLAS
    could be limited."""
    pybackprop.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    tpc = _threadpoolctl()
    if tpc is None:
        return False
    tpc.threadpool_limits(limits=n, user_api="blas")
    return True


def blas_threads_note():
    """One line: how many threads numpy's BLAS uses and whether the bench can change it."""
    tpc = _threadpoolctl()
    if tpc is not None:
        info = [f"{d.get('internal_api')} {d.get('num_threads')} threads"
                for d in tpc.threadpool_info() if d.get("user_api") == "blas"]
        return "numpy BLAS: " + (", ".join(info) or "unknown") + \
            " (limited per row with threadpoolctl)"
    env = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                            "MKL_NUM_THREADS") if v in os.environ]
    how = ", ".join(env) if env else f"library default, likely {os.cpu_count()} (all cores)"
    return (f"numpy BLAS threads: {how}; NOT matched per row (install threadpoolctl to "
            f"match) -- '*' marks ratios against numpy running with more threads than ours")


# ---- verification --------------------------------------------------------------------------
def tolerance(dtype, n_terms):
    """Relative tolerance of a result summed from ``n_terms`` products of O(1) values:
    16 eps sqrt(n) (random-walk rounding growth with a safety factor; eps of ``dtype``)."""
    return 16.0 * float(np.finfo(dtype).eps) * math.sqrt(max(1, n_terms))


def check_close(name, got, want, dtype, n_terms):
    """Raise AssertionError unless ``got`` matches ``want`` within :func:`tolerance`, with
    the absolute part scaled by the largest |want| (so near-zero entries do not fail)."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != reference {want.shape}")
    tol = tolerance(dtype, n_terms)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    if not np.allclose(got, want, rtol=tol, atol=tol * scale):
        err = float(np.max(np.abs(got.astype(np.float64) - want)))
        raise AssertionError(f"{name}: max abs error {err:.3g} > tolerance "
                             f"{tol:.3g} (x {scale:.3g}) vs pybackprop.reference")


# ---- output --------------------------------------------------------------------------------
# Every table printed in this process, as (columns, rows): what ``bench --plot`` draws.
PRINTED = []


def print_table(rows, columns, file=None):
    """Print ``rows`` (dicts) as a plain-text table with aligned columns.

    ``columns``: list of (header, key, fmt); fmt is a format spec (".1f", "d") or a
    callable returning a string, and "s" marks a text column (left-aligned; all others are
    right-aligned). A missing or None value prints as "-".
    """
    file = file or sys.stdout
    PRINTED.append((list(columns), [dict(r) for r in rows]))
    cells = []
    for row in rows:
        line = []
        for _, key, fmt in columns:
            v = row.get(key)
            if v is None:
                line.append("-")
            elif callable(fmt):
                line.append(fmt(v))
            else:
                line.append(format(v, fmt))
        cells.append(line)
    left = [fmt == "s" for _, _, fmt in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells])
              for i, (h, _, _) in enumerate(columns)]

    def fmt_line(items):
        return "  ".join(s.ljust(w) if lft else s.rjust(w)
                         for s, w, lft in zip(items, widths, left)).rstrip()

    print(fmt_line([h for h, _, _ in columns]), file=file)
    print(fmt_line(["-" * w for w in widths]), file=file)
    for line in cells:
        print(fmt_line(line), file=file)
    file.flush()


def markdown_table(rows, columns):
    """``rows`` as a GitHub-flavoured markdown table (the same cells as print_table)."""
    def cell(row, key, fmt):
        v = row.get(key)
        return "-" if v is None else fmt(v) if callable(fmt) else format(v, fmt)
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join("---" if fmt == "s" else "--:" for _, _, fmt in columns) + "|"]
    lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown_section(path, key, text):
    """Put ``text`` into the file ``path`` between the lines ``<!-- KEY begin -->`` and
    ``<!-- KEY end -->``, replacing what was there; without them, the section goes before
    the line ``<!-- bench results -->`` if the file has it, else at its end."""
    begin, end = f"<!-- {key} begin -->", f"<!-- {key} end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if begin in old and end in old:
        i, j = old.index(begin), old.index(end) + len(end)
        new = old[:i] + block.rstrip("\n") + old[j:]
    elif "<!-- bench results -->" in old:
        i = old.index("<!-- bench results -->")
        new = old[:i] + block + "\n" + old[i:]
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + block
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), or what platform says."""
    return _cpu_model()


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines(torch=None):
    """Lines describing the machine, the build and the libraries compared with."""
    info = pybackprop.build_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines = [
        f"date:    {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs ({usable} usable), "
        f"{platform.system()} {platform.machine()}, load average {_loadavg()}",
        "pybackprop: " + ", ".join(f"{k}={info[k]}" for k in info),
        f"python {platform.python_version()}, numpy {np.__version__} ({_numpy_blas()})",
        blas_threads_note(),
    ]
    if torch is not None:
        lines.append(f"torch {torch.__version__} (MKL {torch.backends.mkl.is_available()}, "
                     f"oneDNN {torch.backends.mkldnn.is_available()})")
    else:
        lines.append("torch: not compared (--no-torch, or not importable)")
    return lines


def _loadavg():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _numpy_blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no dict mode
        return "BLAS unknown"


# ---- command-line helpers ----------------------------------------------------------------
def parse_threads(text):
    """'1,2' -> [1, 2]; 'default' -> [1, pybackprop's current count] (deduplicated)."""
    if text in (None, "", "default"):
        return sorted({1, pybackprop.get_num_threads()})
    out = sorted({int(t) for t in text.split(",") if t.strip()})
    if not out or out[0] < 1:
        raise ValueError(f"--threads: positive integers expected, got {text!r}")
    return out


def parse_dtypes(text):
    """'float32' / 'f32' / 'float64' / 'f64' / 'both' -> list of numpy dtypes."""
    names = {"float32": "float32", "f32": "float32", "float64": "float64",
             "f64": "float64"}
    if text in (None, "", "both", "all"):
        return [np.dtype(np.float32), np.dtype(np.float64)]
    out = []
    for t in text.split(","):
        if t.strip() not in names:
            raise ValueError(f"--dtype: float32, float64 or both expected, got {t!r}")
        out.append(np.dtype(names[t.strip()]))
    return out


def _ratio(theirs, ours):
    return None if theirs is None or ours is None else f"{theirs / ours:.2f}"


def run_elementwise_case(case, label, threads, torch, timing, copy_bw):
    """One row of the elementwise benches (losses, activation): ``case`` gives ``ours()``,
    ``numpy()``, ``torch(torch)`` (callables to time), ``verify(fn, who)``, ``dtype``,
    ``size_text``, ``elements`` and ``bytes``, and optionally ``verify_numpy`` (True: the
    numpy column is not the reference itself, and is verified too). Ours is verified, then
    timed; a failing check or call is reported in the note column (returns ok False), as is
    a broken numpy or PyTorch comparison. Returns (row, ok)."""
    row = dict(kernel=label, dtype=case.dtype.name.replace("float", "f"), threads=threads,
               size=case.size_text)
    try:
        ours = case.ours()
        case.verify(ours, "ours")
        row["ours_us"] = measure(ours, **timing)
    except Exception as e:  # a wrong result or a failing call: report, keep going
        row["note"] = f"FAIL {type(e).__name__}: {e}"
        return row, False
    row["ns_elem"] = row["ours_us"] * 1e9 / case.elements
    row["gbs"] = case.bytes / row["ours_us"] * 1e-9
    row["bw_pct"] = 100.0 * row["gbs"] / copy_bw if copy_bw > 0 else None
    ok = True
    try:
        np_fn = case.numpy()
        if getattr(case, "verify_numpy", False):  # a numpy column other than the reference
            case.verify(np_fn, "numpy")
        row["numpy_us"] = measure(np_fn, **timing)
        row["vs_numpy"] = _ratio(row["numpy_us"], row["ours_us"])
    except Exception as e:  # the comparison is broken, not our kernel: note it
        row["note"] = f"numpy: {type(e).__name__}: {e}"
        ok = False
    if torch is not None:
        try:
            t_fn = case.torch(torch)
            case.verify(t_fn, "torch")
            row["torch_us"] = measure(t_fn, **timing)
            row["vs_torch"] = _ratio(row["torch_us"], row["ours_us"])
        except Exception as e:  # the comparison is broken, not our kernel: note it
            row["note"] = " ".join(filter(None, (row.get("note"),
                                                 f"torch: {type(e).__name__}: {e}")))
            ok = False
    return row, ok


def add_elementwise_arguments(p, quick_help, kernels_help, kernels_default):
    """The options of the elementwise benches (losses, activation)."""
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--dtype", default="both", help="float32, float64 or both")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default 1 and the default count; "
                        "--quick: the default only)")
    p.add_argument("--kernels", default=kernels_default, help=kernels_help)
    p.add_argument("--arch", default=None,
                   help="cap the instruction set (pybackprop.available_archs())")
    p.add_argument("--cpu", default=None,
                   help="CPU configuration to run (pybackprop.available_cpus())")
    p.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed samples per measurement")
    return p


def parse_elementwise_arguments(args):
    """Apply --arch and --cpu; returns (dtypes, thread counts, the default thread count,
    timing) of the parsed options of add_elementwise_arguments. Raises ValueError for a bad
    --dtype, --threads, --arch or --cpu."""
    if args.arch is not None:
        pybackprop.set_arch(args.arch)
    if args.cpu is not None:
        pybackprop.set_cpu(args.cpu)
    default_threads = pybackprop.get_num_threads()
    dtypes = parse_dtypes(args.dtype)
    thread_counts = (parse_threads(args.threads) if args.threads is not None
                     else [default_threads] if args.quick else parse_threads("default"))
    timing = dict(TIMING_QUICK if args.quick else TIMING_FULL)
    if args.min_time is not None:
        timing["min_time"] = args.min_time
    return dtypes, thread_counts, default_threads, timing


# The table of the elementwise benches: (header, row key, format) per column.
ELEMENTWISE_COLUMNS = [
    ("kernel", "kernel", "s"),
    ("dtype", "dtype", "s"),
    ("thr", "threads", "d"),
    ("size", "size", "s"),
    ("ours us", "ours_us", fmt_us),
    ("ns/elem", "ns_elem", ".2f"),
    ("GB/s", "gbs", ".1f"),
    ("% bw", "bw_pct", ".0f"),
    ("numpy us", "numpy_us", fmt_us),
    ("vs numpy", "vs_numpy", "s"),
    ("torch us", "torch_us", fmt_us),
    ("vs torch", "vs_torch", "s"),
    ("note", "note", "s"),
]


def print_elementwise_header(title, torch, quick, threads):
    """Print the title, the machine lines and the copy bandwidth measured with ``threads``
    (the % bw column's reference); returns that bandwidth in GB/s."""
    print(title)
    for line in machine_lines(torch):
        print("  " + line)
    copy, rmw = bandwidth((64 << 20) if quick else (256 << 20), 3 if quick else 5,
                          threads=threads)
    print(f"  measured bandwidth ({threads} thr): copy {copy:.1f} GB/s, "
          f"read-modify-write {rmw:.1f} GB/s")
    print()
    return copy
