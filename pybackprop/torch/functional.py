"""Autograd functions on pybackprop's fused kernels, for torch tensors.

Every function takes CPU tensors of float32 or float64 (one dtype per call). The common
call (contiguous tensors, int64 class indices) goes to the C kernels by address, the
outputs allocated as torch tensors the kernels write; anything else through numpy views
and the numpy API (a non-contiguous input is made contiguous first, as torch's own kernels
do), which also raises the errors. Values and gradients equal pybackprop's numpy API bit
for bit either way. Double backward raises (the backward passes are kernels too).
"""
import numpy as np
import torch

import pybackprop as _pb
from .._core import _ACT_CODE, _INF, _PREACT_CODES, check_status, ffi, lib
from ..losses import _XENT_REDUCTION
from ._tensors import CTYPE, once_differentiable, plain

__all__ = ["dense", "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits",
           "as_numpy"]

_DTYPES = tuple(CTYPE)  # float32, float64
_PREACT = _pb.PREACT_ACTIVATIONS  # the kinds whose backward takes z, not y
_NULL = ffi.NULL
_cast = ffi.cast
_I64 = ffi.typeof("int64_t *")
_REDUCE_NONE = lib.PB_REDUCE_NONE
_FWD = {torch.float32: lib.pb_dense_forward_f32, torch.float64: lib.pb_dense_forward_f64}
_BWD = {torch.float32: lib.pb_dense_backward_f32, torch.float64: lib.pb_dense_backward_f64}
_XENT_FN = {torch.float32: lib.pb_softmax_cross_entropy_f32,
            torch.float64: lib.pb_softmax_cross_entropy_f64}


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
    dtypes = {getattr(t, "dtype", None) for _, t in pairs if t is not None}
    if len(dtypes) > 1:
        raise TypeError("tensors of one dtype expected, got " + ", ".join(
            f"{n} {getattr(t, 'dtype', type(t).__name__)}" for n, t in pairs
            if t is not None))


def _activation(activation):
    return "identity" if activation is None else activation


