"""Command line of pybackprop: ``python -m pybackprop <command> [args]``.

    python -m pybackprop bench                 every benchmark in its quick form (~1-2 min)
    python -m pybackprop bench --full          every benchmark in full (~20 min on 2 cores)
    python -m pybackprop bench NAME [args]     one benchmark with its own options
                                               (NAME --help lists them)
    python -m pybackprop bench ... --save DIR  also write each output to a file in DIR
    python -m pybackprop bench ... --plot F.png  draw the ratios against numpy and PyTorch
    python -m pybackprop info                  build_info(), the CPU and its configurations
    python -m pybackprop check                 every kernel against the numpy reference,
                                               every CPU configuration this CPU runs
    python -m pybackprop demo [args]           train an MLP on three spirals (--help)

Benchmarks are modules of ``pybackprop._bench`` (the repository's bench/ directory) with a
``main(argv) -> int``; a new one is one more entry in ``BENCHES``. A new command is one
more subparser in ``build_parser``.
"""
import argparse
import importlib
import sys

# (name, module, what it times) of every benchmark, in the order `bench` runs them.
BENCHES = [
    ("dense", "pybackprop._bench.bench_dense",
     "fused dense + activation forward and backward, every CPU configuration pinned"),
    ("spectral", "pybackprop._bench.bench_spectral",
     "power iteration, spectral normalisation and its backward"),
    ("optim", "pybackprop._bench.bench_optim", "Adam, AdamW, AdaMax steps, one and many tensors"),
    ("losses", "pybackprop._bench.bench_losses",
     "softmax cross-entropy, BCE, MSE (value and gradient), maximum"),
    ("activation", "pybackprop._bench.bench_activation",
     "standalone activations, forward and backward"),
    ("torch", "pybackprop._bench.bench_torch",
     "PyTorch training steps: torch.nn against pybackprop.torch modules"),
    ("distributed", "pybackprop._bench.bench_distributed",
     "data-parallel training steps over MPI, 1 and 2 ranks"),
]


class _Tee:
    """Writes to the terminal and to a file (bench --save)."""

    def __init__(self, stream, f):
        self.stream, self.f = stream, f

    def write(self, text):
        self.stream.write(text)
        self.f.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.f.flush()

    def isatty(self):
        return False


def _result_path(folder, name):
    """folder/<date>_<cpu model>_<configuration>_<benchmark>.txt"""
    import datetime
    import os
    import pybackprop
    from pybackprop._bench import _common
    model = "".join(c if c.isalnum() else "-" for c in _common.cpu_model().lower())
    model = "-".join(p for p in model.split("-") if p)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{stamp}_{model}_{pybackprop.get_cpu()}_{name}.txt")


