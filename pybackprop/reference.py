"""Pure-numpy reference implementations: the specification of every pybackprop kernel.

Each function here has the same name and the same signature as the public C-accelerated
kernel it specifies, minus the buffer arguments (``out=``, ``dx=``/``dw=``/``db=``,
``accumulate=``), which are plumbing rather than mathematics; the tests emulate them.
These functions are the oracle of the test suite and a teaching aid, so they are written to
be obviously correct, not fast: one numpy expression per formula, no blocking, no threads.

Assumptions: inputs are array_like of a floating dtype (anything else becomes float64) and
the result keeps that dtype (float32 in, float32 out). Input validation is limited to what
keeps the maths well defined (known activation, ``negative_slope >= 0``, matching shapes);
the strict dtype and buffer checks of the C-backed API are not repeated here.

Shapes follow PyTorch's ``nn.Linear``. Dimension letters:
    B  batch rows          x  : (B, K)   or (K,) for a single row
    K  input features      w  : (N, K)
    N  output features     b  : (N,)
                           y  : (B, N)   or (N,)

Activations and their derivatives follow PyTorch's conventions (``torch.nn.functional``):
relu'(0) = 0, leaky_relu'(0) = negative_slope, and the derivative is computed from the
activation's OUTPUT ``y``, so a caller never has to keep the pre-activation ``z`` -- except
for gelu, gelu_tanh and silu (``PREACT_ACTIVATIONS``), which ``y`` does not determine: their
backward takes ``preact = z`` (``preactivation`` computes it; the C-backed forward stores it
through its ``preact=`` buffer).
"""
import math

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "PREACT_ACTIVATIONS",
    "preactivation",
    "activation",
    "activation_backward",
    "dense_forward",
    "dense_backward",
    "REDUCTIONS",
    "mse_loss",
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "maximum_forward",
    "maximum_backward",
    "power_iteration",
    "spectral_normalize",
    "spectral_norm_backward",
    "sigma_upper_bound",
    "lipschitz_bound",
    "adam_step",
    "adamax_step",
]

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu",
               "gelu_tanh", "silu")
PREACT_ACTIVATIONS = ("gelu", "gelu_tanh", "silu")

# gelu_tanh's w = C1 (z + 0.044715 z^3), C1 = 2 sqrt(2/pi): gelu_tanh(z) = z sigmoid(w)
_LD = np.longdouble
_GELU_TANH_C1 = _LD("1.59576912160573071175569963213149190")
_GELU_TANH_C3 = _GELU_TANH_C1 * _LD("0.044715")
_RSQRT2 = _LD("0.707106781186547524400844362104849039")
_RSQRT2PI = _LD("0.398942280401432677939946059934381868")
_TWO_RSQRTPI = _LD("1.12837916709551257389615890312154517")
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _sigmoid_ld(t):
    """sigmoid(t) in long double, exp() only of -|t| (no overflow)."""
    with np.errstate(under="ignore", over="ignore"):
        e = np.exp(-np.abs(t))
        return np.where(t >= 0, 1 / (1 + e), e / (1 + e))


def _ncdf(z):
    """Phi(z), the standard normal CDF, in long double.

    |z| < 8: erfc(-z / sqrt 2) / 2 with erfc per element by ``math.erfc`` (float64,
    < 1 ulp). The argument t = -z / sqrt 2 is formed in long double and split as t = th + tl
    (th its float64 rounding): erfc(t) = erfc(th) - tl (2 / sqrt pi) e^(-th^2) to first
    order, so t's rounding to float64 does not reach the result.
    |z| >= 8: the left tail Phi(-a) = phi(a) R(a), phi the density, R Laplace's continued
    fraction of the Mills ratio 1 / (a + 1 / (a + 2 / (a + 3 / (a + ...)))), 60 terms (for
    a >= 8 its error is far below 2^-64); no float64 erfc underflowing to subnormals."""
    zl = z.astype(_LD)
    t = -zl * _RSQRT2
    th = t.astype(np.float64)
    tl = t - th.astype(_LD)
    with np.errstate(under="ignore", invalid="ignore", over="ignore"):
        core = (np.asarray(_erfc(th), dtype=np.float64).astype(_LD)
                - tl * _TWO_RSQRTPI * np.exp(-th.astype(_LD) ** 2)) / 2
        a = np.maximum(np.abs(zl), _LD(8))
        r = a
        for k in range(60, 0, -1):
            r = a + k / r
        tail = np.exp(-a * a / 2) * _RSQRT2PI / r  # Phi(-a)
        far = np.where(zl < 0, tail, 1 - tail)
        return np.where(np.abs(zl) < 8, core, np.where(np.isnan(zl), zl, far))


