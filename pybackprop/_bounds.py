"""The error model of the dense, activation and loss kernels against pybackprop.reference:
elementwise bounds on |ours - reference| that the tests and ``python -m pybackprop check``
assert. The reference is evaluated in float64 on the same inputs cast up (exact);
eps = np.finfo(dtype).eps = 2u, u the unit roundoff of the tested dtype.

GEMM_C: a sum of n terms evaluated in any order, with or without FMA, blocked or not, has
  |fl(s) - s| <= gamma_n * sum|terms|, gamma_n = n u / (1 - n u) <= 0.505 n eps for
  n u < 0.01 [Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1
  and (3.5)]. Ours commits that, and so does the float64 reference (negligible against
  float32, equal for float64): 2 * 0.505 = 1.01 per addend. The addends: K products plus
  the bias for y (n = K + 1); B products for dw and db; N for dx; one more when
  accumulating into a buffer (its old value).
LIPSCHITZ: an error dz in the pre-activation moves the output by at most L |dz|: 1 for
  identity, relu, tanh, softplus (its slope is sigmoid <= 1); max(1, slope) for
  leaky_relu; 1/4 for sigmoid; sup |act'| for gelu (1.1290, at z = sqrt 2), gelu_tanh
  (1.1290) and silu (1.0999, at z = 2.3994), rounded up (pybackprop.spectral derives them).
ELEM_C: relative error of one elementwise activation or derivative, in eps, ours plus the
  reference's: each is at most 2 elementary functions (exp, log1p, expm1, tanh: within
  2 ulp in glibc's published error tables) and 3 roundings: <= 4 eps, twice -> 8. For the
  derivative the error is relative to a magnitude S(y) of the terms that form act'(y)
  (dz_scale): tanh's 1 - y*y loses u*y*y to the rounding of y*y. gelu, gelu_tanh and silu
  (derivative from the pre-activation z): S(z) is the sum of the magnitudes of the two
  terms of act'(z) (|Phi(z)| + |z phi(z)|, s + |z| s (1 - s) w'(z)). Their budget is
  PREACT_ELEM_C: the vector forms stay within the ulp table of docs/guide.md (at most 7
  ulp of y, 6 of S(z); tests/test_activation_ulp.py), the reference within 3 (math.erfc's
  own error in float64 and the rounding).
TINY_C: results at the underflow threshold may be off by a few units of the smallest
  normal number, or flushed to 0: an absolute floor of TINY_C * finfo.tiny.
Bounds, with G = |dy| S(y) >= |dz|:
  y        L GEMM_C (K+1) eps (|x| @ |w|.T + |b|)  +  ELEM_C eps |y|  +  tiny
  dz       ELEM_C eps G                                                 +  tiny
  dx       (GEMM_C N + ELEM_C) eps (G @ |w|)                            +  tiny
  dw, db   (GEMM_C B + ELEM_C) eps (G.T @ |x|),  ... eps G.sum(0)       +  tiny
  (PREACT_ELEM_C in place of ELEM_C for gelu, gelu_tanh, silu; S(z) in place of S(y)).
Losses. Ours (in dtype T, eps = np.finfo(T).eps = 2u) is compared with the reference evaluated in
float64 on the same inputs cast up; for T = float64 the reference commits errors of the
same size as ours, which the constants count twice. Terms (in units of eps):
  ELEM: one subtraction/product/quotient rounds by u = eps/2; exp, log and log1p are
    within 2 ulp (glibc) or, for the SIMD paths, ~2-3 ulp (Taylor/atanh series with
    truncation < u/8, evaluated by Horner with FMA; see csrc/ops/losses_simd.inc).
  SUM_C: a sum of n non-negative terms in any order is within gamma_n <= 1.01 n eps of
    the exact sum, relatively [Higham, ASNA 2nd ed., (3.5)].
mse: dpred = fl(fl(p - t) * fl(2/D)): 3 roundings each, ours and the reference: 3 eps.
  loss: terms (p - t)^2 >= 0, each within 2 roundings, summed in double (negligible for
  float32; 1.01 n eps for float64), divided and rounded to T: 4 eps + 1.01 n eps64.
softmax CE: dlogits = (p - t) / D with p = e / s: exp (4 eps, ours and the reference),
  s a sum of C terms in [0, 1] (1.01 C eps relative, shared by every p), the quotient, the
  subtraction and the scaling (3 u); the rounding of x - m moves e^(x - m) by
  u |x - m| e^(x - m) <= u / e absolutely. All relative to p + |t| <= 2 (t a probability
  row): |error| <= (XENT_GRAD_C + 1.01 C) eps (1 + |t|) / D.
  loss_r = (m - x_label) + log s, or sum_c t_c (m - x_c) + (sum t) log s: the roundings
  of m - x_c (u |m - x_c|), of log s and of s itself (1.01 C eps absolute in log s), and
  the additions: |error| <= (XENT_LOSS_C + 1.01 C) eps (loss_r + 1) per row, the rows
  summed in double, divided by D and rounded once more.
BCE: dlogits = (sigmoid(z) - t) / D: exp, 1 + e, the quotient, the subtraction and the
  scaling, relative to sigmoid + |t| <= 1 + |t|: BCE_GRAD_C eps (1 + |t|) / D.
  loss_i = max(z, 0) - z t + log1p(e^-|z|): z t and the subtraction round by at most
  u (|z t| + |z (1 - t)|) <= eps |z| for t in [0, 1]; log1p within 3 eps of a value
  <= log 2; the addition: |error| <= BCE_LOSS_C eps (|z| + 1) per element.
Observed errors on random data reach 0.1-0.25 of these bounds.
"""
import math

