"""The search for the perturbation scale at which the training accuracy drops by a target (SPEC §3).

Both sharpness searches (sigma' for random perturbations, alpha' for worst-case ones) look for the
scale at which the accuracy drop crosses ``target_deviation``. The drop grows with the scale; the
searches evaluate it with the same random numbers at every scale (common random numbers), so that
it is a deterministic function of the scale and the search sees a consistent curve.

Three rules, the ``search`` setting:

``"interpolate"`` (the default of the random measures): the scale where the drop crosses the
    target, continuous.
    Evaluate the drop at ``search_low``; then bisect ``[search_low, search_high]``, keeping a
    bracket ``[lo, hi]`` with ``drop(lo) < T <= drop(hi)`` (T: the target, or the level T_q below
    for a counted drop), until the bracket is *tight*, i.e. both of its ends are within
    ``tolerance`` of the target (``drop(lo) >= target - tolerance`` and
    ``drop(hi) <= target + tolerance``), or ``max_steps`` midpoints were evaluated. Report the
    crossing of the chord between the bracket's two evaluated points::

        scale = lo + (T - drop(lo)) / (drop(hi) - drop(lo)) * (hi - lo)

    Inside the tolerance band the curve is read as linear, so the answer moves continuously with
    the curve, and two networks get the same value only if their drops agree at both ends of the
    same bracket. The denominator is positive: the bracket's invariant gives
    ``drop(lo) < T <= drop(hi)``, so equal drops at both ends cannot reach the interpolation;
    they occur only in the degenerate cases below, which answer without interpolating.

    Counted drops (``drop_step``). A measured drop is a count: with n samples and K Monte Carlo
    draws it moves in steps of q = 1 / (n K) (q = 1 / n for the worst case, a minimum over
    restarts). Read as a continuous curve rounded to those steps, it reaches the target where
    the curve passes the middle of the last step below it, the level

        T_q = q (ceil(target / q) - 1/2)        (target - q/2 when the target is a multiple of q)

    so with ``drop_step = q`` the bracket and the chord use T = T_q. No count equals T_q, so
    the answer is always strictly inside the bracket; with T = target, a drop landing exactly on
    the target (frequent: 0.1 is 30 of 300 samples) makes the answer that dyadic midpoint itself,
    and two networks that land there tie. (It also makes "reached the target" immune to the
    rounding of 1.0 - 0.9 below 0.1.) The tolerance band stays centred on the target.

``"resolve"`` (the default of the worst-case measures): interpolate, but bisect all ``max_steps``
    midpoints instead of stopping when the bracket is tight. A counted drop is a step function of
    the scale; the bracket then closes in on the step that crosses T_q, to ``2 res`` (below), and
    the chord's crossing lies within it.
    Two networks tie only if their drops cross the level within ``2 res`` of each other (about
    2e-6 with the defaults), where "interpolate" lets them tie whenever their tight brackets and
    the counts at its ends agree, which with 300 samples happens (quick: 2 of 10 models under
    1/alpha', the same bracket with 28 and 30 of 300 samples). Cost: ``max_steps + 1`` or
    ``+ 2`` evaluations every time, where "interpolate" stops after about 12 with the defaults.
    ``converged`` says whether the final bracket is tight: a drop that leaps across the whole
    band within ``2 res`` (several samples flipping at one scale) is the *jump* case below.

``"first_within_tolerance"`` (the rule of icc_sharpness 0.1, kept to reproduce its values):
    Evaluate ``search_low``, then midpoints; stop at the first midpoint whose drop is within
    ``tolerance`` of the target and answer that midpoint. Answers lie on the dyadic grid
    ``search_low + k (search_high - search_low) / 2**j``, so networks tie often.

Degenerate cases (``converged=False``), answered explicitly by both rules, with the resolution
``res = (search_high - search_low) / 2**(max_steps + 1)``:

- *Already beyond the target at the low end*: the drop at ``search_low`` (for ``search_low = 0``:
  the ``eps`` floor of the perturbation alone) is at least T (interpolate) or more than
  ``target + tolerance`` (first_within_tolerance). The crossing lies at or below ``search_low``
  and the search answers ``search_low + res`` after that one evaluation: what bisection would
  reach after ``max_steps`` steps, never 0, so 1 / scale**2 stays finite. The interpolate rule
  also never answers below ``search_low + res``: every network too sharp for the search to
  resolve gets that floor.
- *Never reaching the target*: every midpoint's drop stays below T. Interpolate evaluates
  the drop at ``search_high`` (only then): if that reaches T, the crossing is
  interpolated in the last bracket as usual; otherwise the answer is ``search_high``, the
  flattest value the search can give. First_within_tolerance answers ``search_high - res``
  without evaluating ``search_high``.
- *A jump*: the drop leaps over the tolerance band between two scales closer than ``res``, so the
  bracket never gets tight. Interpolate answers the chord's crossing in the final bracket of
  width ``2 res``; first_within_tolerance answers that bracket's midpoint.

Deciding early. Each evaluation is told the level above which the search only needs to know that
the drop exceeds it (``above``): a midpoint whose drop is beyond ``target + tolerance`` becomes
the bracket's top however far beyond it is. An evaluator may then stop as soon as it is sure and
return a :class:`LowerBound` (the drop is at least that, and more than ``above``). The search asks
again with ``above = inf`` for the exact drop where the interpolation needs it (a final bracket
top that is only bounded); an evaluator that keeps its partial work resumes instead of repeating
it. A plain function that always returns the exact drop is a valid evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

#: The three search rules; see the module docstring.
SearchRule = Literal["interpolate", "resolve", "first_within_tolerance"]

#: ``drop_at(scale, above) -> drop``: the unperturbed minus the perturbed training accuracy at
#: ``scale``, exact, or a :class:`LowerBound` of it above ``above`` when the evaluator stopped early.
DropEvaluator = Callable[[float, float], float]


class LowerBound(float):
    """A drop that an evaluator stopped computing once it exceeded the level asked about.

    The true drop is at least this value, which is above the ``above`` level of the request.
    """

    def __repr__(self) -> str:
        return f"LowerBound({float(self)!r})"


@dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`bisect_deviation`.

    Attributes
    ----------
    value : float
        The scale found, in ``[low + res, high]`` (interpolate) or ``(low, high)``
        (first_within_tolerance), with ``res = (high - low) / 2**(max_steps + 1)``.
    converged : bool
        Interpolate: True when the final bracket was tight (both ends within ``tolerance`` of the
        target). First_within_tolerance: True when ``value`` was evaluated and its drop is within
        ``tolerance`` of the target. False for the degenerate cases (module docstring).
    evaluations : int
        How many times the drop was requested (``len(trace)``); a request that resumes an
        earlier, early-stopped one at the same scale counts again.
    trace : tuple of (float, float)
        Every (scale, drop) pair requested, in order; the first is at ``low``. A drop that is a
        :class:`LowerBound` was stopped early (it exceeded what the search asked about).
    bracket : tuple of (float, float) or None
        Interpolate: the final ``(lo, drop(lo)), (hi, drop(hi))`` the value was interpolated in,
        both drops exact; None when the answer needed no interpolation (a degenerate case) and
        for first_within_tolerance.
    """

    value: float
    converged: bool
    evaluations: int
    trace: tuple[tuple[float, float], ...]
    bracket: tuple[tuple[float, float], tuple[float, float]] | None = None


