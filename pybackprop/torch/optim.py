"""torch.optim.Optimizer subclasses on pybackprop's fused multi-tensor kernels.

Same hyper-parameter names, defaults and state layout as ``torch.optim.Adam``, ``AdamW``
and ``Adamax`` (``state[p]``: ``step`` (a float32 scalar tensor), ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), or ``exp_inf`` (Adamax)), so a state_dict
moves between them and torch's. Each step is one C call per parameter group, dtype and
step count, updating the parameters and the state in place through pointers to their own
memory (no copies, no numpy views), after every tensor of every group is checked: every
step, so a tensor changed in place (e.g. through ``.data``) is refused before anything is
written. Kept between steps while the parameters' and states' addresses and sizes stay
the same: the kernels' pointer tables, and the check that none of them overlaps another
(the gradients are checked against them every step). The arithmetic is torch's
single-tensor CPU code without FMA (pybackprop.optim): within a few ulp per step of
torch.optim. CPU float32/float64 dense parameters and gradients only.
"""
import bisect

import torch

from .._core import check_status, ffi as _ffi, lib as _lib
from .._optim_checks import MAX_STEPS, _betas, _check_spans, _hyper
from ._tensors import CTYPE, plain
from .functional import as_numpy

__all__ = ["Adam", "AdamW", "Adamax"]

_cast = _ffi.cast