import numpy as np

from .reference import PREACT_ACTIVATIONS

GEMM_C = 1.01
ELEM_C = 8.0
PREACT_ELEM_C = 10.0
TINY_C = 8.0
LIPSCHITZ = {"identity": 1.0, "relu": 1.0, "leaky_relu": None, "sigmoid": 0.25,
             "tanh": 1.0, "softplus": 1.0, "gelu": 1.129, "gelu_tanh": 1.129,
             "silu": 1.1}
MSE_GRAD_C = 3.0
MSE_LOSS_C = 4.0
XENT_GRAD_C = 8.0
XENT_LOSS_C = 8.0
BCE_GRAD_C = 8.0
BCE_LOSS_C = 8.0
EPS64 = float(np.finfo(np.float64).eps)
SLOPE = 0.01  # the default negative_slope


def eps_of(dtype):
    return float(np.finfo(dtype).eps)


def tiny_of(dtype):
    return TINY_C * float(np.finfo(dtype).tiny)


def lipschitz(kind, slope):
    return max(1.0, slope) if kind == "leaky_relu" else LIPSCHITZ[kind]


def elem_c(kind):
    """The elementwise budget (in eps) of an activation: ELEM_C, or PREACT_ELEM_C."""
    return PREACT_ELEM_C if kind in PREACT_ACTIVATIONS else ELEM_C


def up(a):
    """Exact float64 copy of an array (None stays None)."""
    return None if a is None else np.asarray(a, dtype=np.float64)


def forward_bound(x, w, b, kind, dtype, y_ref, slope=SLOPE):
    """Elementwise bound on |ours - reference| for dense_forward (x (B, K) or (K,))."""
    eps = eps_of(dtype)
    x2 = up(x) if np.ndim(x) == 2 else up(x).reshape(1, -1)
    mag = np.abs(x2) @ np.abs(up(w)).T  # sum of |addends| of z
    if b is not None:
        mag = mag + np.abs(up(b))
    mag = mag.reshape(np.shape(y_ref))
    n = np.shape(w)[1] + 1
    return (lipschitz(kind, slope) * GEMM_C * n * eps * mag
            + elem_c(kind) * eps * np.abs(y_ref) + tiny_of(dtype))


_erfc = np.frompyfunc(math.erfc, 1, 1)
_C1 = 2.0 * math.sqrt(2.0 / math.pi)  # gelu_tanh's w = C1 (z + 0.044715 z^3)


def _sigmoid(t):
    """sigmoid(t) without cancellation in either tail."""
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-np.abs(t))
        return np.where(t >= 0, 1 / (1 + e), e / (1 + e))


