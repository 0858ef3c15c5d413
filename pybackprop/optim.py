"""Adam, AdamW and AdaMax: fused, in-place, multi-tensor optimizer steps in C.

Parameters are numpy arrays updated in place. One step reads ``param, grad`` and the state
(``m``, ``v`` or ``u``, ``v_max``) once and writes ``param`` and the state once, in one C
loop; a whole list of tensors is one C call (per dtype present), with threads sharing the
work across tensors and inside large ones. Results do not depend on the thread count.

Semantics are those of ``torch.optim.Adam`` / ``AdamW`` / ``Adamax`` on the CPU (their
single-tensor code, operation by operation, in the parameter's dtype); the specification is
:func:`pybackprop.reference.adam_step` / :func:`~pybackprop.reference.adamax_step`, which the
C kernels match bit for bit. Option names are PyTorch's.

    >>> opt = Adam([w1, b1, w2], lr=1e-3)
    >>> opt.step([dw1, db1, dw2])      # every array updated in place, one C call

Functional forms: :func:`adam_step`, :func:`adamax_step` (single arrays or lists).

Every ``step()`` first checks, before anything is written, that each parameter is still
writeable with the dtype and number of elements its state was allocated for, and that each
gradient matches its parameter; ``load_state_dict`` checks everything before it
assigns anything. Optimizers pickle and ``copy.deepcopy`` with their state (the C pointer
tables are rebuilt on load); ``copy.copy`` gives an optimizer over the same parameter arrays
with its own copy of the state.
"""
import math
import operator

import numpy as np

from ._core import (F32, FLOAT_DTYPES, as_input, check_status, describe, ffi, lib,
                    refuse_masked)
from ._linesearch import backtracking_line_search

__all__ = ["adam_step", "adamax_step", "Adam", "AdamW", "AdaMax",
           "backtracking_line_search"]  # the last from _linesearch.py (issue 6)

_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
# The largest step count an optimizer holds: its steps then run up to 2**63 - 1, the C
# kernels' int64_t, only after another 2**62 - 1 steps.
MAX_STEPS = 2**62


# ---- validation ------------------------------------------------------------------------------

def _real(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {x!r}")
    return float(x)


def _hyper(lr, beta1, beta2, eps, weight_decay):
    """Validated float hyperparameters; ValueError names the first bad one."""
    lr, eps, wd = _real("lr", lr), _real("eps", eps), _real("weight_decay", weight_decay)
    beta1, beta2 = _real("beta1", beta1), _real("beta2", beta2)
    if not 0.0 <= lr < math.inf:
        raise ValueError(f"lr must be finite and >= 0, got {lr!r}")
    for name, b in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {b!r}")
    if not 0.0 <= eps < math.inf:
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    if not 0.0 <= wd < math.inf:
        raise ValueError(f"weight_decay must be finite and >= 0, got {wd!r}")
    return lr, beta1, beta2, eps, wd


def _betas(betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return beta1, beta2


def _step(step):
    if isinstance(step, bool):
        raise TypeError(f"step must be an int >= 1, got {step!r}")
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int >= 1, got {step!r}") from None
    if not 1 <= t < 2**63:
        raise ValueError(f"step must be >= 1 (the number of this step), got {step!r}")
    return t


def _check_param(name, p):
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray updated in place, got "
                        f"{type(p).__name__}")
    refuse_masked(name, p)
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {p.dtype}; expected float32 or float64")
    if not (p.flags.c_contiguous and p.flags.aligned):
        raise ValueError(f"{name} must be C-contiguous and aligned to be updated in place "
                         f"({describe(p)})")
    if not p.flags.writeable:
        raise ValueError(f"{name} is read-only ({describe(p)})")
    return p


def _check_like(name, a, pname, p, *, writeable):
    """``a`` (a state array, or a gradient when not ``writeable``) must have ``p``'s shape
    and dtype. A state array is used in place (C-contiguous, aligned, writeable, never
    converted); a gradient is copied to a contiguous array when it is not one."""
    if isinstance(a, np.ndarray) and a.dtype != p.dtype:
        raise TypeError(f"{name} has {describe(a)} but {pname} has {describe(p)}: "
                        "a parameter, its gradient and its state share one dtype")
    if writeable:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray updated in place, got "
                            f"{type(a).__name__}")
        refuse_masked(name, a)
    else:
        a = as_input(name, a, p.dtype)
    if a.shape != p.shape:
        raise ValueError(f"{name} has shape {a.shape} but {pname} has shape {p.shape}")
    if writeable:
        if not (a.flags.c_contiguous and a.flags.aligned):
            raise ValueError(f"{name} must be C-contiguous and aligned ({describe(a)})")
        if not a.flags.writeable:
            raise ValueError(f"{name} is read-only ({describe(a)})")
    return a


