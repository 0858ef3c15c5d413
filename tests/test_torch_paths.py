"""The PyTorch bridge's two routes: tensors the kernels take as they are go by address
(pybackprop/torch/_tensors.py), anything else through numpy views and the numpy API. Both
give the numpy API's bits; the autograd contract holds on both (a changed output or a double
backward raises); the optimizers check every tensor of every group before writing any, on
every step (a tensor changed in place after steps is refused too), follow tensors moved
between steps, and equal the functional steps bitwise; step counts advance as torch's add.
Skipped, with the reason, without PyTorch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the optional "
                                            "extra: pip install torch==2.13.0)")

import pybackprop  # noqa: E402
from pybackprop import optim as pb_optim  # noqa: E402
from pybackprop.torch import Adam, Adamax, AdamW  # noqa: E402
from pybackprop.torch import functional as F  # noqa: E402
from pybackprop.torch._tensors import plain  # noqa: E402

from _helpers import assert_bitwise  # noqa: E402

DTYPES = (torch.float32, torch.float64)


def _grads(x, w, b, act):
    y = F.dense(x, w, b, act)
    y.backward(torch.ones_like(y) / 3)
    out = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    return y.detach(), out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "tanh", "gelu"])
def test_strided_inputs_take_the_converted_route_with_the_same_bits(act, dtype):
    """A transposed x and weight are not taken by address (plain() says so) but converted;
    forward and gradients equal those of the contiguous copies, taken by address."""
    g = torch.Generator().manual_seed(11)
    xs = torch.randn(7, 5, generator=g, dtype=dtype).t().requires_grad_()  # (5, 7) strided
    ws = torch.randn(7, 4, generator=g, dtype=dtype).t().requires_grad_()  # (4, 7) strided
    b = torch.randn(4, generator=g, dtype=dtype, requires_grad=True)
    assert not plain(xs, dtype) and not plain(ws, dtype)
    xc = xs.detach().contiguous().requires_grad_()
    wc = ws.detach().contiguous().requires_grad_()
    assert plain(xc, dtype) and plain(wc, dtype)
    y1, g1 = _grads(xs, ws, b, act)
    y2, g2 = _grads(xc, wc, b, act)
    assert_bitwise(y1.numpy(), y2.numpy(), "y")
    for a, c, name in zip(g1, g2, ("dx", "dw", "db")):
        assert_bitwise(a.numpy(), c.numpy(), name)


def test_an_output_changed_in_place_makes_the_backward_raise():
    """The saved output is the returned tensor: changing it in place is caught by torch's
    version counter, as with torch's own layers, instead of giving wrong gradients."""
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(2, 4, requires_grad=True)
    y = F.dense(x, w, None, "tanh")
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_double_backward_raises():
    """The backward passes are kernels, not differentiable themselves: create_graph=True
    then a second backward raises instead of returning a silently wrong second derivative;
    the first derivative itself is the usual one."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    for loss_of in (lambda: F.dense(x, w, None, "tanh").sum(),
                    lambda: F.cross_entropy(F.dense(x, w), torch.tensor([0, 1, 1]))):
        (gx,) = torch.autograd.grad(loss_of(), x, create_graph=True)
        (want,) = torch.autograd.grad(loss_of(), x)
        assert_bitwise(gx.detach().numpy(), want.numpy(), "first derivative")
        with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
            gx.sum().backward()


def test_cross_entropy_by_address_names_a_bad_index():
    """int64 class indices go to the kernel by address; one out of range raises the numpy
    API's ValueError naming it, and ignore_index rows are left out as in torch."""
    z = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match="class index 3"):
        F.cross_entropy(z, torch.tensor([0, 1, 3, 2]))
    lab = torch.tensor([0, -100, 2, 1])
    loss = F.cross_entropy(z, lab)
    want, dz = pybackprop.softmax_cross_entropy(z.detach().numpy(), lab.numpy())
    assert_bitwise(loss.detach().numpy(), np.float32(want), "loss")
    loss.backward()
    assert_bitwise(z.grad.numpy(), dz, "dlogits")
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(z, lab))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours, kw", [(Adam, {}), (Adam, {"amsgrad": True,
                                                          "weight_decay": 0.1}),
                                      (AdamW, {}), (Adamax, {"weight_decay": 0.01})])
