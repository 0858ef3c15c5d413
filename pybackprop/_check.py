"""Reference parity on this CPU: ``python -m pybackprop check`` or ``pybackprop.check()``.

Runs every kernel family on fixed random inputs in both dtypes, under every CPU
configuration this machine runs (each kernel family on the instruction set the
configuration gives it), and compares each result with :mod:`pybackprop.reference`
evaluated in float64, within the error bounds of :mod:`pybackprop._bounds` (the same ones
the test suite asserts), or bitwise where the contract is bitwise (optimizers, maximum,
spectral normalisation), or as a certified inequality (the spectral-norm bounds). Prints a
table of the worst error / bound per configuration and kernel (<= 1 passes) and returns
whether everything passed. Needs numpy only; takes a few seconds per configuration.
"""
from __future__ import annotations

import math
import sys
from typing import Dict, Literal, Optional, Sequence, TextIO, Union

import numpy as np

from . import _bounds as bnd
from . import reference as ref
from ._runtime import available_cpus, get_cpu, set_cpu

DTYPES = (np.float32, np.float64)
ACTIVATIONS = ref.ACTIVATIONS
# (B, K, N): odd sizes around register tiles, a B = 1 row, and K past every KC and MC
DENSE_SHAPES = [(1, 37, 19), (33, 65, 47), (130, 300, 70), (530, 1030, 70)]
SLOPE = 0.3


