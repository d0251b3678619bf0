"""The verdict at the top of every leaderboard: what the numbers allow a reader to conclude.

Generated from the scores, never written by hand. In order:

1. the best measure by Psi (reference rows excluded), with its interval, and the measures not
   distinguishable from it at the leaderboard's level (paired bootstrap, :mod:`icc_bench.uncertainty`);
   when no measure is distinguishable from the best, the population is too small or too noisy to
   rank these measures, and the verdict says exactly that;
2. the family comparison: the best measure of each of the two leading families (the paper's
   question, intraclass clustering against sharpness, when both are present), with the fraction of
   draws in which the first is ahead and whether that is distinguishable;
   when every axis has one group (a one-at-a-time design), a caution that the intervals leave out
   training-seed noise;
3. the reference rows: the ceiling (oracles) and the floor (random) that the target's noise allows,
   and, when the population misses the paper's regime (:mod:`icc_bench.regime`), that warning,
   and a note when random's interval excludes 0 (by chance on about 1 - level of populations; if
   it persists, the intervals are too narrow to trust).

With the bootstrap off, the verdict says that no uncertainty is stated.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from icc_bench.uncertainty import distinguishable

if TYPE_CHECKING:
    from icc_bench.leaderboard.model import Leaderboard, MeasureRow

#: The paper's comparison, when both families are on the leaderboard.
PAPER_FAMILIES = ("intraclass clustering", "sharpness")


def _score(row: MeasureRow) -> str:
    text = f"{row.label} (Ψ = {row.total:.2f}"
    lo, hi = row.intervals.get("total", (math.nan, math.nan))
    if math.isfinite(lo) and math.isfinite(hi):
        text += f" [{lo:.2f}, {hi:.2f}]"
    return text + ")"


def _names(rows: list[MeasureRow]) -> str:
    return ", ".join(r.label for r in rows)


def _one_group_per_axis(rows: list[MeasureRow]) -> bool:
    """Whether no scored axis has more than one group (a one-at-a-time design). The bootstrap
    resamples configurations, and with one group per axis it can only keep or drop that group's
    pair: the variation between groups that stands in for training-seed noise on a full grid is
    missing. Measured on quick: two training seeds disagreed on the best measure while each
    called the other's best distinguishably below its own."""
    counts = [n for r in rows for n in (r.groups or {}).values() if n]
    return bool(counts) and max(counts) <= 1


def verdict_lines(lb: Leaderboard) -> list[str]:
    """One to four sentences; see the module docstring."""
    level = lb.bootstrap.get("level", 0.9)
    pct = f"{100 * level:g}%"
    scored = [r for r in lb.rows if not r.reference and r.not_applicable is None and math.isfinite(r.total)]
    if not scored:
        return ["No measure has a score on this population yet."]
    ranked = sorted(scored, key=lambda r: r.total, reverse=True)
    top = ranked[0]
    lines = []
    if not lb.bootstrap.get("draws"):
        lines.append(f"Best by point value: {_score(top)}. Intervals are off (--bootstrap 0): no uncertainty is stated, "
                     "so this ordering may not survive another training seed or machine.")
        return lines
    tied = [r for r in ranked[1:] if r.measure in lb.best.get("total", [])]
    others = [r for r in ranked[1:] if r.measure not in lb.best.get("total", [])]
    if len(ranked) > 1 and not others:
        lines.append(
            f"Not distinguishable: on this population ({lb.n_models} models) no measure's Ψ is distinguishable "
            f"from the best one's at {pct} ({_score(top)} is highest); it is too small or too noisy to rank these measures."
        )
    else:
        line = f"Best: {_score(top)}."
        if tied:
            line += f" Not distinguishable from it at {pct}: {_names(tied)}."
        if others:
            line += f" Distinguishably below it: {_names(others)}."
        lines.append(line)

    if _one_group_per_axis(scored):
        lines.append(
            "Caution: every axis has one group of models here, so these intervals hold the test images' sampling "
            "noise but not the training seed's, and what they separate may not survive another training seed; "
            "check it with a second seed (another `seeds` in the spec) or a population with more groups per axis."
        )

    families: dict[str, MeasureRow] = {}
    for r in ranked:
        families.setdefault(r.family, r)
    if len(families) >= 2:
        if all(f in families for f in PAPER_FAMILIES):
            first, second = (families[f] for f in PAPER_FAMILIES)
        else:
            first, second = list(families.values())[:2]
        fraction = lb.paired.get(first.measure, {}).get(second.measure, math.nan)
        if math.isfinite(fraction):
            ahead, behind, share = (first, second, fraction) if fraction >= 0.5 else (second, first, 1 - fraction)
            outcome = (f"{ahead.family} is ahead, distinguishably at {pct}" if distinguishable(fraction, level)
                       else f"not distinguishable at {pct}")
            lines.append(
                f"Families: best {first.family} {_score(first)} against best {second.family} {_score(second)}; "
                f"{ahead.label} is ahead of {behind.label} in {100 * share:.0f}% of the bootstrap draws: {outcome}."
            )

    references = {r.measure: r for r in lb.rows if r.reference and math.isfinite(r.total)}
    if references:
        ceiling = [references[m] for m in ("oracle_heldout", "oracle_noise_0.01", "oracle_noise_0.05") if m in references]
        parts = []
        if ceiling:
            parts.append("ceiling " + "; ".join(_score(r) for r in ceiling))
        if "random" in references:
            parts.append("floor " + _score(references["random"]))
        line = "Reference rows: " + ", ".join(parts) + "."
        lo, hi = references["random"].intervals.get("total", (math.nan, math.nan)) if "random" in references else (math.nan, math.nan)
        if math.isfinite(lo) and not lo <= 0.0 <= hi:
            line += (f" Note: random's {pct} interval excludes 0; by chance that happens on about {100 * (1 - level):.0f}% of "
                     "populations, and if it persists across seeds the intervals understate the noise.")
        lines.append(line)
    lines += [note[len("warning: "):][:1].upper() + note[len("warning: ") + 1:] + "." for note in lb.notes if note.startswith("warning: ")]
    if lb.bootstrap.get("resampled", "").startswith("groups only"):
        lines.append(f"Intervals resample groups only: {lb.bootstrap['resampled'][len('groups only ('):-1]}; "
                     "the test set's sampling noise is not in them.")
    return lines