def _preact_scale(z, kind):
    """S(z) for the kinds differentiated from z: |term 1| + |term 2| of act'(z)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if kind == "gelu":
            cdf = 0.5 * np.asarray(_erfc(-z / math.sqrt(2.0)), dtype=np.float64)
            return cdf + np.abs(z) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        if kind == "gelu_tanh":
            w = _C1 * (z + 0.044715 * z ** 3)
            s = _sigmoid(w)
            return s + np.abs(z) * s * (1 - s) * _C1 * (1 + 3 * 0.044715 * z * z)
        s = _sigmoid(z)  # silu
        return s + np.abs(z) * s * (1 - s)


def dz_scale(dy, y, kind, slope=SLOPE):
    """G = |dy| S(y) >= |dz|: the magnitude that bounds dz and the rounding of act'(y) (for
    gelu, gelu_tanh and silu ``y`` holds the pre-activation z)."""
    dy, y = np.abs(up(dy)), up(y)
    if kind in PREACT_ACTIVATIONS:
        return dy * _preact_scale(y, kind)
    s = {
        "identity": lambda: np.ones_like(y),
        "relu": lambda: (y > 0).astype(np.float64),
        "leaky_relu": lambda: np.where(y > 0, 1.0, slope),
        "sigmoid": lambda: np.abs(y * (1 - y)),
        "tanh": lambda: np.abs(1 - y * y) + y * y,
        "softplus": lambda: np.abs(np.expm1(-y)),
    }[kind]()
    return dy * s


def backward_bounds(dy, x, w, y, kind, dtype, slope=SLOPE, old=None):
    """Elementwise bounds on |ours - reference| for (dx, dw, db) of dense_backward.

    ``old``: the buffers' previous contents (dx0, dw0, db0) when accumulating, else None."""
    eps = eps_of(dtype)
    one_row = np.ndim(x) == 1
    x2 = np.abs(up(x)).reshape(1, -1) if one_row else np.abs(up(x))
    g = dz_scale(dy, y, kind, slope)
    g = g.reshape(1, -1) if one_row else g                    # (B, N)
    B, N = g.shape
    mags = [g @ np.abs(up(w)), g.T @ x2, g.sum(axis=0)]         # dx, dw, db
    lengths = [N, B, B]
    bounds = []
    for i, (mag, n) in enumerate(zip(mags, lengths)):
        if old is not None:
            mag = mag + np.abs(up(old[i])).reshape(mag.shape)
            n += 1
        bounds.append((GEMM_C * n + elem_c(kind)) * eps * mag + tiny_of(dtype))
    if one_row:
        bounds[0] = bounds[0][0]
    return tuple(bounds)


def activation_bounds(dy, y_ref, kind, dtype, slope=SLOPE, z=None):
    """Bounds for activation (y within ELEM_C eps |y|) and activation_backward (dz within
    ELEM_C eps G, G from the output y, or for gelu, gelu_tanh and silu from ``z``)."""
    eps = eps_of(dtype)
    saved = z if kind in PREACT_ACTIVATIONS else y_ref
    return (elem_c(kind) * eps * np.abs(up(y_ref)) + tiny_of(dtype),
            elem_c(kind) * eps * dz_scale(dy, saved, kind, slope) + tiny_of(dtype))


def mse_bounds(pred, loss_ref, d_ref):
    """(loss bound, dpred bound) of mse_loss."""
    eps = eps_of(pred.dtype)
    return ((MSE_LOSS_C * eps + 1.01 * pred.size * EPS64) * abs(loss_ref),
            MSE_GRAD_C * eps * np.abs(d_ref))


def xent_bounds(logits, labels, D, loss_ref, row_losses):
    """(loss bound, dlogits bound) of softmax_cross_entropy on (B, C) or (C,) logits, labels
    class indices or target rows; D the divisor (B for the mean); row_losses the
    reference's per-row losses."""
    eps = eps_of(logits.dtype)
    C = logits.shape[-1]
    t_mag = np.abs(up(labels)) if np.ndim(labels) == logits.ndim else 1.0
    return ((XENT_LOSS_C + 1.01 * C) * eps * (np.abs(row_losses) + 1).sum() / D
            + eps * abs(loss_ref),
            (XENT_GRAD_C + 1.01 * C) * eps * (1 + t_mag) / D)


def bce_bounds(z, t, D, loss_ref):
    """(loss bound, dlogits bound) of binary_cross_entropy_with_logits; D the divisor."""
    eps = eps_of(z.dtype)
    return (BCE_LOSS_C * eps * (np.abs(up(z)) + 1).sum() / D + eps * abs(loss_ref),
            BCE_GRAD_C * eps * (1 + np.abs(up(t))) / D)
