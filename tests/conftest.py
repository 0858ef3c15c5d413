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

ARCHS = tuple(pybackprop.available_cpus())

settings.register_profile("default", max_examples=30, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("PYBACKPROP_HYPOTHESIS_PROFILE", "default"))


def pytest_report_header(config):
    info = pybackprop.build_info()
    return ["pybackprop: " + ", ".join(f"{k}={v}" for k, v in info.items()),
            f"pybackprop CPU configurations tested: {', '.join(ARCHS)}"]


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
