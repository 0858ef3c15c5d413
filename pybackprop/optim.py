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
from typing import Any, Dict, Tuple

import numpy as np

from ._core import check_status, describe
from ._linesearch import backtracking_line_search
from ._optim_checks import (MAX_STEPS,  # noqa: F401 (optim.MAX_STEPS: the step-count bound)
                            _as_list, _betas, _check_no_overlap, _check_param,
                            _groups, _hyper, _step_count, _validated_grads)
from ._optim_functional import adam_step, adamax_step

__all__ = ["adam_step", "adamax_step", "Adam", "AdamW", "AdaMax",
           "backtracking_line_search"]


# ---- optimizer objects --------------------------------------------------------------------------

class _Optimizer:
    """Shared machinery: parameters, per-tensor state allocated once, cached pointer arrays
    (rebuilt for the gradients only when a different gradient array is passed), one C call
    per dtype per step, an exact state_dict round trip, pickling and copies."""

    _STATE: Tuple[str, ...] = ()  # names of the state arrays, as in the paper
    _DEFAULTS: Dict[str, Any] = {}

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

    _FLAGS = ("amsgrad", "maximize", "decoupled_weight_decay")
    _REALS = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def state_dict(self):
        """A copy of the optimizer as flat arrays and scalars, by name: ``type``, ``t``,
        the hyperparameters (``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``, the
        flags) and one array per state and parameter (``"m.0"``, ``"v.0"``, ...).
        ``np.savez(path, **opt.state_dict())`` stores it without pickles, and
        ``load_state_dict(np.load(path))`` restores it exactly (the run continues
        bitwise identically)."""
        sd = {"type": type(self).__name__, "t": self._t, "lr": self._lr,
              "beta1": self._beta1, "beta2": self._beta2, "eps": self._eps,
              "weight_decay": self._wd, "amsgrad": self._amsgrad, "maximize": self.maximize,
              "decoupled_weight_decay": self.decoupled_weight_decay}
        for name, arrays in self._state.items():
            for i, a in enumerate(arrays):
                sd[f"{name}.{i}"] = a.copy()
        return sd

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` (or what ``np.load`` gives back for it: 0-d arrays
        for the scalars) of an optimizer of this type over the same parameter shapes and
        dtypes. Everything is checked before anything is changed (ValueError naming what
        is wrong, ``t`` at most ``MAX_STEPS``); the arrays are copied into this optimizer's
        own state buffers."""
        if not hasattr(state_dict, "keys"):
            raise ValueError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        names = [f"{name}.{i}" for name in self._state for i in range(len(self.params))]
        want = {"type", "t", *self._REALS, *self._FLAGS, *names}
        have = set(state_dict.keys())
        if have != want:
            raise ValueError(f"not a state_dict of this optimizer: missing "
                             f"{sorted(want - have)}, unexpected {sorted(have - want)}")

        def scalar(key):
            v = state_dict[key]
            return v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
        kind = scalar("type")
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is of a {kind}, not of a {type(self).__name__}")
        t = _step_count("state_dict['t']", scalar("t"))
        flags = {}
        for key in self._FLAGS:
            v = scalar(key)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"state_dict[{key!r}] must be a bool, got {v!r}")
            flags[key] = bool(v)
        if flags["amsgrad"] != self._amsgrad:
            raise ValueError(f"state_dict has amsgrad={flags['amsgrad']} but this optimizer "
                             f"has amsgrad={self._amsgrad}")
        hyper = _hyper(*(scalar(k) for k in self._REALS))
        for key in names:
            a, p = state_dict[key], self.params[int(key.rsplit(".", 1)[1])]
            if not isinstance(a, np.ndarray) or a.dtype != p.dtype or a.shape != p.shape:
                raise ValueError(f"state_dict[{key!r}] has {describe(a)} but its parameter "
                                 f"has {describe(p)}")
        # everything checked: assign (np.copyto between arrays of one shape and dtype)
        for name, arrays in self._state.items():
            for i, dst in enumerate(arrays):
                np.copyto(dst, state_dict[f"{name}.{i}"])
        self._lr, self._beta1, self._beta2, self._eps, self._wd = hyper
        self.maximize = flags["maximize"]
        self.decoupled_weight_decay = flags["decoupled_weight_decay"]
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
