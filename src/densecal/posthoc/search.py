"""Bounded 1-D minimisation of a unimodal function with exact derivatives (safeguarded Newton).

Used by temperature scaling, where one evaluation is one pass over a validation loader, so the
search must need few evaluations, never leave its bounds and never diverge. The algorithm is the
classic bracketed Newton-Raphson ``rtsafe`` (Press et al., Numerical Recipes, 3rd ed., Sec. 9.4)
applied to the derivative ``f'``, with one addition for bounded problems: when the minimiser
may lie at a box bound, that bound is evaluated directly instead of being approached by halving.

Requirement on ``f``: unimodal on ``[lower, upper]``, i.e. ``f'`` changes sign at most once, from
negative to positive (true for the NLL of temperature-scaled logits in ``log T``, see
:mod:`densecal.posthoc.nll`). Then the interval ``[lo, hi]`` that holds the minimiser shrinks at
every evaluation: ``f'(x) > 0`` moves ``hi`` to ``x``, ``f'(x) < 0`` moves ``lo`` to ``x``.

Each step is, in order of preference:

1. Newton ``x - f'/f''`` when ``f'' > 0``, the point lies strictly inside ``(lo, hi)`` and the
   step is at most half the step before last (the rtsafe rule that keeps slow Newton phases from
   stalling);
2. otherwise the box bound on the downhill side, if it has not been evaluated yet;
3. otherwise bisection of ``[lo, hi]``.

The search stops (converged) when ``f'`` is exactly 0, when ``hi - lo <= tol``, or when a Newton or
bisection step is shorter than ``tol``; it also stops after ``max_evals`` evaluations (not
converged). The returned point is the evaluated point of lowest ``f`` (ties: the later one), so
the reported value never increases from the first evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SearchResult", "minimise_unimodal"]


@dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`minimise_unimodal`.

    Attributes:
        x: the best evaluated point, in ``[lower, upper]``.
        f: ``f(x)``.
        f_start: ``f`` at the starting point.
        evaluations: number of calls of ``evaluate``.
        converged: whether a stopping rule other than ``max_evals`` ended the search.
        at_bound: whether ``x`` is exactly ``lower`` or ``upper``.
        history: ``(x, f)`` of every evaluation, in order.
    """

    x: float
    f: float
    f_start: float
    evaluations: int
    converged: bool
    at_bound: bool
    history: tuple[tuple[float, float], ...]


def minimise_unimodal(evaluate: Callable[[float], tuple[float, float, float]], lower: float,
                      upper: float, x0: float, *, tol: float = 1e-4,
                      max_evals: int = 30) -> SearchResult:
    """Minimise a unimodal ``f`` on ``[lower, upper]`` from exact ``f, f', f''`` evaluations.

    Args:
        evaluate: ``x -> (f(x), f'(x), f''(x))``, finite floats.
        lower: lower bound (finite).
        upper: upper bound (finite, ``> lower``).
        x0: starting point, clipped into the bounds.
        tol: absolute tolerance on ``x`` (``> 0``).
        max_evals: maximum number of evaluations (``>= 1``).

    Returns:
        The :class:`SearchResult`.

    Raises:
        ValueError: bad bounds, ``tol`` or ``max_evals`` (callers validate user input first).
        FloatingPointError: ``evaluate`` returned a non-finite value.

    Example:
        >>> r = minimise_unimodal(lambda x: ((x - 1) ** 2, 2 * (x - 1), 2.0), -3.0, 3.0, 0.0)
        >>> r.x, r.evaluations, r.converged, r.at_bound
        (1.0, 2, True, False)
        >>> minimise_unimodal(lambda x: (x, 1.0, 0.0), -3.0, 3.0, 0.0).x  # minimum at the bound
        -3.0
    """
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(f"need finite lower < upper, got {lower}, {upper}")
    if not tol > 0 or max_evals < 1:
        raise ValueError(f"need tol > 0 and max_evals >= 1, got {tol}, {max_evals}")

    def call(x: float) -> tuple[float, float, float]:
        values = evaluate(x)
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"non-finite objective {values} at x = {x}")
        return values

    x = min(max(x0, lower), upper)
    lo, hi = lower, upper
    lo_seen = hi_seen = False  # whether lo / hi are evaluated points, not just box bounds
    f, g, h = call(x)
    history = [(x, f)]
    best_x, best_f, f_start = x, f, f
    step_before_last = step = upper - lower
    converged = False
    while True:
        if g > 0:
            hi, hi_seen = x, True
        elif g < 0:
            lo, lo_seen = x, True
        else:
            converged = True
            break
        if hi - lo <= tol:
            converged = True
            break
        newton = x - g / h if h > 0 else math.nan
        probe = False
        if lo < newton < hi and abs(2 * g) <= abs(step_before_last * h):
            new = newton
        elif g < 0 and not hi_seen:
            new, probe = hi, True
        elif g > 0 and not lo_seen:
            new, probe = lo, True
        else:
            new = 0.5 * (lo + hi)
        step_before_last, step = step, new - x
        if (not probe and abs(step) < tol) or new == x:
            converged = True
            break
        if len(history) >= max_evals:
            break
        x = new
        f, g, h = call(x)
        history.append((x, f))
        if f <= best_f:
            best_x, best_f = x, f
    return SearchResult(x=best_x, f=best_f, f_start=f_start, evaluations=len(history),
                        converged=converged, at_bound=best_x in (lower, upper),
                        history=tuple(history))