def _as_float(a):
    """Return ``a`` as an ndarray of a floating dtype (non-floating input becomes float64)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a


def _check_kind(kind, negative_slope):
    """The activation's name (None, no activation, is "identity"), checked."""
    if kind is None:
        kind = "identity"
    if kind not in ACTIVATIONS:
        raise ValueError("unknown activation %r; expected one of %s" % (kind, ACTIVATIONS))
    if not negative_slope >= 0:
        raise ValueError("negative_slope must be >= 0, got %r" % (negative_slope,))
    return kind


# ---- activations ---------------------------------------------------------------------------


def _act(z, kind, slope):
    """y = act(z), elementwise, in the dtype of z. ``slope`` is already of that dtype."""
    if kind == "identity":
        return z.copy()
    if kind == "relu":
        # z < 0 ? 0 : z  -- NaN is kept (NaN < 0 is false) and -0 stays -0, as in PyTorch.
        return np.where(z < 0, z.dtype.type(0), z)
    if kind == "leaky_relu":
        # z < 0 ? slope*z : z  (torch.nn.functional.leaky_relu)
        return np.where(z < 0, slope * z, z)
    if kind == "sigmoid":
        # 1 / (1 + e^-z), written so that exp() never sees a positive argument:
        #   z >= 0:  1 / (1 + e)      z < 0:  e / (1 + e),     e = e^-|z| in (0, 1].
        # No overflow for any z; for very negative z, e underflows to 0 and so does sigmoid.
        with np.errstate(under="ignore"):
            e = np.exp(-np.abs(z))
            return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if kind == "tanh":
        return np.tanh(z)
    if kind == "softplus":
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): again exp() only sees -|z| <= 0.
        # (torch's softplus with beta=1, minus its linear-above-threshold shortcut.)
        with np.errstate(under="ignore"):
            return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    # The pre-activation kinds, in long double, rounded once to z's dtype. Each is z times a
    # positive factor: f(-0) = -0, and f(-inf) = -inf * 0 = NaN as PyTorch's formulas.
    zl = z.astype(_LD)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        if kind == "gelu":
            # z Phi(z) (torch.nn.functional.gelu, approximate="none")
            return (zl * _ncdf(z)).astype(z.dtype)
        if kind == "gelu_tanh":
            # z (1 + tanh(w / 2)) / 2 = z sigmoid(w), w = 2 sqrt(2/pi) (z + 0.044715 z^3)
            # (approximate="tanh"; the sigmoid form has no cancellation in the left tail)
            w = zl * (_GELU_TANH_C1 + _GELU_TANH_C3 * zl * zl)
            return (zl * _sigmoid_ld(w)).astype(z.dtype)
        if kind == "silu":
            return (zl * _sigmoid_ld(zl)).astype(z.dtype)  # z sigmoid(z)
    raise AssertionError(kind)  # unreachable: kind was checked


