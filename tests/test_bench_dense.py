"""bench/bench_dense.py's README summary: the pivot of the main table and its worst ratios."""
from pybackprop._bench import bench_dense


def _row(op, dtype, threads, shape, us, vs_numpy, vs_torch, auto, act="relu"):
    return dict(op=op, act=act, dtype=dtype, threads=threads, shape=shape, ours_us=us * 1e-6,  # seconds
                peak_pct=50.0, vs_numpy=vs_numpy, vs_torch=vs_torch, auto_vs_best=auto)


def test_summary_pivots_the_top_thread_count_and_reports_the_worst_row():
    rows = [_row("forward", "f32", 1, "8x8x8", 5.0, "0.90", "2.00", "1.00"),
            _row("forward", "f32", 2, "8x8x8", 4.0, "1.50", "3.00", "0.97"),
            _row("forward", "f64", 2, "8x8x8", 6.0, "1.20*", None, "1.02"),
            _row("forward", "f32", 2, "8x8x8", 9.0, "1.10", "1.30", "0.99", act="tanh")]
    text = bench_dense._summary_markdown(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| op | B x K x N | f32 us |") and "f64 x torch" in lines[0]
    assert lines[2] == "| forward | 8x8x8 | 4.00 | 50 | 1.50 | 3.00 | 6.00 | 50 | 1.20* | - |"
    assert lines[3].startswith("| forward tanh | 8x8x8 | 9.00 |") and lines[3].endswith(
        "| - | - | - | - |")
    # the worst over every row, the 1-thread one included
    assert "x numpy 0.90, x torch 1.30, automatic configuration / best pinned 0.97" in text
