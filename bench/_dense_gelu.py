"""_dense_gelu.py -- bench dense's training-step table of the activations whose backward takes
the pre-activation (gelu, silu): one forward storing z and the backward from it, against
PyTorch's autograd.

  ours:  y = dense_forward(x, w, b, activation=act, preact=z)
         dx, dw, db = dense_backward(dy, x, w, None, activation=act, preact=z)
  torch: y = F.gelu(F.linear(x, w, b)) (F.silu) on leaf tensors requiring grad, then
         torch.autograd.grad(y, (x, w, b), dy): the graph built and freed in every call,
         as in a training step
Both allocate their results (``--out``: ours into preallocated out=/preact=/dx=/dw=/db=
buffers); both are verified against ``pybackprop.reference`` before timing. 6 B K N flops
per step (forward 2, backward 4). No numpy column: the reference evaluates gelu's erf per
element in Python, seconds per call at these shapes (``bench activation`` times the
elementwise part against numpy expressions).
"""
try:
    from pybackprop._bench import _common
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common

import numpy as np

import pybackprop

# (B, K, N): x (B, K), w (N, K). The README's target: at least 1.2x PyTorch.
TRAIN_SHAPES = [(256, 1024, 4096), (1024, 1024, 1024)]
TRAIN_ACTS = ("gelu", "silu")
TARGET = 1.2

COLUMNS = [
    ("act", "act", "s"),
    ("dtype", "dtype", "s"),
    ("thr", "threads", "d"),
    ("B x K x N", "shape", "s"),
    ("ours us", "ours_us", _common.fmt_us),
    ("GFLOP/s", "gflops", ".1f"),
    ("% peak", "peak_pct", ".0f"),
    ("torch us", "torch_us", _common.fmt_us),
    ("vs torch", "vs_torch", "s"),
    ("target", "target", "s"),
    ("note", "note", "s"),
]


def ours_step(p):
    """Our forward (storing z) and backward (from z) of Problem ``p`` as one callable,
    returning (y, z, dx, dw, db)."""
    fwd, bwd = pybackprop.dense_forward, pybackprop.dense_backward
    x, w, b, dy, act = p.x, p.w, p.b, p.dy, p.act
    if p.buffers:
        y, z, dx, dw, db = p.y_out, p.z_out, p.dx_out, p.dw_out, p.db_out

        def step():
            fwd(x, w, b, activation=act, out=y, preact=z)
            bwd(dy, x, w, None, activation=act, preact=z, dx=dx, dw=dw, db=db)
            return y, z, dx, dw, db
        return step
    shape, dtype = p.y.shape, p.dtype

    def step():
        z = np.empty(shape, dtype)
        y = fwd(x, w, b, activation=act, preact=z)
        return (y, z) + bwd(dy, x, w, None, activation=act, preact=z)
    return step


def torch_step(p, torch):
    """PyTorch's forward and autograd backward of Problem ``p``, returning (y, dx, dw, db)."""
    F, act = torch.nn.functional, p.torch_act(torch)
    x, w, b = (torch.from_numpy(a).requires_grad_() for a in (p.x, p.w, p.b))
    dy, grad = torch.from_numpy(p.dy), torch.autograd.grad

    def step():
        y = act(F.linear(x, w, b))
        return (y,) + grad(y, (x, w, b), dy)
    return step


def train_row(p, threads, torch, timing, runs=1):
    """Verify, then time ours and torch in turn ``runs`` times (each keeps its best median)
    for Problem ``p``; returns (row dict, ok)."""
    B, K, N = p.shape
    row = dict(act=p.act, dtype=p.dtype.name.replace("float", "f"), threads=threads,
               shape="x".join(map(str, p.shape)), target=f">= {TARGET}")
    try:
        ours = ours_step(p)
        y, z, dx, dw, db = ours()
        p.check("forward", y, "ours step")
        p.check("preact", z, "ours step")
        p.check("backward", (dx, dw, db), "ours step")
    except Exception as e:  # a wrong result or a failing call: report, keep going
        row["note"] = f"FAIL {type(e).__name__}: {e}"
        return row, False
    fns, ok = {"ours": ours}, True
    if torch is not None:
        try:
            t_fn = torch_step(p, torch)
            y, dx, dw, db = t_fn()
            p.check("forward", y.detach(), "torch step")
            p.check("backward", (dx, dw, db), "torch step")
            fns["torch"] = t_fn
        except Exception as e:  # the comparison is broken, not our kernel: note it
            row["note"] = f"torch: {type(e).__name__}: {e}"
            ok = False
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            t = _common.measure(fn, **timing)
            row[name + "_us"] = min(row.get(name + "_us", t), t)
    row["gflops"] = 6.0 * B * K * N / row["ours_us"] * 1e-9
    row["peak_pct"] = 100.0 * row["gflops"] / _common.fma_peak(p.dtype, threads)
    if "torch_us" in row:
        row["vs_torch"] = f"{row['torch_us'] / row['ours_us']:.2f}"
    return row, ok


def run_train(problem_cls, dtypes, threads, torch, timing, runs=1, buffers=False):
    """Print the training-step table (TRAIN_ACTS x TRAIN_SHAPES, each dtype, ``threads``
    threads); ``problem_cls``: bench dense's Problem. Returns False if a result was wrong
    or a call failed."""
    _common.set_threads(threads, torch)
    rows, all_ok = [], True
    for dt in dtypes:
        for shape in TRAIN_SHAPES:
            for act in TRAIN_ACTS:
                row, ok = train_row(problem_cls(dt, shape, act, 0.01, buffers=buffers),
                                    threads, torch, timing, runs)
                rows.append(row)
                all_ok = all_ok and ok
    print(f"Training step, {'/'.join(TRAIN_ACTS)}: forward storing z (preact=) + backward "
          f"from z (dx, dw, db), against PyTorch autograd; best of {max(1, runs)} run(s)")
    _common.print_table(rows, COLUMNS)
    print("  torch: act(F.linear(x, w, b)) + torch.autograd.grad(y, (x, w, b), dy), graph "
          "built in every call. ours: " + ("preallocated out=/preact=/dx=/dw=/db=." if buffers
                                           else "allocating y, z, dx, dw, db, as torch does."))
    print("  GFLOP/s: 6BKN per step. No numpy column (the reference's gelu runs erf per "
          "element in Python); see bench activation.")
    return all_ok