def _act_backward(dy, y, kind, slope):
    """dz = dy * act'(z), with act' written in terms of the OUTPUT y = act(z), or for the
    ``PREACT_ACTIVATIONS`` of z itself (``y`` then holds z)."""
    if kind in PREACT_ACTIVATIONS:
        z = y.astype(_LD)
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            if kind == "gelu":
                # Phi(z) + z phi(z), phi(z) = e^(-z^2/2) / sqrt(2 pi)
                d = _ncdf(y) + z * (np.exp(-z * z / 2) * _RSQRT2PI)
            elif kind == "gelu_tanh":
                # s + z s (1 - s) w',  s = sigmoid(w),  w' = C1 (1 + 3 0.044715 z^2)
                w = z * (_GELU_TANH_C1 + _GELU_TANH_C3 * z * z)
                s, sm = _sigmoid_ld(w), _sigmoid_ld(-w)
                d = s + z * (s * sm) * (_GELU_TANH_C1 + 3 * _GELU_TANH_C3 * z * z)
            else:
                # silu' = s (1 + z (1 - s)),  s = sigmoid(z),  1 - s = sigmoid(-z)
                d = _sigmoid_ld(z) * (1 + z * _sigmoid_ld(-z))
            return dy * d.astype(dy.dtype)
    if kind == "identity":
        return dy.copy()
    if kind == "relu":
        # relu' = 1 where y > 0, else exactly 0 whatever dy is (even NaN or inf), which is
        # what PyTorch's threshold_backward does; relu'(0) = 0.
        return np.where(y > 0, dy, dy.dtype.type(0))
    if kind == "leaky_relu":
        # slope >= 0, so y > 0 exactly when z > 0; leaky_relu'(0) = slope.
        return np.where(y > 0, dy, slope * dy)
    if kind == "sigmoid":
        # sigma'(z) = sigma(z) (1 - sigma(z)) = y (1 - y)
        return dy * (y * (1 - y))
    if kind == "tanh":
        # tanh'(z) = 1 - tanh(z)^2 = 1 - y^2
        return dy * (1 - y * y)
    if kind == "softplus":
        # softplus'(z) = sigma(z); from y = log(1 + e^z):  e^-y = 1 / (1 + e^z) = 1 - sigma(z),
        # so sigma(z) = 1 - e^-y = -expm1(-y), accurate also when y is tiny.
        return dy * -np.expm1(-y)
    raise AssertionError(kind)  # unreachable: kind was checked


def activation(z, kind=None, *, negative_slope=0.01):
    """Elementwise activation ``y = act(z)``.

    Parameters
    ----------
    z : array_like, any shape, float32 or float64
    kind : one of ``ACTIVATIONS``, or None (the default): no activation
    negative_slope : float >= 0, slope of ``leaky_relu`` for z < 0

    Returns
    -------
    y : ndarray, same shape and dtype as ``z``
    """
    kind = _check_kind(kind, negative_slope)
    z = _as_float(z)
    return _act(z, kind, z.dtype.type(negative_slope))


def _saved(kind, y, preact):
    """The array the derivative of ``kind`` is taken from: ``preact`` (required) for the
    ``PREACT_ACTIVATIONS``, else ``y`` (``preact`` refused); and its name."""
    if kind in PREACT_ACTIVATIONS:
        if preact is None:
            raise ValueError("activation %r takes its derivative from the pre-activation: "
                             "pass preact=z" % (kind,))
        return preact, "preact"
    if preact is not None:
        raise ValueError("preact is only for %s, not %r" % (PREACT_ACTIVATIONS, kind))
    if y is None:
        raise ValueError("y is required for activation %r" % (kind,))
    return y, "y"


def activation_backward(dy, y, kind, *, preact=None, negative_slope=0.01):
    """Gradient through an activation: ``dz = dy * act'(z)``, from its output ``y = act(z)``
    or, for the ``PREACT_ACTIVATIONS``, from ``preact = z``.

    Parameters
    ----------
    dy : array_like, gradient of the loss with respect to ``y``
    y : array_like, same shape as ``dy``: the saved output of ``activation(z, kind)``
        (None for the ``PREACT_ACTIVATIONS``: not used)
    kind, negative_slope : as in ``activation``
    preact : array_like, same shape as ``dy``: the input z of ``activation(z, kind)``;
        required for gelu, gelu_tanh, silu, refused for the other kinds

    Returns
    -------
    dz : ndarray, same shape and dtype as ``dy``
    """
    kind = _check_kind(kind, negative_slope)
    y, _ = _saved(kind, y, preact)
    dy = _as_float(dy)
    y = _as_float(y)
    if dy.shape != y.shape:
        raise ValueError("dy has shape %s but y has shape %s" % (dy.shape, y.shape))
    return _act_backward(dy, y, kind, dy.dtype.type(negative_slope))


# ---- dense + activation --------------------------------------------------------------------


def preactivation(x, w, b=None):
    """``z = x @ w.T + b``, the input of the activation in ``dense_forward`` (what its
    ``preact=`` buffer receives): (..., N) for x (..., K), w (N, K), b (N,) or None."""
    return dense_forward(x, w, b, activation=None)


def _rows(a):
    """(..., n) as the matrix (rows, n) of its leading dimensions (0-D left as it is)."""
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]) if a.ndim >= 1 else a


