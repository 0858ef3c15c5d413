"""_dense_tables.py -- two tables of bench dense (bench_dense.py's docstring says what they
show): the fused epilogue's cost over relu, and the slowdown on subnormal inputs."""
from copy import copy as shallow_copy

import numpy as np

try:
    from pybackprop._bench import _common, _dense_problem
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common
    import _dense_problem

import pybackprop
from pybackprop import reference

Problem, _as_numpy, _shape_text = _dense_problem.Problem, _dense_problem._as_numpy, \
    _dense_problem._shape_text
# The subnormal-input table: shape, activation, and the factor taking x into the subnormal
# range (|x| < 4.5 sigma stays below np.finfo(dtype).tiny).
SUBNORMAL_SHAPE = (512, 512, 512)
SUBNORMAL_ACT = "relu"
SUBNORMAL_SCALE = {"float32": 1e-40, "float64": 1e-310}


EPILOGUE_COLUMNS = [
    ("act", "act", "s"),
    ("dtype", "dtype", "s"),
    ("thr", "threads", "d"),
    ("B x K x N", "shape", "s"),
    ("ours us", "ours_us", _common.fmt_us),
    ("over relu", "over_relu", "s"),
    ("target", "target", "s"),
]
# Rounds of the epilogue table: the activations timed in turn this many times.
EPILOGUE_ROUNDS = 5
# The epilogue table: (shape, activations timed against relu there, the target cost over
# relu in %). "<act>+z": also storing the pre-activation (preact=), as training runs them;
# no target.
EPILOGUE = [((1024, 1024, 1024), ("sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "gelu+z",
                                 "silu+z"), 5),
            ((256, 1024, 1024), ("gelu", "gelu_tanh", "silu", "gelu+z", "silu+z"), 10)]


def run_epilogue(dtypes, threads, timing):
    """The targets "sigmoid/tanh/gelu/silu within 5 % of relu at 1024^3, gelu/silu within
    10 % at 256 x 1024 x 1024": at each shape of EPILOGUE our fused forward with relu and
    each activation, verified, then timed in turn EPILOGUE_ROUNDS times (a shared host's
    drifts, which move separate runs by more than 5 %, hit all of them alike), each keeping
    its best median; printed with its cost over relu. Returns False if a result was wrong."""
    _common.set_threads(threads)
    rows, ok = [], True
    for dt in dtypes:
        for shape, acts, target in EPILOGUE:
            row0 = dict(dtype=dt.name.replace("float", "f"), threads=threads,
                        shape=_shape_text(shape))
            fns, problems = {}, {}
            for label in ("relu",) + acts:
                act, preact = label.split("+")[0], label.endswith("+z")
                if act not in problems:
                    problems[act] = Problem(dt, shape, act, 0.01)
                fn = problems[act].ours("forward", preact=preact)
                try:
                    problems[act].verify("forward", fn, "ours", preact=preact)
                except AssertionError as e:
                    rows.append(dict(row0, act=label, over_relu=f"FAIL {e}"))
                    ok = False
                    continue
                fns[label] = fn
            best = {}
            for _ in range(EPILOGUE_ROUNDS):
                for label, fn in fns.items():
                    t = _common.measure(fn, **timing)
                    best[label] = min(best.get(label, t), t)
            for label, t in best.items():
                over = "-" if label == "relu" or "relu" not in best else \
                    f"{100.0 * (t / best['relu'] - 1.0):+.1f} %"
                goal = None if label == "relu" or "+z" in label else f"<= +{target} %"
                rows.append(dict(row0, act=label, ours_us=t, over_relu=over, target=goal))
            del problems, fns
    print(f"Fused epilogue: forward, ours only, the activations timed in turn "
          f"{EPILOGUE_ROUNDS} times (best median each)")
    _common.print_table(rows, EPILOGUE_COLUMNS)
    print("  <act>+z: the forward also stores the pre-activation z into a preallocated "
          "preact= buffer (what the backward of gelu, gelu_tanh, silu takes).")
    return ok


SUBNORMAL_COLUMNS = [
    ("impl", "impl", "s"),
    ("dtype", "dtype", "s"),
    ("thr", "threads", "d"),
    ("B x K x N", "shape", "s"),
    ("normal us", "normal_us", _common.fmt_us),
    ("subnormal us", "sub_us", _common.fmt_us),
    ("slowdown", "slowdown", ".1f"),
    ("note", "note", "s"),
]


