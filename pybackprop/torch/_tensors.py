"""Tensors handed to the C kernels by address: the bridge's common call, checked inline.

A tensor the kernels take as it is (a plain or Parameter CPU tensor, dense, C-contiguous,
of the call's dtype, with elements and without torch's lazy negation bit) is passed as a
pointer to its data, ``ffi.cast(CTYPE[dtype], t.data_ptr())``: no numpy view, no copy.
Anything else goes through ``functional.as_numpy`` and the numpy API, which convert it or
raise naming it; the kernels are the same either way, so the two routes give the same
bits.
"""
import functools

import torch

# torch dtype -> the C element type of the kernels' pointers
CTYPE = {torch.float32: "float *", torch.float64: "double *"}
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
_STRIDED = torch.strided


def plain(t, dtype):
    """True when ``t`` can be read (or written) in place by a kernel of ``dtype``."""
    return (type(t) in _PLAIN_TYPES and t.dtype is dtype and t.is_cpu
            and t.layout is _STRIDED and t.is_contiguous() and not t.is_neg()
            and t.numel() > 0)


def once_differentiable(backward):
    """``torch.autograd.function.once_differentiable`` (a backward that is not differentiable
    itself: a double backward through it raises), without its no_grad block where grad mode
    is off, as the engine runs every backward unless ``create_graph=True``: there torch's
    wrapper returns the backward's outputs as they are too."""
    wrapped = torch.autograd.function.once_differentiable(backward)

    @functools.wraps(backward)
    def run(ctx, *args):
        if torch.is_grad_enabled():
            return wrapped(ctx, *args)
        return backward(ctx, *args)
    return run