def test_optimizers_equal_the_functional_steps_bitwise(ours, kw, dtype):
    """Three steps of the torch optimizer over two tensors (one strided gradient, read from
    a copy) are pybackprop.optim's functional steps on the same arrays, bit for bit."""
    g = torch.Generator().manual_seed(12)
    params = [torch.randn(n, generator=g, dtype=dtype).requires_grad_() for n in (50, 6)]
    arrays = [p.detach().numpy().copy() for p in params]
    opt = ours(params, lr=0.01, **kw)
    decoupled = ours is AdamW
    amsgrad = kw.get("amsgrad", False)
    names = ("m", "u") if ours is Adamax else ("m", "v") + (("v_max",) if amsgrad else ())
    state = {n: [np.zeros_like(a) for a in arrays] for n in names}
    wd = kw.get("weight_decay", 0.01 if decoupled else 0.0)
    for t in range(1, 4):
        grads = [torch.randn(2 * p.numel(), generator=g, dtype=dtype)[::2] for p in params]
        for p, gr in zip(params, grads):
            p.grad = gr
        opt.step()
        gn = [gr.numpy() for gr in grads]
        if ours is Adamax:
            pb_optim.adamax_step(arrays, gn, state["m"], state["u"], step=t, lr=0.01,
                                 weight_decay=wd)
        else:
            pb_optim.adam_step(arrays, gn, state["m"], state["v"], step=t, lr=0.01,
                               weight_decay=wd, decoupled_weight_decay=decoupled,
                               amsgrad=amsgrad, v_max=state.get("v_max"))
    for p, a in zip(params, arrays):
        assert_bitwise(p.detach().numpy(), a, "param")


def test_optimizer_checks_every_group_before_writing():
    """A bad tensor in the second group (a state of the wrong shape, a gradient that
    overlaps a parameter of the first group, a step count that is not one) raises naming
    it, and neither group's parameters, states nor step counts have moved."""
    p1, p2 = torch.ones(5, requires_grad=True), torch.ones(4, requires_grad=True)
    opt = Adam([{"params": [p1]}, {"params": [p2]}], lr=0.1)
    p1.grad, p2.grad = torch.ones(5), torch.ones(4)
    opt.step()
    before = [t.detach().clone() for t in (p1, p2, opt.state[p1]["exp_avg"])]
    steps = [opt.state[p]["step"].item() for p in (p1, p2)]
    opt.state[p2]["exp_avg"] = torch.zeros(3)
    with pytest.raises(ValueError, match="exp_avg"):
        opt.step()
    opt.state[p2]["exp_avg"] = torch.zeros(4)
    p2.grad = p1.detach()[:4]  # the first group's parameter memory
    with pytest.raises(ValueError, match="overlaps"):
        opt.step()
    p2.grad = torch.ones(4)
    for bad in (-1.0, float("nan"), 2.5):
        opt.state[p2]["step"] = torch.tensor(bad)
        with pytest.raises(ValueError, match="state 'step' of param 0"):
            opt.step()
    opt.state[p2]["step"] = torch.tensor(steps[1])
    assert [opt.state[p]["step"].item() for p in (p1, p2)] == steps
    for t, b in zip((p1, p2, opt.state[p1]["exp_avg"]), before):
        assert torch.equal(t.detach(), b)
    opt.step()  # and the step runs once the tensors are right
    assert [opt.state[p]["step"].item() for p in (p1, p2)] == [s + 1 for s in steps]


def _snapshot(opt):
    return [t.detach().clone() for group in opt.param_groups for p in group["params"]
            for t in [p] + [v for v in opt.state[p].values()]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours, kw", [(Adam, {"amsgrad": True}), (AdamW, {}),
                                      (Adamax, {})])
