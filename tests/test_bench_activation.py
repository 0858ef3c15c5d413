"""bench/bench_activation.py's rows of gelu, gelu_tanh and silu: the numpy expressions it
times against the reference, and rows built in tiny configurations (structure, not speed)."""
import numpy as np
import pytest

from pybackprop import reference
from pybackprop._bench import _common, bench_activation as ba

PREACT = ("gelu", "gelu_tanh", "silu")


@pytest.fixture
def fast_measure(monkeypatch):
    """_common.measure calls the function once and reports 1 ms: rows without the timing."""
    monkeypatch.setattr(_common, "measure", lambda fn, **kw: (fn(), 1e-3)[1])


@pytest.mark.parametrize("kind", PREACT)
def test_numpy_expressions_match_the_reference(kind):
    """float64 to a few ulps (Cephes' erf/erfc for gelu) over both tails, float32 too."""
    z = np.concatenate([np.linspace(-30, 30, 6001), [-0.0, 0.0, 1e-30, -1e-30, 0.5, -1.0]])
    dy = np.linspace(-2, 2, z.size)
    for dt, tol in ((np.float64, 1e-13), (np.float32, 2e-6)):
        zt, dyt = z.astype(dt), dy.astype(dt)
        want = reference.activation(zt.astype(np.float64), kind)
        dwant = reference.activation_backward(dyt.astype(np.float64), None, kind,
                                              preact=zt.astype(np.float64))
        got, dgot = ba._np_forward(kind, zt), ba._np_backward(kind, dyt, zt)
        assert got.dtype == dgot.dtype == dt
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(dgot, dwant, rtol=tol, atol=tol)


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("kind", PREACT)
def test_rows_of_the_preact_kinds(kind, direction, fast_measure):
    """Verified (ours, numpy, torch when importable), then a row with both ratios; the
    backward reads z (no saved output)."""
    torch = _common.import_torch()
    case = ba.Case(kind, direction, np.float32, 2**12)
    assert case.y is None and case.verify_numpy and case.step == 1
    row, ok = _common.run_elementwise_case(case, f"{kind} {direction}", 1, torch,
                                           _common.TIMING_QUICK, 10.0)
    assert ok and row.get("note") is None, row
    assert row["kernel"] == f"{kind} {direction}" and row["size"] == "2^12"
    assert row["vs_numpy"] == "1.00"
    assert (row.get("vs_torch") == "1.00") == (torch is not None)


def test_large_cases_are_checked_on_a_strided_sample(monkeypatch):
    """Above VERIFY_SAMPLE elements the preact kinds' reference sees every step-th element,
    and a wrong one among them fails the check."""
    monkeypatch.setattr(ba, "VERIFY_SAMPLE", 2**8)
    case = ba.Case("gelu", "fwd", np.float64, 2**12)
    assert case.step == 16
    case.verify(case.ours(), "ours")
    assert case.want.shape == (2**8,)
    bad = case.ours()()
    bad[32] += 1.0
    with pytest.raises(AssertionError, match=r"every 16th element"):
        case.verify(lambda: bad, "ours")


def test_a_wrong_numpy_expression_is_a_failed_row(monkeypatch, fast_measure):
    monkeypatch.setattr(ba, "_np_forward", lambda kind, z: z)
    case = ba.Case("silu", "fwd", np.float64, 2**10)
    row, ok = _common.run_elementwise_case(case, "silu fwd", 1, None, _common.TIMING_QUICK, 1.0)
    assert not ok and row["note"].startswith("numpy: AssertionError") and "numpy_us" not in row


def test_main_prints_the_new_rows(monkeypatch, capsys, fast_measure):
    monkeypatch.setattr(ba, "QUICK_SIZES", [2**10])
    monkeypatch.setattr(_common, "bandwidth", lambda *a, **k: (10.0, 10.0))
    assert "gelu" in ba.QUICK_KINDS
    assert ba.main(["--quick", "--dtype", "float32", "--no-torch",
                    "--kernels", "gelu,gelu_tanh,silu"]) == 0
    out = capsys.readouterr().out
    for kind in PREACT:
        for direction in ("fwd", "bwd"):
            assert f"\n{kind} {direction} " in out
    assert "numpy for gelu/gelu_tanh/silu" in out
