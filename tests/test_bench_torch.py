"""bench torch's check before timing: the torch.nn and pybackprop.torch models take the same
step from the same state, and a model that does not is caught."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the torch extra) is not installed")

from pybackprop._bench import bench_torch  # noqa: E402


def test_the_two_models_take_the_same_step():
    bench_torch.verify((5, 16, 16, 3), 32)


def test_a_different_model_is_caught(monkeypatch):
    build = bench_torch._build

    def other_seed_for_ours(kind, sizes, seed):
        return build(kind, sizes, seed + (kind == "ours"))
    monkeypatch.setattr(bench_torch, "_build", other_seed_for_ours)
    with pytest.raises(AssertionError):
        bench_torch.verify((5, 16, 16, 3), 32)