def subnormal_rows(dtype, threads, torch, timing):
    """The subnormal-input rows of one dtype: for each implementation the time of the
    forward on the normal x and on x scaled into the subnormal range, and their ratio."""
    kw = dict(activation=SUBNORMAL_ACT)
    normal = Problem(dtype, SUBNORMAL_SHAPE, SUBNORMAL_ACT, 0.01)
    normal.b = np.zeros_like(normal.b)   # zero bias: exact subnormal outputs stay visible
    normal.y = reference.dense_forward(normal.x, normal.w, normal.b, **kw)
    sub = shallow_copy(normal)           # same w, b and buffers; x subnormal
    sub.x = normal.x * normal.dtype.type(SUBNORMAL_SCALE[normal.dtype.name])
    assert np.all(np.abs(sub.x) < np.finfo(dtype).tiny), "x is not all subnormal"
    exact_y = reference.dense_forward(sub.x, sub.w, sub.b, **kw)
    flushed_y = reference.dense_forward(np.zeros_like(sub.x), sub.w, sub.b, **kw)
    impls = [("pybackprop", "ours", pybackprop.set_flush_denormal, False),
             ("pybackprop flush", "ours", pybackprop.set_flush_denormal, True),
             ("numpy", "numpy", None, False)]
    if torch is not None:
        impls += [("torch", "torch", torch.set_flush_denormal, False),
                  ("torch flush", "torch", torch.set_flush_denormal, True)]
    saved_ours = pybackprop.get_flush_denormal()
    rows, ok = [], True
    for name, who, set_mode, mode in impls:
        row = dict(impl=name, dtype=normal.dtype.name.replace("float", "f"), threads=threads,
                   shape=_shape_text(SUBNORMAL_SHAPE))
        try:
            if set_mode is not None and not set_mode(mode):
                raise RuntimeError("flush mode unsupported on this CPU")
            sub.y = flushed_y if mode else exact_y   # what verify() compares with
            fns = {}
            for key, prob in (("normal_us", normal), ("sub_us", sub)):
                fn = (prob.ours("forward") if who == "ours" else prob.numpy("forward")
                      if who == "numpy" else prob.torch("forward", torch))
                prob.verify("forward", fn, who)
                fns[key] = fn
            # flushed: every output is exactly 0 (relu(0)); exact: about half are subnormal
            left = np.count_nonzero(_as_numpy(fns["sub_us"]())) / exact_y.size
            if mode and left > 0:
                if who == "ours":
                    raise AssertionError(f"{left:.1%} of the outputs were not flushed")
                row["note"] = f"{left:.0%} of outputs not flushed"
            for key, fn in fns.items():
                row[key] = _common.measure(fn, **timing)
            row["slowdown"] = row["sub_us"] / row["normal_us"]
        except Exception as e:  # a wrong result or a failing call: report, keep going
            row["note"] = f"FAIL {type(e).__name__}: {e}"
            ok = False
        finally:
            if set_mode is not None:
                set_mode(saved_ours if set_mode is pybackprop.set_flush_denormal else False)
        rows.append(row)
    return rows, ok



def run_subnormal(dtypes, threads, torch, timing):
    """Print the subnormal-input table; returns False if a result was wrong or failed."""
    _common.set_threads(threads, torch)
    rows, all_ok = [], True
    for dt in dtypes:
        r, ok = subnormal_rows(dt, threads, torch, timing)
        rows += r
        all_ok = all_ok and ok
    print(f"Subnormal inputs: forward {SUBNORMAL_ACT}, x scaled by "
          f"{SUBNORMAL_SCALE['float32']:g} (f32) / {SUBNORMAL_SCALE['float64']:g} (f64) into "
          f"the subnormal range; slowdown = subnormal time / normal time")
    _common.print_table(rows, SUBNORMAL_COLUMNS)
    print("  flush: pybackprop.set_flush_denormal(True) (FTZ/DAZ in every thread of our "
          "kernels, restored after) / torch.set_flush_denormal(True) (the calling thread's "
          "MXCSR only); flushed results verified against the reference on x = 0 (all 0).")
    return all_ok