def _first_within_tolerance(
    drop_at: DropEvaluator, target: float, tolerance: float, low: float, high: float, max_steps: int
) -> SearchResult:
    resolution = (high - low) / 2 ** (max_steps + 1)
    trace = [(low, drop_at(low, target + tolerance))]
    if beyond_target_at_low(trace[0][1], target=target, tolerance=tolerance, rule="first_within_tolerance"):
        return SearchResult(value=low + resolution, converged=False, evaluations=1, trace=tuple(trace))
    for _ in range(max_steps):
        mid = 0.5 * (low + high)
        drop = drop_at(mid, target + tolerance)
        trace.append((mid, drop))
        if abs(drop - target) <= tolerance:
            return SearchResult(value=mid, converged=True, evaluations=len(trace), trace=tuple(trace))
        if drop < target:
            low = mid
        else:
            high = mid
    # Degenerate: never within tolerance (never reaching the target, or a jump over the band).
    return SearchResult(value=0.5 * (low + high), converged=False, evaluations=len(trace), trace=tuple(trace))


def crossing_level(target: float, drop_step: float) -> float:
    """The level a drop counted in steps of ``drop_step`` crosses on reaching ``target``: T_q in the
    module docstring; ``target`` itself for a continuous drop (``drop_step = 0``)."""
    if drop_step <= 0:
        return target
    steps = math.ceil(target / drop_step - 1e-9)  # a target within 1e-9 steps of a count is that count
    return drop_step * (steps - 0.5)


def beyond_target_at_low(drop: float, *, target: float, tolerance: float, rule: SearchRule, drop_step: float = 0.0) -> bool:
    """Whether the search, finding ``drop`` at the low end of its interval, answers its floor there
    (the first degenerate case in the module docstring): interpolate when the drop reaches the
    crossing level, first_within_tolerance when it is beyond the band."""
    if rule in ("interpolate", "resolve"):
        return drop >= crossing_level(target, drop_step)
    return drop > target + tolerance


