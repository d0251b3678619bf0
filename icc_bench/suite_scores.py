"""Population leaderboards -> one suite leaderboard: each measure across the suite's populations.

:func:`score_suite` computes no measure and no bootstrap: it reads, from each population's
:class:`~icc_bench.leaderboard.Leaderboard` (:func:`icc_bench.scores.score_zoo`), every row's Psi,
its interval, whether it does not apply and whether it is marked best (``best["total"]``), and
adds, per measure:

- ``mean``: the mean of Psi over the populations where it is finite (a measure that does not apply
  to a population, or has no value there, is left out of the mean, and ``n_mean`` says over how
  many populations it is taken);
- ``worst``: the minimum of those Psi, and its population (the first in suite order on a tie);
- ``best_on``: the number of populations whose ``best["total"]`` holds the measure (reference rows:
  None, they are never best).

Rows come in the order of first appearance over the populations, measures before reference rows;
a row is identified by its registry name, so a measure with per-population settings (a population's
``[measure_settings]``) is one row, each cell keeping its settings hash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

from icc_bench.leaderboard.model import Leaderboard, MeasureRow
from icc_bench.suite_leaderboard import SuiteCell, SuiteLeaderboard, SuitePopulation, SuiteRow
from icc_bench.suites import SuiteSpec


def score_suite(suite: SuiteSpec, leaderboards: Sequence[Leaderboard], *, command: str = "") -> SuiteLeaderboard:
    """The suite leaderboard of ``leaderboards``, one per population of ``suite``, in its order."""
    from icc_bench.version import __version__

    names = [lb.population for lb in leaderboards]
    if names != list(suite.populations):
        raise ValueError(f"suite {suite.name!r} lists the populations {suite.populations}, but the leaderboards are of {names}.")
    for key in ("target", "kendall"):
        values = {getattr(lb, key) for lb in leaderboards}
        if len(values) > 1:
            raise ValueError(f"the leaderboards of suite {suite.name!r} were scored with different {key}s {sorted(values)}; score them alike.")

    first_rows: dict[str, MeasureRow] = {}
    for lb in leaderboards:
        for row in lb.rows:
            first_rows.setdefault(row.measure, row)
    ordered = [r for r in first_rows.values() if not r.reference] + [r for r in first_rows.values() if r.reference]

    rows = []
    for first in ordered:
        cells: dict[str, SuiteCell] = {}
        best_on = 0
        for lb in leaderboards:
            row = next((r for r in lb.rows if r.measure == first.measure), None)
            if row is None:
                continue
            lo, hi = row.intervals.get("total", (math.nan, math.nan))
            best = row.measure in lb.best.get("total", []) and not row.reference
            best_on += best
            cells[lb.population] = SuiteCell(
                total=row.total, lo=math.nan if lo is None else lo, hi=math.nan if hi is None else hi, best=best,
                not_applicable=row.not_applicable, n_models=row.n_models, settings_hash=row.settings_hash,
            )
        scored = [(population, cell.total) for population, cell in cells.items()
                  if cell.not_applicable is None and math.isfinite(cell.total)]
        worst_population, worst = min(scored, key=lambda pt: pt[1]) if scored else (None, math.nan)  # min keeps the first of ties
        rows.append(
            SuiteRow(
                measure=first.measure, label=first.label, family=first.family, higher_is_better=first.higher_is_better,
                reference=first.reference, cells=cells, mean=math.fsum(t for _, t in scored) / len(scored) if scored else math.nan,
                n_mean=len(scored), worst=worst, worst_population=worst_population, best_on=None if first.reference else best_on,
            )
        )
    populations = [
        SuitePopulation(name=lb.population, zoo=lb.zoo, n_models=lb.n_models, bootstrap=dict(lb.bootstrap), verdict=list(lb.verdict))
        for lb in leaderboards
    ]
    return SuiteLeaderboard(
        suite=suite.name, description=suite.description, populations=populations,
        target=leaderboards[0].target if leaderboards else "test_accuracy",
        kendall=leaderboards[0].kendall if leaderboards else "tau_a",
        icc_bench_version=__version__, command=command,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), rows=rows,
    )
