"""Command line of pybackprop: ``python -m pybackprop <command> [args]``.

    python -m pybackprop bench [NAME] [args]   run every benchmark, or the one named
                                               (args go to the benchmark: --quick, ...)
    python -m pybackprop info                  print build_info(), the CPU and its configurations
    python -m pybackprop demo [args]           train an MLP on three spirals (--help)

Benchmarks are modules of ``pybackprop._bench`` (the repository's bench/ directory) with a
``main(argv) -> int``; a new one is one more entry in ``BENCHES``. A new command is one
more entry in ``COMMANDS``.
"""
import importlib
import sys

# (name, module) of every benchmark, in the order `bench` runs them.
BENCHES = [
    ("dense", "pybackprop._bench.bench_dense"),
    ("spectral", "pybackprop._bench.bench_spectral"),
    ("optim", "pybackprop._bench.bench_optim"),
    ("losses", "pybackprop._bench.bench_losses"),
    ("activation", "pybackprop._bench.bench_activation"),
]


def _cmd_bench(argv):
    """Run the benchmark named by argv[0], or all of them; the rest of argv is theirs."""
    names = [name for name, _ in BENCHES]
    if argv and not argv[0].startswith("-"):
        if argv[0] not in names:
            print(f"pybackprop bench: unknown benchmark {argv[0]!r}; available: "
                  f"{', '.join(names)}", file=sys.stderr)
            return 2
        selected = [b for b in BENCHES if b[0] == argv[0]]
        argv = argv[1:]
    else:
        selected = BENCHES
    status = 0
    for i, (_, module) in enumerate(selected):
        if i:
            print()
        rc = importlib.import_module(module).main(list(argv))
        status = status or rc
    return status


def _cmd_info(argv):
    """Print the build (version, compiler, flags, OpenMP, threads), the CPU as cpuid sees
    it, every CPU configuration, and which one runs and why."""
    if argv:
        print("pybackprop info: takes no arguments", file=sys.stderr)
        return 2
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


def _cmd_demo(argv):
    """Train a classifier on three interleaved spirals (pybackprop/demo.py)."""
    from pybackprop import demo
    return demo.main(list(argv))


# command -> (function(argv) -> exit status, one-line help)
COMMANDS = {
    "bench": (_cmd_bench, "run the benchmarks: bench [" +
              "|".join(name for name, _ in BENCHES) + "] [--quick] [--help]"),
    "info": (_cmd_info, "print the build information"),
    "demo": (_cmd_demo, "train an MLP on three spirals with Adam: demo [--help]"),
}


def _usage(file):
    print("usage: python -m pybackprop <command> [args]\n\ncommands:", file=file)
    for name, (_, text) in COMMANDS.items():
        print(f"  {name:<6} {text}", file=file)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _usage(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"pybackprop: unknown command {argv[0]!r}", file=sys.stderr)
        _usage(sys.stderr)
        return 2
    return command[0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