def _interpolate(
    drop_at: DropEvaluator, target: float, tolerance: float, low: float, high: float, max_steps: int, drop_step: float,
    *, stop_when_tight: bool = True,
) -> SearchResult:
    floor = low + (high - low) / 2 ** (max_steps + 1)
    level = crossing_level(target, drop_step)
    trace: list[tuple[float, float]] = []

    def evaluate(scale: float, above: float) -> float:
        drop = drop_at(scale, above)
        trace.append((scale, drop))
        return drop

    lo_drop = evaluate(low, level)  # only "is it at least the level?" matters beyond the level
    if beyond_target_at_low(lo_drop, target=target, tolerance=tolerance, rule="interpolate", drop_step=drop_step):
        return SearchResult(value=floor, converged=False, evaluations=len(trace), trace=tuple(trace))
    lo, hi, hi_drop = low, high, None  # drop(high) is evaluated only if the bracket never leaves it
    for _ in range(max_steps):
        if stop_when_tight and hi_drop is not None and lo_drop >= target - tolerance and hi_drop <= target + tolerance:
            break  # tight: both ends within tolerance of the target
        mid = 0.5 * (lo + hi)
        drop = evaluate(mid, target + tolerance)
        if drop >= level:
            hi, hi_drop = mid, drop
        else:
            lo, lo_drop = mid, drop
    tight = hi_drop is not None and lo_drop >= target - tolerance and hi_drop <= target + tolerance
    if hi_drop is None:
        hi_drop = evaluate(high, math.inf)
        if hi_drop < level:  # degenerate: never reaching the target on the interval
            return SearchResult(value=high, converged=False, evaluations=len(trace), trace=tuple(trace))
    elif isinstance(hi_drop, LowerBound):
        hi_drop = evaluate(hi, math.inf)  # the interpolation needs the exact drop
    # lo_drop < level <= hi_drop (the bracket's invariant), so the denominator is positive.
    value = lo + (level - lo_drop) / (hi_drop - lo_drop) * (hi - lo)
    return SearchResult(
        value=max(value, floor),
        converged=tight,
        evaluations=len(trace),
        trace=tuple(trace),
        bracket=((lo, float(lo_drop)), (hi, float(hi_drop))),
    )


def bisect_deviation(
    drop_at: DropEvaluator,
    *,
    target: float,
    tolerance: float,
    low: float,
    high: float,
    max_steps: int,
    rule: SearchRule = "interpolate",
    drop_step: float = 0.0,
) -> SearchResult:
    """Search ``[low, high]`` for the scale at which ``drop_at`` crosses ``target``.

    Parameters
    ----------
    drop_at : callable
        ``drop_at(scale, above) -> float``: unperturbed minus perturbed training accuracy at this
        scale, assumed non-decreasing in the scale. It may stop early and return a
        :class:`LowerBound` once the drop is certainly above ``above`` (module docstring).
    target, tolerance : float
        The drop sought and the band around it (what "tight" and "within tolerance" mean).
    low, high : float
        The interval, ``0 <= low < high``.
    max_steps : int
        Bisection midpoints at most. Interpolate evaluates at most ``max_steps + 2`` times in all
        (the low end, the midpoints, then at most one of: the high end, or a repeat of a bounded
        bracket top); first_within_tolerance at most ``max_steps + 1``.
    rule : {"interpolate", "resolve", "first_within_tolerance"}
        Which answer to report (module docstring).
    drop_step : float
        The step of a counted drop, 1 / (samples x draws); 0 for a continuous one. Interpolate
        brackets and interpolates the middle of the step to the target (module docstring);
        first_within_tolerance ignores it.

    Returns
    -------
    SearchResult
        The scale, with the trace and, for degenerate cases, ``converged=False``.

    References
    ----------
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to
    find them", ICLR 2020, Appendix C (sharpness-based measures).
    """
    if not 0 <= low < high:
        raise ValueError(f"bisection interval [{low}, {high}] must satisfy 0 <= low < high")
    if drop_step < 0 or drop_step >= target:
        raise ValueError(f"drop_step ({drop_step}) must be in [0, target) = [0, {target})")
    if rule in ("interpolate", "resolve"):
        return _interpolate(drop_at, target, tolerance, low, high, max_steps, drop_step, stop_when_tight=rule == "interpolate")
    if rule == "first_within_tolerance":
        return _first_within_tolerance(drop_at, target, tolerance, low, high, max_steps)
    raise ValueError(f"unknown search rule {rule!r}; use 'interpolate', 'resolve' or 'first_within_tolerance'")


def search_scale(drop_at: DropEvaluator, settings, *, drop_step: float = 0.0) -> SearchResult:
    """:func:`bisect_deviation` with the rule, target, tolerance, range and steps of a
    ``SharpnessSearchSettings``: the one search every sharpness measure (and its benchmark
    reference) runs; ``drop_step`` is the step of the counted drop."""
    return bisect_deviation(
        drop_at,
        target=settings.target_deviation,
        tolerance=settings.tolerance,
        low=settings.search_low,
        high=settings.search_high,
        max_steps=settings.max_steps,
        rule=settings.search,
        drop_step=drop_step,
    )