class _Dense(torch.autograd.Function):
    """y = act(x @ w.T + b) and its fused backward. The backward takes act' from the saved
    output y, or for the kinds of ``PREACT_ACTIVATIONS`` (gelu, gelu_tanh, silu), which y
    does not determine, from the pre-activation z the forward stored alongside y (a tensor
    allocated here and written by the kernel, (B, N)). The saved y is the returned output
    itself, so an in-place change of it makes the backward raise, as torch's own layers
    do."""

    @staticmethod
    def forward(ctx, x, w, b, activation, negative_slope):
        dtype = getattr(x, "dtype", None)
        ct = CTYPE.get(dtype)
        act = _ACT_CODE.get(activation) if type(activation) is str else None
        if (ct is not None and act is not None and 0.0 <= negative_slope < _INF
                and x.dim() >= 1 and w.dim() == 2 and plain(x, dtype) and plain(w, dtype)
                and x.shape[-1] == w.shape[1]
                and (b is None or (plain(b, dtype) and b.shape == w.shape[:1]))):
            # the common call: every tensor as it is, by address
            N, K = w.shape
            shape = x.shape
            if len(shape) == 2:
                B = shape[0]
                y = x.new_empty(B, N)
            else:
                B = x.numel() // K
                y = x.new_empty(shape[:-1] + (N,))
            z = x.new_empty(B, N) if act in _PREACT_CODES else None
            check_status(_FWD[dtype](_cast(ct, y.data_ptr()),
                                     _NULL if z is None else _cast(ct, z.data_ptr()),
                                     _cast(ct, x.data_ptr()), _cast(ct, w.data_ptr()),
                                     _NULL if b is None else _cast(ct, b.data_ptr()), B, K,
                                     N, act, negative_slope))
        else:  # converted (or refused, naming the tensor) by as_numpy and the numpy API
            xn, wn = as_numpy(x, "x"), as_numpy(w, "weight")
            bn = None if b is None else as_numpy(b, "bias")
            _same_dtype([("x", x), ("weight", w), ("bias", b)])
            if x.dim() < 1:
                raise ValueError(f"x must have a last dimension of in_features, got shape "
                                 f"{tuple(x.shape)}")
            B = int(np.prod(xn.shape[:-1]))
            N = wn.shape[0] if wn.ndim == 2 else 0  # (dense_forward refuses another w)
            z = torch.empty((B, N), dtype=x.dtype) if activation in _PREACT else None
            yn = _pb.dense_forward(
                xn, wn, bn, activation=activation, negative_slope=negative_slope,
                preact=None if z is None else z.numpy().reshape(xn.shape[:-1] + (N,)))
            y = torch.from_numpy(yn)
        ctx.save_for_backward(x, w, y if z is None else z)
        ctx.activation, ctx.slope, ctx.has_bias = activation, negative_slope, b is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        x, w, saved = ctx.saved_tensors  # saved: y (..., N), or z (B, N) for the PREACT kinds
        if saved.dim() != 2:
            saved = saved.reshape(-1, w.shape[0])
        need_dx = ctx.needs_input_grad[0]
        dtype = saved.dtype
        ct = CTYPE.get(dtype)
        dy = gy.contiguous()  # (gy itself when it is)
        if (ct is not None and plain(dy, dtype) and dy.numel() == saved.numel()
                and plain(x, dtype) and plain(w, dtype)):
            # the common call; x and w were checked by the forward (a change in place since
            # would have made ctx.saved_tensors raise); gx and gw laid out as x and w are
            (B, N), K = saved.shape, w.shape[1]
            gx = torch.empty_like(x) if need_dx else None
            gw, gb = torch.empty_like(w), w.new_empty(N)
            check_status(_BWD[dtype](_NULL if gx is None else _cast(ct, gx.data_ptr()),
                                     _cast(ct, gw.data_ptr()), _cast(ct, gb.data_ptr()),
                                     _cast(ct, dy.data_ptr()), _cast(ct, x.data_ptr()),
                                     _cast(ct, w.data_ptr()), _cast(ct, saved.data_ptr()),
                                     B, K, N, _ACT_CODE[ctx.activation], ctx.slope, 0))
        else:
            B, K = saved.shape[0], w.shape[1]
            xn = as_numpy(x, "x").reshape(B, K)
            dyn = as_numpy(gy, "grad_output").reshape(saved.shape)
            if ctx.activation in _PREACT:
                y, z = None, saved.numpy()
            else:
                y, z = saved.numpy(), None
            dx, dw, db = _pb.dense_backward(dyn, xn, as_numpy(w, "weight"), y, preact=z,
                                            activation=ctx.activation,
                                            negative_slope=ctx.slope, need_dx=need_dx)
            gx = torch.from_numpy(dx).reshape(x.shape) if need_dx else None
            gw, gb = torch.from_numpy(dw), torch.from_numpy(db)
        return (gx, gw if ctx.needs_input_grad[1] else None,
                gb if ctx.has_bias and ctx.needs_input_grad[2] else None, None, None)


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
        loss, grad = value_grad  # tensors (the common call) or the numpy API's results
        if isinstance(grad, torch.Tensor):
            ctx.grad = grad
        else:
            ctx.grad = torch.from_numpy(grad)
            loss = torch.tensor(np.asarray(loss), dtype=ctx.grad.dtype)  # a vector: "none"
        ctx.target_grad = target_grad
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        gt, target_grad = ctx.grad, ctx.target_grad
        if g.ndim:  # reduction "none": one incoming gradient per row
            g = g.unsqueeze(-1)
        if ctx.needs_input_grad[1]:
            # loss.backward() passes 1: the kernel's gradient as it is (the same bits)
            gi = gt if g.ndim == 0 and g.item() == 1.0 else gt * g
        else:
            gi = None
        gtg = target_grad * g if ctx.needs_input_grad[2] and target_grad.numel() else None
        return None, gi, gtg, None


_NO_GRAD = torch.empty(0)


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (B, C) or (C,) against class indices ``target``
    (B,) or () (an integer tensor), or probability rows of the logits' shape (not
    differentiated), as ``torch.nn.functional.cross_entropy``: reduction "mean", "sum" or
    "none" (a loss per row), ``ignore_index``, ``label_smoothing``."""
    dtype = getattr(logits, "dtype", None)
    ct = CTYPE.get(dtype)
    code = _XENT_REDUCTION.get(reduction) if type(reduction) is str else None
    if (ct is not None and code is not None and type(ignore_index) is int
            and label_smoothing == 0.0 and logits.dim() >= 1 and plain(logits, dtype)
            and plain(target, torch.int64) and target.shape == logits.shape[:-1]):
        # the common call: class indices, by address; the kernel checks them before it
        # writes anything (an index out of range: the numpy API below names it)
        C = logits.shape[-1]
        loss = logits.new_empty(logits.shape[:-1] if code == _REDUCE_NONE else ())
        grad = torch.empty_like(logits)
        st = _XENT_FN[dtype](_cast(ct, loss.data_ptr()), _cast(ct, grad.data_ptr()),
                             _cast(ct, logits.data_ptr()), _cast(_I64, target.data_ptr()),
                             _NULL, logits.numel() // C, C, code, ignore_index)
        if st == 0:
            return _Loss.apply((loss, grad), logits, target, _NO_GRAD)
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