def _worst(got, want, bound):
    """max |got - want| / bound, with non-finite values of the reference matched exactly
    (inf when they are not, or when ours is NaN where the reference is finite)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return math.inf
    finite = np.isfinite(want)
    if not np.array_equal(got[~finite], want[~finite], equal_nan=True):
        return math.inf
    if not finite.any():
        return 0.0
    err = np.abs(got[finite] - want[finite]) / np.broadcast_to(bound, want.shape)[finite]
    return math.inf if np.isnan(err).any() else float(err.max(initial=0.0))


def _bitwise(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return 0.0 if got.shape == want.shape and got.tobytes() == want.tobytes() else math.inf


def _check_dense(pb, rng, dt):
    out = {"dense_forward": 0.0, "dense_backward": 0.0, "activation": 0.0,
           "activation_backward": 0.0}
    for B, K, N in DENSE_SHAPES:
        x = rng.standard_normal((B, K)).astype(dt)
        w = (rng.standard_normal((N, K)) / math.sqrt(K)).astype(dt)
        b = (0.5 * rng.standard_normal(N)).astype(dt)
        dy = rng.standard_normal((B, N)).astype(dt)
        for kind in ACTIVATIONS:
            kw = dict(activation=kind, negative_slope=SLOPE)
            # gelu, gelu_tanh, silu: the forward also stores z (checked as a linear layer's
            # output), and the backwards differentiate from z, not y
            pre = kind in ref.PREACT_ACTIVATIONS
            zd = np.empty((B, N), dt) if pre else None
            y = pb.dense_forward(x, w, b, preact=zd, **kw)
            y_ref = ref.dense_forward(bnd.up(x), bnd.up(w), bnd.up(b), **kw)
            out["dense_forward"] = max(out["dense_forward"], _worst(
                y, y_ref, bnd.forward_bound(x, w, b, kind, dt, y_ref, SLOPE)))
            if pre:
                z_ref = ref.preactivation(bnd.up(x), bnd.up(w), bnd.up(b))
                out["dense_forward"] = max(out["dense_forward"], _worst(
                    zd, z_ref, bnd.forward_bound(x, w, b, "identity", dt, z_ref, SLOPE)))
            saved = zd if pre else y
            grads = pb.dense_backward(dy, x, w, None if pre else y, preact=zd, **kw)
            grads_ref = ref.dense_backward(bnd.up(dy), bnd.up(x), bnd.up(w),
                                           None if pre else bnd.up(y), preact=bnd.up(zd), **kw)
            for g, g_ref, bound in zip(grads, grads_ref,
                                       bnd.backward_bounds(dy, x, w, saved, kind, dt, SLOPE)):
                out["dense_backward"] = max(out["dense_backward"], _worst(g, g_ref, bound))
            z = (3 * rng.standard_normal((B, N))).astype(dt)
            a = pb.activation(z, kind, negative_slope=SLOPE)
            a_ref = ref.activation(bnd.up(z), kind, negative_slope=SLOPE)
            a_bound, d_bound = bnd.activation_bounds(dy, a, kind, dt, SLOPE, z=z)
            out["activation"] = max(out["activation"], _worst(a, a_ref, a_bound))
            zs = z if pre else None
            d = pb.activation_backward(dy, None if pre else a, kind, preact=zs,
                                       negative_slope=SLOPE)
            d_ref = ref.activation_backward(bnd.up(dy), None if pre else bnd.up(a), kind,
                                            preact=bnd.up(zs), negative_slope=SLOPE)
            out["activation_backward"] = max(out["activation_backward"],
                                             _worst(d, d_ref, d_bound))
    return out


def _check_losses(pb, rng, dt):
    out = {}
    for n in (7, 4097):
        p, t = (4 * rng.standard_normal(n)).astype(dt), (4 * rng.standard_normal(n)).astype(dt)
        loss, d = pb.mse_loss(p, t)
        loss_ref, d_ref = ref.mse_loss(bnd.up(p), bnd.up(t))
        lb, db = bnd.mse_bounds(p, loss_ref, d_ref)
        out["mse_loss"] = max(out.get("mse_loss", 0.0), _worst(loss, loss_ref, lb),
                              _worst(d, d_ref, db))
        z, tt = (6 * rng.standard_normal(n)).astype(dt), rng.random(n).astype(dt)
        loss, d = pb.binary_cross_entropy_with_logits(z, tt)
        loss_ref, d_ref = ref.binary_cross_entropy_with_logits(bnd.up(z), bnd.up(tt))
        lb, db = bnd.bce_bounds(z, tt, n, loss_ref)
        out["bce_with_logits"] = max(out.get("bce_with_logits", 0.0),
                                     _worst(loss, loss_ref, lb), _worst(d, d_ref, db))
        a, c = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
        out["maximum"] = max(out.get("maximum", 0.0),
                             _bitwise(pb.maximum_forward(a, c), ref.maximum_forward(a, c)))
    for B, C in ((5, 3), (64, 1000)):
        logits = (4 * rng.standard_normal((B, C))).astype(dt)
        labels = rng.integers(0, C, B)
        loss, d = pb.softmax_cross_entropy(logits, labels)
        loss_ref, d_ref = ref.softmax_cross_entropy(bnd.up(logits), labels)
        rows = np.array([ref.softmax_cross_entropy(bnd.up(logits[r]), labels[r],
                                                   reduction="sum")[0] for r in range(B)])
        lb, db = bnd.xent_bounds(logits, labels, B, loss_ref, rows)
        out["softmax_cross_entropy"] = max(out.get("softmax_cross_entropy", 0.0),
                                           _worst(loss, loss_ref, lb), _worst(d, d_ref, db))
    return out


def _check_optim(pb, rng, dt):
    """Three steps of each optimizer: bitwise the reference's (their documented contract)."""
    worst = {"adam": 0.0, "adamw": 0.0, "adamax": 0.0}
    n = 10007
    for name in worst:
        p0 = rng.standard_normal(n).astype(dt)
        p, p_ref = p0.copy(), p0.copy()
        s1, s2 = np.zeros(n, dt), np.zeros(n, dt)
        r1, r2 = np.zeros(n, dt), np.zeros(n, dt)
        wd = 0.1 if name == "adamw" else 0.0
        for step in (1, 2, 3):
            g = rng.standard_normal(n).astype(dt)
            if name == "adamax":
                pb.optim.adamax_step(p, g, s1, s2, step=step)
                ref.adamax_step(p_ref, g, r1, r2, step=step)
            else:
                kw = dict(step=step, weight_decay=wd, decoupled_weight_decay=wd > 0)
                pb.optim.adam_step(p, g, s1, s2, **kw)
                ref.adam_step(p_ref, g, r1, r2, **kw)
        worst[name] = max(_bitwise(p, p_ref), _bitwise(s1, r1), _bitwise(s2, r2))
    return worst


