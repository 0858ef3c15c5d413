"""The optimizers' argument checks and multi-tensor pointer tables (shared by the
functional steps and the optimizer objects of :mod:`pybackprop.optim`)."""
import math
import operator

import numpy as np

from ._core import F32, FLOAT_DTYPES, as_input, describe, ffi, lib, refuse_masked

_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
# The largest step count an optimizer holds: its steps then run up to 2**63 - 1, the C
# kernels' int64_t, only after another 2**62 - 1 steps.
MAX_STEPS = 2**62


# ---- validation ------------------------------------------------------------------------------

def _real(name, x):
    if type(x) is float:
        return x
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
    # The common case in one test: an ndarray, float dtype, C-contiguous, aligned, writeable.
    if type(p) is np.ndarray and p.flags.carray and p.dtype in FLOAT_DTYPES:
        return p
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
    if type(a) is np.ndarray and a.dtype == p.dtype and a.shape == p.shape:
        flags = a.flags
        if flags.carray if writeable else (flags.c_contiguous and flags.aligned):
            return a
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
    shares memory with any other (read-only arrays may share memory with each other)."""
    _check_spans([(a.__array_interface__["data"][0], a.nbytes, name, w)
                  for name, a, w in named])


def _check_spans(spans):
    """``spans``: (address, nbytes, name, writeable) of each array, as _check_no_overlap.
    One sort and one sweep over the byte ranges: O(n log n) for n arrays."""
    end_any = end_w = 0
    name_any = name_w = None
    for start, nbytes, name, w in sorted(s for s in spans if s[1]):
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


