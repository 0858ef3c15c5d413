"""Memory: many calls of every kernel do not grow the resident set (no leak per call).

RSS is read from /proc/self/statm (Linux) after a warm-up (allocator pools, numpy caches,
first-call buffers), then after CALLS more rounds of every kernel; it may grow by at most
RSS_SLACK. A leak of even one small workspace per call (>= 64 bytes, our alignment) would
exceed it: CALLS rounds x ~30 kernel calls x 64 B ~ 2 MB per byte-scale leak, and every
workspace the kernels allocate (packing panels, dz, block partials) is kilobytes.
LeakSanitizer over this module and the fuzz module is .ci/sanitize's second stage.
"""
import os

import numpy as np

from _kernel_cases import kernel_set

CALLS = 150                 # rounds of every kernel after the warm-up
RSS_SLACK = 8 * 2**20       # bytes the resident set may grow by (allocator noise)


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_rss_stays_bounded():
    """CALLS rounds of every kernel (both dtypes) grow RSS by less than RSS_SLACK."""
    for i in range(20):
        for dt in (np.float32, np.float64):
            kernel_set(i, dt)
    before = _rss()
    for i in range(CALLS):
        for dt in (np.float32, np.float64):
            kernel_set(i, dt)
    grown = _rss() - before
    assert grown < RSS_SLACK, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS} rounds"


def test_rss_threads_free_their_workspaces():
    """Threads that run kernels and exit free their workspaces (the pthread key's destructor
    in csrc/core/runtime.c): 60 short-lived threads, each growing workspaces of several MiB in a
    dense backward, grow RSS by less than a quarter of what a leak would hold. Each backward
    packs at least one panel of w for dx = dz @ w, min(K, kc) x N float64 with kc the active
    configuration's or, where one of its rules sends the product to an ISA table, at least
    that table's 256, so a leak holds at least 60 such panels (90 MiB at kc = 256; the
    allocator's own growth here was measured at 8-9 MiB). (The LeakSanitizer stage cannot see this class: .ci/sanitize
    explains why it does not scan thread-local storage.)"""
    import threading

    import pybackprop
    from pybackprop import _gemm
    kc = min(_gemm.blocks(None, np.float64)["kc"], 256)
    slack = 60 * min(768, kc) * 768 * 8 // 4
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((512, 768)), rng.standard_normal((768, 768))
    y = pybackprop.dense_forward(x, w, activation="relu")
    dy = rng.standard_normal(y.shape)

    def work():
        pybackprop.dense_backward(dy, x, w, y, activation="relu")

    def run_threads(n):
        for _ in range(n):
            t = threading.Thread(target=work)
            t.start()
            t.join()

    # warm-up: glibc's per-thread arenas keep freed chunks (and the dynamic mmap threshold
    # moves workspaces of a few MiB into them); RSS levels off after ~85 threads (measured:
    # +34, +38, +45.5 MiB after 5, 25, 85 threads, then flat) in a fresh process; after the
    # rest of the suite the arenas hold other chunks too (8.02 MiB of growth measured after
    # a 100-thread warm-up there), so twice that
    run_threads(200)
    before = _rss()
    run_threads(60)
    grown = _rss() - before
    assert grown < slack, f"RSS grew by {grown / 2**20:.1f} MiB over 60 threads"


def test_many_calls_for_leak_sanitizer():
    """Every kernel many times with both dtypes and 1-2 threads (LSan's target; also checks
    the results stay equal call after call)."""
    import pybackprop
    saved = pybackprop.get_num_threads()
    try:
        first = {dt: kernel_set(0, dt) for dt in (np.float32, np.float64)}
        for n in (1, 2):
            pybackprop.set_num_threads(n)
            for _ in range(20):
                for dt in (np.float32, np.float64):
                    for a, b in zip(kernel_set(0, dt), first[dt]):
                        np.testing.assert_array_equal(a, b)
    finally:
        pybackprop.set_num_threads(saved)