def test_optimizer_follows_tensors_moved_between_steps(ours, kw, dtype):
    """Contiguous gradients go by address; a parameter moved to new memory (``.data``), a
    state replaced by a copy, or a parameter group added between steps is updated where it
    now is: the steps equal pybackprop.optim's functional steps bit for bit."""
    g = torch.Generator().manual_seed(13)
    params = [torch.randn(n, generator=g, dtype=dtype).requires_grad_() for n in (40, 7, 3)]
    arrays = [p.detach().numpy().copy() for p in params]
    opt = ours(params[:2], lr=0.01, **kw)
    names = ("m", "u") if ours is Adamax else ("m", "v") + (("v_max",) if kw else ())
    keys = ("exp_avg", "exp_inf") if ours is Adamax else \
        ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if kw else ())
    state = {n: [np.zeros_like(a) for a in arrays] for n in names}
    wd = 0.01 if ours is AdamW else 0.0
    for t in range(1, 6):
        if t == 3:
            params[0].data = params[0].data.clone()
            opt.state[params[1]][keys[-1]] = opt.state[params[1]][keys[-1]].clone()
        if t == 4:
            opt.add_param_group({"params": [params[2]]})
        grads = [torch.randn(p.shape, generator=g, dtype=dtype) for p in params]
        for p, gr in zip(params, grads):
            p.grad = gr
        opt.step()
        k = 3 if t >= 4 else 2
        gn = [gr.numpy() for gr in grads]
        for i in range(k):  # the group added at step 4 counts its own steps
            step = t if i < 2 else t - 3
            args = ([arrays[i]], [gn[i]]) + tuple([state[n][i]] for n in names[:2])
            if ours is Adamax:
                pb_optim.adamax_step(*args, step=step, lr=0.01)
            else:
                pb_optim.adam_step(*args, step=step, lr=0.01, weight_decay=wd,
                                   decoupled_weight_decay=ours is AdamW, amsgrad=bool(kw),
                                   v_max=[state["v_max"][i]] if kw else None)
    for p, a in zip(params, arrays):
        assert_bitwise(p.detach().numpy(), a, "param")


@pytest.mark.parametrize("change, exc, match", [
    (lambda p, st: setattr(p, "data", p.data.half()), TypeError, r"param 0 .*float16"),
    (lambda p, st: setattr(p, "data", p.data.double()), TypeError, "grad of param 0"),
    (lambda p, st: setattr(p, "data", p.data.t()), ValueError, r"contiguous.*param 0"),
    (lambda p, st: setattr(st["exp_avg_sq"], "data", st["exp_avg_sq"].data.t()), ValueError,
     "exp_avg_sq"),
    (lambda p, st: setattr(st["exp_avg"], "data", torch.zeros(3)), ValueError, "exp_avg"),
    (lambda p, st: setattr(p, "grad", st["exp_avg"].view(3, 3)), ValueError, "overlaps")])
def test_optimizer_refuses_a_tensor_changed_after_steps(change, exc, match):
    """After steps by address, a parameter or state changed in place (``.data``: another
    dtype, a non-contiguous layout, another shape) or a gradient in a state's memory raises
    naming it, before anything is written; restored, the step runs."""
    p, q = (torch.randn(3, 3, requires_grad=True) for _ in range(2))
    opt = Adam([p, q], lr=0.1)
    for _ in range(2):
        p.grad, q.grad = torch.ones(3, 3), torch.ones(3, 3)
        opt.step()
    p_data, grad, st = p.data, p.grad, opt.state[p]
    kept = {n: st[n].data for n in ("exp_avg", "exp_avg_sq")}
    change(p, st)
    before = _snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.step()
    for a, b in zip(_snapshot(opt), before):
        assert torch.equal(a, b)
    p.data, p.grad = p_data, grad
    for n, d in kept.items():
        st[n].data = d
    opt.step()
    assert opt.state[p]["step"].item() == 3


@pytest.mark.parametrize("value, dtype", [(0.0, torch.float32), (2.0**24 - 1, torch.float32),
                                          (2.0**24, torch.float32), (2.0**53, torch.float32),
                                          (2.0**53, torch.float64), (5.0, torch.float16)])
def test_step_counts_advance_as_torch_adds_one(value, dtype):
    """The step count advances to torch's ``step + 1`` in its own dtype (float32 above
    2**24 rounds, as torch's add does); the kernel's step is the count + 1."""
    p = torch.zeros(2, requires_grad=True)
    opt = Adam([p])
    p.grad = torch.ones(2)
    opt.step()
    opt.state[p]["step"] = torch.tensor(value, dtype=dtype)
    opt.step()
    want = torch.tensor(value, dtype=dtype)
    want += 1
    got = opt.state[p]["step"]
    assert got.dtype == dtype and torch.equal(got, want)
