"""Autograd functions on pybackprop's fused kernels, for torch tensors.

Every function takes CPU tensors of float32 or float64 (one dtype per call) and hands them
to the C kernels as zero-copy numpy views (a non-contiguous input is made contiguous
first, as torch's own kernels do); results are torch tensors sharing the kernels' output
memory. Values and gradients equal pybackprop's numpy API bit for bit. Double backward is
not supported (the backward passes are kernels too).
"""
import numpy as np
import torch

import pybackprop as _pb

__all__ = ["dense", "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits",
           "as_numpy"]

_DTYPES = (torch.float32, torch.float64)
_PREACT = _pb.PREACT_ACTIVATIONS  # the kinds whose backward takes z, not y


def as_numpy(t, name, dtypes=_DTYPES):
    """The numpy view of tensor ``t`` for the kernels: ``t`` must be a CPU tensor of one of
    ``dtypes``; a non-contiguous one is made contiguous (a copy). Raises TypeError or
    ValueError naming ``name``, its shape, dtype and device."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device} (shape {tuple(t.shape)}, {t.dtype}): "
                         "pybackprop's kernels run on the CPU; move it with .cpu()")
    if t.dtype not in dtypes:
        raise TypeError(f"{name} has dtype {t.dtype} (shape {tuple(t.shape)}); expected "
                        f"{' or '.join(str(d) for d in dtypes)}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} is a {t.layout} tensor; only dense (strided) tensors")
    return t.detach().contiguous().numpy()


def _same_dtype(pairs):
    dtypes = {t.dtype for _, t in pairs if t is not None}
    if len(dtypes) > 1:
        raise TypeError("tensors of one dtype expected, got " + ", ".join(
            f"{n} {t.dtype}" for n, t in pairs if t is not None))


def _activation(activation):
    return "identity" if activation is None else activation


class _Dense(torch.autograd.Function):
    """y = act(x @ w.T + b) and its fused backward. The backward takes act' from the saved
    output y, or for the kinds of ``PREACT_ACTIVATIONS`` (gelu, gelu_tanh, silu), which y
    does not determine, from the pre-activation z the forward stored alongside y (a tensor
    allocated here and written by the kernel through its numpy view)."""

    @staticmethod
    def forward(ctx, x, w, b, activation, negative_slope):
        _same_dtype([("x", x), ("weight", w), ("bias", b)])
        xs = x.shape
        if x.dim() < 1:
            raise ValueError(f"x must have a last dimension of in_features, got shape {xs}")
        xn = as_numpy(x, "x").reshape(-1, xs[-1]) if x.dim() != 1 else as_numpy(x, "x")
        wn = as_numpy(w, "weight")
        bn = None if b is None else as_numpy(b, "bias")
        # z (B, N) or (N,), of y's shape and dtype (x's, the dtypes agreeing), for the
        # PREACT kinds only
        zt = (torch.empty(xn.shape[:-1] + wn.shape[:1], dtype=x.dtype)
              if activation in _PREACT else None)
        y = _pb.dense_forward(xn, wn, bn, activation=activation, negative_slope=negative_slope,
                              preact=None if zt is None else zt.numpy())
        ctx.save_for_backward(x, w, torch.from_numpy(y) if zt is None else zt)
        ctx.activation, ctx.slope, ctx.has_bias = activation, negative_slope, b is not None
        return torch.from_numpy(y).reshape(*xs[:-1], wn.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, w, saved = ctx.saved_tensors  # saved: y, or z for the PREACT kinds
        xs = x.shape
        xn = as_numpy(x, "x").reshape(-1, xs[-1]) if x.dim() != 1 else as_numpy(x, "x")
        dy = as_numpy(gy, "grad_output").reshape(saved.shape)
        need_dx = ctx.needs_input_grad[0]
        if ctx.activation in _PREACT:
            y, z = None, saved.numpy()
        else:
            y, z = saved.numpy(), None
        dx, dw, db = _pb.dense_backward(dy, xn, as_numpy(w, "weight"), y, preact=z,
                                        activation=ctx.activation,
                                        negative_slope=ctx.slope, need_dx=need_dx)
        gx = torch.from_numpy(dx).reshape(xs) if need_dx else None
        gw = torch.from_numpy(dw) if ctx.needs_input_grad[1] else None
        gb = torch.from_numpy(db) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def dense(x, weight, bias=None, activation=None, negative_slope=0.01):
    """``act(x @ weight.T + bias)`` with the activation fused in the GEMM epilogue, and its
    fused backward (``act'`` and ``db`` in one pass).

    x : (..., in_features) tensor (as ``torch.nn.functional.linear``; (in_features,) too)
    weight : (out_features, in_features);  bias : (out_features,) or None
    activation : None or "identity" (linear, the default), "relu", "leaky_relu",
        "sigmoid", "tanh", "softplus", "gelu" (``torch.nn.functional.gelu``), "gelu_tanh"
        (``gelu(..., approximate="tanh")``), "silu"; for the last three the forward also
        keeps the pre-activation (out_features per row) for the backward, instead of y
    Returns (..., out_features), of the inputs' dtype.
    """
    return _Dense.apply(x, weight, bias, _activation(activation), float(negative_slope))


def _divisor(reduction, count):
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return count if reduction == "mean" else 1


class _Loss(torch.autograd.Function):
    """A loss whose kernel gave the value and the gradient w.r.t. the input together (and,
    for losses differentiable in their target, that gradient too); the backward scales
    them by the incoming scalar gradient."""

    @staticmethod
    def forward(ctx, value_grad, inp, target, target_grad):
        loss, grad = value_grad
        ctx.grad, ctx.target_grad = torch.from_numpy(grad), target_grad
        return torch.tensor(np.asarray(loss), dtype=ctx.grad.dtype)  # a vector for "none"

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        gt, target_grad = ctx.grad, ctx.target_grad
        if g.ndim:  # reduction "none": one incoming gradient per row
            g = g.unsqueeze(-1)
        gi = gt * g if ctx.needs_input_grad[1] else None
        gtg = target_grad * g if ctx.needs_input_grad[2] and target_grad.numel() else None
        return None, gi, gtg, None


_NO_GRAD = torch.empty(0)


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (B, C) or (C,) against class indices ``target``
    (B,) or () (an integer tensor), or probability rows of the logits' shape (not
    differentiated), as ``torch.nn.functional.cross_entropy``: reduction "mean", "sum" or
    "none" (a loss per row), ``ignore_index``, ``label_smoothing``."""
    xn = as_numpy(logits, "logits")
    if target.dtype in _DTYPES:
        _same_dtype([("logits", logits), ("target", target)])
        tn = as_numpy(target, "target")
        if target.requires_grad:
            raise ValueError("cross_entropy: the gradient with respect to target "
                             "probabilities is not computed; detach the target")
    else:
        tn = as_numpy(target, "target", (torch.int64, torch.int32, torch.int16, torch.uint8))
    vg = _pb.softmax_cross_entropy(xn, tn, reduction=reduction, ignore_index=ignore_index,
                                   label_smoothing=label_smoothing)
    return _Loss.apply(vg, logits, target, _NO_GRAD)


def mse_loss(input, target, reduction="mean"):
    """``sum((input - target)^2) / D`` (D = the element count for "mean", 1 for "sum"), as
    ``torch.nn.functional.mse_loss``; differentiable in both arguments."""
    _same_dtype([("input", input), ("target", target)])
    pn, tn = as_numpy(input, "input"), as_numpy(target, "target")
    if pn.shape != tn.shape:
        raise ValueError(f"input {pn.shape} and target {tn.shape} must have one shape")
    loss, grad = _pb.mse_loss(pn, tn, reduction=reduction)
    tg = -torch.from_numpy(grad) if target.requires_grad else _NO_GRAD
    return _Loss.apply((loss, grad), input, target, tg)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """``max(z, 0) - z t + log1p(exp(-|z|))`` averaged ("mean") or summed, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``; differentiable in both."""
    _same_dtype([("logits", logits), ("target", target)])
    zn, tn = as_numpy(logits, "logits"), as_numpy(target, "target")
    if zn.shape != tn.shape:
        raise ValueError(f"logits {zn.shape} and target {tn.shape} must have one shape")
    loss, grad = _pb.binary_cross_entropy_with_logits(zn, tn, reduction=reduction)
    count = zn.size if reduction == "mean" else 1
    tg = -torch.from_numpy(zn) / count if target.requires_grad else _NO_GRAD
    return _Loss.apply((loss, grad), logits, target, tg)
