"""Losses with their gradient in one pass, and the elementwise maximum that merges branches.

Every loss returns ``(loss, grad)``: the reduced loss as a numpy scalar of the input dtype,
and the gradient of that loss with respect to the first argument, written in the same pass
over the data. ``reduction="mean"`` divides by the number of items (elements for
``mse_loss`` and ``binary_cross_entropy_with_logits``, rows for ``softmax_cross_entropy``,
as PyTorch; a mean over nothing is NaN), ``"sum"`` does not. The sum is reduced in fixed
blocks in a fixed order: the same bits for any thread count.

The specification of every function here is its namesake in :mod:`pybackprop.reference`.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from ._core import (as_input, check_out, check_status, describe, ffi, kernel, pairs, ptr,
                    refuse_masked, result_dtype)
from ._native import lib

__all__ = ["REDUCTIONS", "mse_loss", "softmax_cross_entropy",
           "binary_cross_entropy_with_logits", "maximum_forward", "maximum_backward"]

REDUCTIONS = ("mean", "sum")
_REDUCTION_CODE = {"mean": lib.PB_REDUCE_MEAN, "sum": lib.PB_REDUCE_SUM}


def _reduction_code(reduction):
    try:
        return _REDUCTION_CODE[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}") from None


def _grad_buffer(out, shape, dtype, inputs):
    if out is None:
        return np.empty(shape, dtype)
    return check_out("out", out, shape, dtype, inputs)


def _same_shape(name_a, a, name_b, b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
                         "they must be equal (no broadcasting)")


def _scalar_loss(fn, dtype, *args):
    """Call a loss kernel writing its value into a fresh 1-element array; return it."""
    loss = np.empty(1, dtype)
    check_status(fn(ptr(loss), *args))
    return loss[0]


def mse_loss(pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean",
             out: Optional[np.ndarray] = None) -> Tuple[Any, np.ndarray]:
    """Mean squared error and its gradient: ``sum((pred - target)**2) / D``.

    Parameters
    ----------
    pred, target : array_like of the same shape (any), float32 or float64
    reduction : "mean" (D = pred.size) or "sum" (D = 1)
    out : ndarray of pred's shape and dtype, optional buffer for ``dpred``

    Returns
    -------
    (loss, dpred) : numpy scalar of the input dtype, and ``dpred = 2 (pred - target) / D``
    """
    code = _reduction_code(reduction)
    dtype = result_dtype(pred=pred, target=target)
    p, t = as_input("pred", pred, dtype), as_input("target", target, dtype)
    _same_shape("pred", p, "target", t)
    d = _grad_buffer(out, p.shape, dtype, pairs(("pred", "target"), (pred, target), (p, t)))
    loss = _scalar_loss(kernel("mse_loss", dtype), dtype, ptr(d), ptr(p), ptr(t), p.size,
                        code)
    return loss, d


def _class_indices(labels, batch_shape, C, ignore_index):
    """``labels`` checked as class indices of shape ``batch_shape`` in [0, C) (or equal to
    ``ignore_index``), as int64."""
    refuse_masked("labels", labels)
    lab = np.asarray(labels)
    if lab.dtype.kind == "f":
        bad = ~np.isfinite(lab) | (lab != np.round(lab))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"labels holds the non-integer class index {lab[where]!r} at "
                             f"index {where}; class indices must be whole numbers")
    elif lab.dtype.kind not in "iu":
        raise TypeError(f"labels has {describe(lab)}; class indices must be integers "
                        "(or pass float target rows of the logits' shape)")
    if lab.shape != batch_shape:
        raise ValueError(f"labels has shape {lab.shape}; expected {batch_shape} (one class "
                         f"index per row of logits) or the logits' shape (target rows)")
    if lab.size:
        bad = ((lab < 0) | (lab >= C)) & (lab != ignore_index)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            v = lab[where].item()
            raise ValueError(f"labels holds the {'negative ' if v < 0 else ''}class index "
                             f"{v!r} at index {where}, outside [0, {C}) for logits with {C} "
                             f"classes (and not ignore_index={ignore_index})")
    return np.ascontiguousarray(lab, dtype=np.int64)


_XENT_REDUCTION = {"mean": lib.PB_REDUCE_MEAN, "sum": lib.PB_REDUCE_SUM,
                   "none": lib.PB_REDUCE_NONE}


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, reduction: str = "mean",
                          ignore_index: int = -100, label_smoothing: float = 0.0,
                          out: Optional[np.ndarray] = None) -> Tuple[Any, np.ndarray]:
    """Softmax cross-entropy over the classes (last axis) of each row, and its gradient.

    ``loss_r = -sum_c t_c log softmax(logits_r)_c``, evaluated through the log-sum-exp
    ``m + log(sum_c exp(logits_c - m))`` with ``m`` the row maximum, so logits of any size
    (e.g. +-1e4) give a finite loss. ``dlogits = (softmax(logits) - t) / D``.
    Options as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : (..., C) array_like, float32 or float64; C >= 1 when there are rows
    labels : either class indices -- shape (...) (a scalar for 1-D logits) of integers in
        [0, C); a float array is accepted when every value is a whole number -- or target
        rows of the logits' shape (one-hot or probability rows, converted to the logits'
        dtype). Bad indices (negative, >= C, non-integer, wrong shape) raise before
        anything is written.
    reduction : "mean" (D = the rows not ignored), "sum" (D = 1) or "none" (the loss of
        every row, shape (...), and D = 1)
    ignore_index : int, default -100: rows whose class index equals it have loss 0 and
        gradient 0 and are left out of the mean (index labels only)
    label_smoothing : float in [0, 1]: the target becomes ``(1 - eps) t + eps / C``
        (through target rows built here: an extra (rows, C) array)
    out : ndarray of the logits' shape and dtype, optional buffer for ``dlogits``

    Returns
    -------
    (loss, dlogits) : the loss (a numpy scalar of the logits' dtype; with ``"none"`` an
        array of shape (...)) and ``dlogits``, an ndarray of the logits' shape
    """
    try:
        code = _XENT_REDUCTION[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"reduction must be one of {tuple(_XENT_REDUCTION)}, got "
                         f"{reduction!r}") from None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    lab_nd = np.ndim(labels)
    x_nd = np.ndim(logits)
    rows = x_nd >= 1 and lab_nd == x_nd
    dtype = result_dtype(logits=logits, labels=labels) if rows else result_dtype(
        logits=logits)
    x = as_input("logits", logits, dtype)
    if x.ndim < 1:
        raise ValueError(f"logits must have a class axis (..., C); got {describe(x)}")
    C = x.shape[-1]
    B = int(np.prod(x.shape[:-1], dtype=np.int64))
    if C == 0 and B > 0:
        raise ValueError(f"logits has {describe(x)}: at least one class is needed")
    idx = t = None
    if rows:
        t = as_input("labels", labels, dtype)
        _same_shape("labels", t, "logits", x)
    else:
        idx = _class_indices(labels, x.shape[:-1], C, int(ignore_index))
    d = _grad_buffer(out, x.shape, dtype, pairs(("logits", "labels"), (logits, labels),
                                                (x, t if idx is None else idx)))
    if eps > 0.0:
        return _smoothed(x, t, idx, d, eps, code, int(ignore_index), dtype)
    loss = np.empty(x.shape[:-1] if code == lib.PB_REDUCE_NONE else 1, dtype)
    check_status(kernel("softmax_cross_entropy", dtype)(
        ptr(loss), ptr(d), ptr(x),
        ffi.from_buffer("int64_t[]", idx) if idx is not None else ffi.NULL, ptr(t), B, C,
        code, int(ignore_index)))
    return (loss if code == lib.PB_REDUCE_NONE else loss[0]), d


def _smoothed(x, t, idx, d, eps, code, ignore, dtype):
    """Label smoothing through target rows ``(1 - eps) t + eps / C`` over the rows not
    ignored (the others get loss 0 and gradient 0)."""
    C = x.shape[-1]
    x2, d2 = x.reshape(-1, C), d.reshape(-1, C)
    if idx is None:
        keep = np.arange(x2.shape[0])
        tk = t.reshape(-1, C) * dtype.type(1.0 - eps) + dtype.type(eps / C)
    else:
        lab = idx.reshape(-1)
        keep = np.flatnonzero(lab != ignore)
        tk = np.full((keep.size, C), eps / C, dtype)
        tk[np.arange(keep.size), lab[keep]] += dtype.type(1.0 - eps)
    xk = np.ascontiguousarray(x2[keep])
    dk = np.empty_like(xk)
    loss_k = np.empty(keep.size if code == lib.PB_REDUCE_NONE else 1, dtype)
    check_status(kernel("softmax_cross_entropy", dtype)(
        ptr(loss_k), ptr(dk), ptr(xk), ffi.NULL, ptr(tk), keep.size, C, code, ignore))
    d2[...] = 0
    d2[keep] = dk
    if code != lib.PB_REDUCE_NONE:
        return loss_k[0], d
    loss = np.zeros(x.shape[:-1], dtype)
    loss.reshape(-1)[keep] = loss_k
    return loss, d


def binary_cross_entropy_with_logits(logits: ArrayLike, targets: ArrayLike, *,
                                     reduction: str = "mean",
                                     out: Optional[np.ndarray] = None
                                     ) -> Tuple[Any, np.ndarray]:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``targets``, and its gradient.

    ``loss_i = max(z, 0) - z t + log1p(exp(-|z|))`` for ``z = logits_i``, ``t = targets_i``:
    the same value as ``-(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))`` without ever
    overflowing. ``dlogits = (sigmoid(logits) - targets) / D``. Targets are normally in
    [0, 1] (soft targets allowed); they are not checked.

    Parameters
    ----------
    logits, targets : array_like of the same shape (any), float32 or float64
    reduction : "mean" (D = logits.size) or "sum" (D = 1)
    out : ndarray of the logits' shape and dtype, optional buffer for ``dlogits``

    Returns
    -------
    (loss, dlogits) : numpy scalar of the input dtype, ndarray of the logits' shape
    """
    code = _reduction_code(reduction)
    dtype = result_dtype(logits=logits, targets=targets)
    z, t = as_input("logits", logits, dtype), as_input("targets", targets, dtype)
    _same_shape("logits", z, "targets", t)
    d = _grad_buffer(out, z.shape, dtype,
                     pairs(("logits", "targets"), (logits, targets), (z, t)))
    loss = _scalar_loss(kernel("binary_cross_entropy_with_logits", dtype), dtype, ptr(d),
                        ptr(z), ptr(t), z.size, code)
    return loss, d


