"""Fused dense + activation layers: ``y = act(x @ w.T + b)`` and its gradients.

Shapes follow ``torch.nn.Linear``: ``x`` is ``(B, K)`` (or ``(K,)``), ``w`` is ``(N, K)``
(out, in), ``b`` is ``(N,)``, ``y`` is ``(B, N)`` (or ``(N,)``). The activation runs in the
GEMM's epilogue, on each output tile before its single store; the backward forms
``dz = dy * act'(y)`` from the saved output once, reducing ``db`` in the same pass.
GELU (``"gelu"``, ``"gelu_tanh"``) and SiLU (``"silu"``) cannot be differentiated from ``y``:
their forward can store the pre-activation ``z = x @ w.T + b`` too (``preact=``, in the same
epilogue), and their backward takes it (``preact=z``) instead of ``y``.
The specification of every function here is its namesake in :mod:`pybackprop.reference`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from ._core import (_ACT_CODE, _INF, ACTIVATIONS, F32, F64, PREACT_ACTIVATIONS, act_code,
                    as_input, check_out, check_status, describe, ffi, kernel, lib, pairs, ptr,
                    result_dtype, saved_for_backward)

_FWD = {F32: (lib.pb_dense_forward_f32, "float[]"), F64: (lib.pb_dense_forward_f64, "double[]")}
_BWD = {F32: (lib.pb_dense_backward_f32, "float[]"),
        F64: (lib.pb_dense_backward_f64, "double[]")}
_fb = ffi.from_buffer
_nd = np.ndarray
_NULL = ffi.NULL
_OVERLAP = lib.PB_ERR_OVERLAP

__all__ = ["ACTIVATIONS", "PREACT_ACTIVATIONS", "dense_forward", "dense_backward",
           "activation", "activation_backward"]


def _dense_shapes(x, w):
    """(B, K, N) of ``x`` (..., K) and ``w`` (N, K): B rows, the product of x's leading
    dimensions (1 for a 1-D x). The kernels see x as (B, K) and y as (B, N): a C-contiguous
    N-D array is that matrix already, so leading dimensions cost no copy."""
    if x.ndim < 1:
        raise ValueError(f"x must have at least one dimension (..., K); got {describe(x)}")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (N, K); got {describe(w)}")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"x has shape {x.shape} and w has shape {w.shape}: the last dimension of x "
            f"({x.shape[-1]}) must equal w.shape[1] ({w.shape[1]})")
    return int(np.prod(x.shape[:-1], dtype=np.int64)), w.shape[1], w.shape[0]


def dense_forward(x: ArrayLike, w: ArrayLike, b: Optional[ArrayLike] = None, *,
                  activation: Optional[str] = None, negative_slope: float = 0.01,
                  out: Optional[np.ndarray] = None,
                  preact: Optional[np.ndarray] = None) -> np.ndarray:
    """Fused dense layer: ``y = act(x @ w.T + b)``.

    Parameters
    ----------
    x : (..., K) array_like: (B, K), (K,), or any leading dimensions, as ``nn.Linear``
    w : (N, K) array_like, the weight as ``(out_features, in_features)``
    b : (N,) array_like or None
    activation : {None, "identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
                  "gelu", "gelu_tanh", "silu"}
        None (the default) and "identity": no activation, as ``torch.nn.Linear``. "gelu" is
        ``z Phi(z)`` (erf form), "gelu_tanh" PyTorch's ``approximate="tanh"``, "silu"
        ``z sigmoid(z)``: their backward needs ``preact``.
    negative_slope : float >= 0, slope of ``leaky_relu`` for negative inputs
    out : ndarray of shape (..., N) (x's leading dimensions), optional
        C-contiguous, of the result dtype, not overlapping an input; written only when
        every check has passed.
    preact : ndarray of shape (..., N), optional
        Receives the pre-activation ``z = x @ w.T + b`` (any activation), stored by the
        epilogue that stores ``y``: what ``dense_backward`` needs for the activations of
        ``PREACT_ACTIVATIONS``. Checked as ``out``, and may not overlap ``out``.

    Returns
    -------
    y : ndarray (..., N), float32 if the inputs are float32, else float64 (an array of
        another library, e.g. a torch tensor, counts with its own dtype).
    """
    # The common call (float ndarrays of one dtype, usable as they are, matching shapes),
    # checked inline (a helper call per array costs ~0.1 us): nothing to convert, only the
    # output to allocate or check.
    fast = False
    if type(x) is _nd and type(w) is _nd and x.ndim == 2 and w.ndim == 2:
        dtype = x.dtype
        if (dtype is F32 or dtype is F64) and w.dtype is dtype:
            (B, K), (N, kw) = x.shape, w.shape
            fast = (K == kw and x.flags.carray and w.flags.carray
                    and (b is None or (type(b) is _nd and b.dtype is dtype and b.ndim == 1
                                       and len(b) == N and b.flags.carray)))
    act = _ACT_CODE.get(activation) if type(activation) is str or activation is None else None
    if act is not None and type(negative_slope) is float and 0.0 <= negative_slope < _INF:
        slope = negative_slope  # a known name and a valid float: act_code's answer
    else:
        act, slope = act_code(activation, negative_slope)  # converts, or raises
    if fast:
        xa, wa, ba = x, w, b  # type: ignore[assignment]  # checked ndarrays
        shape = (B, N)
    else:
        dtype = result_dtype(x=x, w=w, b=b)
        xa, wa = as_input("x", x, dtype), as_input("w", w, dtype)
        B, K, N = _dense_shapes(xa, wa)
        ba = None
        if b is not None:
            ba = as_input("b", b, dtype)
            if ba.shape != (N,):
                raise ValueError(f"b has shape {ba.shape}; expected ({N},) to match w of "
                                 f"shape {wa.shape}")
        shape = xa.shape[:-1] + (N,)
    fn, ct = _FWD[dtype]
    if out is None:
        y = np.empty(shape, dtype)
    elif (fast and type(out) is _nd and out.dtype is dtype and out.shape == shape
          and out.flags.carray):
        y = out  # usable as it is; the C core checks its overlaps before writing
    else:
        # on the fast path the C core checks overlaps (the arrays are the caller's own, whole
        # and contiguous), before writing anything; else check them here, on the caller's
        # arrays and on what C reads
        y = check_out("out", out, shape, dtype,
                      () if fast else pairs(("x", "w", "b"), (x, w, b), (xa, wa, ba)))
    if preact is not None:
        # checked in full (every input, and out), before anything is written
        zbuf = check_out("preact", preact, shape, dtype,
                         pairs(("x", "w", "b"), (x, w, b), (xa, wa, ba)) + (("out", y),))
    st = fn(_fb(ct, y), _NULL if preact is None else _fb(ct, zbuf), _fb(ct, xa), _fb(ct, wa),
            _NULL if ba is None else _fb(ct, ba), B, K, N, act, slope)
    if st:
        if st == _OVERLAP:  # (only a given out can overlap) raises, naming the input
            check_out("out", out, shape, dtype,
                      pairs(("x", "w", "b"), (x, w, b), (xa, wa, ba)))
        check_status(st)
    return y


def _backward_buffers(fast, inputs, given, shapes, need_dx, accumulate, dtype, yname="y"):
    """(dx, dw, db) for the C call: the given buffers checked (``fast``: dtype, shape and
    layout only, the C core checking overlaps before it writes; else each also against the
    inputs, ``(as given, as converted)``, and the buffers checked before it), the others
    allocated (zeroed to accumulate; dx None without ``need_dx``)."""
    seen = () if fast else pairs(("dy", "x", "w", yname), *inputs)
    bufs = []
    for name, buf, shape, on in zip(("dx", "dw", "db"), given, shapes, (need_dx, True, True)):
        if not on:
            bufs.append(None)
        elif buf is None:
            bufs.append(np.zeros(shape, dtype) if accumulate else np.empty(shape, dtype))
        else:
            bufs.append(check_out(name, buf, shape, dtype, seen))
            if not fast:
                seen += ((name, buf),)
    return bufs


def dense_backward(dy: ArrayLike, x: ArrayLike, w: ArrayLike, y: Optional[ArrayLike] = None,
                   *, activation: Optional[str], preact: Optional[ArrayLike] = None,
                   negative_slope: float = 0.01,
                   need_dx: bool = True, dx: Optional[np.ndarray] = None,
                   dw: Optional[np.ndarray] = None, db: Optional[np.ndarray] = None,
                   accumulate: bool = False
                   ) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients of the fused dense layer from the upstream gradient and the saved output
    (or, for gelu, gelu_tanh and silu, the saved pre-activation).

    ``dz = dy * act'(z)`` computed from the OUTPUT ``y`` (so the pre-activation need not be
    kept) for identity, relu, leaky_relu, sigmoid, tanh and softplus, and from the
    pre-activation ``preact = z`` for the activations of ``PREACT_ACTIVATIONS`` (gelu,
    gelu_tanh, silu), whose derivative ``y`` does not determine; then ``dw = dz.T @ x``,
    ``db = dz.sum(0)``, ``dx = dz @ w``.

    Parameters
    ----------
    dy : (..., N) array_like, gradient of the loss with respect to ``y``
    x : (..., K) array_like, the layer's input (any leading dimensions)
    w : (N, K) array_like
    y : (..., N) array_like, the layer's output (as returned by ``dense_forward``); required
        for the output-based activations, not used (may be None) for gelu, gelu_tanh, silu
    activation, negative_slope : as in ``dense_forward``; the activation has no default:
        the forward's must be given (None for none), since ``act'`` is taken from ``y``
    preact : (..., N) array_like, the pre-activation ``z`` (``dense_forward``'s ``preact=``
        output); required for gelu, gelu_tanh and silu (ValueError without it), refused
        for the other activations
    need_dx : bool, compute ``dx`` (False for a first layer); ``dx`` is None then
    dx, dw, db : ndarray, optional output buffers of shapes x.shape, (N, K), (N,)
    accumulate : bool
        Add the gradients into ``dx``/``dw``/``db`` instead of overwriting them (a buffer
        not given starts at zero).

    Returns
    -------
    (dx, dw, db) : ndarrays (dx is None when ``need_dx`` is False)
    """
    # y becomes the array the derivative is taken from (preact for gelu, gelu_tanh, silu),
    # named yname in messages; raises before anything else if the wrong one is given.
    y, yname = saved_for_backward(activation, y, preact)
    # The common call: nothing to convert, only the outputs to allocate or check.
    dya: np.ndarray
    xa: np.ndarray
    wa: np.ndarray
    ya: np.ndarray
    fast = False
    if (type(dy) is _nd and type(x) is _nd and type(w) is _nd and type(y) is _nd
            and x.ndim == 2 and w.ndim == 2):
        dtype = x.dtype
        if ((dtype is F32 or dtype is F64) and w.dtype is dtype and y.dtype is dtype
                and dy.dtype is dtype):
            xs, ws = x.shape, w.shape
            (B, K), (N, kw) = xs, ws
            fast = (K == kw and y.shape == dy.shape == (B, N) and x.flags.carray
                    and w.flags.carray and y.flags.carray and dy.flags.carray)
    act = _ACT_CODE.get(activation) if type(activation) is str or activation is None else None
    if act is not None and type(negative_slope) is float and 0.0 <= negative_slope < _INF:
        slope = negative_slope  # a known name and a valid float: act_code's answer
    else:
        act, slope = act_code(activation, negative_slope)  # converts, or raises
    if fast:
        dya, xa, wa, ya = dy, x, w, y  # type: ignore[assignment]  # checked ndarrays
    else:
        dtype = result_dtype(dy=dy, x=x, w=w, **{yname: y})
        dya, xa, wa, ya = (as_input("dy", dy, dtype), as_input("x", x, dtype),
                           as_input("w", w, dtype), as_input(yname, y, dtype))
        B, K, N = _dense_shapes(xa, wa)
        yshape = xa.shape[:-1] + (N,)
        if ya.shape != yshape:
            raise ValueError(f"{yname} has shape {ya.shape}; expected {yshape} for x of shape "
                             f"{xa.shape} and w of shape {wa.shape}")
        if dya.shape != yshape:
            raise ValueError(f"dy has shape {dya.shape}; expected {yshape} (the shape of "
                             f"{yname})")
    fn, ct = _BWD[dtype]
    if not need_dx and dx is not None:
        raise ValueError("dx was given but need_dx=False")
    if (fast and (dx is None or (type(dx) is _nd and dx.dtype is dtype and dx.shape == xs
                                 and dx.flags.carray))
            and (dw is None or (type(dw) is _nd and dw.dtype is dtype and dw.shape == ws
                                and dw.flags.carray))
            and (db is None or (type(db) is _nd and db.dtype is dtype and db.ndim == 1
                                and len(db) == N and db.flags.carray))):
        # The common call (no buffers, or buffers usable as they are: nn.Dense passes dw=
        # and db= on every step), checked inline; the C core checks their overlaps before
        # it writes anything.
        new = np.zeros if accumulate else np.empty
        dxo = dx if dx is not None else new(xs, dtype) if need_dx else None
        dwo = dw if dw is not None else new(ws, dtype)
        dbo = db if db is not None else new(N, dtype)
    elif dx is None and dw is None and db is None:
        new = np.zeros if accumulate else np.empty
        dxo = new(xa.shape, dtype) if need_dx else None
        dwo, dbo = new((N, K), dtype), new(N, dtype)
    else:
        dxo, dwo, dbo = _backward_buffers(fast, ((dy, x, w, y), (dya, xa, wa, ya)),
                                          (dx, dw, db), (xa.shape, (N, K), (N,)), need_dx,
                                          accumulate, dtype, yname)
    st = fn(_NULL if dxo is None else _fb(ct, dxo), _fb(ct, dwo), _fb(ct, dbo), _fb(ct, dya),
            _fb(ct, xa), _fb(ct, wa), _fb(ct, ya), B, K, N, act, slope, 1 if accumulate else 0)
    if st:
        if st == _OVERLAP:  # raises, naming the arrays
            _backward_buffers(False, ((dy, x, w, y), (dya, xa, wa, ya)), (dx, dw, db),
                              (xa.shape, (N, K), (N,)), need_dx, accumulate, dtype, yname)
        check_status(st)
    return dxo, dwo, dbo


def activation(z: ArrayLike, kind: Optional[str] = None, *, negative_slope: float = 0.01,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise activation ``act(z)`` of any shape (``out=z`` is allowed: in place);
    ``kind`` None (the default) or "identity" copies ``z``.

    Conventions as PyTorch: ``relu(nan) = nan``; sigmoid and softplus are evaluated without
    overflow for any ``|z|``.
    """
    act, slope = act_code(kind, negative_slope, "kind")
    dtype = result_dtype(z=z)
    za = as_input("z", z, dtype)
    if out is None:
        y = np.empty(za.shape, dtype)
    else:
        y = check_out("out", out, za.shape, dtype, (("z", z), ("z", za)), allow_alias=(za,))
    check_status(kernel("activation_forward", dtype)(ptr(y), ptr(za), za.size, act, slope))
    return y


def activation_backward(dy: ArrayLike, y: Optional[ArrayLike], kind: Optional[str], *,
                        preact: Optional[ArrayLike] = None, negative_slope: float = 0.01,
                        out: Optional[np.ndarray] = None) -> np.ndarray:
    """``dz = dy * act'(z)`` evaluated from the activation's OUTPUT ``y`` (same shapes), or
    for gelu, gelu_tanh and silu from the pre-activation ``preact = z`` (required there,
    ``y`` unused and may be None; refused for the other kinds); ``kind`` has no default
    (None: no activation, ``dz = dy``).

    ``relu'(0) = 0`` and ``leaky_relu'(0) = negative_slope`` as in PyTorch; ``out=dy`` is
    allowed (in place).
    """
    act, slope = act_code(kind, negative_slope, "kind")
    y, yname = saved_for_backward(kind, y, preact, "kind")
    dtype = result_dtype(dy=dy, **{yname: y})
    dya, ya = as_input("dy", dy, dtype), as_input(yname, y, dtype)
    if dya.shape != ya.shape:
        raise ValueError(f"dy has shape {dya.shape} but {yname} has shape {ya.shape}")
    if out is None:
        dz = np.empty(ya.shape, dtype)
    else:
        dz = check_out("out", out, ya.shape, dtype,
                       pairs(("dy", yname), (dy, y), (dya, ya)), allow_alias=(dya, ya))
    check_status(kernel("activation_backward", dtype)(ptr(dz), ptr(dya), ptr(ya), ya.size,
                                                      act, slope))
    return dz
