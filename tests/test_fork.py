"""Kernels in a forked child: OpenMP's thread pool does not survive fork(), so a child of a
process whose kernels ran on 2+ threads computes on one thread -- with the same bits -- and
never waits for the parent's workers (which would hang it). Each child runs under a
deadline; a hung child is killed and the test fails."""
import multiprocessing
import os
import select
import time

import numpy as np
import pytest

import pybackprop as pb

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

DEADLINE = 60.0  # seconds; a one-thread (256, 256, 256) forward takes milliseconds


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 256), dtype=np.float32)
    w = rng.standard_normal((256, 256), dtype=np.float32)
    b = rng.standard_normal(256, dtype=np.float32)
    return x, w, b


def _child_result(seed):
    """What a pool worker returns: the forward's bytes and the worker's thread count."""
    x, w, b = _problem(seed)
    return pb.dense_forward(x, w, b, activation="relu").tobytes(), pb.get_num_threads()


@pytest.fixture
def two_threads_ran():
    """The parent has run a kernel on two threads (its OpenMP pool exists)."""
    if not pb.build_info().get("openmp", True):
        pytest.skip("a build without OpenMP has no thread pool")
    pb.set_num_threads(2)
    x, w, b = _problem()
    y = pb.dense_forward(x, w, b, activation="relu")
    yield y
    pb.set_num_threads(None)


def _wait(pid, fd):
    """The child's bytes from the pipe fd and its exit status, or fail after DEADLINE."""
    data, end = b"", time.monotonic() + DEADLINE
    while True:
        left = end - time.monotonic()
        if left <= 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {DEADLINE} s (hung)")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            data += chunk
    _, status = os.waitpid(pid, 0)
    return data, status


def test_os_fork_child_computes_same_bits(two_threads_ran):
    expected = two_threads_ran.tobytes()
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, send threads + bytes, leave without pytest's teardown
        try:
            os.close(r)
            x, w, b = _problem()
            y = pb.dense_forward(x, w, b, activation="relu")
            os.write(wfd, bytes([pb.get_num_threads()]) + y.tobytes())
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        data, status = _wait(pid, r)
    finally:
        os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0
    assert data[0] == 1, "a forked child runs its kernels on one thread"
    assert data[1:] == expected


def test_fork_pool_workers_compute(two_threads_ran):
    expected = two_threads_ran.tobytes()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map_async(_child_result, [0, 0, 1]).get(timeout=DEADLINE)
    assert results[0] == (expected, 1) and results[1] == (expected, 1)
    x, w, b = _problem(1)
    assert results[2][0] == pb.dense_forward(x, w, b, activation="relu").tobytes()
