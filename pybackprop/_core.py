"""Private plumbing shared by the public modules: the compiled core, dtype resolution,
input conversion, strict ``out=`` checks, cffi pointers and status -> exception.

The rule of the Python layer: validate, allocate, call. Inputs are converted only when they
must be (dtype-less array-likes, non-contiguous or unaligned arrays), once; output buffers
are never converted, only checked, and are handed to C only after every check has passed.
The overlap checks of an output run on the converted inputs (what C reads), so an input
handed over as a memoryview or any other buffer over the output's memory is caught, and on
the caller's ndarrays too. Masked arrays are refused: the kernels would ignore the mask.
"""
import numpy as np
from numpy.ma import MaskedArray

from ._native import ffi, lib

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
FLOAT_DTYPES = (F32, F64)
_CTYPE = {F32: "float[]", F64: "double[]"}
_NULL = ffi.NULL
_INF = float("inf")

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu",
               "gelu_tanh", "silu")
# The activations whose derivative is taken from the pre-activation z (the others: from the
# output y); their backward takes ``preact=``.
PREACT_ACTIVATIONS = ("gelu", "gelu_tanh", "silu")
_ACT_CODE = {
    None: lib.PB_ACT_IDENTITY,  # no activation: the linear layer
    "identity": lib.PB_ACT_IDENTITY,
    "relu": lib.PB_ACT_RELU,
    "leaky_relu": lib.PB_ACT_LEAKY_RELU,
    "sigmoid": lib.PB_ACT_SIGMOID,
    "tanh": lib.PB_ACT_TANH,
    "softplus": lib.PB_ACT_SOFTPLUS,
    "gelu": lib.PB_ACT_GELU,
    "gelu_tanh": lib.PB_ACT_GELU_TANH,
    "silu": lib.PB_ACT_SILU,
}
_PREACT_CODES = frozenset(_ACT_CODE[k] for k in PREACT_ACTIVATIONS)


def saved_for_backward(kind, y, preact, name="activation"):
    """``(array, its name)`` that the backward of activation ``kind`` (named ``name`` in the
    caller) differentiates from: ``preact`` (the pre-activation z) for the kinds of
    ``PREACT_ACTIVATIONS``, where it is required, else ``y`` (the output), where ``preact``
    is refused. Raises ValueError naming the argument (an unknown kind is left to
    ``act_code``)."""
    if type(kind) is not str and kind is not None or kind not in _ACT_CODE:
        return y, "y"
    if kind in PREACT_ACTIVATIONS:
        if preact is None:
            raise ValueError(
                f"{name}={kind!r} takes its derivative from the pre-activation z, which y does "
                f"not determine: pass preact=z (dense_forward's preact= output, the shape of "
                f"y); y is not used")
        return preact, "preact"
    if preact is not None:
        raise ValueError(
            f"preact is only for the activations {PREACT_ACTIVATIONS}; {name}={kind!r} takes "
            f"its derivative from the output y")
    if y is None:
        raise ValueError(f"y (the output) is required for {name}={kind!r}")
    return y, "y"


def describe(a):
    """'shape (3, 4) and dtype float32' for error messages."""
    return f"shape {tuple(np.shape(a))} and dtype {getattr(a, 'dtype', type(a).__name__)}"


def act_code(activation, negative_slope, name="activation"):
    """Map an activation name and slope to the C enum and a validated float slope
    (``name``: the argument's name in the caller, for the error)."""
    try:
        code = _ACT_CODE[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"{name} must be one of {ACTIVATIONS} or None, got {activation!r}") from None
    if type(negative_slope) is float and 0.0 <= negative_slope < _INF:
        return code, negative_slope  # the common call: a valid Python float
    slope = float(negative_slope)
    if not slope >= 0.0 or slope == float("inf"):
        raise ValueError(f"negative_slope must be finite and >= 0, got {negative_slope!r}")
    return code, slope


def result_dtype(**inputs):
    """The float dtype of a call: that of its ndarray inputs (float32 or float64, all the
    same); array-likes without a dtype of their own (lists, scalars) follow it, and a call
    with none defaults to float64. Raises TypeError naming the offending argument."""
    # Fast path (every call of a hot loop): all given inputs are float32/float64 ndarrays
    # of one dtype.
    dt0 = None
    for a in inputs.values():
        if a is None:
            continue
        if type(a) is not np.ndarray or (dt0 is not None and a.dtype != dt0):
            break
        dt0 = a.dtype
    else:
        if dt0 is None:
            return F64
        if dt0 == F32 or dt0 == F64:
            return F32 if dt0 == F32 else F64
    found = None
    for name, a in inputs.items():
        if a is None:
            continue
        dt = getattr(a, "dtype", None)
        if dt is not None and not isinstance(a, (np.ndarray, np.generic)) and _foreign(a):
            dt = foreign_array(name, a).dtype  # a tensor of another library: its own dtype
            if dt.kind in "biu":
                continue
        elif dt is None or not isinstance(a, (np.ndarray, np.generic)):
            dt = np.asarray(a).dtype
            if dt.kind in "biuf":
                continue  # dtype-less: follows the others
        if dt not in FLOAT_DTYPES:
            if dt.kind in "biu":  # integer/bool arrays: converted like lists
                continue
            raise TypeError(
                f"{name} has dtype {dt}; pybackprop computes in float32 or float64 "
                "(integer arrays and lists are converted)")
        if found is None:
            found = (name, dt)
        elif dt != found[1]:
            raise TypeError(
                f"{found[0]} has dtype {found[1]} but {name} has dtype {dt}; "
                "pass all arrays of one call in the same float dtype")
    return found[1] if found is not None else F64