def _check_no_overlap(named):
    """``named``: (name, array, writeable) triples. Raise ValueError if a writeable array
    shares memory with any other (read-only arrays may share memory with each other).
    One sort and one sweep over the byte ranges: O(n log n) for n arrays."""
    spans = sorted((a.__array_interface__["data"][0], a.nbytes, name, w)
                   for name, a, w in named if a.nbytes)
    end_any = end_w = 0
    name_any = name_w = None
    for start, nbytes, name, w in spans:
        other = name_any if (w and start < end_any) else name_w if start < end_w else None
        if other is not None:
            raise ValueError(f"{name} overlaps the memory of {other}; every parameter and "
                             "state array must be separate, and no gradient may share "
                             "memory with them")
        end = start + nbytes
        if end > end_any:
            end_any, name_any = end, name
        if w and end > end_w:
            end_w, name_w = end, name


def _step_count(name, t):
    """A count of steps taken: an int in [0, MAX_STEPS] (ValueError otherwise)."""
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) \
            or not 0 <= t <= MAX_STEPS:
        raise ValueError(f"{name} must be an int in [0, 2**62] (steps taken), got {t!r}")
    return int(t)


def _as_list(name, x, n=None):
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        raise TypeError(f"{name} must be a list of arrays, got {type(x).__name__}")
    if n is not None and len(x) != n:
        raise ValueError(f"{name} has {len(x)} arrays but there are {n} parameters")
    return list(x)


# ---- the C call, grouped by dtype -------------------------------------------------------------

class _Group:
    """The pointer arrays of one dtype's tensors for one multi-tensor C call. Holds the
    cffi views (and through them the arrays) while the pointers are in use."""

    def __init__(self, dtype, index, params, states):
        ct = _CTYPE[dtype]
        self.dtype, self.index, self.n = dtype, index, len(index)
        self.sizes = ffi.new("ptrdiff_t[]", [params[i].size for i in index])
        self._views = []
        self.params = self._ptrs(ct, [params[i] for i in index])
        self.states = [self._ptrs(ct, [s[i] for i in index]) if s is not None else ffi.NULL
                       for s in states]
        self.grads = ffi.new(f"{ct} *[]", self.n)
        self.fn_adam = getattr(lib, "pb_adam_step_" + ("f32" if dtype == F32 else "f64"))
        self.fn_adamax = getattr(lib, "pb_adamax_step_" + ("f32" if dtype == F32 else "f64"))

    def _ptrs(self, ct, arrays):
        views = [ffi.from_buffer(f"{ct}[]", a) for a in arrays]
        self._views.append(views)
        return ffi.new(f"{ct} *[]", views)

    def set_grads(self, grads):
        ct = _CTYPE[self.dtype]
        self._grad_views = [ffi.from_buffer(f"{ct}[]", grads[i], require_writable=False)
                            for i in self.index]
        for j, view in enumerate(self._grad_views):
            self.grads[j] = view


def _groups(params, states):
    by_dtype = {}
    for i, p in enumerate(params):
        by_dtype.setdefault(p.dtype, []).append(i)
    return [_Group(dt, idx, params, states) for dt, idx in by_dtype.items()]


