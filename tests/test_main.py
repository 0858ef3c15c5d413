"""The command line, pybackprop/__main__.py: subcommands, the benchmarks' summary and
full forms, arguments passed through, help and errors."""
import importlib.util
import types

import pytest

import pybackprop
from pybackprop import __main__ as cli


@pytest.fixture
def fake_benches(monkeypatch):
    """Every benchmark replaced by a recorder of the arguments it was given."""
    calls = []

    def fake_import(name):
        return types.SimpleNamespace(main=lambda argv: calls.append((name, argv)) or 0)
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=fake_import))
    return calls


def test_bench_runs_every_benchmark_quick_by_default(fake_benches):
    """`bench` runs every benchmark in its quick form, in order; `--full` without it."""
    assert cli.main(["bench"]) == 0
    assert fake_benches == [(m, ["--quick"]) for _, m, _ in cli.BENCHES]
    fake_benches.clear()
    assert cli.main(["bench", "--full", "--threads", "2"]) == 0
    assert fake_benches == [(m, ["--threads", "2"]) for _, m, _ in cli.BENCHES]


def test_bench_name_gets_its_own_arguments(fake_benches):
    """`bench NAME args` runs that benchmark alone with its arguments, --help included."""
    assert cli.main(["bench", "dense", "--shapes", "8x8x8", "--help"]) == 0
    assert fake_benches == [("pybackprop._bench.bench_dense", ["--shapes", "8x8x8", "--help"])]


def test_bench_help_lists_the_benchmarks(capsys, fake_benches):
    """`bench --help` names every benchmark and runs none."""
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name, _, _ in cli.BENCHES) and "--full" in out
    assert fake_benches == []


@pytest.mark.parametrize("argv", [["bench", "nosuch"], ["info", "x"], [], ["nosuch"]])
def test_bad_command_lines_exit_2(argv, capsys):
    """Unknown commands or benchmarks, stray arguments: usage on stderr, exit status 2."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and "usage" in capsys.readouterr().err


def test_info_names_the_cpu_and_configuration(capsys):
    """`info` prints the build facts, the cpuid model and every configuration, marking the
    active one."""
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    info = pybackprop.cpu_info()
    assert f"configuration: {pybackprop.get_cpu()}" in out
    assert f"family {info['family']:#x}" in out
    for name in info["configurations"]:
        assert name in out
    assert f"*{pybackprop.get_cpu()}" in out


def test_bench_save_writes_each_output_to_a_file(fake_benches, tmp_path, monkeypatch):
    """--save DIR: each benchmark's output (and the command) also lands in a file of DIR
    named by date, CPU, configuration and benchmark; --save is not passed on."""
    def fake_import(name):
        return types.SimpleNamespace(main=lambda argv: print("table of", name, argv) or 0)
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=fake_import))
    assert cli.main(["bench", "optim", "--sizes", "1e4", "--save", str(tmp_path)]) == 0
    (f,) = tmp_path.iterdir()
    assert f.name.endswith(f"_{pybackprop.get_cpu()}_optim.txt")
    text = f.read_text()
    assert text.startswith("$ python -m pybackprop bench optim --sizes 1e4")
    assert "table of pybackprop._bench.bench_optim ['--sizes', '1e4']" in text


@pytest.fixture
def table_benches(monkeypatch):
    """Every benchmark replaced by one that prints a table with ratio columns."""
    from pybackprop._bench import _common

    def fake_import(name):
        def main(argv):
            cols = [("op", "op", "s"), ("us", "us", ".1f"), ("vs numpy", "vs_numpy", "s"),
                    ("vs torch", "vs_torch", "s"), ("note", "note", "s")]
            _common.print_table([dict(op="fwd", us=1.0, vs_numpy="2.00", vs_torch="0.50*",
                                      note="x"),
                                 dict(op="bwd", us=2.0, vs_numpy="1.25", vs_torch=None)], cols)
            return 0
        return types.SimpleNamespace(main=main)
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=fake_import))


def test_plot_panels_read_the_ratio_columns(table_benches, capsys):
    from pybackprop._bench import _common, _plot
    start = len(_common.PRINTED)
    assert cli.main(["bench", "optim"]) == 0
    (title, labels, series), = _plot.panels([("optim", *t) for t in _common.PRINTED[start:]])
    assert labels == ["fwd", "bwd"]  # the text columns left of the ratios, not "note"
    assert series == {"vs numpy": [2.0, 1.25], "vs torch": [0.5, None]}


def test_plot_panels_skip_a_table_without_ratios():
    """A table with no ratio column (the epilogue costs, say) gives no panel, no error."""
    from pybackprop._bench import _plot
    cols = [("act", "act", "s"), ("us", "us", ".1f")]
    assert _plot.panels([("epilogue", cols, [dict(act="relu", us=1.0)])]) == []


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="bench --plot needs matplotlib (the plot extra)")
def test_bench_plot_writes_a_png(table_benches, tmp_path, capsys):
    path = tmp_path / "bench.png"
    assert cli.main(["bench", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plotted to {path}" in capsys.readouterr().out


def test_bench_plot_needs_a_file_name(capsys):
    with pytest.raises(SystemExit, match="--plot needs a file name"):
        cli.main(["bench", "dense", "--plot"])
