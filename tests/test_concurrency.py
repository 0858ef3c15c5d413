"""Thread safety: many Python threads calling every kernel at once on independent data give
the serial results bit for bit; the GIL is released while C runs (shown by a Python thread
making progress during one long C call, never by a clock); set_num_threads from several
threads at once is safe and every kernel stays bitwise reproducible meanwhile.

Assumes the compiled core; uses no timing. The thread counts are module constants.
"""
import sys
import threading

import numpy as np
import pytest

import pybackprop

from _kernel_cases import assert_subnormals_survive, kernel_set

N_THREADS = 8       # Python threads calling kernels concurrently
ROUNDS = 3          # calls of the whole kernel set per thread


def _run_threads(fn, n):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    ts = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    return results


def _equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_threads_calling_every_kernel_equal_serial(arch):
    """N_THREADS threads x ROUNDS calls of every kernel == the same calls made serially."""
    for dtype in (np.float32, np.float64):
        serial = [kernel_set(i, dtype) for i in range(N_THREADS)]
        got = _run_threads(lambda i: [kernel_set(i, dtype) for _ in range(ROUNDS)],
                           N_THREADS)
        for i, rounds in enumerate(got):
            for res in rounds:
                _equal(res, serial[i])


def test_gil_is_released_during_a_kernel():
    """A Python thread keeps counting while another thread is inside one long C call.

    The counter thread runs only while the caller holds no GIL; the count is read just
    before and just after the C call from the calling thread, so any increase happened while
    C ran. The kernel is made long by its size (a 1 GFLOP GEMM); no time is asserted."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1000), dtype=np.float32)
    w = rng.standard_normal((500, 1000), dtype=np.float32)
    state = {"count": 0, "stop": False}
    started = threading.Event()

    def counter():
        started.set()
        while not state["stop"]:
            state["count"] += 1

    # A long switch interval: while the main thread runs Python it keeps the GIL (the
    # counter, waiting for it, would only get it after 0.5 s), so the counter can advance
    # between the two reads only if the C call itself released the GIL.
    saved_interval = sys.getswitchinterval()
    t = threading.Thread(target=counter)
    t.start()
    started.wait()
    sys.setswitchinterval(0.5)
    try:
        advanced = False
        for _ in range(20):   # each try is one C call; a single one normally suffices
            before = state["count"]
            pybackprop.dense_forward(x, w, activation="identity")
            pybackprop.dense_forward(x, w, activation="identity")
            if state["count"] > before:
                advanced = True
                break
    finally:
        sys.setswitchinterval(saved_interval)
        state["stop"] = True
        t.join()
    assert advanced, "the counter thread never ran while C computed: is the GIL held?"


def test_set_num_threads_from_many_threads_is_safe(arch):
    """Threads changing the thread count while others compute: results stay bitwise equal."""
    saved = pybackprop.get_num_threads()
    try:
        ref = [kernel_set(i, np.float32) for i in range(4)]

        def body(i):
            if i % 2:   # setters
                for k in range(200):
                    pybackprop.set_num_threads(1 + (k + i) % 3)
                    assert pybackprop.get_num_threads() >= 1
                pybackprop.set_num_threads(None)
                return None
            return [kernel_set(j, np.float32) for j in range(4)]

        for res in _run_threads(body, 8):
            if res is not None:
                for a, b in zip(res, ref):
                    _equal(a, b)
    finally:
        pybackprop.set_num_threads(saved)


def test_no_flush_to_zero_behind_the_users_back(threads):
    """After every kernel ran (1 and 2 threads), subnormals still survive arithmetic in the
    calling thread (numpy) and in the kernels' threads (a GEMM by 1 and an elementwise
    product, both threaded): no kernel leaves FTZ/DAZ set in MXCSR."""
    for n in (1, 2):
        threads(n)
        for dt in (np.float32, np.float64):
            kernel_set(0, dt)
            assert_subnormals_survive(dt)


_SHORT_TEAM = """
import numpy as np, pybackprop
shapes = [(300, 200, 300),   # packed forward; fused backward (dz formed while packing)
          (64, 512, 512),    # transposed-tile forward (AVX2, AVX-512), packed N split
          (32, 128, 128),    # small layer: backward tasks with their own dz
          (1000, 300, 40),   # backward: dw by the A^T B kernel in chunks
          (4096, 256, 16),   # tall forward with few outputs (AVX-512's dot kernel)
          (1, 700, 900)]     # B = 1: GEMV and outer product