def _foreign(a):
    """An array of another library that carries its own dtype (a torch tensor, a CuPy or
    JAX array on the host): it exports DLPack or numpy's array interface."""
    return hasattr(a, "__dlpack__") or hasattr(a, "__array__")


def foreign_array(name, a):
    """``a`` (see _foreign) as a numpy array of its own dtype, a view where the library
    allows (DLPack); TypeError naming ``name`` where it cannot be one (a tensor that
    requires grad, a dtype numpy lacks such as bfloat16, memory not on the CPU)."""
    try:
        if hasattr(a, "__dlpack__"):
            return np.from_dlpack(a)
        return np.asarray(a)
    except (BufferError, RuntimeError, TypeError, ValueError) as e:
        hint = ""
        if getattr(a, "requires_grad", False):
            hint = f"; it requires grad: pass {name}.detach() (or use pybackprop.torch)"
        raise TypeError(f"{name} ({type(a).__name__} of dtype {getattr(a, 'dtype', '?')}) "
                        f"cannot be read as a float32 or float64 array: {e}{hint}") from None


def refuse_masked(name, a):
    """TypeError for a masked array: every kernel would compute on the masked values too."""
    if isinstance(a, MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray, whose mask the kernels cannot "
                        f"honour; pass {name}.filled(value) or the unmasked entries")


def as_input(name, a, dtype):
    """``a`` as an aligned, C-contiguous ndarray of ``dtype`` (a copy only when needed).
    A buffer-protocol object (memoryview, array.array, ...) becomes an array over its own
    memory: check outputs against the result, not against ``a``."""
    if (type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.aligned):
        return a
    refuse_masked(name, a)
    try:
        if (not isinstance(a, (np.ndarray, np.generic)) and hasattr(a, "dtype")
                and _foreign(a)):
            arr = foreign_array(name, a)
        else:
            arr = np.asarray(a)
    except TypeError:
        raise
    except Exception as e:  # ragged lists, unconvertible objects
        raise TypeError(f"{name} cannot be converted to an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected float32 or float64")
    return np.require(arr, dtype=dtype, requirements=["C", "A"])


def check_out(name, out, shape, dtype, inputs=(), allow_alias=()):
    """Strict check of a caller-provided output buffer (never converted): an ndarray (not a
    masked one) of exactly ``shape`` and ``dtype``, C-contiguous, aligned, writeable,
    overlapping none of ``inputs`` (pairs of name and array: give each input both as the
    caller passed it and as converted for C; objects that are not ndarrays are skipped)
    unless it is exactly one of ``allow_alias``."""
    if type(out) is not np.ndarray:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
        refuse_masked(name, out)
    if out.dtype != dtype:
        raise ValueError(f"{name} has {describe(out)}; expected dtype {dtype}")
    if out.shape != shape and out.shape != tuple(shape):
        raise ValueError(f"{name} has {describe(out)}; expected shape {tuple(shape)}")
    flags = out.flags
    if not flags.carray:  # C-contiguous, aligned and writeable, in one flag test
        if not flags.writeable:
            raise ValueError(f"{name} is read-only ({describe(out)})")
        raise ValueError(f"{name} must be C-contiguous and aligned ({describe(out)})")
    owns = flags.owndata
    prev = None
    for iname, a in inputs:
        if a is prev or not isinstance(a, np.ndarray):
            continue  # the same array given twice (not converted), or not an array
        prev = a
        if owns and a is not out and a.flags.owndata:
            continue  # two arrays that each own their memory never overlap
        if np.may_share_memory(out, a) and a.size and out.size:
            if any(_same_view(a, b) and _same_view(out, b) for b in allow_alias):
                continue
            raise ValueError(f"{name} overlaps the memory of {iname}; "
                             "pass a separate output buffer")
    return out


def pairs(names, given, converted):
    """The ``inputs`` of :func:`check_out`: each input as given, then as converted."""
    return tuple(p for n, a, c in zip(names, given, converted) for p in ((n, a), (n, c)))


def _same_view(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def ptr(a):
    """A cffi pointer to the data of a C-contiguous float32/float64 array (no copy); the
    caller keeps ``a`` referenced while C runs. None gives NULL."""
    if a is None:
        return _NULL
    return ffi.from_buffer(_CTYPE[a.dtype], a)


class PybackpropError(RuntimeError):
    """A failure reported by the C core that is neither bad memory nor a bad argument."""


def check_status(status):
    """Turn a non-zero status of the C core into an exception."""
    if status == 0:
        return
    msg = ffi.string(lib.pb_strerror(status)).decode()
    if status == lib.PB_ERR_NOMEM:
        raise MemoryError(msg)
    if status == lib.PB_ERR_ARG or status == lib.PB_ERR_OVERLAP:
        raise ValueError(msg)
    raise PybackpropError(msg)


_KERNELS: dict = {}


def kernel(stem, dtype):
    """The C function ``pb_<stem>_f32`` or ``pb_<stem>_f64`` for ``dtype`` (looked up once)."""
    try:
        return _KERNELS[stem, dtype]
    except KeyError:
        fn = getattr(lib, f"pb_{stem}_{'f32' if dtype == F32 else 'f64'}")
        _KERNELS[stem, dtype] = fn
        return fn
