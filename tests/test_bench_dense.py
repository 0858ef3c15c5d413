"""bench/bench_dense.py: the README summary (the pivot of the main table and its worst
ratios), and the gelu/silu rows run in tiny configurations (structure, not speed)."""
import numpy as np
import pytest

from pybackprop._bench import (_common, _dense_gelu, _dense_markdown, _dense_problem,
                               _dense_tables, bench_dense)


def _row(op, dtype, threads, shape, us, vs_numpy, vs_torch, auto, act="relu"):
    return dict(op=op, act=act, dtype=dtype, threads=threads, shape=shape, ours_us=us * 1e-6,  # seconds
                peak_pct=50.0, vs_numpy=vs_numpy, vs_torch=vs_torch, auto_vs_best=auto)


def test_summary_pivots_the_top_thread_count_and_reports_the_worst_row():
    rows = [_row("forward", "f32", 1, "8x8x8", 5.0, "0.90", "2.00", "1.00"),
            _row("forward", "f32", 2, "8x8x8", 4.0, "1.50", "3.00", "0.97"),
            _row("forward", "f64", 2, "8x8x8", 6.0, "1.20*", None, "1.02"),
            _row("forward", "f32", 2, "8x8x8", 9.0, "1.10", "1.30", "0.99", act="tanh")]
    text = _dense_markdown.summary(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| op | B x K x N | f32 us |") and "f64 x torch" in lines[0]
    assert lines[2] == "| forward | 8x8x8 | 4.00 | 50 | 1.50 | 3.00 | 6.00 | 50 | 1.20* | - |"
    assert lines[3].startswith("| forward tanh | 8x8x8 | 9.00 |") and lines[3].endswith(
        "| - | - | - | - |")
    # the worst over every row, the 1-thread one included
    assert "x numpy 0.90, x torch 1.30, automatic configuration / best pinned 0.97" in text



# ---- the gelu/silu rows, in tiny configurations --------------------------------------------

@pytest.fixture
def fast(monkeypatch):
    """measure() calls the function once and reports 1 ms; tiny shapes for the epilogue and
    training-step tables, two epilogue rounds."""
    monkeypatch.setattr(_common, "measure", lambda fn, **kw: (fn(), 1e-3)[1])
    monkeypatch.setattr(_dense_tables, "EPILOGUE_ROUNDS", 2)
    monkeypatch.setattr(_dense_tables, "EPILOGUE", [((8, 16, 24), ("gelu", "silu+z"), 5),
                                                  ((4, 8, 8), ("gelu_tanh",), 10)])
    monkeypatch.setattr(_dense_gelu, "TRAIN_SHAPES", [(8, 16, 24), (3, 5, 7)])


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu"])
@pytest.mark.parametrize("buffers", [False, True])
def test_preact_problems_verify_ours_numpy_and_torch(act, buffers):
    """Backward from z (y unused); the forward's preact= buffer is checked when asked."""
    p = _dense_problem.Problem(np.float32, (5, 12, 7), act, 0.01, buffers=buffers)
    assert p.saved()[0] is None and p.saved()[1]["preact"] is p.z
    for op in bench_dense.OPS:
        p.verify(op, p.ours(op), "ours")
        p.verify(op, p.numpy(op), "numpy")
    p.verify("forward", p.ours("forward", preact=True), "ours", preact=True)
    torch = _common.import_torch()
    if torch is not None:
        for op in bench_dense.OPS:
            p.verify(op, p.torch(op, torch), "torch")
    p.z_out.fill(0.0)
    with pytest.raises(AssertionError, match=" z: "):
        p.check("preact", p.z_out, "ours")


def test_epilogue_rows_report_the_cost_over_relu_and_the_target(fast, capsys):
    assert _dense_tables.run_epilogue([np.dtype(np.float32)], 1, _common.TIMING_QUICK)
    rows = _common.PRINTED[-1][1]
    assert [(r["shape"], r["act"]) for r in rows] == [
        ("8x16x24", "relu"), ("8x16x24", "gelu"), ("8x16x24", "silu+z"),
        ("4x8x8", "relu"), ("4x8x8", "gelu_tanh")]
    assert [r["target"] for r in rows] == [None, "<= +5 %", None, None, "<= +10 %"]
    assert [r["over_relu"] for r in rows] == ["-", "+0.0 %", "+0.0 %", "-", "+0.0 %"]
    assert "<act>+z: the forward also stores the pre-activation" in capsys.readouterr().out


def test_train_rows_against_torch(fast, capsys):
    torch = _common.import_torch()
    for buffers in (False, True):
        assert _dense_gelu.run_train(_dense_problem.Problem, [np.dtype(np.float64)], 1, torch,
                                     _common.TIMING_QUICK, buffers=buffers)
        rows = _common.PRINTED[-1][1]
        assert [(r["act"], r["shape"]) for r in rows] == [
            ("gelu", "8x16x24"), ("silu", "8x16x24"), ("gelu", "3x5x7"), ("silu", "3x5x7")]
        for r in rows:
            assert r.get("note") is None and r["target"] == ">= 1.2" and r["gflops"] > 0
            assert r.get("vs_torch") == (None if torch is None else "1.00")
    assert "Training step, gelu/silu" in capsys.readouterr().out


def test_a_wrong_step_is_a_failed_train_row(fast, monkeypatch):
    right = _dense_gelu.ours_step

    def wrong(p):
        step = right(p)
        return lambda: tuple(a * 2 for a in step())
    monkeypatch.setattr(_dense_gelu, "ours_step", wrong)
    assert not _dense_gelu.run_train(_dense_problem.Problem, [np.dtype(np.float32)], 1, None,
                                     _common.TIMING_QUICK)
    assert all(r["note"].startswith("FAIL AssertionError") for r in _common.PRINTED[-1][1])


@pytest.mark.parametrize("argv, title", [
    (["--train"], "Training step, gelu/silu"),
    (["--epilogue"], "Fused epilogue: forward"),
    (["--quick", "--shapes", "4x8x8", "--act", "gelu"], "B x K x N")])
def test_main_runs_the_new_tables_alone(fast, capsys, argv, title):
    assert bench_dense.main(argv + ["--dtype", "float32", "--threads", "1", "--pinned",
                                    "none", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert title in out and "FAIL" not in out
    if "--act" in argv:
        assert "forward   gelu" in out and "backward  gelu" in out
