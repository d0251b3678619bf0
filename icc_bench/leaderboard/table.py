"""The one table builder: what every leaderboard format shows, laid out once.

:func:`build_table` turns a :class:`~icc_bench.leaderboard.model.Leaderboard` into a :class:`Table`
(score columns, rows grouped by family, each cell's text, interval and best mark, footnote
numbers); the terminal, Markdown, CSV and HTML renderers only format it. The shared pieces of text
(provenance, caption, footnotes, how to read) live here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from icc_bench.leaderboard.model import TARGET_LABELS, SHORT_AXIS_NAMES, Leaderboard, MeasureRow

_MAX_ERRORS_LISTED = 3  # per measure, in footnotes; the rest are counted
_MAX_ERROR_CHARS = 200
_NAN_TEXT = "–"
#: Marks a measure that reads held-out inputs (``Measure.reads_heldout``), explained in the legend.
HELDOUT_MARK = "‡"
HELDOUT_LEGEND = "‡ reads held-out inputs (unlabeled) that the other measures never see"

HOW_TO_READ = (
    "Each number but CMI and the sign-errors is a granulated Kendall rank correlation (Jiang et al. 2020) between a measure and "
    "the generalization target, in [-1, 1]. Positive means the measure ranks the models the right "
    "way round: a measure where higher predicts worse generalization (sharpness) is negated first. "
    "ψ of an axis (columns lr ... depth) is the mean Kendall tau over the groups of models that differ "
    "only in that hyperparameter; Ψ is the mean of ψ over the axes that have a group. CMI is the "
    "conditional mutual information of the PGDL competition (Jiang et al. 2020): the normalized mutual "
    "information between the signs of measure and target differences, conditioned on a pair of "
    "composite hyperparameter axes, minimised over the pairs; in [0, 1], blind to the sign of the "
    "measure. "
    "Brackets: the percentile bootstrap interval (B draws, the level in the provenance). Each draw resamples, jointly, the groups "
    "of each axis (a configuration's seeds stay together) and the test images (the same images for every model, the target "
    "recomputed from each model's stored test predictions), so the target's sampling noise is inside the interval; CMI's interval "
    "resamples the test images only. Every row sees the same draws, so rows compare pairwise: the matrix below the table gives the "
    "fraction of draws in which the row's Ψ exceeds the column's, and two rows are not distinguishable at level L when that "
    "fraction lies strictly between (1-L)/2 and (1+L)/2. Bold: per column, the best measure and every measure not "
    "distinguishable from it. Reference rows (never bold) show what the target's noise allows: oracle + N(0, s²) is the "
    "target plus seeded Gaussian noise of std s (Jiang et al. 2020), oracle (held-out) is each model's accuracy on an independent "
    "held-out split (only where the dataset can draw one: not CIFAR), random a seeded uniform number per model (the floor; its "
    "interval should contain 0). Sign-error (Dziugaite et al. 2020; lower is better): over pairs of configurations that differ "
    "in one axis, the weighted share of seed pairs the measure orders against the target, each pair weighted by the noise filter "
    "(ψ - 1/2)+ with ψ = max(0, 1 - 2 exp(-2n(|Δg|/2)²))², n the test images; robust = the worst such environment, mean = their "
    "mean; environments with an effective sample size below the threshold (12 with repeated seeds, 1 with one seed) are left out. "
    "– marks an axis with no group or a measure with no value."
)


def _columns(lb: Leaderboard) -> list[tuple[str, str]]:
    """(key, header) of the score columns: the axes, then Psi and CMI."""
    return [(axis, SHORT_AXIS_NAMES.get(axis, axis)) for axis in lb.axes] + [("total", "Ψ"), ("cmi", "CMI")]


def _value(row: MeasureRow, key: str) -> float:
    if key == "total":
        return row.total
    if key == "cmi":
        return row.cmi
    return row.per_axis.get(key, float("nan"))  # an axis the row was not scored on has no value


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return _NAN_TEXT
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _interval_text(row: MeasureRow, key: str) -> str:
    """``[lo, hi]`` of a cell, or "" when the row has no interval there."""
    lo, hi = row.intervals.get(key, (math.nan, math.nan))
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _sign_error_columns(lb: Leaderboard) -> list[tuple[str, str]]:
    """(key, header) of the optional sign-error columns: robust and mean over all axes."""
    return [("robust", "SE max"), ("mean", "SE mean")] if lb.show_sign_error else []


def sign_error_value(row: MeasureRow, kind: str) -> float:
    if not row.sign_error:
        return float("nan")
    value = row.sign_error[kind].get("all")
    return float("nan") if value is None else float(value)


def _paired_text(lb: Leaderboard, a: str, b: str) -> str:
    if a == b:
        return "·"
    value = lb.paired.get(a, {}).get(b)
    return _NAN_TEXT if value is None or not math.isfinite(value) else f"{value:.2f}"


def _bootstrap_text(lb: Leaderboard) -> str:
    b = lb.bootstrap
    if not b.get("draws"):
        return "off"
    return f"{b['draws']} draws, {100 * b['level']:g}% percentile intervals, seed {b['seed']}; resampling {b['resampled']}"


def best_by_column(lb: Leaderboard) -> dict[str, set[str]]:
    """Per column key, the measures marked best.

    The scores' own sets when they carry them (the best measure and every measure not
    distinguishable from it, :func:`icc_bench.scores.best_sets`). Otherwise the measures holding the
    column's best value among the applicable, non-reference rows, compared as displayed (two
    decimals), so ties in the table are marked alike. A column with no finite value has no best.
    """
    if lb.best:
        return {key: set(lb.best.get(key, [])) for key, _ in _columns(lb)}
    best: dict[str, set[str]] = {}
    for key, _ in _columns(lb):
        shown = {
            row.measure: round(_value(row, key), 2)
            for row in lb.rows
            if row.not_applicable is None and not row.reference and math.isfinite(_value(row, key))
        }
        top = max(shown.values(), default=None)
        best[key] = {m for m, v in shown.items() if v == top} if top is not None else set()
    return best


def _families(lb: Leaderboard) -> list[tuple[str, list[MeasureRow]]]:
    """Rows grouped by family, families in order of first appearance, rows in their given order."""
    groups: dict[str, list[MeasureRow]] = {}
    for row in lb.rows:
        groups.setdefault(row.family, []).append(row)
    return list(groups.items())


def _footnote_numbers(lb: Leaderboard) -> dict[str, int]:
    """Footnote number of each measure with errors, numbered in display order."""
    with_errors = [row.measure for _, rows in _families(lb) for row in rows if row.errors]
    return {measure: i for i, measure in enumerate(with_errors, start=1)}


def _shorten(message: str) -> str:
    """A failure message on one line, cut to ``_MAX_ERROR_CHARS`` (footnotes)."""
    text = " ".join(message.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _footnotes(lb: Leaderboard) -> list[tuple[int, MeasureRow, list[str]]]:
    """(number, row, lines) per footnoted row: the first failures, then how many more."""
    numbers = _footnote_numbers(lb)
    notes = []
    for _, rows in _families(lb):
        for row in rows:
            if row.measure not in numbers:
                continue
            lines = [f"{model_id}: {_shorten(message)}" for model_id, message in row.errors[:_MAX_ERRORS_LISTED]]
            if len(row.errors) > _MAX_ERRORS_LISTED:
                lines.append(f"... and {len(row.errors) - _MAX_ERRORS_LISTED} more")
            notes.append((numbers[row.measure], row, lines))
    return notes


def _footnote_title(row: MeasureRow) -> str:
    return f"{row.label}: failed on {len(row.errors)} model(s)"


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "no settings"


def _provenance(lb: Leaderboard) -> list[tuple[str, str]]:
    return [
        ("population", lb.population),
        ("zoo", lb.zoo),
        ("models", str(lb.n_models)),
        ("target", f"{lb.target} (scored as {TARGET_LABELS[lb.target]}; higher = better generalization)"),
        ("kendall", lb.kendall),
        ("bootstrap", _bootstrap_text(lb)),
        ("icc-bench", lb.icc_bench_version),
        ("created", lb.created),
    ]


def _caption(lb: Leaderboard) -> str:
    return (
        f"population {lb.population} · {lb.n_models} models · target {lb.target} · "
        f"Kendall {lb.kendall} · icc-bench {lb.icc_bench_version}"
    )


# ----------------------------------------------------------------------------- the table


@dataclass
class Cell:
    """One score of one row: the value, as shown (two decimals, "–" for NaN), its interval, best or not."""

    key: str
    value: float
    text: str
    interval: str  # "[lo, hi]", or "" without one
    lo: float
    hi: float
    best: bool

    @property
    def with_interval(self) -> bool:
        return bool(self.interval) and self.text != _NAN_TEXT


@dataclass
class TableRow:
    """One row of the table as every format shows it."""

    row: MeasureRow
    family: str  # the family's name on its first row, "" on the others
    footnote: int | None  # the number of the row's footnote (failures), if it has one
    cells: list[Cell]  # one per score column
    sign_errors: list[float]  # one per sign-error column

    @property
    def first_of_family(self) -> bool:
        return bool(self.family)


@dataclass
class Table:
    """The leaderboard as one table: the layout terminal, Markdown, CSV and HTML all render.

    ``rows`` are in display order (families together, in order of first appearance);
    ``by_measure`` finds a measure's row for formats that keep the leaderboard's own order (CSV).
    """

    columns: list[tuple[str, str]]  # (key, header): the axes, Psi, CMI
    sign_error_columns: list[tuple[str, str]]
    rows: list[TableRow]

    @property
    def by_measure(self) -> dict[str, TableRow]:
        return {r.row.measure: r for r in self.rows}

    @property
    def headers(self) -> list[str]:
        return [header for _, header in [*self.columns, *self.sign_error_columns]]


def build_table(lb: Leaderboard) -> Table:
    """The table of ``lb``: every row's cells, best marks and footnote numbers, computed once."""
    best = best_by_column(lb)
    numbers = _footnote_numbers(lb)
    columns = _columns(lb)
    extra = _sign_error_columns(lb)
    rows = []
    for family, members in _families(lb):
        for j, row in enumerate(members):
            cells = []
            for key, _ in columns:
                lo, hi = row.intervals.get(key, (math.nan, math.nan))
                cells.append(Cell(key, _value(row, key), _fmt(_value(row, key)), _interval_text(row, key),
                                  math.nan if lo is None else lo, math.nan if hi is None else hi, row.measure in best[key]))
            rows.append(TableRow(row, family if j == 0 else "", numbers.get(row.measure), cells,
                                 [sign_error_value(row, kind) for kind, _ in extra]))
    return Table(columns, extra, rows)
