"""Spectral norm: power iteration, spectral normalisation ``w / sigma`` and its backward,
a certified upper bound of sigma, and a Lipschitz bound of a dense network.

Semantics of ``torch.nn.utils.parametrizations.spectral_norm`` with ``dim=0``: ``w`` is
``(N, K)`` = (out, in), the persistent vectors are ``u`` ``(N,)`` and ``v`` ``(K,)``, and
``normalize(a) = a / max(||a||, eps)``. One iteration is ``u = normalize(w @ v)``,
``v = normalize(w.T @ u)``; afterwards ``sigma = u . (w @ v)``. The C core does each
iteration in ONE pass over ``w`` (PyTorch reads it 2 n + 1 times for n iterations): each
row gives ``s_i = w_i . v`` and, while still in cache, adds ``s_i w_i`` to ``w.T @ s``.
Results do not depend on the thread count. The specification of every function here is its
namesake in :mod:`pybackprop.reference`.

The power iteration only ever underestimates sigma (``u . (w @ v) <= sigma`` for unit u, v);
:func:`sigma_upper_bound` gives a certified upper bound, so ``lower <= sigma <= upper``.
"""
import math
import numbers

import numpy as np

from ._core import (F32, as_input, check_out, check_status, describe, ffi, kernel, pairs, ptr,
                    result_dtype)

__all__ = ["power_iteration", "spectral_normalize", "spectral_norm_backward",
           "sigma_upper_bound", "lipschitz_bound", "lipschitz_constant", "SpectralNorm"]

# Lipschitz constant of each activation, sup |act'| (leaky_relu: max(1, negative_slope)).
# gelu, gelu_tanh and silu have derivatives above 1 past their maxima; each value is the
# supremum rounded up in its last (16th significant) digit, so that the float itself is
# >= the exact supremum (the 17-digit roundings to nearest of gelu's and gelu_tanh's would
# be doubles just below it). Derivations in lipschitz_constant.
_ACT_LIPSCHITZ = {None: 1.0, "identity": 1.0, "relu": 1.0, "tanh": 1.0, "softplus": 1.0,
                  "sigmoid": 0.25,
                  "gelu": 1.128904145185155,       # 1.12890414518515478634...
                  "gelu_tanh": 1.128993068658772,  # 1.12899306865877176546...
                  "silu": 1.099839320128867}       # 1.09983932012886691696...


def _weight(w, dtype):
    wa = as_input("w", w, dtype)
    if wa.ndim != 2:
        raise ValueError(f"w must be 2-D (N, K) = (out, in); got {describe(wa)}")
    return wa


