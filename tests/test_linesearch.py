"""Tests of the backtracking (Armijo) line search, pybackprop/_linesearch.py (public as
pybackprop.optim.backtracking_line_search).

The exact steps follow from the algorithm (Boyd & Vandenberghe, Algorithm 9.2) on
quadratics where f(x + t d) is known in closed form, so they are asserted exactly.
"""
import numpy as np
import pytest

from pybackprop import _linesearch
from pybackprop.optim import backtracking_line_search as search


def f(x):
    return float(x @ x)


def grad_f(x):
    return 2 * x


def test_full_step_accepted():
    """f = |x|^2, d = -grad/2 = -x reaches the minimum: t = 1 satisfies Armijo."""
    x = np.array([3.0, -4.0])
    assert search(f, grad_f, x, -x) == 1.0


def test_backtracks_to_first_armijo_step():
    """d = -grad = -2x: f(x + t d) = (1 - 2t)^2 |x|^2; Armijo with alpha = 0.3 demands
    (1 - 2t)^2 <= 1 - 1.2 t, i.e. t <= 0.7: from t0 = 1, beta = 0.5 -> t = 0.5."""
    x = np.array([1.0, 2.0, -2.0])
    assert search(f, grad_f, x, -grad_f(x)) == 0.5
    # with beta = 0.9: 1, 0.9, 0.81, 0.729, 0.6561 -> the first <= 0.7
    assert search(f, grad_f, x, -grad_f(x), beta=0.9) == pytest.approx(0.9 ** 4, rel=0,
                                                                      abs=1e-15)
    # a larger t0 is cut back the same way: 4 -> 2 -> 1 -> 0.5
    assert search(f, grad_f, x, -grad_f(x), t0=4.0) == 0.5


def test_armijo_condition_holds_at_result(rng):
    """On a random convex quadratic the returned t satisfies the condition and 2t did not
    (when t < t0)."""
    m = rng.standard_normal((5, 5))
    a = m @ m.T + 0.1 * np.eye(5)
    q = lambda x: float(0.5 * x @ a @ x)  # noqa: E731
    g = lambda x: a @ x  # noqa: E731
    x = rng.standard_normal(5)
    d = -g(x) * 3.0
    t = search(q, g, x, d, alpha=0.25)
    slope = g(x) @ d
    assert q(x + t * d) <= q(x) + 0.25 * t * slope
    if t < 1.0:
        assert not q(x + 2 * t * d) <= q(x) + 0.25 * 2 * t * slope


def test_not_a_descent_direction():
    """grad^T d >= 0 raises ValueError saying so."""
    x = np.array([1.0, 1.0])
    with pytest.raises(ValueError, match="not a descent direction"):
        search(f, grad_f, x, x)
    with pytest.raises(ValueError, match="not a descent direction"):
        search(f, grad_f, x, np.array([1.0, -1.0]))  # orthogonal: slope 0


def test_nan_trial_points_shrink():
    """A trial point where f is NaN counts as failing; the search keeps shrinking."""
    def g(x):
        return float("nan") if x[0] < -0.5 else float(x @ x)
    x = np.array([1.0])
    assert search(g, grad_f, x, np.array([-4.0])) == 0.25


def test_no_step_found_raises():
    """A function that never decreases enough exhausts max_iter: RuntimeError."""
    with pytest.raises(RuntimeError, match="Armijo"):
        search(lambda x: 1.0 if x[0] != 1.0 else 0.0, lambda x: np.array([1.0]),
               np.array([1.0]), np.array([-1.0]), max_iter=5)


@pytest.mark.parametrize("kw", [dict(t0=0.0), dict(t0=-1.0), dict(alpha=0.0),
                                dict(alpha=1.0), dict(beta=1.0), dict(beta=0.0),
                                dict(max_iter=0), dict(max_iter=2.5)])
def test_bad_options(kw):
    """Options outside their ranges raise ValueError naming the option."""
    with pytest.raises(ValueError, match=next(iter(kw))):
        search(f, grad_f, np.ones(2), -np.ones(2), **kw)


def test_bad_shapes():
    """direction and grad_f(x) must have x's shape."""
    with pytest.raises(ValueError, match="direction has shape"):
        search(f, grad_f, np.ones(2), -np.ones(3))
    with pytest.raises(ValueError, match="grad_f"):
        search(f, lambda x: np.ones(3), np.ones(2), -np.ones(2))


def test_public_name():
    """pybackprop.optim.backtracking_line_search is the function of _linesearch.py."""
    assert search is _linesearch.backtracking_line_search