bad = []
for dt in (np.float32, np.float64):
    rng = np.random.default_rng(0)
    for B, K, N in shapes:
        x, w, b = (rng.standard_normal(s).astype(dt) for s in ((B, K), (N, K), (N,)))
        dy = rng.standard_normal((B, N)).astype(dt)
        res = []
        for nt in (1, 2):
            pybackprop.set_num_threads(nt)
            y = pybackprop.dense_forward(x, w, b, activation="tanh")
            res.append([y] + list(pybackprop.dense_backward(dy, x, w, y, activation="tanh")))
        if not all(np.array_equal(p, q) for p, q in zip(*res)):
            bad.append((np.dtype(dt).name, B, K, N))
print(bad)
"""


def test_a_short_openmp_team_computes_everything():
    """OpenMP may give a region fewer threads than it asks for (here OMP_THREAD_LIMIT=1
    under set_num_threads(2)); regions that split work by thread number then run it on one
    thread instead of leaving absent threads' shares unwritten: forward and backward on
    every GEMM path give the one-thread bits (a subprocess: the limit is read at start-up)."""
    import os
    import subprocess
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    if "ASAN_OPTIONS" in env:
        # .ci/sanitize's leak stage: under this limit LSan reports 192 bytes that libgomp
        # itself allocated (malloc called from libgomp, never from pybackprop) as leaked at
        # exit -- the stage runs with use_tls=0, blind to what thread-local storage holds;
        # the same kernels' allocations are leak-checked by the other tests
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    out = subprocess.run([sys.executable, "-c", _SHORT_TEAM], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def _one_path_calls():
    """Calls whose result differs between the portable and the vector paths in several parts
    (the GEMMs' summation order, the vector exp/expm1 of the activations): a call that mixed
    two paths would match neither path's bits."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((96, 200)).astype(np.float32)
    w = rng.standard_normal((120, 200)).astype(np.float32)
    b = rng.standard_normal(120).astype(np.float32)
    y = pybackprop.dense_forward(x, w, b, activation="softplus")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    z = rng.standard_normal(1 << 16).astype(np.float32)

    def forward():
        return pybackprop.dense_forward(x, w, b, activation="softplus").tobytes()

    def backward():
        return b"".join(g.tobytes() for g in
                        pybackprop.dense_backward(dy, x, w, y, activation="softplus"))

    def act():
        return pybackprop.activation(z, "softplus").tobytes()

    def power():
        u, v = np.full(120, 0.1, np.float32), np.full(200, 0.1, np.float32)
        return pybackprop.power_iteration(w, u, v, n_iters=3).tobytes() + u.tobytes()

    return [forward, backward, act, power]


@pytest.mark.skipif(len(pybackprop.available_archs()) < 2,
                    reason="one instruction set on this CPU: no second path to switch to")
def test_each_call_runs_on_one_path_while_another_thread_switches():
    """set_arch from another thread during calls: every result is bitwise the result of one
    path (each call reads the kernel table once and hands it down)."""
    paths = [pybackprop.available_archs()[0], pybackprop.available_archs()[-1]]
    saved = pybackprop.get_cpu()
    calls = _one_path_calls()
    expected = []
    for p in paths:
        pybackprop.set_arch(p)
        expected.append([c() for c in calls])
    assert all(e0 != e1 for e0, e1 in zip(*expected)), "the paths must differ to tell them apart"
    stop = threading.Event()

    def switch():
        i = 0
        while not stop.is_set():
            pybackprop.set_arch(paths[i % 2])
            i += 1

    t = threading.Thread(target=switch)
    t.start()
    try:
        for _ in range(150):
            for k, c in enumerate(calls):
                got = c()
                assert got in (expected[0][k], expected[1][k]), \
                    f"{c.__name__}: a result of no single path"
    finally:
        stop.set()
        t.join()
        pybackprop.set_cpu(saved)
