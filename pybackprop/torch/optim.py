"""torch.optim.Optimizer subclasses on pybackprop's fused multi-tensor kernels.

Same hyper-parameter names, defaults and state layout as ``torch.optim.Adam``, ``AdamW``
and ``Adamax`` (``state[p]``: ``step`` (a float32 scalar tensor), ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), or ``exp_inf`` (Adamax)), so a state_dict
moves between them and torch's. Each step is one C call per parameter group, dtype and
step count, updating the parameters and the state in place through zero-copy views. The
arithmetic is torch's single-tensor CPU code without FMA (pybackprop.optim): within a few
ulp per step of torch.optim. CPU float32/float64 dense parameters and gradients only.
"""
import torch

from .. import optim as _optim
from .functional import as_numpy

__all__ = ["Adam", "AdamW", "Adamax"]


class _Fused(torch.optim.Optimizer):
    _STATE = ()

    def _groups_of(self, group):
        """The group's parameters with a gradient, as lists per (dtype, step count); each
        parameter's state created (zeros) and its step advanced."""
        batches = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("pybackprop.torch optimizers do not take sparse gradients")
            st = self.state[p]
            if not st:
                st["step"] = torch.tensor(0.0, dtype=torch.float32)
                for name in self._state_names(group):
                    st[name] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["step"] += 1
            key = (p.dtype, int(st["step"].item()))
            batches.setdefault(key, []).append(p)
        return batches

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for (_, t), params in self._groups_of(group).items():
                views = [as_numpy(p, "param") for p in params]
                for p, v in zip(params, views):
                    if v.__array_interface__["data"][0] != p.data_ptr():
                        raise ValueError("parameters must be contiguous tensors (updated "
                                         "in place)")
                grads = [as_numpy(p.grad, "grad") for p in params]
                state = {n: [self.state[p][n].numpy() for p in params]
                         for n in self._state_names(group)}
                self._update(group, views, grads, state, t)
        return loss


class Adam(_Fused):
    """``torch.optim.Adam`` (Kingma & Ba 2015) on the fused kernel: same arguments."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    _decoupled = False

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _update(self, group, params, grads, state, t):
        b1, b2 = group["betas"]
        _optim.adam_step(params, grads, state["exp_avg"], state["exp_avg_sq"], step=t,
                         lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
                         weight_decay=group["weight_decay"],
                         decoupled_weight_decay=self._decoupled, amsgrad=group["amsgrad"],
                         v_max=state.get("max_exp_avg_sq"), maximize=group["maximize"])


class AdamW(Adam):
    """``torch.optim.AdamW`` (Loshchilov & Hutter 2019, decoupled weight decay)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


class Adamax(_Fused):
    """``torch.optim.Adamax`` (Kingma & Ba 2015, section 7.1) on the fused kernel."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 *, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _state_names(self, group):
        return ("exp_avg", "exp_inf")

    def _update(self, group, params, grads, state, t):
        b1, b2 = group["betas"]
        _optim.adamax_step(params, grads, state["exp_avg"], state["exp_inf"], step=t,
                           lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
                           weight_decay=group["weight_decay"], maximize=group["maximize"])
