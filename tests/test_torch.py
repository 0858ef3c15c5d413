"""The PyTorch bridge, pybackprop/torch/: autograd functions equal the numpy API bitwise and
pass gradcheck in float64; Linear is nn.Linear's drop-in; the optimizers follow
torch.optim's arithmetic and state layout; the spectral-norm parametrization; clear errors
for tensors the kernels cannot take. Skipped, with the reason, without PyTorch."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the optional "
                                            "extra: pip install torch==2.13.0)")

import pybackprop  # noqa: E402
from pybackprop.torch import Adam, Adamax, AdamW, Linear, spectral_norm  # noqa: E402
from pybackprop.torch import functional as F  # noqa: E402

from _helpers import assert_bitwise  # noqa: E402

ACTS = (None, "relu", "leaky_relu", "sigmoid", "tanh", "softplus")
DTYPES = (torch.float32, torch.float64)


def _dense_inputs(dtype, shape=(4, 5, 7), n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
    w = (torch.randn(n, shape[-1], generator=g, dtype=dtype) / 3).requires_grad_()
    b = torch.randn(n, generator=g, dtype=dtype, requires_grad=True)
    return x, w, b


def test_import_pybackprop_does_not_import_torch():
    """The numpy package never imports torch (the bridge is opt-in)."""
    import subprocess
    import sys
    code = "import sys, pybackprop; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_dense_equals_the_numpy_api_bitwise(act, dtype):
    """functional.dense on (B, T, K) tensors: the forward and all three gradients are the
    numpy API's bits on the flattened (B*T, K) arrays."""
    x, w, b = _dense_inputs(dtype)
    y = F.dense(x, w, b, act)
    assert y.shape == (4, 5, 3) and y.dtype == dtype
    dy = torch.randn_like(y)
    y.backward(dy)
    kind = act or "identity"
    xn, wn, bn = (t.detach().numpy() for t in (x, w, b))
    y_np = pybackprop.dense_forward(xn.reshape(20, 7), wn, bn, activation=kind)
    assert_bitwise(y.detach().numpy().reshape(20, 3), y_np, "y")
    dx, dw, db = pybackprop.dense_backward(dy.numpy().reshape(20, 3), xn.reshape(20, 7), wn,
                                           y_np, activation=kind)
    assert_bitwise(x.grad.numpy().reshape(20, 7), dx, "dx")
    assert_bitwise(w.grad.numpy(), dw, "dw")
    assert_bitwise(b.grad.numpy(), db, "db")


@pytest.mark.parametrize("act", ACTS)
def test_dense_gradcheck(act):
    """torch.autograd.gradcheck in float64, with and without a bias, 1-D and 3-D inputs."""
    x, w, b = _dense_inputs(torch.float64, (2, 3, 6), 4, seed=1)
    assert torch.autograd.gradcheck(lambda x, w, b: F.dense(x, w, b, act), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: F.dense(x, w, None, act), (x[0, 0], w))


def test_loss_gradchecks():
    """cross_entropy (indices), mse_loss and BCE with logits (both arguments), "mean" and
    "sum": gradcheck in float64."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 4, (6,), generator=g)
    other = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    probs = torch.rand(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    for red in ("mean", "sum"):
        assert torch.autograd.gradcheck(lambda z: F.cross_entropy(z, labels, red), (logits,))
        assert torch.autograd.gradcheck(lambda a, t: F.mse_loss(a, t, red), (logits, other))
        assert torch.autograd.gradcheck(
            lambda z, t: F.binary_cross_entropy_with_logits(z, t, red), (logits, probs))


def test_losses_equal_the_numpy_api():
    """The loss values are the numpy API's, bitwise, and close to torch's own."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 5, generator=g)
    lab = torch.randint(0, 5, (8,), generator=g)
    loss = F.cross_entropy(z, lab)
    want, _ = pybackprop.softmax_cross_entropy(z.numpy(), lab.numpy())
    assert_bitwise(loss.numpy(), np.float32(want), "loss")
    eps = float(np.finfo(np.float32).eps)
    # 16 eps: the pybackprop/_bounds.py softmax bound at C = 5 (8 + 1.01 C) with slack
    assert abs(loss.item() - torch.nn.functional.cross_entropy(z, lab).item()) \
        <= 16 * eps * (abs(loss.item()) + 1)


def test_linear_is_a_drop_in_for_nn_linear():
    """Same parameter names and shapes as nn.Linear: a state_dict loads both ways; the
    output is the numpy API's fused forward; extra_repr names the activation."""
    ref = torch.nn.Linear(7, 3)
    lin = Linear(7, 3, activation="tanh")
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    lin.load_state_dict(ref.state_dict())
    ref.load_state_dict(lin.state_dict())
    x = torch.randn(5, 7)
    want = pybackprop.dense_forward(x.numpy(), ref.weight.detach().numpy(),
                                    ref.bias.detach().numpy(), activation="tanh")
    assert_bitwise(lin(x).detach().numpy(), want, "y")
    assert "activation='tanh'" in repr(lin)
    with pytest.raises(ValueError):
        Linear(7, 3, activation="nope")