def _check_spectral(pb, rng, dt):
    """power_iteration's sigma <= sigma_max <= sigma_upper_bound (up to the rounding of the
    former: 16 eps (sqrt N + sqrt K) relative), and spectral_normalize's exact division."""
    N, K = 70, 130
    w = rng.standard_normal((N, K)).astype(dt)
    s_max = float(np.linalg.norm(bnd.up(w), 2))
    u = rng.standard_normal(N).astype(dt)
    v = rng.standard_normal(K).astype(dt)
    u /= np.linalg.norm(u)
    v /= np.linalg.norm(v)
    sigma = float(pb.power_iteration(w, u, v, n_iters=5))
    slack = 16 * bnd.eps_of(dt) * (math.sqrt(N) + math.sqrt(K)) * s_max \
        + 8 * (min(N, K) + 1) * bnd.EPS64 * s_max
    lower = max(0.0, sigma - s_max) / slack
    upper = 0.0 if float(pb.sigma_upper_bound(w)) >= s_max * (1 - 8 * (min(N, K) + 1)
                                                             * bnd.EPS64) else math.inf
    sn = pb.spectral_normalize(w, dt(sigma))
    return {"power_iteration": lower, "sigma_upper_bound": upper,
            "spectral_normalize": _bitwise(sn, ref.spectral_normalize(w, dt(sigma)))}


def check(cpus: Optional[Sequence[str]] = None, seed: int = 0,
          file: Union[TextIO, None, Literal[False]] = None) -> bool:
    """Check every kernel family against the reference under each CPU configuration in
    ``cpus`` (default: every one this CPU runs), both dtypes; print the table of worst
    error / bound per configuration and kernel to ``file`` (default: stdout; ``False``: print
    nothing). Returns True if every ratio is <= 1. The active
    configuration is restored afterwards."""
    import pybackprop as pb
    out = sys.stdout if file is None else file
    cpus = list(available_cpus() if cpus is None else cpus)
    saved = get_cpu()
    table: Dict[str, Dict[str, float]] = {}
    try:
        for cpu in cpus:
            set_cpu(cpu)
            rng = np.random.default_rng(seed)
            res: Dict[str, float] = {}
            for dt in DTYPES:
                for part in (_check_dense, _check_losses, _check_optim, _check_spectral):
                    for k, r in part(pb, rng, dt).items():
                        res[k] = max(res.get(k, 0.0), r)
            table[cpu] = res
    finally:
        set_cpu(saved)
    ok = all(r <= 1.0 for res in table.values() for r in res.values())
    if out is not False:
        kernels = list(next(iter(table.values())))
        width = max(len(k) for k in kernels)
        print("pybackprop check: worst |ours - reference| / bound, float32 and float64 "
              "(<= 1 passes; 0 = bitwise where the contract is bitwise)", file=out)
        print(f"{'kernel'.ljust(width)}  " + "  ".join(f"{c:>9}" for c in cpus), file=out)
        for k in kernels:
            cells = ("FAIL" if not table[c][k] <= 1.0 else f"{table[c][k]:.3f}" for c in cpus)
            print(f"{k.ljust(width)}  " + "  ".join(f"{v:>9}" for v in cells), file=out)
        print("all kernels within their bounds" if ok else "SOME KERNELS FAILED", file=out)
    return ok


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m pybackprop check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="append", default=None,
                   help="check this configuration only (repeatable); default: every one "
                        "this CPU runs")
    args = p.parse_args(argv)
    return 0 if check(args.cpu) else 1
