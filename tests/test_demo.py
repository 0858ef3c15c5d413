"""Tests of the demo, pybackprop/demo.py (python -m pybackprop demo).

The training loop is run on a shortened schedule and must still reach a real accuracy; the
command line runs end to end (also without tqdm and matplotlib, which are optional); each
optimizer trains; spectral norm keeps the network's Lipschitz bound near 1.

Thresholds (measured, then set with margin): 20 epochs of the default recipe reach 97.9%
test accuracy with Adam (98.0% AdamW, 90.9% AdaMax, whose lr-bounded steps are slower to
start) on the avx512 path, 97.9% / 97.7% with avx2 / ref; SHORT_RUN_ACC leaves room for
the last bits of other paths while failing any broken gradient, optimizer or loss (which
stays near chance, 33%).
"""
import sys

import numpy as np
import pytest

import pybackprop as pb
from pybackprop import demo

SHORT_EPOCHS = 20
SHORT_RUN_ACC = {"adam": 0.96, "adamw": 0.96, "adamax": 0.85}


@pytest.fixture(scope="module")
def data():
    return demo.make_spirals(1000, seed=0), demo.make_spirals(500, seed=1)


def test_spirals_are_seeded_and_balanced():
    """3 classes of n points, in [-1.2, 1.2]^2, the same for the same seed."""
    X, y = demo.make_spirals(100, seed=3)
    X2, y2 = demo.make_spirals(100, seed=3)
    assert X.shape == (300, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert np.array_equal(np.bincount(y), [100, 100, 100])
    assert np.abs(X).max() < 1.2
    assert not np.array_equal(demo.make_spirals(100, seed=4)[0], X)


@pytest.mark.parametrize("name", demo.OPTIMIZERS)
def test_short_training_run_reaches_accuracy(data, threads, name):
    """20 epochs of the demo's recipe reach SHORT_RUN_ACC test accuracy, loss falling."""
    threads(1)
    (X, y), (Xt, yt) = data
    model = demo.build_model(seed=0)
    lr = demo.DEFAULT_LR[name]
    opt = demo.make_optimizer(name, model.parameters(), lr)
    assert demo.accuracy(model, Xt, yt) < 0.6  # untrained: far from the threshold
    history = demo.train(model, opt, X, y, epochs=SHORT_EPOCHS, lr=lr, seed=0)
    assert len(history) == SHORT_EPOCHS and history[-1] < 0.5 * history[0]
    assert demo.accuracy(model, Xt, yt) >= SHORT_RUN_ACC[name]


def test_spectral_norm_keeps_lipschitz_bound_near_one(data, threads):
    """With spectral norm every layer's effective weight has sigma ~ 1 after training, so
    the network's bound is ~1 (the certified bound is an upper bound of the estimate)."""
    threads(1)
    (X, y), _ = data
    model = demo.build_model(spectral_norm=True, seed=2)
    opt = demo.make_optimizer("adam", model.parameters(), 1e-2)
    demo.train(model, opt, X, y, epochs=2, seed=2)
    est, factors = model.lipschitz_bound()
    cert, _ = model.lipschitz_bound(certified=True)
    assert len(factors) == 3
    assert 0.9 <= est <= 1.1 and est <= cert * (1 + 1e-6)


def test_command_line_runs(capsys, tmp_path):
    """main() trains, prints accuracy, bound and time per epoch, and restores threads."""
    threads_before = pb.get_num_threads()
    rc = demo.main(["--epochs", "2", "--quiet", "--dtype", "float64", "--optimizer",
                    "adamax", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("test accuracy", "Lipschitz bound", "time per epoch", "adamax", "float64"):
        assert text in out
    assert pb.get_num_threads() == threads_before


def test_runs_without_tqdm_and_matplotlib(capsys, monkeypatch, tmp_path):
    """Missing optional packages: a clear message, progress lines, no plot, status 0."""
    monkeypatch.setitem(sys.modules, "tqdm", None)        # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "regions.png"
    rc = demo.main(["--epochs", "3", "--plot", str(png)])
    captured = capsys.readouterr()
    assert rc == 0 and not png.exists()
    assert "tqdm is not installed" in captured.err and "pip install" in captured.err
    assert "matplotlib is not installed" in captured.err
    assert "epoch    3/3" in captured.out and "test accuracy" in captured.out


def test_bad_arguments(capsys):
    """Non-positive sizes are refused with status 2."""
    assert demo.main(["--epochs", "0"]) == 2
    assert demo.main(["--threads", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