def _validated_grads(grads, params, names):
    """Gradients checked against their parameters (a copy only for non-contiguous ones) and
    checked not to overlap ``names`` (the writeable arrays, as _check_no_overlap triples).
    Returns (arrays, copied)."""
    out, copied = [], False
    for i, (g, p) in enumerate(zip(grads, params)):
        a = _check_like(f"grads[{i}]", g, f"params[{i}]", p, writeable=False)
        copied = copied or a is not g
        out.append(a)
    _check_no_overlap(names + [(f"grads[{i}]", a, False) for i, a in enumerate(out)])
    return out, copied


def _functional(kind, param, grad, states, state_names, step, hyper, flags):
    for name, s in zip(state_names, states):
        if s is None and name != "v_max":   # v_max alone is optional (amsgrad)
            raise TypeError(f"{name} must be a numpy.ndarray (or a list of them) updated "
                            "in place, got None")
    single = isinstance(param, np.ndarray)
    if single:
        params, grads = [param], [grad]
        lists = [[s] if s is not None else None for s in states]
        pname = lambda i: "param"  # noqa: E731
        sname = lambda s, i: s  # noqa: E731
    else:
        params = _as_list("param", param)
        grads = _as_list("grad", grad, len(params))
        lists = [_as_list(n, s, len(params)) if s is not None else None
                 for n, s in zip(state_names, states)]
        pname = lambda i: f"param[{i}]"  # noqa: E731
        sname = lambda s, i: f"{s}[{i}]"  # noqa: E731
    named = []
    for i, p in enumerate(params):
        _check_param(pname(i), p)
        named.append((pname(i), p, True))
        for s, lst in zip(state_names, lists):
            if lst is not None:
                named.append((sname(s, i), _check_like(sname(s, i), lst[i], pname(i), p,
                                                       writeable=True), True))
    gs = []
    for i, (g, p) in enumerate(zip(grads, params)):
        gs.append(_check_like("grad" if single else f"grad[{i}]", g, pname(i), p,
                              writeable=False))
    _check_no_overlap(named + [("grad" if single else f"grad[{i}]", g, False)
                               for i, g in enumerate(gs)])
    for grp in _groups(params, lists):
        grp.set_grads(gs)
        if kind == "adam":
            check_status(grp.fn_adam(grp.params, *grp.states, grp.grads, grp.sizes, grp.n,
                                     step, *hyper, *flags))
        else:
            check_status(grp.fn_adamax(grp.params, *grp.states, grp.grads, grp.sizes, grp.n,
                                       step, *hyper, *flags))


def adam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, v_max=None,
              maximize=False):
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
    t = _step(step)
    hyper = _hyper(lr, beta1, beta2, eps, weight_decay)
    if amsgrad and v_max is None:
        raise ValueError("amsgrad=True needs v_max (the running maximum of v)")
    if not amsgrad and v_max is not None:
        raise ValueError("v_max was given but amsgrad=False")
    _functional("adam", param, grad, (m, v, v_max), ("m", "v", "v_max"), t, hyper,
                (int(bool(decoupled_weight_decay)), int(bool(amsgrad)), int(bool(maximize))))


def adamax_step(param, grad, m, u, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False):
    """One AdaMax step (Kingma & Ba 2015, section 7.1, as torch.optim.Adamax), in place.

    Arguments as :func:`adam_step`, with ``u`` the exponentially weighted infinity norm::

        g = -grad if maximize else grad;   g = g + weight_decay * p
        m = lerp(m, g, 1 - beta1)                          # first moment
        u = max(beta2 * u, |g| + eps)                      # infinity norm
        p = p - lr / (1 - beta1^t) * m / u   (p unchanged where u == 0)

    PyTorch adds eps inside the max; with ``eps=0`` this is the paper's rule, and a
    coordinate that never had a gradient (u == 0) is left unchanged instead of becoming NaN.
    """
    t = _step(step)
    hyper = _hyper(lr, beta1, beta2, eps, weight_decay)
    _functional("adamax", param, grad, (m, u), ("m", "u"), t, hyper, (int(bool(maximize)),))


