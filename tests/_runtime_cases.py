"""What test_runtime.py and test_subnormals.py share: the dtypes, the platforms the flush mode
runs on, and the float type's limits."""
import platform

import numpy as np
import pytest

DTYPES = (np.float32, np.float64)
# The mode needs SSE maths (MXCSR) and DAZ: x86-64 builds.
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
needs_flush = pytest.mark.skipif(not X86, reason="no MXCSR: the mode is unsupported here")


def _fi(dt):
    return np.finfo(dt)
