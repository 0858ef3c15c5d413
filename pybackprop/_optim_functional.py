"""The functional optimizer steps :func:`adam_step` and :func:`adamax_step` (exported by
:mod:`pybackprop.optim`): the optimizers' update on arrays the caller owns."""
from __future__ import annotations

import weakref
from typing import List, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from ._core import F32, check_status, ffi, lib
from ._optim_checks import (_CTYPE, _as_list, _check_like, _check_no_overlap, _check_param,
                            _groups, _hyper, _step)

__all__ = ["adam_step", "adamax_step"]


def _functional(kind, param, grad, states, state_names, step, hyper, flags, given):
    for name, s in zip(state_names, states):
        if s is None and name != "v_max":   # v_max alone is optional (amsgrad)
            raise TypeError(f"{name} must be a numpy.ndarray (or a list of them) updated "
                            "in place, got None")
    if isinstance(param, np.ndarray):
        return _functional_one(kind, param, grad, states, state_names, step, hyper, flags,
                               given)
    params = _as_list("param", param)
    grads = _as_list("grad", grad, len(params))
    lists = [_as_list(n, s, len(params)) if s is not None else None
             for n, s in zip(state_names, states)]
    named = []
    for i, p in enumerate(params):
        _check_param(f"param[{i}]", p)
        named.append((f"param[{i}]", p, True))
        for s, lst in zip(state_names, lists):
            if lst is not None:
                named.append((f"{s}[{i}]", _check_like(f"{s}[{i}]", lst[i], f"param[{i}]", p,
                                                       writeable=True), True))
    gs = [_check_like(f"grad[{i}]", g, f"param[{i}]", p, writeable=False)
          for i, (g, p) in enumerate(zip(grads, params))]
    _check_no_overlap(named + [(f"grad[{i}]", g, False) for i, g in enumerate(gs)])
    for grp in _groups(params, lists):
        grp.set_grads(gs)
        fn = grp.fn_adam if kind == "adam" else grp.fn_adamax
        check_status(fn(grp.params, *grp.states, grp.grads, grp.sizes, grp.n, step, *hyper,
                        *flags))


# The last one-tensor call, for the usual loop that steps the same arrays again with the same
# settings: (kind, its arrays as weak references, dtype, shape, the validated hyperparameters
# as passed, the flags, the C function and its pointer arguments). The pointer tables hold
# addresses only, never the arrays: a weak reference that still answers with the very array
# passed means the same live array, whose data cannot have moved while its shape (so its
# size) is unchanged. What an ndarray can change in place (flags, shape, dtype) is checked
# again on every call, as are the step and any hyperparameter that differs.
_last = None


def _repeat(kind, arrays, step, hyper, flags):
    """Run the step with the last call's C arguments if it is that call again on arrays
    that still pass its checks (then True), else False (the caller checks everything)."""
    last = _last
    lr, beta1, beta2, eps, wd = hyper  # floats equal to the last ones (not merely ==: True)
    if (last is None or last[0] != kind or len(last[1]) != len(arrays) or last[4] != hyper
            or not float is type(lr) is type(beta1) is type(beta2) is type(eps) is type(wd)
            or last[5] != flags or type(step) is not int or not 1 <= step < 2**63):
        return False
    dtype, shape = last[2], last[3]
    for ref, a in zip(last[1], arrays):
        if ref() is not a or a.shape != shape or a.dtype != dtype:
            return False
    for a in arrays[:-1]:
        if not a.flags.carray:  # C-contiguous, aligned, writeable
            return False
    if not arrays[-1].flags.c_contiguous:
        return False
    check_status(last[6](*last[7], step, *last[8], *flags))
    return True


