"""Gradient checking: analytic gradients against central finite differences in float64.

The check used by the tests of every kernel, and available to users who write their own
layers: give it a function that returns a scalar and its analytic gradients, and it tells
you, per input, how far those gradients are from what finite differences measure.

It assumes the function is smooth near the point (kinks such as relu at 0 fall between
the two evaluations and are reported as errors) and that it computes in float64 when given
float64 inputs (every pybackprop kernel does). It does not choose the point for you.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["gradcheck"]


def _scalar(value, what):
    v = np.asarray(value)
    if v.size != 1 or v.dtype.kind not in "biuf":
        raise ValueError(f"fn must return a real scalar as its value; {what} gave "
                         f"shape {v.shape} and dtype {v.dtype}")
    return float(v.reshape(()))


def gradcheck(fn: Callable[..., Tuple[Any, Sequence[Optional[ArrayLike]]]],
              inputs: Sequence[Any], *, wrt: Optional[Sequence[int]] = None, h: float = 1e-6,
              max_elements: Optional[int] = None,
              seed: int = 0) -> Tuple[Optional[float], ...]:
    """Compare ``fn``'s analytic gradients with central differences; return the errors.

    Parameters
    ----------
    fn : callable ``fn(*inputs) -> (value, grads)``
        ``value`` is a real scalar; ``grads`` is a sequence with one entry per input: the
        analytic gradient of ``value`` with respect to that input (same shape), or None for
        an input that is not differentiated (class labels, flags).
    inputs : sequence of array_like
        The point. The inputs that are checked are copied to float64 arrays (``fn`` sees
        those copies, so pybackprop kernels inside it compute in float64); the others are
        passed through unchanged.
    wrt : sequence of int, optional
        Indices of the inputs to check. Default: every input whose analytic gradient at the
        point is not None.
    h : float
        Relative step: element ``x_i`` is moved to ``x_i +- h * max(1, |x_i|)``. The default
        1e-6 (about eps**(1/3) of float64) balances the O(h^2) truncation error of central
        differences against the O(eps / h) rounding error.
    max_elements : int, optional
        Check at most this many elements of each input, drawn at random (``seed``) without
        replacement; default: all of them. Each checked element costs two calls of ``fn``.
    seed : int
        Seed of that draw.

    Returns
    -------
    errors : tuple with one entry per input
        For a checked input with analytic gradient ``g`` and numerical gradient ``n`` over
        the checked elements, the max-norm relative error
        ``max_i |g_i - n_i| / max(max_i |g_i|, max_i |n_i|)`` (0.0 when both vanish; NaN
        when anything is not finite), and None for an input that was not checked. The
        error is relative to the gradient's largest entry rather than entry by entry, so
        that entries that are zero up to rounding do not turn rounding into huge ratios.
        A correct gradient gives about 1e-9 or less at a smooth point; a wrong one, O(1).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    xs = list(inputs)
    h = float(h)
    if not (h > 0 and np.isfinite(h)):
        raise ValueError(f"h must be a positive finite float, got {h!r}")
    if max_elements is not None and (isinstance(max_elements, bool)
                                     or not isinstance(max_elements, (int, np.integer))
                                     or max_elements < 1):
        raise ValueError(f"max_elements must be a positive int or None, got {max_elements!r}")

    def call():
        out = fn(*xs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError("fn must return a pair (value, grads)")
        return out

    if wrt is None:
        _, grads0 = call()  # which inputs have gradients, seen at the caller's dtype
        if len(grads0) != len(xs):
            raise ValueError(f"fn returned {len(grads0)} gradients for {len(xs)} inputs")
        wrt = [j for j, g in enumerate(grads0) if g is not None]
    wrt = sorted(set(int(j) for j in wrt))
    for j in wrt:
        if not 0 <= j < len(xs):
            raise ValueError(f"wrt holds {j}, not the index of one of the {len(xs)} inputs")
        xj = np.asarray(xs[j])
        if xj.dtype.kind not in "biuf":
            raise TypeError(f"input {j} has dtype {xj.dtype}; only real inputs are checked")
        xs[j] = np.array(xj, dtype=np.float64, order="C", copy=True)

    value, grads = call()
    _scalar(value, "fn(*inputs)")
    if len(grads) != len(xs):
        raise ValueError(f"fn returned {len(grads)} gradients for {len(xs)} inputs")
    rng = np.random.default_rng(seed)
    errors: list = [None] * len(xs)  # float or None per input
    for j in wrt:
        if grads[j] is None:
            raise ValueError(f"input {j} is in wrt but fn returned no gradient for it")
        g = np.array(grads[j], dtype=np.float64)  # a copy: fn may reuse its buffers
        x = xs[j]
        if g.shape != x.shape:
            raise ValueError(f"the gradient of input {j} has shape {g.shape} but the input "
                             f"has shape {x.shape}")
        flat = x.reshape(-1)  # a view of our own contiguous copy
        idx = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            idx = np.sort(rng.choice(flat.size, size=max_elements, replace=False))
        num = np.empty(idx.size)
        for k, i in enumerate(idx):
            orig = flat[i]
            step = h * max(1.0, abs(orig))
            xp, xm = orig + step, orig - step
            flat[i] = xp
            fp = _scalar(call()[0], f"the input {j} moved at element {i}")
            flat[i] = xm
            fm = _scalar(call()[0], f"the input {j} moved at element {i}")
            flat[i] = orig
            num[k] = (fp - fm) / (xp - xm)  # the steps actually taken, after rounding
        ga = g.reshape(-1)[idx]
        with np.errstate(invalid="ignore"):
            if not (np.all(np.isfinite(ga)) and np.all(np.isfinite(num))):
                errors[j] = float("nan")
                continue
        scale = max(np.abs(ga).max(initial=0.0), np.abs(num).max(initial=0.0))
        errors[j] = float(np.abs(ga - num).max() / scale) if scale > 0 else 0.0
    return tuple(errors)
