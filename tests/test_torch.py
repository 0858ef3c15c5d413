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
from pybackprop import _bounds as bnd  # noqa: E402
from pybackprop.torch import Adam, Adamax, AdamW, Linear, spectral_norm  # noqa: E402
from pybackprop.torch import functional as F  # noqa: E402

from _helpers import assert_bitwise, assert_within  # noqa: E402

PREACT = ("gelu", "gelu_tanh", "silu")  # backward from the saved pre-activation z
ACTS = (None, "relu", "leaky_relu", "sigmoid", "tanh", "softplus") + PREACT
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
    numpy API's bits on the flattened (B*T, K) arrays. The autograd node keeps the output
    y, or for gelu, gelu_tanh and silu the pre-activation z (dense_forward's preact=), and
    only that."""
    x, w, b = _dense_inputs(dtype)
    y = F.dense(x, w, b, act)
    assert y.shape == (4, 5, 3) and y.dtype == dtype
    kind = act or "identity"
    xn, wn, bn = (t.detach().numpy() for t in (x, w, b))
    z_np = np.empty((20, 3), xn.dtype)
    y_np = pybackprop.dense_forward(xn.reshape(20, 7), wn, bn, activation=kind, preact=z_np)
    assert_bitwise(y.detach().numpy().reshape(20, 3), y_np, "y")
    saved = y.grad_fn.saved_tensors[2]  # what the backward differentiates from
    assert_bitwise(saved.detach().numpy().reshape(20, 3), z_np if kind in PREACT else y_np,
                   "saved")
    dy = torch.randn_like(y)
    y.backward(dy)
    if kind in PREACT:
        args, kw = (None,), {"preact": z_np}
    else:
        args, kw = (y_np,), {}
    dx, dw, db = pybackprop.dense_backward(dy.numpy().reshape(20, 3), xn.reshape(20, 7), wn,
                                           *args, activation=kind, **kw)
    assert_bitwise(x.grad.numpy().reshape(20, 7), dx, "dx")
    assert_bitwise(w.grad.numpy(), dw, "dw")
    assert_bitwise(b.grad.numpy(), db, "db")


@pytest.mark.parametrize("act", ACTS)
def test_dense_gradcheck(act):
    """torch.autograd.gradcheck in float64, with and without a bias, 1-D and 3-D inputs."""
    x, w, b = _dense_inputs(torch.float64, (2, 3, 6), 4, seed=1)
    assert torch.autograd.gradcheck(lambda x, w, b: F.dense(x, w, b, act), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: F.dense(x, w, None, act), (x[0, 0], w))


# Parity with PyTorch's own layers, F.gelu(F.linear(x, w, b)) etc. Ours and torch's each
# stay within the bounds below of the exact result, so they differ by at most twice them.
# eps = finfo(dtype).eps, constants from pybackprop/_bounds.py (GEMM_C, ELEM_C, TINY_C):
#   z = x @ w.T + b, K + 1 terms summed in any order, with or without FMA:
#     E_z = GEMM_C (K + 1) eps M_z,  M_z = |x| @ |w|.T + |b| (the sum of |addends|).
#   y = act(z): L E_z (L = sup |act'|, _bounds.LIPSCHITZ) + ELEM_C eps M_y + tiny, M_y the
#     sum of |addends| of torch's formula: z/2 (1 + erf(z/sqrt 2)) and z/2 (1 + tanh(u))
#     (u = sqrt(2/pi) (z + 0.044715 z^3)) give |z|: in the left tail 1 + erf and 1 + tanh
#     cancel, y is tiny but torch's error is eps |z|; z / (1 + e^-z) gives |y|. Ours
#     (within ELEM_C eps |y|, _bounds) is inside.
#   dz = dy act'(z): ELEM_C eps |dy| M_d + L2 |dy| E_z (z's own error moved by act'),
#     L2 = sup |act''| = 2 phi(0) = sqrt(2/pi) = 0.7979 for gelu and gelu_tanh (at z = 0),
#     1/2 for silu (at z = 0); M_d the sum of |addends| of torch's derivative:
#     (1 + erf)/2 + z phi(z) -> 1 + |z| phi(z);  (1 + t)/2 + z/2 (1 - t^2) u'(z) ->
#     1 + |z| u'(z);  s (1 + z (1 - s)) -> s (1 + |z| (1 + s)). Each bounds |act'| and
#     the magnitude S(z) of ours (_bounds.dz_scale).
#   dx = dz @ w, N terms: GEMM_C N eps (G @ |w|) + D @ |w|, G = |dy| M_d >= |dz| and D the
#     dz bound; dw = dz.T @ x and db = dz.sum(0) over the B rows likewise.
_SUP_ACT2 = {"gelu": 0.8, "gelu_tanh": 0.8, "silu": 0.5}  # sup |act''|, rounded up


def _torch_derivative_scale(z, kind):
    """M_d(z) (B, N): the sum of |addends| of torch's formula for act'(z), float64."""
    if kind == "gelu":
        return 1 + np.abs(z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    if kind == "gelu_tanh":
        return 1 + np.abs(z) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z * z)
    s = np.exp(-np.logaddexp(0, -z))  # sigmoid(z), silu
    return s * (1 + np.abs(z) * (1 + s))


def _torch_parity_bounds(x, w, b, dy, kind, dtype):
    """Elementwise bounds on |ours - torch| for (y, dx, dw, db), x (B, K), dy (B, N)."""
    x, w, b, dy = (bnd.up(a) for a in (x, w, b, dy))
    eps, tiny = bnd.eps_of(dtype), bnd.tiny_of(dtype)
    K, N, B = x.shape[1], w.shape[0], x.shape[0]
    z = x @ w.T + b
    e_z = bnd.GEMM_C * (K + 1) * eps * (np.abs(x) @ np.abs(w).T + np.abs(b))
    m_y = np.abs(z) if kind != "silu" else np.abs(z) * np.exp(-np.logaddexp(0, -z))
    y_tol = bnd.lipschitz(kind, bnd.SLOPE) * e_z + bnd.ELEM_C * eps * m_y + tiny
    g = np.abs(dy) * _torch_derivative_scale(z, kind)
    d = bnd.ELEM_C * eps * g + _SUP_ACT2[kind] * np.abs(dy) * e_z
    dx_tol = (bnd.GEMM_C * N * eps * g + d) @ np.abs(w) + tiny
    dw_tol = (bnd.GEMM_C * B * eps * g + d).T @ np.abs(x) + tiny
    db_tol = (bnd.GEMM_C * B * eps * g + d).sum(0) + tiny
    return tuple(2 * t for t in (y_tol, dx_tol, dw_tol, db_tol))


_TORCH_ACT = {
    "gelu": lambda z: torch.nn.functional.gelu(z),
    "gelu_tanh": lambda z: torch.nn.functional.gelu(z, approximate="tanh"),
    "silu": torch.nn.functional.silu,
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", PREACT)
def test_preact_activations_match_torch(act, dtype):
    """dense with gelu, gelu_tanh, silu against torch's F.gelu / F.gelu(approximate="tanh")
    / F.silu of F.linear: the output and the three gradients within the derived bounds
    above, on z from about -9 to 12 (both tails, and the maxima of act')."""
    g = torch.Generator().manual_seed(6)
    B, T, K, N = 6, 7, 33, 24
    x = torch.randn(B, T, K, generator=g, dtype=dtype, requires_grad=True)
    w = (3 * torch.randn(N, K, generator=g, dtype=dtype) / K ** 0.5).requires_grad_()
    b = torch.randn(N, generator=g, dtype=dtype, requires_grad=True)
    dy = torch.randn(B, T, N, generator=g, dtype=dtype)
    ours = F.dense(x, w, b, act)
    theirs = _TORCH_ACT[act](torch.nn.functional.linear(x, w, b))
    got = (ours,) + torch.autograd.grad(ours, (x, w, b), dy)
    want = (theirs,) + torch.autograd.grad(theirs, (x, w, b), dy)
    xn = x.detach().numpy().reshape(B * T, K)
    bounds = _torch_parity_bounds(xn, w.detach().numpy(), b.detach().numpy(),
                                  dy.numpy().reshape(B * T, N), act, xn.dtype)
    for name, o, t, bound in zip(("y", "dx", "dw", "db"), got, want, bounds):
        assert_within(o.detach().numpy().reshape(bound.shape),
                      t.detach().numpy().reshape(bound.shape), bound, name)


def test_linear_with_a_preact_activation():
    """Linear(activation="gelu"/"gelu_tanh"/"silu"): the forward and the gradients of the
    parameters are functional.dense's bits."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 7, generator=g)
    for act in PREACT:
        lin = Linear(7, 3, activation=act)
        w = lin.weight.detach().clone().requires_grad_()
        b = lin.bias.detach().clone().requires_grad_()
        y, want = lin(x), F.dense(x, w, b, act)
        assert_bitwise(y.detach().numpy(), want.detach().numpy(), "y")
        y.sum().backward()
        want.sum().backward()
        assert_bitwise(lin.weight.grad.numpy(), w.grad.numpy(), "dw")
        assert_bitwise(lin.bias.grad.numpy(), b.grad.numpy(), "db")
        assert f"activation={act!r}" in repr(lin)


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
    (lambda: np.zeros((2, 3), np.float32), TypeError),
    (lambda: [[0.0, 1.0, 2.0]], TypeError)])
def test_tensors_the_kernels_cannot_take_are_named(bad, err):
    """float16, integer, non-CPU tensors and non-tensors (an array, a list) raise naming
    the argument."""
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