# ---- optimizer objects --------------------------------------------------------------------------

class _Optimizer:
    """Shared machinery: parameters, per-tensor state allocated once, cached pointer arrays
    (rebuilt for the gradients only when a different gradient array is passed), one C call
    per dtype per step, an exact state_dict round trip, pickling and copies."""

    _STATE = ()          # names of the state arrays, as in the paper
    _DEFAULTS = {}

    def __init__(self, params, *, lr, betas, eps, weight_decay, amsgrad=False,
                 maximize=False, decoupled_weight_decay=False):
        if isinstance(params, np.ndarray) or not hasattr(params, "__iter__"):
            raise TypeError("params must be a list of numpy arrays (the parameters to "
                            f"update in place), got {type(params).__name__}")
        params = tuple(params)
        if not params:
            raise ValueError("params is empty: the optimizer has nothing to update")
        for i, p in enumerate(params):
            _check_param(f"params[{i}]", p)
        _check_no_overlap([(f"params[{i}]", p, True) for i, p in enumerate(params)])
        beta1, beta2 = _betas(betas)
        self._lr, self._beta1, self._beta2, self._eps, self._wd = _hyper(
            lr, beta1, beta2, eps, weight_decay)
        self._amsgrad = bool(amsgrad)
        self.maximize = bool(maximize)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self.params = params
        self._t = 0  # steps taken
        self._state = {name: tuple(np.zeros_like(p) for p in params) for name in self._names()}
        self._bind_params()

    def _bind_params(self):
        """The pointer arrays over ``params`` and the state, and what step() checks."""
        params = self.params
        self._grps = _groups(params, [self._state.get(n) for n in self._all_names()])
        self._grads = None  # the gradient arrays the pointer arrays point at
        self._named = [(f"params[{i}]", p, True) for i, p in enumerate(params)]
        # what the state is for, as step() checks it: (index, param, size, dtype)
        self._sig = tuple((i, p, p.size, p.dtype) for i, p in enumerate(params))

    # pickling and copies: the cffi pointer tables are not state, they are rebuilt
    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_grps", "_grads", "_named", "_sig"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_params()

    def __copy__(self):
        """An optimizer over the same parameter arrays with its own copy of the state
        (moments and step count), so stepping one leaves the other's state alone."""
        state = self.__getstate__()
        state["_state"] = {name: tuple(a.copy() for a in arrays)
                           for name, arrays in self._state.items()}
        new = type(self).__new__(type(self))
        new.__setstate__(state)
        return new

    @property
    def t(self):
        """Steps taken (an int in [0, MAX_STEPS]); the next step is number ``t + 1``."""
        return self._t

    @t.setter
    def t(self, value):
        self._t = _step_count("t", value)

    def _check_params(self):
        """Raise before anything is written if a parameter no longer has the dtype and
        number of elements its state was allocated for (a reshape in place keeps the
        elementwise update the same), or is no longer C-contiguous and writeable."""
        for i, p, size, dtype in self._sig:
            _check_param(f"params[{i}]", p)
            if p.size != size or p.dtype != dtype:
                raise ValueError(f"params[{i}] now has {describe(p)}, but the optimizer's "
                                 f"state is for {size} elements of dtype {dtype}")

    def _prepare(self, grads):
        """Check the parameters and bind ``grads`` (validated) before a step writes
        anything. The usual call (the gradient arrays of the last step, nothing changed)
        looks up one flag per parameter and a dtype and a size per array: a size that
        changed (numpy's ``resize(refcheck=False)`` moves the data) would leave the cached
        C pointers dangling."""
        old = self._grads
        if (old is not None and (type(grads) is list or type(grads) is tuple)
                and len(grads) == len(old)):
            for i, p, size, dtype in self._sig:
                g = grads[i]
                if (g is not old[i] or not p.flags.writeable or p.dtype is not dtype
                        or g.dtype is not dtype or p.size != size or g.size != size):
                    break
            else:
                return
            self._grads = None  # something changed (or a dtype is an equal copy): check all
        self._check_params()
        self._bind_grads(grads)

    # state names: all that the C call takes, and those in use
    def _all_names(self):
        return self._STATE

    def _names(self):
        return self._STATE

    # hyperparameters: validated when set, so step() need not check them again
    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _hyper(value, self._beta1, self._beta2, self._eps, self._wd)[0]

    @property
    def betas(self):
        return (self._beta1, self._beta2)

    @betas.setter
    def betas(self, value):
        b1, b2 = _betas(value)
        _, self._beta1, self._beta2, _, _ = _hyper(self._lr, b1, b2, self._eps, self._wd)

    @property
    def eps(self):
        return self._eps

    @eps.setter
    def eps(self, value):
        self._eps = _hyper(self._lr, self._beta1, self._beta2, value, self._wd)[3]

    @property
    def weight_decay(self):
        return self._wd

    @weight_decay.setter
    def weight_decay(self, value):
        self._wd = _hyper(self._lr, self._beta1, self._beta2, self._eps, value)[4]

    @property
    def amsgrad(self):
        return self._amsgrad

    def _bind_grads(self, grads):
        """Point the cached pointer arrays at ``grads``, validated first."""
        if type(grads) is not list and type(grads) is not tuple:
            grads = _as_list("grads", grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads has {len(grads)} arrays but the optimizer has "
                             f"{len(self.params)} parameters")
        arrays, copied = _validated_grads(grads, self.params, self._named)
        for grp in self._grps:
            grp.set_grads(arrays)
        # Arrays used in place are remembered by identity; a converted copy is not.
        self._grads = None if copied else tuple(grads)

    def state_dict(self):
        """A deep copy of the optimizer: hyperparameters, step count and state arrays.
        ``load_state_dict`` restores it exactly (the run continues bitwise identically)."""
        return {
            "type": type(self).__name__,
            "t": self._t,
            "hyperparameters": {
                "lr": self._lr, "betas": self.betas, "eps": self._eps,
                "weight_decay": self._wd, "amsgrad": self._amsgrad,
                "maximize": self.maximize,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            },
            "state": {name: [a.copy() for a in arrays]
                      for name, arrays in self._state.items()},
        }

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` of an optimizer of this type over the same parameter
        shapes and dtypes. Everything is checked before anything is changed (ValueError
        naming what is wrong, ``t`` at most ``MAX_STEPS``); the arrays are copied into this
        optimizer's own state buffers."""
        try:
            kind, t = state_dict["type"], state_dict["t"]
            hp, st = state_dict["hyperparameters"], state_dict["state"]
            lr, betas, eps, wd = hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"]
            amsgrad, maximize = hp["amsgrad"], hp["maximize"]
            decoupled = hp["decoupled_weight_decay"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a state_dict of a pybackprop optimizer: missing {e}") \
                from None
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is of a {kind}, not of a {type(self).__name__}")
        t = _step_count("state_dict['t']", t)
        try:
            amsgrad, maximize, decoupled = bool(amsgrad), bool(maximize), bool(decoupled)
        except (TypeError, ValueError) as e:
            raise ValueError(f"state_dict['hyperparameters'] holds a flag that is not a "
                             f"bool: {e}") from None
        if amsgrad != self._amsgrad:
            raise ValueError(f"state_dict has amsgrad={bool(amsgrad)} but this optimizer "
                             f"has amsgrad={self._amsgrad}")
        b1, b2 = _betas(betas)
        hyper = _hyper(lr, b1, b2, eps, wd)
        if not isinstance(st, dict) or set(st) != set(self._state):
            raise ValueError(f"state_dict['state'] must be a dict of {sorted(self._state)}, "
                             f"got {sorted(st) if isinstance(st, dict) else st!r}")
        for name, arrays in st.items():
            if not isinstance(arrays, (list, tuple)) or len(arrays) != len(self.params):
                raise ValueError(f"state_dict['state'][{name!r}] must be a list of "
                                 f"{len(self.params)} arrays, one per parameter")
            for i, (a, p) in enumerate(zip(arrays, self.params)):
                if not isinstance(a, np.ndarray) or a.dtype != p.dtype or a.shape != p.shape:
                    raise ValueError(f"state_dict['state'][{name!r}][{i}] has {describe(a)}"
                                     f" but params[{i}] has {describe(p)}")
        # everything checked: assign (np.copyto between arrays of one shape and dtype)
        for name, arrays in st.items():
            for dst, src in zip(self._state[name], arrays):
                np.copyto(dst, src)
        self._lr, self._beta1, self._beta2, self._eps, self._wd = hyper
        self.maximize, self.decoupled_weight_decay = maximize, decoupled
        self._t = t


class Adam(_Optimizer):
    """Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015), with the
    options and CPU arithmetic of ``torch.optim.Adam``.

    Parameters
    ----------
    params : list of ndarray (float32/float64, C-contiguous, writeable), updated in place
    lr : float >= 0;  betas : (beta1, beta2) in [0, 1);  eps : float >= 0
    weight_decay : float >= 0, L2 penalty ``g += weight_decay * p`` (or, with
        ``decoupled_weight_decay=True``, AdamW's ``p *= 1 - lr * weight_decay``)
    amsgrad : keep ``v_max``, the running maximum of ``v``, and divide by it
    maximize : ascend instead of descend

    Notes
    -----
    State, per parameter and of its dtype: ``m`` (first moment), ``v`` (second moment),
    ``v_max`` (amsgrad only); ``t`` counts the steps taken. Update: see :func:`adam_step`.
    """

    _STATE = ("m", "v", "v_max")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize,
                         decoupled_weight_decay=decoupled_weight_decay)

    def _names(self):
        return ("m", "v", "v_max") if self._amsgrad else ("m", "v")

    @property
    def m(self):
        return self._state["m"]

    @property
    def v(self):
        return self._state["v"]

    @property
    def v_max(self):
        return self._state.get("v_max")

    def step(self, grads):
        """Update every parameter in place from ``grads`` (a list matching ``params`` in
        shape and dtype). Raises before anything is modified if a gradient is bad."""
        self._prepare(grads)
        t = self._t + 1
        for g in self._grps:
            check_status(g.fn_adam(
                g.params, g.states[0], g.states[1], g.states[2], g.grads, g.sizes, g.n, t,
                self._lr, self._beta1, self._beta2, self._eps, self._wd,
                self.decoupled_weight_decay, self._amsgrad, self.maximize))
        self._t = t


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019):
    Adam with ``p *= 1 - lr * weight_decay`` before the Adam update, as
    ``torch.optim.AdamW`` (default ``weight_decay=1e-2``). Otherwise as :class:`Adam`."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)


class AdaMax(_Optimizer):
    """AdaMax (Kingma & Ba 2015, section 7.1), the infinity-norm variant of Adam, with the
    options and CPU arithmetic of ``torch.optim.Adamax`` (eps added to ``|g|`` inside the
    max; a coordinate whose ``u`` is 0 is left unchanged instead of becoming NaN).

    Parameters as :class:`Adam` (no amsgrad; weight decay is the L2 penalty), default
    ``lr=2e-3``. State per parameter: ``m`` (first moment), ``u`` (infinity norm); ``t``
    counts the steps taken. Update: see :func:`adamax_step`.
    """

    _STATE = ("m", "u")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         maximize=maximize)

    @property
    def m(self):
        return self._state["m"]

    @property
    def u(self):
        return self._state["u"]

    def step(self, grads):
        """Update every parameter in place from ``grads`` (as :meth:`Adam.step`)."""
        self._prepare(grads)
        t = self._t + 1
        for g in self._grps:
            check_status(g.fn_adamax(
                g.params, g.states[0], g.states[1], g.grads, g.sizes, g.n, t,
                self._lr, self._beta1, self._beta2, self._eps, self._wd, self.maximize))
        self._t = t
