"""softmax_cross_entropy's PyTorch options: reduction="none", ignore_index, label_smoothing,
and (..., C) logits, against the reference (every configuration) and torch's
cross_entropy. Bounds: pybackprop._bounds.xent_bounds, per row for "none"."""
import numpy as np
import pytest

import pybackprop
from pybackprop import reference as ref
from pybackprop._bounds import XENT_GRAD_C, XENT_LOSS_C, eps_of, up

from _helpers import assert_within

C = 7
OPTIONS = [dict(), dict(ignore_index=2), dict(label_smoothing=0.1),
           dict(ignore_index=-100, label_smoothing=0.25)]


def _case(rng, dtype, ignore=-100, lead=(3, 5)):
    logits = (rng.standard_normal(lead + (C,)) * 3).astype(dtype)
    labels = rng.integers(0, C, lead)
    labels[0, 1] = labels[2, 3] = ignore  # two ignored rows
    return logits, labels


def _bounds(dtype, row_ref, kept, D, smoothing):
    eps = eps_of(dtype)
    row_b = (XENT_LOSS_C + 1.01 * C) * eps * (np.abs(row_ref) + 1) + eps * np.abs(row_ref)
    grad_b = (XENT_GRAD_C + 1.01 * C + (4 if smoothing else 0)) * eps * 2 / D
    return row_b, grad_b


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in
                                                                  o.items()) or "default")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_options_match_the_reference(arch, rng, reduction, opts, dtype):
    ignore = opts.get("ignore_index", -100)
    logits, labels = _case(rng, dtype, ignore)
    loss, d = pybackprop.softmax_cross_entropy(logits, labels, reduction=reduction, **opts)
    loss_ref, d_ref = ref.softmax_cross_entropy(up(logits), labels, reduction=reduction,
                                                **opts)
    row_ref, _ = ref.softmax_cross_entropy(up(logits), labels, reduction="none", **opts)
    kept = labels != ignore
    D = kept.sum() if reduction == "mean" else 1
    row_b, grad_b = _bounds(dtype, row_ref, kept, D, opts.get("label_smoothing"))
    assert d.shape == logits.shape and d.dtype == dtype
    assert np.all(d[~kept] == 0)  # ignored rows: no gradient
    assert_within(d, d_ref, grad_b, "dlogits")
    if reduction == "none":
        assert loss.shape == labels.shape and loss.dtype == dtype
        assert np.all(loss[~kept] == 0)
        assert_within(loss, row_ref, row_b, "row losses")
    else:
        assert_within(loss, loss_ref, row_b.sum() / D + eps_of(dtype) * abs(loss_ref), "loss")


def test_target_rows_with_smoothing(rng):
    logits = rng.standard_normal((4, C))
    t = rng.dirichlet(np.ones(C), 4)
    loss, d = pybackprop.softmax_cross_entropy(logits, t, label_smoothing=0.2)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits, t, label_smoothing=0.2)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-13)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12, atol=1e-15)


def test_bad_options_raise():
    x, y = np.zeros((2, C)), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="label_smoothing"):
        pybackprop.softmax_cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        pybackprop.softmax_cross_entropy(x, y, ignore_index=1.0)
    with pytest.raises(ValueError, match="outside"):
        pybackprop.softmax_cross_entropy(x, np.array([0, -1]))  # -1 is not ignore_index


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in
                                                                  o.items()) or "default")
def test_options_match_torch(rng, reduction, opts):
    torch = pytest.importorskip("torch", reason="the comparison with PyTorch needs torch")
    F = torch.nn.functional
    logits, labels = _case(rng, np.float64, opts.get("ignore_index", -100))
    loss, d = pybackprop.softmax_cross_entropy(logits, labels, reduction=reduction, **opts)
    xt = torch.tensor(logits.reshape(-1, C), requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(labels.reshape(-1)), reduction=reduction, **opts)
    lt.sum().backward()
    # both in float64, each within the reference's bound of the exact value: twice it
    row_ref, _ = ref.softmax_cross_entropy(logits, labels, reduction="none", **opts)
    kept = labels != opts.get("ignore_index", -100)
    D = kept.sum() if reduction == "mean" else 1
    row_b, grad_b = _bounds(np.float64, row_ref, kept, D, opts.get("label_smoothing"))
    assert_within(d, xt.grad.numpy().reshape(d.shape), 2 * grad_b, "dlogits vs torch")
    want = lt.detach().numpy().reshape(np.shape(loss))
    bound = 2 * (row_b if reduction == "none" else row_b.sum() / D + 1e-16 * abs(want))
    assert_within(np.asarray(loss), want, bound, "loss vs torch")