class _Fused(torch.optim.Optimizer):
    """The step shared by the optimizers: the group's tensors checked, then one kernel call
    per (dtype, step count) through pointer tables of the tensors' own memory."""

    def _checked(self, group, spans):
        """[(param, grad, state, steps taken)] of the group's parameters with a gradient
        (grad None for an empty parameter: its step advances, nothing to update; state its
        dict, None before the first step), checked for the kernel: CPU, dense, contiguous
        float32/float64 tensors, the gradient and the existing state of the parameter's
        shape and dtype, the step count a tensor in [0, 2**62] (a non-contiguous gradient is
        read from a contiguous copy). Adds each tensor's bytes to ``spans`` for the overlap
        check. Raises naming the tensor; writes nothing."""
        names = self._state_names(group)
        out = []
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError("pybackprop.torch optimizers do not take sparse gradients")
            dtype = p.dtype
            st = self.state.get(p)
            taken = _steps_taken(st, i) if st else 0
            if not plain(p, dtype) or dtype not in CTYPE:
                if p.numel() == 0 and g.numel() == 0:
                    out.append((p, None, st, taken))
                    continue
                as_numpy(p, f"param {i}")  # raises for another device, dtype or layout
                raise ValueError(f"parameters must be contiguous tensors (updated in place); "
                                 f"param {i} has shape {tuple(p.shape)} and strides "
                                 f"{p.stride()}")
            if g.shape != p.shape:
                raise ValueError(f"the grad of param {i} has shape {tuple(g.shape)}, the "
                                 f"parameter {tuple(p.shape)}")
            if not plain(g, dtype):
                g = torch.from_numpy(as_numpy(g, f"grad of param {i}", (dtype,)).copy())
            nbytes = p.numel() * p.element_size()
            spans += [(p.data_ptr(), nbytes, f"param {i}", True),
                      (g.data_ptr(), nbytes, f"the grad of param {i}", False)]
            for n in names if st else ():
                s = st.get(n)
                if not isinstance(s, torch.Tensor) or not plain(s, dtype) \
                        or s.shape != p.shape:
                    raise ValueError(f"state {n!r} of param {i} must be a contiguous CPU "
                                     f"tensor of the parameter's shape {tuple(p.shape)} and "
                                     f"dtype {dtype}, got {_describe(s)}")
                spans.append((s.data_ptr(), nbytes, f"state {n!r} of param {i}", True))
            out.append((p, g, st, taken))
        return out

    def _checked_as_is(self, group, names):
        """What _checked returns for the group when the kernel takes every tensor as it is
        (parameters, gradients of their shape and existing state: CPU, dense, contiguous,
        of the parameter's float dtype; the step counts float32 or float64 one-element
        tensors), and pointers to the existing states' step counts; None when a tensor
        needs a conversion or an error, for _checked."""
        state = self.state
        out, counts = [], []
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            dtype = p.dtype
            if dtype not in CTYPE or not plain(p, dtype) or not plain(g, dtype) \
                    or g.shape != p.shape:
                return None
            st = state.get(p)
            taken = 0
            if st:
                step = st.get("step")
                ct = CTYPE.get(step.dtype) if type(step) is torch.Tensor else None
                if ct is None or not plain(step, step.dtype) or step.numel() != 1:
                    return None
                count = _cast(ct, step.data_ptr())
                taken = _whole_steps(count[0])
                if taken is None:
                    return None
                counts.append(count)
                for n in names:
                    s = st.get(n)
                    if not plain(s, dtype) or s.shape != p.shape:
                        return None
            out.append((p, g, st, taken))
        return out, counts

    def _check_overlap(self, calls):
        """_check_spans for tensors _checked_as_is took: the parameters' and states' byte
        ranges checked against each other when they change, the gradients' (which may
        share memory with each other) against them every step."""
        w_addr, w_size, g_span = [], [], []
        for _, _, names, checked, _ in calls:
            for p, g, st, _ in checked:
                nbytes = p.numel() * p.element_size()
                w_addr.append(p.data_ptr())
                w_size.append(nbytes)
                g_span.append((g.data_ptr(), nbytes))
                for n in names if st else ():
                    w_addr.append(st[n].data_ptr())
                    w_size.append(nbytes)
        key, starts, ends = getattr(self, "_updated_ranges", (None, None, None))
        if key != (w_addr, w_size):
            self._check_all()
            order = sorted(range(len(w_addr)), key=w_addr.__getitem__)
            starts = [w_addr[j] for j in order]
            ends = [w_addr[j] + w_size[j] for j in order]
            self._updated_ranges = ((w_addr, w_size), starts, ends)
            return
        for a, nbytes in g_span:
            # the updated ranges are disjoint, sorted: the last one starting before the
            # gradient's end is the only one that can overlap it
            j = bisect.bisect_left(starts, a + nbytes)
            if j and ends[j - 1] > a:
                self._check_all()  # raises naming both

    def _check_all(self):
        """Every group through _checked, then _check_spans across groups: raises naming
        the first tensor refused or overlapping another."""
        spans = []
        for group in self.param_groups:
            self._checked(group, spans)
        _check_spans(spans)

    def _tables(self, key, ct, names, batch):
        """The kernel's pointer tables (``ct const *``: parameters, gradients, then each
        state) of batch's tensors, and its sizes (``ptrdiff_t[]``). The addresses live in
        one array, kept under ``key`` while the parameters' and states' addresses and the
        sizes stay the same; the gradients' are written into it every call."""
        n = len(batch)
        updated = [p.data_ptr() for p, _, _ in batch]
        for name in names:
            updated += [st[name].data_ptr() for _, _, st in batch]
        sizes = [p.numel() for p, _, _ in batch]
        cache = self.__dict__.setdefault("_pointer_tables", {})
        kept = cache.get(key)
        if kept is None or kept[0] != updated or kept[1] != sizes:
            addrs = _ffi.new("intptr_t[]", n * (2 + len(names)))
            addrs[0:n] = updated[:n]
            addrs[2 * n:len(updated) + n] = updated[n:]
            table = _ffi.cast(ct + " const *", addrs)
            kept = cache[key] = (updated, sizes, addrs,
                                 [table + k * n for k in range(2 + len(names))],
                                 _ffi.new("ptrdiff_t[]", sizes))
        kept[2][n:2 * n] = [g.data_ptr() for _, g, _ in batch]
        return kept[3], kept[4]

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        calls, as_is = [], True
        for group in self.param_groups:  # every group checked before anything is written
            b1, b2 = _betas(group["betas"])
            hyper = _hyper(float(group["lr"]), b1, b2, group["eps"], group["weight_decay"])
            names = self._state_names(group)
            checked = self._checked_as_is(group, names) if as_is else None
            as_is = checked is not None
            calls.append((group, hyper, names) + (checked or (None, None)))
        if as_is:
            self._check_overlap(calls)
        else:  # the general route for every group: conversions, errors naming the tensor
            spans = []
            calls = [(group, hyper, names, self._checked(group, spans), None)
                     for group, hyper, names, _, _ in calls]
            _check_spans(spans)  # across groups: no updated tensor overlaps any other
        for gi, (group, hyper, names, checked, counts) in enumerate(calls):
            states, created = [], []
            for p, _, st, _ in checked:
                if not st:
                    st = self.state[p]
                    st["step"] = torch.tensor(0.0, dtype=torch.float32)
                    for n in names:
                        st[n] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    created.append(st["step"])
                states.append(st)
            if counts is None:
                _advance([st["step"] for st in states])
            else:  # the existing counts by the pointers checked, then the new ones
                for c in counts:
                    c[0] = c[0] + 1.0  # the rounding of _advance
                _advance(created)
            batches = {}
            for (p, g, _, taken), st in zip(checked, states):
                if g is not None:
                    batches.setdefault((p.dtype, taken + 1), []).append((p, g, st))
            for (dtype, t), batch in batches.items():
                tables, sizes = self._tables((gi, dtype), CTYPE[dtype], names, batch)
                check_status(self._kernel(dtype)(
                    *self._order(group, tables), sizes, len(batch), t, *hyper,
                    *self._flags(group)))
        return loss


