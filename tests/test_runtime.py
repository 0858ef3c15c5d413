"""Tests of pybackprop._runtime's switches: the flush-to-zero mode and the thread count.

Checks: the flush mode is off by default and from PYBACKPROP_FLUSH_DENORMAL at load time; the
setter's contract (bool only, returns whether the mode is supported, get follows set); with
the mode on, every public C kernel flushes in every thread that does its work (crafted inputs
whose exact and flushed results differ in every element, 1 and 2 threads), and with it off
again the results are the exact ones, bit for bit; afterwards no thread is left flushing (the
probe of test_concurrency.py); every OpenMP parallel region of the C sources opens a
PB_FP_SCOPE; set_num_threads takes an int in [1, MAX_THREADS] and nothing else;
PYBACKPROP_NUM_THREADS and PYBACKPROP_FLUSH_DENORMAL are parsed strictly at import,
PYBACKPROP_NUM_THREADS again by set_num_threads(None); the default thread count follows
OMP_NUM_THREADS and threadpoolctl's limits. Fixtures threads and flush (which restores the
mode) come from conftest.py. No test reads a clock.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pybackprop
from pybackprop import optim
from pybackprop._core import lib
from pybackprop._gemm import gemm
from _kernel_cases import assert_subnormals_survive, kernel_set
from _helpers import assert_bitwise
from _runtime_cases import DTYPES, X86, _fi, needs_flush

CSRC = Path(__file__).resolve().parent.parent / "csrc"


# ---- the switch ---------------------------------------------------------------------------
def _subprocess(code, env_value):
    env = dict(os.environ)
    env.pop("PYBACKPROP_FLUSH_DENORMAL", None)
    if env_value is not None:
        env["PYBACKPROP_FLUSH_DENORMAL"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


_PROBE = ("import numpy as np, pybackprop as pb; "
          "x = np.full((3, 4), np.finfo(np.float32).smallest_subnormal * 8, np.float32); "
          "y = pb.dense_forward(x, np.ones((2, 4), np.float32), activation='identity'); "
          "print(pb.get_flush_denormal(), pb.build_info()['flush_denormal'], "
          "int(np.count_nonzero(y)))")


def test_default_is_off():
    """A fresh process without PYBACKPROP_FLUSH_DENORMAL computes subnormals exactly."""
    assert _subprocess(_PROBE, None) == ["False", "False", "6"]


@needs_flush
def test_environment_variable_sets_the_mode_at_load():
    """PYBACKPROP_FLUSH_DENORMAL=1 turns the mode on (all-subnormal GEMM gives 0), 0 not."""
    assert _subprocess(_PROBE, "1") == ["True", "True", "0"]
    assert _subprocess(_PROBE, "0") == ["False", "False", "6"]


def test_set_get_round_trip(flush):
    """set returns whether the mode is supported here (x86 builds); get follows set; False
    always succeeds; anything but a bool is a TypeError naming ``mode``."""
    assert flush(True) is X86
    assert pybackprop.get_flush_denormal() is X86
    assert flush(np.bool_(False)) is True
    assert pybackprop.get_flush_denormal() is False
    for bad in (None, 1, 0, "yes", 1.0):
        with pytest.raises(TypeError, match="mode"):
            flush(bad)
    assert pybackprop.get_flush_denormal() is False


# ---- every kernel flushes, in every thread ------------------------------------------------
# Each case: (C kernels it calls, run(dt, S) -> tuple of arrays, exact results, flushed
# results), one value per array (None: nonzero but not exactly predictable, an exp in the
# subnormal range). S = 8 * smallest subnormal. The sizes put every kernel over its one-thread
# limit, so with 2 threads part of each array is computed by an OpenMP worker.
def _bwd(B, K, N):
    def run(dt, S):
        ones = lambda *s: np.ones(s, dt)  # noqa: E731
        return pybackprop.dense_backward(np.full((B, N), S, dt), ones(B, K), ones(N, K),
                                         ones(B, N), activation="relu")
    return run


def _xent(dt, S):
    x = np.zeros((20000, 2), dt)
    x[:, 1] = -100.0 if dt == np.float32 else -720.0     # e^x is subnormal
    loss, d = pybackprop.softmax_cross_entropy(x, np.zeros(20000, np.int64), reduction="sum")
    return (d[:, 1],)


def _bce(dt, S):
    z = np.full(50001, -100.0 if dt == np.float32 else -720.0, dt)
    loss, d = pybackprop.binary_cross_entropy_with_logits(z, np.zeros_like(z), reduction="sum")
    return np.array(loss), d


def _adam(step_fn):
    def run(dt, S):
        p, m, s = np.ones(20000, dt), np.zeros(20000, dt), np.zeros(20000, dt)
        step_fn(p, np.full(20000, S, dt), m, s, step=1)
        return (m,)           # m = 0.1 * g (rounded)
    return run


def _power(n_iters):
    def run(dt, S):
        u, v = np.ones(256, dt), np.ones(256, dt)
        sigma = pybackprop.power_iteration(np.full((256, 256), S, dt), u, v, n_iters=n_iters)
        return (np.array(sigma),) if n_iters == 0 else (u,)
    return run


FLUSH_CASES = {
    "gemm": (("gemm",),
             lambda dt, S: (gemm(np.empty((256, 128), dt), np.full((256, 8), S, dt),
                                 np.ones((8, 128), dt)),),
             lambda S: (8 * S,), (0,)),
    "dense_forward": (("dense_forward",),
                      lambda dt, S: (pybackprop.dense_forward(
                          np.full((256, 8), S, dt), np.ones((128, 8), dt),
                          activation="identity"),),
                      lambda S: (8 * S,), (0,)),
    "dense_forward_gemv": (("dense_forward",),
                           lambda dt, S: (pybackprop.dense_forward(
                               np.full((1, 512), S, dt), np.ones((256, 512), dt),
                               activation="identity"),),
                           lambda S: (512 * S,), (0,)),
    # two GEMMs side by side (small layer), the split GEMMs, and B = 1 (outer product, GEMV)
    "dense_backward_tasks": (("dense_backward", "gemm"), _bwd(256, 64, 128),
                             lambda S: (128 * S, 256 * S, 256 * S), (0, 0, 0)),
    "dense_backward_split": (("dense_backward", "gemm"), _bwd(256, 256, 128),
                             lambda S: (128 * S, 256 * S, 256 * S), (0, 0, 0)),
    "dense_backward_b1": (("dense_backward", "gemm"), _bwd(1, 1100, 1024),
                          lambda S: (1024 * S, S, S), (0, 0, 0)),
    # a normal input whose result is subnormal: FTZ
    "activation_forward": (("activation_forward",),
                           lambda dt, S: (pybackprop.activation(
                               np.full(98304, -1.5 * _fi(dt).tiny, dt), "leaky_relu",
                               negative_slope=0.5),),
                           lambda S: (-0.75 * _fi(S.dtype).tiny,), (0,)),
    "activation_backward": (("activation_backward",),
                            lambda dt, S: (pybackprop.activation_backward(
                                np.full(98304, 1.5 * _fi(dt).tiny, dt),
                                np.full(98304, 0.5, dt), "sigmoid"),),
                            lambda S: (0.375 * _fi(S.dtype).tiny,), (0,)),
    "mse_loss": (("mse_loss",),
                 lambda dt, S: (pybackprop.mse_loss(np.full(50001, S, dt), np.zeros(50001, dt),
                                                    reduction="sum")[1],),
                 lambda S: (2 * S,), (0,)),
    "softmax_cross_entropy": (("softmax_cross_entropy",), _xent, lambda S: (None,), (0,)),
    "bce_with_logits": (("binary_cross_entropy_with_logits",), _bce,
                        lambda S: (None, None), (0, 0)),
    # a tie under DAZ: the first argument wins (its bits are moved, not flushed)
    "maximum_forward": (("maximum_forward",),
                        lambda dt, S: (pybackprop.maximum_forward(np.full(50001, S, dt),
                                                                  np.full(50001, 2 * S, dt)),),
                        lambda S: (2 * S,), lambda S: (S,)),
    "maximum_backward": (("maximum_backward",),
                         lambda dt, S: pybackprop.maximum_backward(
                             np.ones(50001, dt), np.full(50001, S, dt),
                             np.full(50001, 2 * S, dt)),
                         lambda S: (0, 1), (1, 0)),
    "adam_step": (("adam_step",), _adam(optim.adam_step), lambda S: (None,), (0,)),
    "adamax_step": (("adamax_step",), _adam(optim.adamax_step), lambda S: (None,), (0,)),
    "power_iteration_eval": (("spectral_power_iteration",), _power(0),
                             lambda S: (256 * 256 * S,), (0,)),
    "power_iteration": (("spectral_power_iteration",), _power(1), lambda S: (None,), (0,)),
    "spectral_normalize": (("spectral_norm_forward",),
                           lambda dt, S: (pybackprop.spectral_normalize(
                               np.full((256, 256), S, dt), 1.0),),
                           lambda S: (S,), (0,)),
    "spectral_norm_backward": (("spectral_norm_backward",),
                               lambda dt, S: (pybackprop.spectral_norm_backward(
                                   np.full((256, 256), S, dt), np.zeros((256, 256), dt),
                                   np.ones(256, dt), np.ones(256, dt), 1.0),),
                               lambda S: (S,), (0,)),
    "sigma_upper_bound": (("spectral_sigma_upper",),
                          lambda dt, S: (np.array(pybackprop.sigma_upper_bound(
                              np.full((64, 64), S, dt))),),
                          lambda S: (None,), (0,)),
}


def _check_values(got, expected, what):
    assert len(got) == len(expected), what
    for i, (a, e) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        if e is None:
            assert np.all(a != 0), f"{what}[{i}]: exact result expected nonzero"
        else:
            np.testing.assert_array_equal(a, np.full(a.shape, e, a.dtype),
                                          err_msg=f"{what}[{i}]")


def test_flush_cases_cover_every_public_kernel():
    """Every compute kernel of the C API (pb_<stem>_f32/_f64 but the probes) has a case."""
    stems = {n[3:-4] for n in dir(lib) if n.startswith("pb_") and n.endswith("_f32")
             and not n.startswith("pb_probe_")}
    covered = {s for kernels, *_ in FLUSH_CASES.values() for s in kernels}
    assert stems == covered, f"no flush case for {sorted(stems - covered)}"


@needs_flush
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(FLUSH_CASES))
def test_every_kernel_flushes_in_every_thread(flush, threads, case, dtype):
    """Off: the exact results. On: the flushed ones, in every element, with 1 and 2 threads
    (2: the worker's share too). Off again: the exact results, bit for bit as before."""
    _, run, exact, flushed_values = FLUSH_CASES[case]
    S = dtype(8 * _fi(dtype).smallest_subnormal)
    on_values = flushed_values(S) if callable(flushed_values) else flushed_values
    for n in (1, 2):
        threads(n)
        assert flush(False)
        before = run(dtype, S)
        _check_values(before, exact(S), f"{case} off, {n} threads")
        assert flush(True)
        _check_values(run(dtype, S), on_values, f"{case} on, {n} threads")
        assert flush(False)
        for a, b in zip(run(dtype, S), before):
            assert_bitwise(np.asarray(a), np.asarray(b), f"{case} off again")


# ---- nothing is left behind -----------------------------------------------------------------
@needs_flush
def test_mode_on_leaves_no_thread_flushing(flush, threads):
    """After every kernel ran with the mode on (1 and 2 threads, on subnormal data too),
    subnormals survive numpy arithmetic in the calling thread at once, and, with the mode
    off again, in the kernels' OpenMP threads: each thread's MXCSR was restored."""
    for n in (1, 2):
        threads(n)
        for dt in DTYPES:
            assert flush(True)
            kernel_set(0, dt)
            S = dt(8 * _fi(dt).smallest_subnormal)
            for _, run, _, _ in FLUSH_CASES.values():
                run(dt, S)
            sub = np.full(16, S, dt)
            assert (sub * dt(1) == sub).all()        # this thread, mode still on
            assert flush(False)
            assert_subnormals_survive(dt)


@needs_flush
def test_workers_born_in_flush_mode_do_not_keep_it():
    """In a fresh process, the first kernel runs with the mode on and two threads (its team is
    created then: a thread starts with its creator's MXCSR); with the mode off again, no
    thread of the team holds FTZ or DAZ."""
    code = ("import numpy as np, pybackprop as pb; from pybackprop._core import lib; "
            "pb.set_num_threads(2); assert pb.set_flush_denormal(True); "
            "x = np.ones((64, 64)); pb.dense_forward(x, x, activation='relu'); "
            "assert pb.set_flush_denormal(False); print(lib.pb_probe_ftz_daz())")
    assert _subprocess(code, None) == ["0"]


def test_every_parallel_region_opens_an_fp_scope():
    """In the C sources (csrc/**/*.c, *.inc; probe.c measures the machine and is exempt), every
    `omp parallel` pragma is followed by a block whose first statement is PB_FP_SCOPE, and
    no `omp parallel for` exists (its body could not open one per thread)."""
    files = sorted(p for p in CSRC.rglob("*") if p.suffix in (".c", ".inc")
                   and p.name != "probe.c")
    assert files, f"no C sources under {CSRC}"
    regions = 0
    for path in files:
        lines = [ln.rstrip().rstrip("\\").strip() for ln in path.read_text().splitlines()]
        for i, line in enumerate(lines):
            if not re.search(r"omp\s+parallel\b", line):
                continue
            regions += 1
            where = f"{path.name}:{i + 1}"
            assert not re.search(r"omp\s+parallel\s+for\b", line), \
                f"{where}: `omp parallel for` (write `parallel {{ PB_FP_SCOPE; for nowait }}`)"
            body = [ln for ln in lines[i + 1:i + 4] if ln]
            assert body[:2] == ["{", "PB_FP_SCOPE;"], \
                f"{where}: the region's body does not open with PB_FP_SCOPE"
    assert regions >= 15  # the regions in csrc today: the scan found them all


# ---- thread count and environment: bounded, parsed strictly -----------------------------------
@pytest.mark.parametrize("n", [pybackprop._runtime.MAX_THREADS + 1, 100000, 2**31, 2**63, 0,
                               -1, 1.0, True, "2"])
def test_set_num_threads_is_bounded(n):
    """A count outside [1, MAX_THREADS] (which libgomp could fail to create, ending the
    process) or not an int raises ValueError, never cffi's OverflowError; the count stays."""
    before = pybackprop.get_num_threads()
    with pytest.raises(ValueError, match=str(pybackprop._runtime.MAX_THREADS)):
        pybackprop.set_num_threads(n)
    assert pybackprop.get_num_threads() == before


def _import_with(var, value, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYBACKPROP_") and k != "OMP_NUM_THREADS"}
    env[var] = value
    env.update(extra)
    return subprocess.run([sys.executable, "-c", "import pybackprop as p; "
                           "print(p.get_num_threads(), p.get_flush_denormal())"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("var,value", [
    ("PYBACKPROP_NUM_THREADS", "3abc"), ("PYBACKPROP_NUM_THREADS", " 3"),
    ("PYBACKPROP_NUM_THREADS", "+3"), ("PYBACKPROP_NUM_THREADS", "0"),
    ("PYBACKPROP_NUM_THREADS", "-2"), ("PYBACKPROP_NUM_THREADS", "1025"),
    ("PYBACKPROP_NUM_THREADS", "99999999999999999999"), ("PYBACKPROP_NUM_THREADS", "٣"),
    ("PYBACKPROP_FLUSH_DENORMAL", "true"), ("PYBACKPROP_FLUSH_DENORMAL", "2"),
    ("PYBACKPROP_FLUSH_DENORMAL", "yes"), ("PYBACKPROP_FLUSH_DENORMAL", " 1"),
    ("PYBACKPROP_FLUSH_DENORMAL", "01")])
def test_a_setting_that_would_be_misread_is_an_error(var, value):
    """A value the C core would misread or ignore makes the import fail with a ValueError
    naming the variable and its value."""
    out = _import_with(var, value)
    assert out.returncode != 0
    assert "ValueError" in out.stderr and f"{var}={value!r}" in out.stderr, out.stderr


@pytest.mark.parametrize("var,value,want", [
    ("PYBACKPROP_NUM_THREADS", "3", "3"), ("PYBACKPROP_NUM_THREADS", "1024", "1024"),
    ("PYBACKPROP_NUM_THREADS", "", None), ("PYBACKPROP_FLUSH_DENORMAL", "0", "False"),
    ("PYBACKPROP_FLUSH_DENORMAL", "", "False")])
def test_accepted_settings(var, value, want):
    """The documented values are read as documented (an empty value is unset)."""
    out = _import_with(var, value)
    assert out.returncode == 0, out.stderr
    threads, flush = out.stdout.split()
    if var == "PYBACKPROP_NUM_THREADS" and want is not None:
        assert threads == want
    if var == "PYBACKPROP_FLUSH_DENORMAL":
        assert flush == want


def test_restoring_the_default_rechecks_the_environment(monkeypatch):
    """set_num_threads(None) makes the C core re-read PYBACKPROP_NUM_THREADS: a value set
    since the import is checked as at import, and the count stays as it was."""
    before = pybackprop.get_num_threads()
    monkeypatch.setenv("PYBACKPROP_NUM_THREADS", "2x")
    with pytest.raises(ValueError, match="PYBACKPROP_NUM_THREADS='2x'"):
        pybackprop.set_num_threads(None)
    assert pybackprop.get_num_threads() == before


@pytest.mark.skipif(not pybackprop.build_info()["openmp"], reason="a build without OpenMP "
                    "always runs one thread")
@pytest.mark.parametrize("omp,ours,want", [("1", "", "1"), ("3", "", "3"), ("1", "2", "2"),
                                           ("5000", "", "1024")])
def test_default_threads_follow_omp_num_threads(omp, ours, want):
    """Without set_num_threads, PYBACKPROP_NUM_THREADS wins, else OMP_NUM_THREADS (through
    OpenMP's own ICV), capped at MAX_THREADS: under MPI or a host program that sets it, each
    process starts the threads it was given, not one per core."""
    out = _import_with("OMP_NUM_THREADS", omp, PYBACKPROP_NUM_THREADS=ours)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == want


@pytest.mark.skipif(not pybackprop.build_info()["openmp"], reason="a build without OpenMP "
                    "always runs one thread")
def test_threadpoolctl_limits_the_kernels():
    """threadpoolctl finds pybackprop's OpenMP runtime and its limit holds for the kernels
    (they read OpenMP's nthreads-var at each call); set_num_threads still wins over it."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl (the bench "
                                        "extra) is not installed")
    pybackprop.set_num_threads(None)
    try:
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert pybackprop.get_num_threads() == 1
            x = np.ones((64, 64), np.float32)
            pybackprop.dense_forward(x, x)  # runs (on one thread)
            pybackprop.set_num_threads(2)
            assert pybackprop.get_num_threads() == 2
            pybackprop.set_num_threads(None)
            assert pybackprop.get_num_threads() == 1
        with threadpoolctl.threadpool_limits(2, user_api="openmp"):
            assert pybackprop.get_num_threads() == 2
    finally:
        pybackprop.set_num_threads(None)