def _functional_one(kind, param, grad, states, state_names, step, hyper, flags, given):
    """_functional for one tensor; ``given``: the hyperparameters as passed (for _repeat)."""
    global _last
    _check_param("param", param)
    named = [("param", param, True)]
    for name, s in zip(state_names, states):
        if s is not None:
            named.append((name, _check_like(name, s, "param", param, writeable=True), True))
    g = _check_like("grad", grad, "param", param, writeable=False)
    named.append(("grad", g, False))
    _check_no_overlap(named)
    ct = _CTYPE[param.dtype]
    f32 = param.dtype == F32
    views = [ffi.from_buffer(f"{ct}[]", a, require_writable=w) for _, a, w in named]
    ptrs = ffi.new(f"{ct} *[]", views)  # ptrs + i: the one-tensor list of argument i
    which = iter(range(1, len(views) - 1))
    args = (ptrs, *(ptrs + next(which) if s is not None else ffi.NULL for s in states),
            ptrs + (len(views) - 1), ffi.new("ptrdiff_t[1]", [param.size]), 1)
    if kind == "adam":
        fn = lib.pb_adam_step_f32 if f32 else lib.pb_adam_step_f64
    else:
        fn = lib.pb_adamax_step_f32 if f32 else lib.pb_adamax_step_f64
    check_status(fn(*args, step, *hyper, *flags))
    if g is grad:  # not a converted copy (ptrs keeps no view alive: addresses only)
        _last = (kind, tuple(weakref.ref(a) for _, a, _ in named), param.dtype, param.shape,
                 given, flags, fn, args, hyper)


Arrays = Union[np.ndarray, List[np.ndarray]]  # one tensor, or a list of them


def adam_step(param: Arrays, grad: Union[ArrayLike, List[ArrayLike]], m: Arrays, v: Arrays,
              *, step: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, weight_decay: float = 0.0,
              decoupled_weight_decay: bool = False, amsgrad: bool = False,
              v_max: Optional[Arrays] = None, maximize: bool = False) -> None:
    """One Adam (or, with ``decoupled_weight_decay=True``, AdamW) step, in place.

    ``param, grad, m, v`` (and ``v_max``) are arrays of one shape and dtype (float32 or
    float64), or equally long lists of them (one C call for the whole list). ``param``,
    ``m``, ``v``, ``v_max`` are updated in place and must be C-contiguous, writeable and
    separate; ``grad`` is only read. ``step`` is t >= 1, the number of this step.

    Update (torch.optim.Adam/AdamW on CPU, in the parameter's dtype)::

        g = -grad if maximize else grad
        AdamW: p = p * (1 - lr*weight_decay)     Adam: g = g + weight_decay * p
        m = lerp(m, g, 1 - beta1)                          # first moment
        v = beta2 * v + (1 - beta2) * g * g                # second moment
        v_max = max(v_max, v)  (amsgrad; then used in place of v)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Raises TypeError/ValueError naming the argument before anything is modified.
    """
    given = (lr, beta1, beta2, eps, weight_decay)
    flags = (int(bool(decoupled_weight_decay)), int(bool(amsgrad)), int(bool(maximize)))
    arrays = (param, m, v, grad) if v_max is None else (param, m, v, v_max, grad)
    if _repeat("adam", arrays, step, given, flags):
        return
    t = _step(step)
    hyper = _hyper(*given)
    if amsgrad and v_max is None:
        raise ValueError("amsgrad=True needs v_max (the running maximum of v)")
    if not amsgrad and v_max is not None:
        raise ValueError("v_max was given but amsgrad=False")
    _functional("adam", param, grad, (m, v, v_max), ("m", "v", "v_max"), t, hyper, flags,
                given)


def adamax_step(param: Arrays, grad: Union[ArrayLike, List[ArrayLike]], m: Arrays,
                u: Arrays, *, step: int, lr: float = 2e-3, beta1: float = 0.9,
                beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                maximize: bool = False) -> None:
    """One AdaMax step (Kingma & Ba 2015, section 7.1, as torch.optim.Adamax), in place.

    Arguments as :func:`adam_step`, with ``u`` the exponentially weighted infinity norm::

        g = -grad if maximize else grad;   g = g + weight_decay * p
        m = lerp(m, g, 1 - beta1)                          # first moment
        u = max(beta2 * u, |g| + eps)                      # infinity norm
        p = p - lr / (1 - beta1^t) * m / u   (p unchanged where u == 0)

    PyTorch adds eps inside the max; with ``eps=0`` this is the paper's rule, and a
    coordinate that never had a gradient (u == 0) is left unchanged instead of becoming NaN.
    """
    given = (lr, beta1, beta2, eps, weight_decay)
    flags = (int(bool(maximize)),)
    if _repeat("adamax", (param, m, u, grad), step, given, flags):
        return
    t = _step(step)
    hyper = _hyper(*given)
    _functional("adamax", param, grad, (m, u), ("m", "u"), t, hyper, flags, given)