def _advance(steps):
    """``torch._foreach_add_(steps, 1.0)``, a float32 or float64 count (torch.optim's kind)
    through its memory: a float64 one adds in double as torch does; for a float32 one (a
    whole number) count + 1 in double is exact below 2**53 and the count itself above, so
    its one rounding to float32 is torch's float32 sum. Any other count through torch."""
    rest = []
    for s in steps:
        ct = CTYPE.get(s.dtype)
        if ct is not None and plain(s, s.dtype):
            c = _cast(ct, s.data_ptr())
            c[0] = c[0] + 1.0
        else:
            rest.append(s)
    if rest:
        torch._foreach_add_(rest, 1.0)


def _whole_steps(v):
    """v as an int if it is a whole number in [0, MAX_STEPS], else None (NaN and inf fail
    the range test)."""
    return int(v) if 0 <= v <= MAX_STEPS and v == int(v) else None


def _steps_taken(st, i):
    """The step count of a parameter's state: a one-element tensor (torch.optim's layout)
    holding a whole number in [0, 2**62]; ValueError naming the parameter otherwise."""
    step = st.get("step")
    if isinstance(step, torch.Tensor) and step.numel() == 1 and step.is_cpu:
        taken = _whole_steps(step.item())
        if taken is not None:
            return taken
    raise ValueError(f"state 'step' of param {i} must be a one-element CPU tensor holding the "
                     f"steps taken, a whole number in [0, 2**62]; got {step!r}")


def _describe(t):
    if not isinstance(t, torch.Tensor):
        return type(t).__name__
    return f"shape {tuple(t.shape)}, {t.dtype} on {t.device}"


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

    def _kernel(self, dtype):
        return _lib.pb_adam_step_f32 if dtype is torch.float32 else _lib.pb_adam_step_f64

    def _order(self, group, t):
        """(param, m, v, v_max, grad) in the kernel's order, from (params, grads, states)."""
        return t[0], t[2], t[3], t[4] if group["amsgrad"] else _ffi.NULL, t[1]

    def _flags(self, group):
        return (int(self._decoupled), int(bool(group["amsgrad"])),
                int(bool(group["maximize"])))


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

    def _kernel(self, dtype):
        return _lib.pb_adamax_step_f32 if dtype is torch.float32 else _lib.pb_adamax_step_f64

    def _order(self, group, t):
        """(param, m, u, grad) in the kernel's order, from (params, grads, states)."""
        return t[0], t[2], t[3], t[1]

    def _flags(self, group):
        return (int(bool(group["maximize"])),)
