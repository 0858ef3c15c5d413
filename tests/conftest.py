"""Shared pytest configuration for the pybackprop test suite.

Assumes the package is installed with its compiled core (``pip install -e '.[test]'``).
Provides fixtures that change global library state and always restore it:
  arch     -- parametrised over every CPU configuration this CPU can run
              (pybackprop.available_cpus()): each kernel family's ISA, block sizes and
              path crossovers as that configuration sets them
  threads  -- a setter for the kernel thread count
  flush    -- a setter for the flush-to-zero mode (pybackprop.set_flush_denormal)
  rng      -- a numpy Generator seeded from the test's id (reproducible, distinct per test)
and the hypothesis profiles: "default" (fast, used by CI) and "thorough" (select with
PYBACKPROP_HYPOTHESIS_PROFILE=thorough). It does not skip anything: a missing compiled core
is a collection error, not a skip.
"""
import os
import zlib

import numpy as np
import pytest
from hypothesis import settings

import pybackprop



def _test_cpus():
    """The configurations the ``arch`` fixture runs: every one this CPU runs, or those
    PYBACKPROP_TEST_CPUS names ("auto": the automatic choice only; a comma-separated
    list), for runs whose purpose is not the kernels' parity (a wheel's contents, the
    sanitizer stage's second pass)."""
    runnable = pybackprop.available_cpus()
    want = os.environ.get("PYBACKPROP_TEST_CPUS", "all").strip()
    if want == "all":
        return tuple(runnable)
    if want == "auto":
        return (pybackprop.get_cpu(),)
    names = [n.strip() for n in want.split(",") if n.strip()]
    bad = [n for n in names if n not in runnable]
    if bad or not names:
        raise pytest.UsageError(f"PYBACKPROP_TEST_CPUS={want!r}: {bad or 'nothing'} not among "
                                f"this CPU's configurations {runnable}")
    return tuple(names)


ARCHS = _test_cpus()

settings.register_profile("default", max_examples=30, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("PYBACKPROP_HYPOTHESIS_PROFILE", "default"))


def pytest_report_header(config):
    info = pybackprop.build_info()
    absent = [n for n, c in pybackprop.cpu_info()["configurations"].items()
              if not c["runs_here"]]
    return ["pybackprop: " + ", ".join(f"{k}={v}" for k, v in info.items()),
            f"pybackprop CPU configurations tested: {', '.join(ARCHS)}; not runnable on "
            f"this CPU (an instruction set it lacks): {', '.join(absent) or 'none'}"]


@pytest.fixture(params=ARCHS)
def arch(request):
    """Run the test in one CPU configuration, then restore the one that was active."""
    saved = pybackprop.get_cpu()
    pybackprop.set_cpu(request.param)
    try:
        yield request.param
    finally:
        pybackprop.set_cpu(saved)


@pytest.fixture
def threads():
    """``pybackprop.set_num_threads``; the thread count is restored after the test."""
    saved = pybackprop.get_num_threads()
    try:
        yield pybackprop.set_num_threads
    finally:
        pybackprop.set_num_threads(saved)


@pytest.fixture
def flush():
    """``pybackprop.set_flush_denormal``; the mode in force before the test is restored."""
    saved = pybackprop.get_flush_denormal()
    try:
        yield pybackprop.set_flush_denormal
    finally:
        pybackprop.set_flush_denormal(saved)


@pytest.fixture
def rng(request):
    """A random generator seeded from the test's node id."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