def dense_forward(x, w, b=None, *, activation=None, negative_slope=0.01):
    """Fully connected layer with activation: ``y = act(x @ w.T + b)`` (``nn.Linear`` layout).

    Parameters
    ----------
    x : (..., K) array_like: (B, K), (K,) or any leading dimensions
    w : (N, K) array_like
    b : (N,) array_like or None (no bias)
    activation : one of ``ACTIVATIONS``, or None (the default): no activation
    negative_slope : float >= 0, used by ``leaky_relu``

    Returns
    -------
    y : (..., N) ndarray (x's leading dimensions); dtype of the inputs
    """
    activation = _check_kind(activation, negative_slope)
    x, w = _as_float(x), _as_float(w)
    one_row = x.ndim == 1
    lead = x.shape[:-1]
    x2 = _rows(x)
    if x2.ndim != 2 or w.ndim != 2 or x2.shape[1] != w.shape[1]:
        raise ValueError("x has shape %s but w has shape %s; expected (B, K) and (N, K)"
                         % (x.shape, w.shape))
    z = x2 @ w.T                                          # z[B,N] = sum_k x[B,k] w[N,k]
    if b is not None:
        b = _as_float(b)
        if b.shape != (w.shape[0],):
            raise ValueError("b has shape %s but w has shape %s; expected b of shape (%d,)"
                             % (b.shape, w.shape, w.shape[0]))
        z = z + b                                         # bias broadcast over rows
    y = _act(z, activation, z.dtype.type(negative_slope))
    return y[0] if one_row else y.reshape(lead + (w.shape[0],))


def dense_backward(dy, x, w, y=None, *, activation, preact=None, negative_slope=0.01,
                   need_dx=True):
    """Backward pass of ``dense_forward``, from the saved input ``x`` and OUTPUT ``y`` (for
    the ``PREACT_ACTIVATIONS``: the pre-activation ``preact = z`` instead).

    With ``z = x @ w.T + b`` and ``y = act(z)`` (see ``dense_forward``)::

        dz = dy * act'(z)      computed from y, or z (activation_backward)
        dw = dz.T @ x          dL/dw[n,k] = sum_b dz[b,n] x[b,k]
        db = dz.sum(0)         dL/db[n]   = sum_b dz[b,n]
        dx = dz @ w            dL/dx[b,k] = sum_n dz[b,n] w[n,k]

    Parameters
    ----------
    dy : (..., N) array_like, gradient of the loss with respect to ``y``
    x : (..., K) array_like, the forward input
    w : (N, K) array_like, the weights
    y : (..., N) array_like, the forward output (None for the ``PREACT_ACTIVATIONS``)
    activation, negative_slope : as in ``dense_forward`` (no default: the forward's)
    preact : (..., N) array_like, z = ``preactivation(x, w, b)``: required for gelu,
        gelu_tanh and silu, refused for the other activations
    need_dx : bool, compute ``dx`` (False for a first layer, whose input needs no gradient)

    Returns
    -------
    dx : ndarray of x's shape, or None when ``need_dx`` is False
    dw : (N, K) ndarray
    db : (N,) ndarray (zeros when B == 0)
    """
    activation = _check_kind(activation, negative_slope)
    y, yname = _saved(activation, y, preact)
    dy, x, w, y = _as_float(dy), _as_float(x), _as_float(w), _as_float(y)
    # A single row is a batch of one; leading dimensions are rows.
    x2 = _rows(x)
    dy2, y2 = _rows(dy), _rows(y)
    if x2.ndim != 2 or w.ndim != 2 or x2.shape[1] != w.shape[1]:
        raise ValueError("x has shape %s but w has shape %s; expected (B, K) and (N, K)"
                         % (x.shape, w.shape))
    expected = x.shape[:-1] + (w.shape[0],)
    for name, a in (("dy", dy), (yname, y)):
        if a.shape != expected:
            raise ValueError("%s has shape %s but x and w (shapes %s, %s) give y of shape %s"
                             % (name, a.shape, x.shape, w.shape, expected))
    dz = _act_backward(dy2, y2, activation, dy2.dtype.type(negative_slope))  # (B, N)
    dw = dz.T @ x2                                                           # (N, K)
    db = dz.sum(axis=0)                                                      # (N,)
    dx = None
    if need_dx:
        dx = (dz @ w).reshape(x.shape)                                       # (..., K)
    return dx, dw, db