def maximum_forward(a: ArrayLike, b: ArrayLike, *,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise maximum of two branches: ``z = a if a >= b else b``.

    NaN in either input gives NaN. Parameters: ``a``, ``b`` array_like of the same shape,
    float32 or float64; ``out`` an optional buffer of that shape and dtype. Returns ``z``.
    """
    dtype = result_dtype(a=a, b=b)
    aa, ba = as_input("a", a, dtype), as_input("b", b, dtype)
    _same_shape("a", aa, "b", ba)
    z = _grad_buffer(out, aa.shape, dtype, pairs(("a", "b"), (a, b), (aa, ba)))
    check_status(kernel("maximum_forward", dtype)(ptr(z), ptr(aa), ptr(ba), aa.size))
    return z


def maximum_backward(dz: ArrayLike, a: ArrayLike, b: ArrayLike, *,
                     da: Optional[np.ndarray] = None,
                     db: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Gradient of ``z = maximum_forward(a, b)``: ``dz`` routed to the input that won.

    ``da = dz`` where ``a >= b`` (or ``a`` is NaN) and 0 elsewhere; ``db = dz - da``
    elementwise (exactly ``dz`` or 0). A tie ``a == b`` sends the whole gradient to the
    FIRST argument ``a`` -- a subgradient, as ``max`` picks ``a``; PyTorch's
    ``torch.maximum`` instead splits a tie, ``dz / 2`` to each input.

    Parameters
    ----------
    dz, a, b : array_like of one shape, float32 or float64
    da, db : optional output buffers of that shape and dtype

    Returns
    -------
    (da, db) : ndarrays of the shape of ``a``
    """
    dtype = result_dtype(dz=dz, a=a, b=b)
    dza, aa, ba = as_input("dz", dz, dtype), as_input("a", a, dtype), as_input("b", b, dtype)
    _same_shape("a", aa, "b", ba)
    _same_shape("dz", dza, "a", aa)
    inputs = pairs(("dz", "a", "b"), (dz, a, b), (dza, aa, ba))
    bufs = []
    for name, buf, other_name, other in (("da", da, "db", db), ("db", db, "da", da)):
        if buf is None:
            bufs.append(np.empty(aa.shape, dtype))
        else:
            extra = ((other_name, other),) if other is not None else ()
            bufs.append(check_out(name, buf, aa.shape, dtype, inputs + extra))
    check_status(kernel("maximum_backward", dtype)(ptr(bufs[0]), ptr(bufs[1]), ptr(dza),
                                                   ptr(aa), ptr(ba), aa.size))
    return bufs[0], bufs[1]