@pytest.mark.parametrize("bad, err", [
    (lambda: torch.zeros(2, 3, dtype=torch.float16), TypeError),
    (lambda: torch.zeros(2, 3, dtype=torch.int64), TypeError),
    (lambda: torch.zeros(2, 3, device="meta"), ValueError),
    (lambda: np.zeros((2, 3), np.float32), TypeError)])
def test_tensors_the_kernels_cannot_take_are_named(bad, err):
    """float16, integer, non-CPU tensors and non-tensors raise naming the argument."""
    w = torch.zeros(4, 3)
    with pytest.raises(err, match="x"):
        F.dense(bad(), w)


def test_mixed_dtypes_are_refused():
    """x float64 with a float32 weight raises TypeError naming both."""
    with pytest.raises(TypeError, match="weight"):
        F.dense(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(4, 3))


# Optimizers: per step, ours and torch's round the same operations but for torch's fused
# lerp (FMA): the moments differ by at most an ulp of theirs, which moves the update
# lr * m / (sqrt(v) + eps) by a relative few eps; the parameter's own rounding adds at most
# one ulp of |p|. Over S steps: S * 4 eps max|p| (lr = 1e-3 keeps the update's share far
# below the ulp of p).
def _optim_tol(p, steps):
    return steps * 4 * float(torch.finfo(p.dtype).eps) * p.abs().max().item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours, theirs, kw", [
    (Adam, torch.optim.Adam, {}), (Adam, torch.optim.Adam, {"amsgrad": True,
                                                           "weight_decay": 0.1}),
    (AdamW, torch.optim.AdamW, {}), (Adamax, torch.optim.Adamax, {"weight_decay": 0.01}),
    (Adam, torch.optim.Adam, {"maximize": True})])
def test_optimizers_follow_torch_and_share_its_state_dict(ours, theirs, kw, dtype):
    """Five steps on two parameter tensors equal torch.optim's within a few ulp per step;
    the state_dict has torch's layout and moves both ways, the steps then continuing
    alike."""
    g = torch.Generator().manual_seed(4)
    p1 = [torch.randn(n, generator=g, dtype=dtype).requires_grad_() for n in (1000, 37)]
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    o1, o2 = ours(p1, **kw), theirs(p2, foreach=False, **kw)

    def steps(n):
        for _ in range(n):
            for a, b in zip(p1, p2):
                grad = torch.randn(a.shape, generator=g, dtype=dtype)
                a.grad, b.grad = grad.clone(), grad.clone()
            o1.step()
            o2.step()
    steps(5)
    for a, b in zip(p1, p2):
        assert (a - b).abs().max().item() <= _optim_tol(b, 5)
    s1, s2 = o1.state_dict(), o2.state_dict()
    assert set(s1["state"][0]) == set(s2["state"][0])
    for key in s1["state"][0]:
        assert s1["state"][0][key].shape == s2["state"][0][key].shape
    # torch's checkpoint into ours, and ours into torch's (copies: a state_dict holds the
    # optimizer's own state tensors)
    o1.load_state_dict(copy.deepcopy(s2))
    o2.load_state_dict(copy.deepcopy(o1.state_dict()))
    steps(2)
    for a, b in zip(p1, p2):
        assert (a - b).abs().max().item() <= _optim_tol(b, 7)


def test_optimizer_refuses_a_parameter_it_cannot_update_in_place():
    """A non-contiguous parameter would be updated in a copy: refused."""
    p = torch.zeros(4, 6)[:, ::2].requires_grad_()
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="contiguous"):
        Adam([p]).step()


def test_spectral_norm_parametrization():
    """W / sigma: 2-norm 1 after the warm-up (within the power iteration's convergence);
    each training forward advances u and v, eval does not; the backward (u, v fixed)
    passes gradcheck in float64."""
    torch.manual_seed(5)
    m = spectral_norm(torch.nn.Linear(9, 6).double())
    assert abs(torch.linalg.matrix_norm(m.weight.detach(), 2).item() - 1) < 1e-3
    p = m.parametrizations.weight[0]
    u0 = p._u.clone()
    m(torch.randn(2, 9, dtype=torch.float64))
    assert not torch.equal(u0, p._u)
    m.eval()
    u1 = p._u.clone()
    m(torch.randn(2, 9, dtype=torch.float64))
    assert torch.equal(u1, p._u)
    w = m.parametrizations.weight.original.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda W: p(W), (w,))


def test_bridge_without_torch_says_what_to_install():
    """Where torch cannot be imported, importing the bridge raises ImportError naming the
    extra to install, and the numpy package still imports."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None; import pybackprop\n"
            "try:\n    import pybackprop.torch\nexcept ImportError as e:\n"
            "    assert 'pip install' in str(e), e\nelse:\n    raise SystemExit(1)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_options_gradcheck(reduction):
    """reduction="none", ignore_index and label_smoothing through autograd, float64."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0, 3, -100, 1, 2, 2])
    fn = lambda x: F.cross_entropy(x, y, reduction=reduction,  # noqa: E731
                                   label_smoothing=0.1)
    assert torch.autograd.gradcheck(fn, (x,))
    want = torch.nn.functional.cross_entropy(x, y, reduction=reduction, label_smoothing=0.1)
    torch.testing.assert_close(fn(x), want)
