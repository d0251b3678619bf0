"""Bisection for the perturbation scale at which the training accuracy drops by a target (SPEC §3).

Both sharpness searches (sigma' for random perturbations, alpha' for worst-case ones) look for the
scale at which the accuracy drop crosses ``target_deviation``. The drop grows with the scale; the
searches evaluate it with the same random numbers at every scale (common random numbers), so that
it is a deterministic function of the scale and the bisection sees a consistent curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`bisect_deviation`.

    Attributes
    ----------
    value : float
        The scale found: the first midpoint whose drop is within ``tolerance`` of the target, or,
        when no step got there, a point of the final bracket (see :func:`bisect_deviation`).
        Always > ``low`` >= 0.
    converged : bool
        True when ``value`` was evaluated and its drop is within ``tolerance`` of the target.
    evaluations : int
        How many times the drop was evaluated (each is one full accuracy estimate).
    trace : tuple of (float, float)
        Every (scale, drop) pair evaluated, in order; the first is at ``low``.
    """

    value: float
    converged: bool
    evaluations: int
    trace: tuple[tuple[float, float], ...]


def bisect_deviation(
    drop_at: Callable[[float], float],
    *,
    target: float,
    tolerance: float,
    low: float,
    high: float,
    max_steps: int,
) -> SearchResult:
    """Bisect ``[low, high]`` for the scale at which ``drop_at(scale)`` equals ``target``.

    The drop at ``low`` is evaluated first: when even it exceeds ``target + tolerance``, every
    scale in the interval does (the drop is non-decreasing), and the search answers at once what
    bisection would reach after ``max_steps`` steps, the resolution above ``low``. Otherwise each
    step evaluates the midpoint; a drop within ``tolerance`` of ``target`` ends the search there,
    a smaller drop moves ``low`` up to the midpoint, a larger one moves ``high`` down.

    Parameters
    ----------
    drop_at : callable
        ``drop_at(scale) -> float``: unperturbed minus perturbed training accuracy at this scale,
        assumed non-decreasing in the scale.
    target, tolerance : float
        The search stops at a midpoint with ``|drop - target| <= tolerance``.
    low, high : float
        The interval, ``0 <= low < high``.
    max_steps : int
        Bisection steps at most (so at most ``max_steps + 1`` evaluations, with the one at ``low``).

    Returns
    -------
    SearchResult
        Degenerate cases (``converged=False``) end at a point of the final bracket, never at 0:
        a network so sharp that the drop at ``low`` (for ``low = 0``: the ``eps`` floor of the
        perturbation alone) already exceeds the target gets the resolution
        ``low + (high - low) / 2**(max_steps + 1)`` after that single evaluation; one whose drop
        stays below the target over the whole interval gets
        ``high - (high - low) / 2**(max_steps + 1)``; a drop that jumps over the tolerance band
        ends next to the jump, at the final bracket's midpoint.

    References
    ----------
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to
    find them", ICLR 2020, Appendix C (sharpness-based measures).
    """
    if not 0 <= low < high:
        raise ValueError(f"bisection interval [{low}, {high}] must satisfy 0 <= low < high")
    resolution = (high - low) / 2 ** (max_steps + 1)
    trace = [(low, float(drop_at(low)))]
    if trace[0][1] > target + tolerance:
        return SearchResult(value=low + resolution, converged=False, evaluations=1, trace=tuple(trace))
    for _ in range(max_steps):
        mid = 0.5 * (low + high)
        drop = float(drop_at(mid))
        trace.append((mid, drop))
        if abs(drop - target) <= tolerance:
            return SearchResult(value=mid, converged=True, evaluations=len(trace), trace=tuple(trace))
        if drop < target:
            low = mid
        else:
            high = mid
    return SearchResult(value=0.5 * (low + high), converged=False, evaluations=len(trace), trace=tuple(trace))


def search_scale(drop_at: Callable[[float], float], settings) -> SearchResult:
    """:func:`bisect_deviation` with the target, tolerance, range and steps of a
    ``SharpnessSearchSettings``: the one search every sharpness measure (and its benchmark
    reference) runs."""
    return bisect_deviation(
        drop_at,
        target=settings.target_deviation,
        tolerance=settings.tolerance,
        low=settings.search_low,
        high=settings.search_high,
        max_steps=settings.max_steps,
    )