def _run_bench(name, module, argv, save):
    """One benchmark's main(argv); with save, its output also goes to a file there."""
    main = importlib.import_module(module).main
    if save is None:
        return main(argv)
    path = _result_path(save, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("$ python -m pybackprop bench " + " ".join([name] + argv) + "\n")
        old, sys.stdout = sys.stdout, _Tee(sys.stdout, f)
        try:
            rc = main(argv)
        finally:
            sys.stdout = old
    print(f"(saved to {path})")
    return rc


def _pop_option(rest, option, what):
    """``option VALUE`` out of the arguments passed through: (VALUE or None, the others)."""
    rest = list(rest)
    if option not in rest:
        return None, rest
    i = rest.index(option)
    if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
        raise SystemExit(f"python -m pybackprop bench: {option} needs {what}")
    return rest[i + 1], rest[:i] + rest[i + 2:]


def _plot(path, tables):
    from pybackprop._bench import _plot
    print(f"(plotted to {_plot.plot(tables, path)})")


def _cmd_bench(args):
    """Run the named benchmark with its own arguments, or every benchmark (quick unless
    --full); --save DIR writes each one's output to a file in DIR too, --plot FILE draws
    the ratios of every table printed."""
    save, rest = _pop_option(args.rest, "--save", "a folder")
    plot, rest = _pop_option(rest, "--plot", "a file name (e.g. bench.png)")
    if args.name is None:
        if args.help:
            args.parser.print_help()
            return 0
        runs = [(name, module, rest + ([] if args.full else ["--quick"]))
                for name, module, _ in BENCHES]
    else:  # its own options, --help included
        runs = [(args.name, dict((n, m) for n, m, _ in BENCHES)[args.name],
                 rest + (["--help"] if args.help else []))]
    from pybackprop._bench import _common
    status, tables = 0, []
    for i, (name, module, argv) in enumerate(runs):
        if i:
            print()
        start = len(_common.PRINTED)
        rc = _run_bench(name, module, argv, save)
        tables += [(name, cols, rows) for cols, rows in _common.PRINTED[start:]]
        status = status or rc
    if plot is not None:
        _plot(plot, tables)
    return status


def _cmd_info(args):
    """Print the build (version, compiler, flags, OpenMP, threads), the CPU as cpuid sees
    it, every CPU configuration, and which one runs and why."""
    import pybackprop
    info = pybackprop.build_info()
    cpu = pybackprop.cpu_info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    print(f"{'archs'.ljust(width)}  {', '.join(pybackprop.available_archs())} "
          f"(PYBACKPROP_ARCH caps the instruction set)")
    print(f"\nCPU: {cpu['vendor'] or 'no cpuid'} family {cpu['family']:#x} model "
          f"{cpu['model']:#x} stepping {cpu['stepping']}")
    for level, c in cpu["caches"].items():
        print(f"  {level:<3}  {c['bytes'] // 1024:>6} KiB, {c['ways']}-way, {c['line']}-byte "
              f"lines, {c['sets']} sets")
    if not cpu["caches_from_cpuid"]:
        print("  (cpuid describes no data cache here: these sizes are assumed)")
    print(f"\nconfiguration: {cpu['cpu']} ({cpu['reason']})")
    print("configurations (PYBACKPROP_CPU=NAME pins one; docs/cpus.md):")
    for name, c in cpu["configurations"].items():
        k = c["kernels"]
        mark = "*" if name == cpu["cpu"] else " "
        runs = "runs here" if c["runs_here"] else "not on this CPU"
        print(f" {mark}{name:<9} f32 {k['float32 gemm']:<6} f64 {k['float64 gemm']:<6} "
              f"vector {k['vector']:<6} {runs:<15} {c['about']}")
    return 0


def _cmd_check(args):
    """Every kernel against the reference on this CPU (pybackprop/_check.py)."""
    from pybackprop import _check
    return _check.main(list(args.rest))


def _cmd_demo(args):
    """Train a classifier on three interleaved spirals (pybackprop/demo.py)."""
    from pybackprop import demo
    return demo.main(list(args.rest))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m pybackprop",
                                description="pybackprop's command line.")
    sub = p.add_subparsers(dest="command", metavar="command")
    sub.required = True
    names = "\n".join(f"  {n:<11} {what}" for n, _, what in BENCHES)
    b = sub.add_parser(
        "bench", help="run the benchmarks against numpy and PyTorch",
        usage="python -m pybackprop bench [-h] [--full] [NAME [its options]]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Without NAME: every benchmark in its quick form (--full: in full), "
                    "arguments after it passed to each. With NAME: that benchmark, with its "
                    "own options (python -m pybackprop bench NAME --help). --save DIR also "
                    "writes each benchmark's output to DIR/<date>_<cpu>_<configuration>_"
                    "<benchmark>.txt (the repository keeps them in bench/results). "
                    "--plot FILE.png draws the ratios against numpy and PyTorch of every "
                    "table printed (needs matplotlib: the plot extra).",
        epilog="benchmarks:\n" + names, add_help=False)
    b.add_argument("-h", "--help", action="store_true",
                   help="show this help (with NAME: that benchmark's options)")
    b.add_argument("--full", action="store_true",
                   help="without NAME: run every benchmark in full, not in its quick form")
    b.set_defaults(fn=_cmd_bench, parser=b)
    i = sub.add_parser("info", help="print the build, the CPU and its configurations")
    i.set_defaults(fn=_cmd_info)
    c = sub.add_parser("check", help="check every kernel against the numpy reference on "
                       "this CPU, every configuration (check --help)", add_help=False)
    c.set_defaults(fn=_cmd_check)
    d = sub.add_parser("demo", help="train an MLP on three spirals with Adam (demo --help)",
                       add_help=False)
    d.set_defaults(fn=_cmd_demo)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # a benchmark's or the demo's own options pass through to it
    name = None
    if argv[:1] == ["bench"] and len(argv) > 1 and not argv[1].startswith("-"):
        name = argv[1]  # bench NAME: everything after NAME is the benchmark's
        if name not in [n for n, _, _ in BENCHES]:
            parser.error(f"bench: unknown benchmark {name!r}; choose from "
                         f"{', '.join(n for n, _, _ in BENCHES)}")
        args = parser.parse_args(["bench"])
        args.name, args.help, rest = name, False, argv[2:]
    else:
        args, rest = parser.parse_known_args(argv)
        if args.command == "bench":
            args.name = None
    if args.command == "info" and rest:
        parser.error(f"info takes no arguments, got {rest}")
    args.rest = rest
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
