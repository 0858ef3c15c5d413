"""Backtracking line search with the Armijo condition (public as
``pybackprop.optim.backtracking_line_search``).

Boyd & Vandenberghe, Convex Optimization (2004), Algorithm 9.2: start from ``t = t0`` and
shrink ``t <- beta t`` until ``f(x + t d) <= f(x) + alpha t grad_f(x)^T d``. For a descent
direction (``grad^T d < 0``) and a differentiable ``f`` the condition holds for every small
enough ``t``, so the loop ends; it is capped at ``max_iter`` shrinks all the same.
Plain numpy on whatever arrays the caller uses; no C kernel (each step is one call of
``f``, which is where the time goes).
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["backtracking_line_search"]


def _real(name, value, lo, hi, lo_open=True, hi_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    ok = ((v > lo) if lo_open else (v >= lo)) and ((v < hi) if hi_open else (v <= hi))
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}"
                         f"{')' if hi_open else ']'}, got {value!r}")
    return v


def backtracking_line_search(f: Callable[[np.ndarray], float],
                             grad_f: Callable[[np.ndarray], ArrayLike], x: ArrayLike,
                             direction: ArrayLike, *, t0: float = 1.0, alpha: float = 0.3,
                             beta: float = 0.5, max_iter: int = 50) -> float:
    """Step length ``t`` along ``direction`` satisfying the Armijo (sufficient decrease)
    condition ``f(x + t d) <= f(x) + alpha t grad_f(x)^T d``.

    Parameters
    ----------
    f : callable ``f(x) -> float``, the objective
    grad_f : callable ``grad_f(x) -> array`` of x's shape, its gradient
    x : array_like, the current point (not modified)
    direction : array_like of x's shape, ``d``; must be a descent direction
        (``grad_f(x)^T d < 0``), e.g. ``-grad_f(x)``
    t0 : float > 0, the first step tried
    alpha : float in (0, 1), the fraction of the linear decrease demanded (Boyd & Vandenberghe
        use (0, 0.5))
    beta : float in (0, 1), the shrink factor
    max_iter : int >= 1, the most steps tried (``t0, beta t0, ..., beta^(max_iter-1) t0``)

    Returns
    -------
    t : float, the first step of that sequence that satisfies the condition

    Raises
    ------
    ValueError if ``direction`` is not a descent direction (``grad^T d >= 0``, or not
    finite), if ``f(x)`` is not finite, or on bad shapes or options; RuntimeError if no step
    of the sequence satisfies the condition (``f`` non-smooth or too noisy at this scale).
    """
    t0 = _real("t0", t0, 0.0, np.inf)
    alpha = _real("alpha", alpha, 0.0, 1.0)
    beta = _real("beta", beta, 0.0, 1.0)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    x = np.asarray(x)
    d = np.asarray(direction)
    if d.shape != x.shape:
        raise ValueError(f"direction has shape {d.shape} but x has shape {x.shape}")
    g = np.asarray(grad_f(x))
    if g.shape != x.shape:
        raise ValueError(f"grad_f(x) has shape {g.shape} but x has shape {x.shape}")
    slope = float(np.vdot(g.astype(np.float64), d.astype(np.float64)))  # grad^T d
    if not slope < 0:
        raise ValueError(f"direction is not a descent direction: grad_f(x)^T direction = "
                         f"{slope!r}, must be < 0 (try direction = -grad_f(x))")
    fx = float(f(x))
    if not np.isfinite(fx):
        raise ValueError(f"f(x) = {fx!r} is not finite at the starting point")
    t = t0
    for _ in range(int(max_iter)):
        # NaN or inf at a trial point fails the comparison: the step shrinks.
        if float(f(x + t * d)) <= fx + alpha * t * slope:
            return t
        t *= beta
    raise RuntimeError(f"no step in t0 * beta^k, k < {max_iter}, satisfied the Armijo "
                       f"condition (last tried t = {t / beta!r}); f may be non-smooth or "
                       "noisy at this scale")
