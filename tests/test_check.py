"""python -m pybackprop check (pybackprop/_check.py): passes on this CPU, and fails, naming
the kernel, when a kernel is wrong by a little."""
import io

import numpy as np
import pytest

import pybackprop
from pybackprop import _check


def test_check_passes_in_the_active_configuration():
    """Every kernel family within its bound in the configuration that runs here; the table
    names every kernel and the configuration; the active configuration is kept."""
    out = io.StringIO()
    cpu = pybackprop.get_cpu()
    assert pybackprop.check([cpu], file=out) is True
    text = out.getvalue()
    assert cpu in text and "all kernels within their bounds" in text
    for kernel in ("dense_forward", "dense_backward", "softmax_cross_entropy", "adam",
                   "power_iteration"):
        assert kernel in text
    assert pybackprop.get_cpu() == cpu


def _off_by(fn, rel):
    def wrong(*args, **kwargs):
        res = fn(*args, **kwargs)
        return res * (1 + rel) if isinstance(res, np.ndarray) else res
    return wrong


@pytest.mark.parametrize("name, rel", [("dense_forward", 1e-4), ("activation", 1e-5)])
def test_check_fails_on_a_slightly_wrong_kernel(monkeypatch, name, rel):
    """A kernel off by a relative 1e-4 (dense) or 1e-5 (an activation) fails the check:
    the table says FAIL and the command exits 1."""
    monkeypatch.setattr(pybackprop, name, _off_by(getattr(pybackprop, name), rel))
    out = io.StringIO()
    assert pybackprop.check([pybackprop.get_cpu()], file=out) is False
    line = next(l for l in out.getvalue().splitlines() if l.startswith(name + " "))
    assert "FAIL" in line and "SOME KERNELS FAILED" in out.getvalue()
    assert _check.main(["--cpu", pybackprop.get_cpu()]) == 1


def test_check_fails_on_an_optimizer_one_ulp_off(monkeypatch):
    """The optimizers' contract is bitwise: one ulp on one element fails."""
    step = pybackprop.optim.adam_step

    def wrong(param, *args, **kwargs):
        step(param, *args, **kwargs)
        param[3] = np.nextafter(param[3], np.inf)
    monkeypatch.setattr(pybackprop.optim, "adam_step", wrong)
    assert pybackprop.check([pybackprop.get_cpu()], file=False) is False


def test_check_refuses_unknown_configurations():
    """A configuration this CPU cannot run is refused before anything runs."""
    with pytest.raises(ValueError, match="cpu must be one of"):
        pybackprop.check(["no-such-cpu"], file=False)