# ---- losses --------------------------------------------------------------------------------
# Each loss returns (loss, grad): the reduced loss as a scalar of the input dtype and its
# gradient with respect to the first argument. reduction "mean" divides by D = the number of
# items (elements, or rows for softmax_cross_entropy, as PyTorch), "sum" by D = 1. A mean
# over zero items is 0/0 = NaN (as numpy's and PyTorch's).

REDUCTIONS = ("mean", "sum")


def _divisor(reduction, count):
    if reduction not in REDUCTIONS:
        raise ValueError("reduction must be one of %s, got %r" % (REDUCTIONS, reduction))
    return count if reduction == "mean" else 1


def _reduce(terms, D, dtype):
    """sum(terms) / D as a scalar of ``dtype`` (0/0 = NaN without a warning)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(terms.sum() / dtype.type(D))


def mse_loss(pred, target, *, reduction="mean"):
    """Squared error: ``loss = sum((pred - target)**2) / D``, ``dpred = 2 (pred - target) / D``.

    Parameters
    ----------
    pred, target : array_like of the same shape
    reduction : "mean" (D = pred.size) or "sum" (D = 1)

    Returns
    -------
    (loss, dpred) : scalar and ndarray of pred's shape, in the inputs' dtype
    """
    pred, target = _as_float(pred), _as_float(target)
    if pred.shape != target.shape:
        raise ValueError("pred has shape %s but target has shape %s" % (pred.shape,
                                                                        target.shape))
    D = _divisor(reduction, pred.size)
    diff = pred - target
    with np.errstate(invalid="ignore", divide="ignore"):
        dpred = 2 * diff / diff.dtype.type(D)                 # d/dpred of diff^2 is 2 diff
    return _reduce(diff * diff, D, diff.dtype), dpred


def softmax_cross_entropy(logits, labels, *, reduction="mean", ignore_index=-100,
                          label_smoothing=0.0):
    """Cross-entropy of ``softmax(logits)`` over the last axis against class indices or rows.

    For a row ``x`` with target distribution ``t`` (one-hot for a class index)::

        t = (1 - eps) t + eps / C             (label_smoothing eps)
        m = max_c x_c                         (log-sum-exp shift: no overflow)
        log softmax(x)_c = (x_c - m) - log(sum_j exp(x_j - m))
        loss_row = -sum_c t_c log softmax(x)_c     (= -log softmax(x)_label for an index)
        dlogits_row = softmax(x) - t          (d loss_row / d x: the classic result)

    A row whose class index is ``ignore_index`` has loss 0 and gradient 0 and is not
    counted in the mean.

    Parameters
    ----------
    logits : (..., C) array_like
    labels : (...) integer class indices in [0, C) (or ``ignore_index``), or target rows
        of the logits' shape (one-hot or probabilities)
    reduction : "mean" (D = the rows not ignored), "sum" (D = 1) or "none" (every row's
        loss, shape (...), D = 1)
    ignore_index : int;  label_smoothing : float in [0, 1]

    Returns
    -------
    (loss, dlogits) : scalar (an array for "none") and ndarray of the logits' shape, in
        the logits' dtype
    """
    x = _as_float(logits)
    C = x.shape[-1]
    x2 = _rows(x)
    labels = np.asarray(labels)
    rows = labels.ndim == x.ndim
    keep = np.ones(x2.shape[0], bool)
    if rows:
        t = labels.astype(x.dtype).reshape(x2.shape)
    else:
        lab = labels.astype(np.int64).reshape(-1)
        keep = lab != ignore_index
        t = np.zeros_like(x2)
        t[np.flatnonzero(keep), lab[keep]] = 1                 # one-hot rows
    if label_smoothing:
        t = t * x.dtype.type(1 - label_smoothing) + x.dtype.type(label_smoothing / C)
    t[~keep] = 0
    D = 1 if reduction == "none" else _divisor(reduction, int(keep.sum()))
    m = x2.max(axis=1, keepdims=True) if x2.size else np.zeros((x2.shape[0], 1), x.dtype)
    with np.errstate(under="ignore", invalid="ignore"):
        e = np.exp(x2 - m)                                    # each <= 1
        s = e.sum(axis=1, keepdims=True)                      # >= 1
        log_p = (x2 - m) - np.log(s)                          # log softmax, (B, C)
        p = e / s                                             # softmax, (B, C)
        if rows or label_smoothing:
            row_loss = -(t * log_p).sum(axis=1)
        else:  # -log p_label alone (0 * log p of another class could be 0 * -inf)
            row_loss = -log_p[np.arange(x2.shape[0]), np.where(keep, lab, 0)]
        row_loss = np.where(keep, row_loss, x.dtype.type(0))
        dlogits = np.where(keep[:, None], (p - t) / x.dtype.type(D), x.dtype.type(0))
    if reduction == "none":
        return row_loss.astype(x.dtype).reshape(x.shape[:-1]), dlogits.reshape(x.shape)
    return _reduce(row_loss, D, x.dtype), dlogits.reshape(x.shape)


def binary_cross_entropy_with_logits(logits, targets, *, reduction="mean"):
    """Binary cross-entropy of ``sigmoid(z)`` against targets ``t``, from the logits ``z``.

    ``-(t log s + (1 - t) log(1 - s))`` with ``s = sigmoid(z)`` equals
    ``max(z, 0) - z t + log1p(exp(-|z|))`` (exp never sees a positive argument: no overflow
    for any ``|z|``); its derivative is ``sigmoid(z) - t``.

    Parameters
    ----------
    logits, targets : array_like of the same shape
    reduction : "mean" (D = logits.size) or "sum" (D = 1)

    Returns
    -------
    (loss, dlogits) : scalar and ndarray of the logits' shape, in the inputs' dtype
    """
    z, t = _as_float(logits), _as_float(targets)
    if z.shape != t.shape:
        raise ValueError("logits has shape %s but targets has shape %s" % (z.shape, t.shape))
    D = _divisor(reduction, z.size)
    with np.errstate(under="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(-np.abs(z))                                # in (0, 1]
        terms = np.maximum(z, 0) - z * t + np.log1p(e)
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))      # sigmoid(z), stable
        dlogits = (sig - t) / z.dtype.type(D)
    return _reduce(terms, D, z.dtype), dlogits


# ---- merges --------------------------------------------------------------------------------


def _a_wins(a, b):
    """Where max(a, b) takes a: a >= b, ties included, or a is NaN (NaN propagates)."""
    return (a >= b) | np.isnan(a)


def maximum_forward(a, b):
    """Elementwise ``z = max(a, b)`` of two same-shaped arrays; NaN in either gives NaN."""
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError("a has shape %s but b has shape %s" % (a.shape, b.shape))
    return np.where(_a_wins(a, b), a, b)


def maximum_backward(dz, a, b):
    """Gradient of ``maximum_forward``: ``dz`` goes to the input that won, 0 to the other.

    A tie (a == b) sends all of ``dz`` to ``a`` (a subgradient); torch.maximum splits it.

    Returns
    -------
    (da, db) : ndarrays of the shape of ``a``
    """
    dz, a, b = _as_float(dz), _as_float(a), _as_float(b)
    if not dz.shape == a.shape == b.shape:
        raise ValueError("dz, a, b have shapes %s, %s, %s; expected one shape"
                         % (dz.shape, a.shape, b.shape))
    won = _a_wins(a, b)
    zero = dz.dtype.type(0)
    return np.where(won, dz, zero), np.where(won, zero, dz)
# ---- spectral norm -------------------------------------------------------------------------
# torch.nn.utils.parametrizations.spectral_norm with dim=0: w is (N, K), u is (N,), v is (K,),
# normalize(a) = a / max(||a||, eps) (torch.nn.functional.normalize). Miyato et al. 2018,
# "Spectral Normalization for Generative Adversarial Networks", Algorithm 1.


def _normalize(a, eps):
    return a / np.maximum(np.linalg.norm(a), a.dtype.type(eps))


def power_iteration(w, u, v, *, n_iters=1, eps=1e-12):
    """n_iters iterations of u = normalize(w @ v), v = normalize(w.T @ u), written into the
    given u and v (numpy arrays); returns sigma = u . (w @ v) (n_iters = 0: from u, v as
    given). Two matrix-vector products per iteration plus one for sigma, as PyTorch."""
    w = _as_float(w)
    for _ in range(n_iters):
        u[...] = _normalize(w @ v, eps)
        v[...] = _normalize(w.T @ u, eps)
    return u @ (w @ v)


def spectral_normalize(w, sigma):
    """w / sigma."""
    w = _as_float(w)
    return w / w.dtype.type(sigma)


def spectral_norm_backward(grad_wsn, w, u, v, sigma):
    """d/dw of L(w / sigma(w)) with u, v constant: sigma = u^T w v, d sigma / dw = u v^T,
    so dw = G / sigma - (<G, w> / sigma^2) u v^T = (G - <G, w / sigma> u v^T) / sigma."""
    g, w = _as_float(grad_wsn), _as_float(w)
    sigma = w.dtype.type(sigma)
    return (g - np.sum(g * (w / sigma)) * np.outer(u, v)) / sigma


def sigma_upper_bound(w, *, n_squarings=4):
    """Certified upper bound of sigma_max(w): sigma^2 = ||G||_2 <= ||G^(2^j)||_F^(1/2^j) for
    the symmetric Gram matrix G of the smaller side, evaluated in float64 with w scaled by a
    power of two, every rounding bounded (Higham's gamma_n) and added; see csrc/ops/spectral.c
    for the derivation of each term. NaN in w gives NaN, inf gives inf."""
    w = _as_float(w).astype(np.float64)
    if np.isnan(w).any():
        return float("nan")
    mx = float(np.max(np.abs(w))) if w.size else 0.0
    if mx == 0.0 or np.isinf(mx):
        return mx
    u, eta = np.finfo(np.float64).eps / 2, 5e-324

    def gamma(n):
        return n * u / (1 - n * u)

    def fro2(a):  # upper bound of ||a||_F^2 from its computed sum of squares
        return float(np.sum(a * a)) / (1 - gamma(a.size + 1)) + a.size * eta

    e0 = np.frexp(mx)[1]
    wd = np.ldexp(w, -e0)
    N, K = w.shape
    m, n0 = min(N, K), max(N, K)
    a = wd.T @ wd if K <= N else wd @ wd.T
    a = np.triu(a) + np.triu(a, 1).T                       # exactly symmetric
    err0 = gamma(n0) * fro2(wd) + m * n0 * eta             # >= ||a - G||_2
    levels = []
    for _ in range(n_squarings):
        f2 = fro2(a)
        b = a @ a
        b = np.triu(b) + np.triu(b, 1).T
        e = np.frexp(np.max(np.abs(b)))[1] if np.any(b) else 0
        a = np.ldexp(b, -e)
        levels.append((f2, e))
    ub = np.sqrt(fro2(a))                                  # >= ||A_J||_2
    for f2, e in reversed(levels):                         # ub >= ||A_j||_2
        ub = np.sqrt(np.ldexp(ub + m * eta, e) + gamma(m) * f2 + m * m * eta)
    sig = np.sqrt(ub + err0) + np.sqrt(N * K) * eta
    return float(np.ldexp(sig * (1 + 8 * (15 * n_squarings + 40) * u), e0))


def lipschitz_bound(weights, activations, *, negative_slope=0.01, n_iters=100,
                    certified=False, n_squarings=4):
    """prod_l sigma(W_l) * lip(act_l), lip = 1 for identity/relu/tanh/softplus, 1/4 for
    sigmoid, max(1, slope) for leaky_relu. sigma: n_iters power iterations from u, v drawn
    from default_rng(l) (u first), or sigma_upper_bound when certified. Returns (bound,
    factors)."""
    lip = {None: 1.0, "identity": 1.0, "relu": 1.0, "tanh": 1.0, "softplus": 1.0,
           "sigmoid": 0.25, "leaky_relu": max(1.0, negative_slope)}
    factors = []
    for layer, (w, act) in enumerate(zip(weights, activations)):
        w = _as_float(w)
        if certified:
            sigma = sigma_upper_bound(w, n_squarings=n_squarings)
        else:
            rng = np.random.default_rng(layer)
            u = rng.standard_normal(w.shape[0]).astype(w.dtype)
            v = rng.standard_normal(w.shape[1]).astype(w.dtype)
            u, v = _normalize(u, 1e-12), _normalize(v, 1e-12)
            sigma = float(power_iteration(w, u, v, n_iters=n_iters))
        factors.append(sigma * lip[act])
    return float(np.prod(factors)), factors


# ---- optimizers ----------------------------------------------------------------------------
# One step of Adam / AdamW (Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015,
# Algorithm 1; Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019) and of
# AdaMax (Kingma & Ba, section 7.1), in place, in the parameter's dtype, written as
# torch.optim's single-tensor CPU code computes them, one numpy operation per torch
# operation: every scalar (lr / (1 - beta1^t), ...) is formed in Python floats (double) and
# rounded once to the dtype, every array operation rounds once. Where PyTorch's formulation
# differs from the paper's, PyTorch's is kept and the difference noted.
# ``step`` is t >= 1, the number of this step (after increment). The arrays are updated in
# place; ``param, grad, m, v`` may also be equally long lists of arrays (one step each).


def _lerp(m, g, w):
    """torch.lerp(m, g, w) for a scalar weight w: m + w (g - m) when |w| < 0.5, else
    g - (g - m)(1 - w) (its two branches keep the result exact at both ends)."""
    if abs(w) < 0.5:
        return m + w * (g - m)
    return g - (g - m) * (w.dtype.type(1) - w)


def _as_lists(*arrays):
    if isinstance(arrays[0], (list, tuple)):
        return list(zip(*[list(a) if a is not None else [None] * len(arrays[0])
                          for a in arrays]))
    return [arrays]


def adam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, v_max=None,
              maximize=False):
    """One Adam (``decoupled_weight_decay=False``) or AdamW step, in place.

    g = -grad if maximize else grad
    weight decay:  AdamW  p = p * (1 - lr*wd)      Adam  g = g + wd*p   (L2 penalty)
    m = lerp(m, g, 1 - beta1)                      first moment  (= beta1 m + (1-beta1) g)
    v = v * beta2 + ((1 - beta2) g) g              second moment
    amsgrad: v_max = max(v_max, v) and v_max replaces v in the denominator
    p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The paper adds eps to the bias-corrected sqrt(v_hat) too (Algorithm 1); its
    ``alpha_t = lr sqrt(1-beta2^t) / (1-beta1^t)`` variant (section 2) moves eps inside. As
    torch, eps is added after dividing sqrt(v) by sqrt(1 - beta2^t).
    """
    for p, g_in, m_, v_, vm in _as_lists(param, grad, m, v, v_max):
        dt = p.dtype.type
        g = -g_in if maximize else g_in.copy()
        if weight_decay != 0:
            if decoupled_weight_decay:
                p *= dt(1 - lr * weight_decay)
            else:
                g = g + dt(weight_decay) * p
        m_[...] = _lerp(m_, g, dt(1 - beta1))                      # first moment
        v_ *= dt(beta2)                                            # second moment
        v_ += (dt(1 - beta2) * g) * g
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        s = v_
        if amsgrad:
            np.maximum(vm, v_, out=vm)   # running max of v; NaN propagates
            s = vm
        denom = np.sqrt(s) / dt(bias_correction2_sqrt) + dt(eps)
        p += (dt(-step_size) * m_) / denom


def adamax_step(param, grad, m, u, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, maximize=False):
    """One AdaMax step, in place.

    g = -grad if maximize else grad;   g = g + wd*p  (if weight_decay != 0)
    m = lerp(m, g, 1 - beta1)                      first moment
    u = max(u * beta2, |g| + eps)                  exponentially weighted infinity norm
    p = p - (lr / (1 - beta1^t)) m / u,  except where u == 0: p is left unchanged there.

    The paper has ``u = max(beta2 u, |g|)`` and no eps; torch.optim.Adamax adds eps to |g|
    inside the max (kept here). With eps = 0 this is the paper's rule, and a coordinate that
    never saw a gradient has u = m = 0: the paper's update is 0/0, here it is no update.
    """
    for p, g_in, m_, u_ in _as_lists(param, grad, m, u):
        dt = p.dtype.type
        g = -g_in if maximize else g_in.copy()
        if weight_decay != 0:
            g = g + dt(weight_decay) * p
        m_[...] = _lerp(m_, g, dt(1 - beta1))                      # first moment
        u_[...] = np.maximum(u_ * dt(beta2), np.abs(g) + dt(eps))  # infinity norm
        clr = lr / (1 - beta1 ** step)
        with np.errstate(divide="ignore", invalid="ignore"):
            p[...] = np.where(u_ != 0, p + (dt(-clr) * m_) / u_, p)
