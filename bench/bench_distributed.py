"""bench_distributed.py -- data-parallel training steps over MPI (pybackprop.distributed).

    python -m pybackprop bench distributed [--quick] [--hidden 512] [--batch 512]

One training step (forward, backward, gradient allreduce, Adam) of an MLP
``2 -> hidden -> hidden -> 3`` on a global batch of ``--batch`` rows, timed for:
1 rank x 1 thread, 1 rank x 2 threads, and 2 ranks x 1 thread (``mpiexec -n 2``) with the
allreduce overlapping the backward and after it. "compute" is the same rank's step on its
shard without any communication; "comm share" = 1 - compute / step: the part of the step
spent on (or waiting for) the allreduce. Scaling efficiency = t(1 rank x 1 thread) /
(ranks x t(step)). Each configuration runs in its own processes; medians of the steps
after a warm-up. Needs mpi4py and mpiexec (``pip install 'pybackprop[mpi]'``); without
them it says so and exits 0.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from pybackprop._bench import _common

COLUMNS = [("configuration", "config", "s"), ("step ms", "step_ms", ".3f"),
           ("compute ms", "compute_ms", ".3f"), ("comm share", "comm", ".2f"),
           ("speed-up", "speedup", ".2f"), ("efficiency", "eff", ".2f")]


def _worker(args):
    import pybackprop as pb
    from pybackprop import distributed as dist
    from pybackprop.demo import build_model, make_spirals
    comm = dist.world() if args.ranks > 1 else None
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    pb.set_num_threads(args.threads)
    X, y = make_spirals(max(args.batch, 64), seed=0)
    model = build_model(hidden=args.hidden, seed=0)
    opt = pb.optim.Adam(model.parameters(), lr=1e-3)
    idx = np.array_split(np.arange(args.batch), size)[rank]
    ddp = (dist.DataParallel(model, comm, average=False, overlap=args.overlap, threads=False)
           if comm else None)

    def step(communicate):
        model.zero_grad()
        _, dl = pb.softmax_cross_entropy(model.forward(X[idx]), y[idx], reduction="sum")
        dl /= np.float32(args.batch)
        if communicate and ddp is not None:
            ddp.backward(dl)
        else:
            model.backward(dl, need_dx=False)
        opt.step(model.gradients())

    def timed(communicate):
        ts = []
        for i in range(args.steps + 3):
            if comm:
                comm.Barrier()
            t = time.perf_counter()
            step(communicate)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts[3:]))
    t_step = timed(True)
    t_compute = timed(False)
    if comm:  # the slowest rank sets the pace
        t_step, t_compute = comm.allreduce(t_step, op=dist._mpi().MAX), \
            comm.allreduce(t_compute, op=dist._mpi().MAX)
    if rank == 0:
        print(json.dumps({"step": t_step, "compute": t_compute}))


def _launch(mpiexec, ranks, threads, overlap, args):
    cmd = [sys.executable, "-m", "pybackprop._bench.bench_distributed", "--worker",
           "--ranks", str(ranks), "--threads", str(threads), "--hidden", str(args.hidden),
           "--batch", str(args.batch), "--steps", str(args.steps)] + \
          (["--overlap"] if overlap else [])
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pybackprop bench distributed",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--hidden", type=int, default=512, help="hidden width (512)")
    ap.add_argument("--batch", type=int, default=512, help="global batch rows (512)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50; "
                    "quick 10)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = args.steps or (10 if args.quick else 50)
    if args.worker:
        _worker(args)
        return 0
    print("pybackprop bench distributed: one training step, float32, "
          f"MLP 2-{args.hidden}-{args.hidden}-3, global batch {args.batch}")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    if importlib.util.find_spec("mpi4py") is None:
        mpiexec = None
    if mpiexec is None:
        print("  skipped: needs mpi4py and mpiexec (pip install 'pybackprop[mpi]')")
        return 0
    for line in _common.machine_lines(None):
        print(line)
    nparams = 2 * args.hidden + args.hidden ** 2 + 3 * args.hidden + 2 * args.hidden + 3
    print(f"  gradients per step: {nparams} float32 ({nparams * 4 / 2**20:.2f} MiB); "
          f"median of {args.steps} steps")
    print()
    base = _launch(mpiexec, 1, 1, False, args)
    rows = []
    for config, ranks, threads, overlap in (("1 rank x 1 thread", 1, 1, False),
                                            ("1 rank x 2 threads", 1, 2, False),
                                            ("2 ranks x 1 thread, overlap", 2, 1, True),
                                            ("2 ranks x 1 thread, after", 2, 1, False)):
        r = base if (ranks, threads) == (1, 1) else _launch(mpiexec, ranks, threads,
                                                            overlap, args)
        rows.append({"config": config, "step_ms": r["step"] * 1e3,
                     "compute_ms": r["compute"] * 1e3,
                     "comm": max(0.0, 1 - r["compute"] / r["step"]) if ranks > 1 else None,
                     "speedup": base["step"] / r["step"],
                     "eff": base["step"] / r["step"] / max(ranks, threads)})
    _common.print_table(rows, COLUMNS)
    print("  comm share: 1 - compute / step (the allreduce and the wait for the slower "
          "rank); efficiency: speed-up / (ranks or threads). On one machine the ranks "
          "share its memory bandwidth and caches, and MPICH's shared-memory transport "
          "stands in for the network.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