def _check_state(name, a, n, dtype, others):
    """u or v: updated in place, so checked strictly (never converted)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape ({n},) and dtype {dtype} "
                        f"(it is updated in place), got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has {describe(a)}; expected dtype {dtype} (the dtype of w)")
    return check_out(name, a, (n,), dtype, others)


# Work per C call of power_iteration, the longest wait for Ctrl-C: at most _CHUNK_ELEMENTS
# element visits of w (an iteration visits N*K) and _CHUNK_ITERS iterations (a small w's
# iteration costs about a microsecond whatever its size): 10-50 ms per call measured here.
_CHUNK_ELEMENTS = 1 << 26
_CHUNK_ITERS = 1 << 14


def _n_iters(n_iters):
    if isinstance(n_iters, bool) or not isinstance(n_iters, numbers.Integral) or n_iters < 0:
        raise ValueError(f"n_iters must be an int >= 0, got {n_iters!r}")
    if n_iters > 2**31 - 1:
        raise ValueError(f"n_iters must be < 2**31, got {n_iters!r}")
    return int(n_iters)


def _eps(eps):
    e = float(eps)
    if not (e >= 0.0 and math.isfinite(e)):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    return e


def power_iteration(w, u, v, *, n_iters=1, eps=1e-12):
    """Power iteration for the largest singular value of ``w``, updating ``u``, ``v`` in place.

    Each iteration: ``u = normalize(w @ v)``, ``v = normalize(w.T @ u)`` (one pass over w);
    returns ``sigma = u . (w @ v)`` for the final vectors. ``n_iters=0`` is evaluation
    mode: ``u`` and ``v`` are left untouched and ``sigma = u . (w @ v)`` from them.

    Parameters
    ----------
    w : (N, K) array_like, float32 or float64 (other arrays follow u's dtype)
    u : (N,) ndarray, C-contiguous, writeable, of the dtype of w
    v : (K,) ndarray, C-contiguous, writeable, of the dtype of w
    n_iters : int >= 0
    eps : float >= 0, the floor of the norms in ``normalize``

    Returns
    -------
    sigma : numpy scalar of the dtype of w, ``<= sigma_max(w)`` up to rounding.

    Ctrl-C (KeyboardInterrupt) stops a long run within a fraction of a second; ``u`` and
    ``v`` then hold the unit vectors of an iteration that finished.

    Raises before anything is written if ``u`` or ``v`` has the wrong type, shape or dtype,
    is not C-contiguous/writeable, or overlaps ``w`` or the other vector.
    """
    n_iters, eps = _n_iters(n_iters), _eps(eps)
    dtype = result_dtype(w=w, u=u, v=v)
    wa = _weight(w, dtype)
    N, K = wa.shape
    _check_state("u", u, N, dtype, (("w", w), ("w", wa), ("v", v)))
    _check_state("v", v, K, dtype, (("w", w), ("w", wa), ("u", u)))
    sigma = ffi.new("float *" if dtype == F32 else "double *")
    run, pu, pv, pw = kernel("spectral_power_iteration", dtype), ptr(u), ptr(v), ptr(wa)
    # In calls of about _CHUNK_ELEMENTS element visits each, so that Ctrl-C (seen by Python
    # between calls) stops a long run within a fraction of a second, u and v holding the
    # last finished iteration's unit vectors. The same bits as one call: an iteration reads
    # only w and v, and sigma comes from the last one.
    chunk = max(1, min(_CHUNK_ITERS, _CHUNK_ELEMENTS // max(1, N * K)))
    left = n_iters
    while True:
        n = min(left, chunk)
        check_status(run(pu, pv, sigma, pw, N, K, n, eps))
        left -= n
        if left == 0:
            return dtype.type(sigma[0])


def _sigma_value(sigma, dtype):
    if isinstance(sigma, np.ndarray) and sigma.ndim == 0:
        sigma = sigma[()]
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be a real scalar, got {sigma!r}")
    return dtype.type(sigma)


def spectral_normalize(w, sigma, out=None):
    """``w / sigma`` (exact IEEE division, as ``torch``'s ``weight / sigma``).

    Parameters
    ----------
    w : (N, K) array_like (any shape is accepted: elementwise)
    sigma : real scalar (``sigma = 0`` gives inf/NaN, as a division by zero does)
    out : ndarray of w's shape and dtype, optional; ``out=w`` is allowed (in place)

    Returns
    -------
    ndarray of the shape and dtype of ``w``.
    """
    dtype = result_dtype(w=w)
    wa = as_input("w", w, dtype)
    s = _sigma_value(sigma, dtype)
    if out is None:
        o = np.empty(wa.shape, dtype)
    else:
        o = check_out("out", out, wa.shape, dtype, (("w", w), ("w", wa)), allow_alias=(wa,))
    check_status(kernel("spectral_norm_forward", dtype)(ptr(o), ptr(wa), wa.size, s))
    return o


def spectral_norm_backward(grad_wsn, w, u, v, sigma, out=None):
    """Gradient with respect to ``w`` of a loss of ``w / sigma(w)``, ``u``, ``v`` constant.

    ``sigma = u . (w @ v)`` so ``d sigma / d w = outer(u, v)``, and
    ``dw = (G - <G, w / sigma> outer(u, v)) / sigma`` with ``G = grad_wsn`` (what autograd
    gives through PyTorch's parametrization, whose u and v are constants). Reads ``w`` once
    and ``G`` twice.

    Parameters
    ----------
    grad_wsn : (N, K) array_like, gradient of the loss with respect to ``w / sigma``
    w : (N, K) array_like
    u : (N,) array_like, v : (K,) array_like, the vectors sigma was computed with
    sigma : real scalar, as returned by :func:`power_iteration`
    out : ndarray (N, K), optional; ``out=grad_wsn`` is allowed (in place)

    Returns
    -------
    dw : ndarray (N, K) of the dtype of the inputs.
    """
    dtype = result_dtype(grad_wsn=grad_wsn, w=w, u=u, v=v)
    wa = _weight(w, dtype)
    ga = as_input("grad_wsn", grad_wsn, dtype)
    ua, va = as_input("u", u, dtype), as_input("v", v, dtype)
    N, K = wa.shape
    if ga.shape != wa.shape:
        raise ValueError(f"grad_wsn has shape {ga.shape} but w has shape {wa.shape}")
    if ua.shape != (N,):
        raise ValueError(f"u has shape {ua.shape}; expected ({N},) for w of shape {wa.shape}")
    if va.shape != (K,):
        raise ValueError(f"v has shape {va.shape}; expected ({K},) for w of shape {wa.shape}")
    s = _sigma_value(sigma, dtype)
    if out is None:
        o = np.empty((N, K), dtype)
    else:
        o = check_out("out", out, (N, K), dtype,
                      pairs(("grad_wsn", "w", "u", "v"), (grad_wsn, w, u, v), (ga, wa, ua, va)),
                      allow_alias=(ga,))
    check_status(kernel("spectral_norm_backward", dtype)(ptr(o), ptr(ga), ptr(wa), ptr(ua),
                                                         ptr(va), s, N, K))
    return o


def sigma_upper_bound(w, *, n_squarings=4):
    """Certified upper bound of the largest singular value of ``w`` (a Python float).

    The Gram matrix of the smaller side (``w.T @ w`` or ``w @ w.T``, m x m with
    m = min(N, K)) is formed in float64 with pybackprop's GEMM and squared ``n_squarings``
    times (rescaled by powers of two); ``sigma <= ||G^(2^j)||_F^(1/2^(j+1))``, inflated by a
    bound on every rounding of the computation, so the result is never below the exact
    sigma of ``w``'s values. It exceeds sigma by at most a factor ``m^(1/2^(j+2))``
    (j = n_squarings; 1.30 for m = 4096, j = 4), much less when the spectrum decays.
    Cost: ``2 N K m + 2 j m^3`` flops and 3 m^2 + N K float64 of workspace.
    NaN in ``w`` gives NaN; an infinity gives inf; a zero matrix gives 0.
    """
    if isinstance(n_squarings, bool) or not isinstance(n_squarings, numbers.Integral) \
            or not 0 <= n_squarings <= 30:
        raise ValueError(f"n_squarings must be an int in [0, 30], got {n_squarings!r}")
    dtype = result_dtype(w=w)
    wa = _weight(w, dtype)
    N, K = wa.shape
    upper = ffi.new("double *")
    check_status(kernel("spectral_sigma_upper", dtype)(upper, ptr(wa), N, K,
                                                       int(n_squarings)))
    return float(upper[0])


def lipschitz_constant(activation, negative_slope=0.01):
    """Lipschitz constant of an activation, ``sup |act'(z)|``, as a float >= that supremum:
    1 for identity/None, relu, tanh, softplus; 1/4 for sigmoid; max(1, negative_slope) for
    leaky_relu; and, rounded up in the 16th significant digit:

    - gelu, ``z Phi(z)``: ``gelu' = Phi(z) + z phi(z)`` (phi the normal density), whose own
      derivative ``phi(z) (2 - z^2)`` vanishes at ``z = sqrt 2``: the supremum is
      ``Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.12890414518515...`` -> 1.128904145185155.
    - gelu_tanh, ``z sigmoid(w)``, ``w = 2 sqrt(2/pi) (z + 0.044715 z^3)``: ``gelu_tanh' =
      s + z s (1 - s) w'`` (``s = sigmoid(w)``), largest at the root ``z = 1.41850400879083``
      of the second derivative: 1.12899306865877... -> 1.128993068658772.
    - silu, ``z sigmoid(z)``: ``silu' = s (1 + z (1 - s))``, largest at the root
      ``z = 2.39935728051547`` of ``silu'' = s (1 - s) (2 + z (1 - 2 s))``:
      1.09983932012886... -> 1.099839320128867.

    Each of the three is ``z F(z)`` with ``F(-z) = 1 - F(z)``, so ``act'(-z) = 1 - act'(z)``:
    the derivative tends to 1 as z -> +inf and to 0 as z -> -inf, and its minimum (at
    ``-z`` of the maximum) is ``1 - max > -0.13``, so the maximum is ``sup |act'|``."""
    if activation == "leaky_relu":
        slope = float(negative_slope)
        if not (slope >= 0.0 and math.isfinite(slope)):
            raise ValueError(f"negative_slope must be finite and >= 0, got {negative_slope!r}")
        return max(1.0, slope)
    try:
        return _ACT_LIPSCHITZ[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of identity, relu, leaky_relu, sigmoid, "
                         f"tanh, softplus, gelu, gelu_tanh, silu or None, got "
                         f"{activation!r}") from None


def lipschitz_bound(weights, activations, *, negative_slope=0.01, n_iters=100,
                    certified=False, n_squarings=4):
    """Upper bound of the Lipschitz constant (2-norm) of a dense network.

    The network is ``x -> act_L(W_L ... act_1(W_1 x + b_1) ... + b_L)``; biases do not
    matter. Its constant is at most ``prod_l sigma(W_l) * lip(act_l)``.

    Parameters
    ----------
    weights : sequence of (N_l, K_l) array_like, first layer first
    activations : sequence of activation names (or None for identity), one per layer
    negative_slope : slope of leaky_relu
    n_iters : power iterations per layer when ``certified=False``, from a fixed seeded
        start (deterministic); the estimates are lower bounds of each sigma, so the product
        is an estimate, not a guarantee.
    certified : bool, use :func:`sigma_upper_bound` per layer: a guaranteed bound.
    n_squarings : passed to :func:`sigma_upper_bound` when ``certified``.

    Returns
    -------
    (bound, factors) : float and list of floats, ``factors[l] = sigma(W_l) * lip(act_l)``
        and ``bound = prod(factors)``.
    """
    weights, activations = list(weights), list(activations)
    if len(weights) != len(activations):
        raise ValueError(f"weights has {len(weights)} layers but activations has "
                         f"{len(activations)} entries; give one activation per layer")
    n_iters = _n_iters(n_iters)
    factors = []
    for layer, (w, act) in enumerate(zip(weights, activations)):
        lip = lipschitz_constant(act, negative_slope)
        if certified:
            sigma = sigma_upper_bound(w, n_squarings=n_squarings)
        else:
            dtype = result_dtype(w=w)
            wa = _weight(w, dtype)
            u, v = _random_unit_pair(wa.shape, dtype, np.random.default_rng(layer))
            sigma = float(power_iteration(wa, u, v, n_iters=n_iters))
        factors.append(sigma * lip)
    bound = 1.0
    for f in factors:
        bound *= f
    return bound, factors


def _random_unit_pair(shape, dtype, rng, eps=1e-12):
    """u (N,), v (K,): standard normal draws (u first, as PyTorch), normalised."""
    N, K = shape
    u = rng.standard_normal(N).astype(dtype)
    v = rng.standard_normal(K).astype(dtype)
    u /= dtype.type(max(float(np.linalg.norm(u)), eps))
    v /= dtype.type(max(float(np.linalg.norm(v)), eps))
    return u, v


class SpectralNorm:
    """Spectral normalisation of one weight, as ``torch.nn.utils.parametrizations
    .spectral_norm(module, n_power_iterations=n_iters, eps=eps)`` with dim=0.

    State: ``u`` (N,), ``v`` (K,), drawn from ``numpy.random.default_rng(seed)`` (standard
    normal, normalised); on the first call ``warmup`` extra iterations run first (PyTorch
    runs 15 when the parametrization is registered). Each call of :meth:`sigma` or
    :meth:`normalize` runs ``n_iters`` iterations (``n_iters=0``: evaluation mode, state
    unchanged) and keeps sigma for :meth:`backward`.

    Parameters
    ----------
    shape : (N, K), the weight's shape (out, in)
    dtype : np.float32 or np.float64
    n_iters : int >= 0, iterations per call
    eps : float >= 0
    warmup : int >= 0, iterations added to the first call
    seed : int, Generator or None, for the initial u, v
    """

    def __init__(self, shape, dtype=np.float32, n_iters=1, eps=1e-12, warmup=15, seed=None):
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        try:
            N, K = (int(d) for d in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be (N, K), got {shape!r}") from None
        if N < 0 or K < 0:
            raise ValueError(f"shape must be (N, K) with N, K >= 0, got {shape!r}")
        self.shape, self.dtype = (N, K), dtype
        self.n_iters, self.eps, self.warmup = _n_iters(n_iters), _eps(eps), _n_iters(warmup)
        self.u, self.v = _random_unit_pair((N, K), dtype, np.random.default_rng(seed),
                                           self.eps)
        self.warmed_up = False
        self.last_sigma = None

    def _w(self, w):
        dtype = result_dtype(w=w)
        if dtype != self.dtype:
            raise TypeError(f"w has dtype {dtype}; this SpectralNorm is {self.dtype}")
        wa = _weight(w, dtype)
        if wa.shape != self.shape:
            raise ValueError(f"w has shape {wa.shape}; this SpectralNorm is for {self.shape}")
        return wa

    def sigma(self, w, n_iters=None):
        """Run the power iteration on ``w`` (``n_iters`` or the default) and return sigma."""
        wa = self._w(w)
        n = self.n_iters if n_iters is None else _n_iters(n_iters)
        if not self.warmed_up:
            n += self.warmup
        s = power_iteration(wa, self.u, self.v, n_iters=n, eps=self.eps)
        self.warmed_up = True
        self.last_sigma = s
        return s

    def normalize(self, w, out=None, n_iters=None):
        """``w / sigma(w)`` after the call's power iterations (see :meth:`sigma`)."""
        wa = self._w(w)
        if out is not None:  # checked before the state changes
            check_out("out", out, self.shape, self.dtype, (("w", w), ("w", wa)),
                      allow_alias=(wa,))
        return spectral_normalize(wa, self.sigma(wa, n_iters), out=out)

    def backward(self, grad_wsn, w, out=None):
        """Gradient with respect to ``w`` of the last :meth:`normalize` (u, v, sigma of
        that call held constant): see :func:`spectral_norm_backward`."""
        if self.last_sigma is None:
            raise RuntimeError("backward() needs a preceding normalize() or sigma() call")
        return spectral_norm_backward(grad_wsn, self._w(w), self.u, self.v, self.last_sigma,
                                      out=out)

    def state_dict(self):
        """Copies of everything that determines the next results."""
        return {"u": self.u.copy(), "v": self.v.copy(), "n_iters": self.n_iters,
                "eps": self.eps, "warmup": self.warmup, "warmed_up": self.warmed_up,
                "last_sigma": None if self.last_sigma is None else self.last_sigma.copy()}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` exactly (u, v must match this shape and dtype).
        Everything is checked before anything is assigned: a bad entry raises (KeyError
        for a missing one, ValueError naming it otherwise) and leaves the state as it was."""
        missing = {"u", "v", "n_iters", "eps", "warmup", "warmed_up", "last_sigma"} - set(state)
        if missing:
            raise KeyError(f"state is missing {sorted(missing)}")
        u, v = state["u"], state["v"]
        for name, a, n in (("u", u, self.shape[0]), ("v", v, self.shape[1])):
            if (not isinstance(a, np.ndarray) or isinstance(a, np.ma.MaskedArray)
                    or a.dtype != self.dtype or a.shape != (n,)):
                raise ValueError(f"state[{name!r}] has {describe(a)}; expected shape ({n},) "
                                 f"and dtype {self.dtype}")
        n_iters, eps, warmup = (_n_iters(state["n_iters"]), _eps(state["eps"]),
                                _n_iters(state["warmup"]))
        warmed_up = state["warmed_up"]
        if not isinstance(warmed_up, (bool, np.bool_)):
            raise ValueError(f"state['warmed_up'] must be a bool, got {warmed_up!r}")
        ls = state["last_sigma"]
        if ls is not None:
            try:
                ls = _sigma_value(ls, self.dtype)
            except TypeError:
                raise ValueError(f"state['last_sigma'] must be None or a real scalar, got "
                                 f"{ls!r}") from None
        # everything checked: assign
        self.u, self.v = np.array(u, order="C"), np.array(v, order="C")
        self.n_iters, self.eps, self.warmup = n_iters, eps, warmup
        self.warmed_up = bool(warmed_up)
        self.last_sigma = ls
