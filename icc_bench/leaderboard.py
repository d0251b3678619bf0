"""Leaderboards: the scores of every measure on one population, rendered for people and programs.

This module only renders. :mod:`icc_bench.evaluate` measures the models, scores each measure with
:func:`icc_bench.scoring.granulated_kendall` and :func:`icc_bench.scoring.conditional_mutual_information`,
and fills a :class:`Leaderboard`; everything here turns that object into

- a terminal table (:func:`render_terminal`, rich), in the shape of the paper's Tables 1-3: one row
  per measure grouped by family, one column per hyperparameter axis, then Psi and CMI;
- Markdown (:func:`to_markdown`), CSV (:func:`to_csv`), JSON (:func:`to_json` / :func:`from_json`)
  and a self-contained HTML page with the scatter plots of the paper's Figure 3 (:func:`to_html`);
- files, each written atomically (:func:`write_leaderboard`).

Every rendering carries its provenance (population, zoo, target, Kendall variant, icc-bench version,
measures with their settings) and the command that regenerates it, so that a leaderboard file is
never edited by hand. The JSON holds everything shown and reads back with :func:`from_json`;
``icc-bench leaderboard`` re-scores from the results store (:mod:`icc_bench.scores`), computing no
measure.

Conventions shared by every format: every file opens with the verdict (:mod:`icc_bench.verdict`);
numbers with two decimals, each score followed by its bootstrap interval in brackets (CSV: columns
``<key>_lo`` and ``<key>_hi``), NaN (an axis with no group, a measure with no value) as "–"; in bold,
per column, the best value and every measure not distinguishable from it (:mod:`icc_bench.scores`;
reference rows are never marked); the reference rows in their own family; a measure that failed on
some models gets a numbered footnote listing them; a measure that does not apply to the population
shows the reason and no numbers; the paired comparisons of Psi as a matrix below the table; the
sign-error columns when asked for (always in the JSON).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.zoo import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

#: Identifies a leaderboard JSON file; bump the version when a field changes meaning.
JSON_FORMAT = "icc-bench-leaderboard"
JSON_VERSION = 2

#: Column headers of the eight axes, as in the paper's tables.
SHORT_AXIS_NAMES: dict[str, str] = {
    "learning_rate": "lr", "batch_size": "bs", "weight_decay": "wd", "optimizer": "opt",
    "dropout": "drop", "augmentation": "aug", "width": "width", "depth": "depth",
}
#: What each target is, as plotted: oriented so that higher = better generalization (SPEC §4).
_TARGET_LABELS = {
    "test_accuracy": "test accuracy",
    "generalization_gap": "test - train accuracy",
}
_KENDALL_VARIANTS = ("tau_a", "tau_b")
FORMATS: tuple[str, ...] = ("md", "csv", "json", "html")
_MAX_ERRORS_LISTED = 3  # per measure, in footnotes; the rest are counted
_MAX_ERROR_CHARS = 200
_NAN_TEXT = "–"
#: Marks a measure that reads held-out inputs (``Measure.reads_heldout``), explained in the legend.
HELDOUT_MARK = "‡"
HELDOUT_LEGEND = "‡ reads held-out inputs (unlabeled) that the other measures never see"
_MAX_CATEGORIES = 10  # a numeric hyperparameter with more distinct values gets a colour scale

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


# ----------------------------------------------------------------------------- data structures


@dataclass
class MeasureRow:
    """The scores of one measure on the population: one row of the table.

    ``per_axis``, ``total`` and ``cmi`` are oriented so that positive means "ranks the models the
    right way round" (see :mod:`icc_bench.scoring`); NaN where undefined. A row with
    ``not_applicable`` set is shown with its reason and no numbers.
    """

    measure: str
    label: str
    family: str
    higher_is_better: bool
    settings: dict[str, Any]
    settings_hash: str
    plugin: str
    per_axis: dict[str, float]
    groups: dict[str, int]
    total: float
    cmi: float
    n_models: int
    n_nan_dropped: int
    errors: list[tuple[str, str]] = field(default_factory=list)
    not_applicable: str | None = None
    intervals: dict[str, list[float]] = field(default_factory=dict)  # column key -> [lo, hi]; empty without a bootstrap
    reference: bool = False  # a reference row (oracle, random): shown in its own family, never best
    sign_error: dict[str, Any] | None = None  # icc_bench.sign_error.SignError as a dict; None without predictions
    reads_heldout: bool = False  # the measure reads held-out inputs the others never see: marked HELDOUT_MARK


@dataclass
class Point:
    """One model in a scatter plot.

    ``value`` is the raw measure (not negated); None when the model has none (it failed, or the
    measure does not apply). ``target`` is the generalization target oriented as
    :func:`icc_bench.scoring.target_values` returns it (higher = better generalization).
    """

    model_id: str
    value: float | None
    target: float
    hyperparams: dict[str, Any]

    def __post_init__(self) -> None:
        # NaN and None both mean "no value"; one spelling keeps the JSON round trip exact.
        if self.value is not None and math.isnan(self.value):
            self.value = None


@dataclass
class Leaderboard:
    """Everything a leaderboard shows, and everything needed to re-render it without measuring.

    ``settings`` of rows and ``hyperparams`` of points must be JSON values (as pydantic's
    ``model_dump(mode="json")`` gives): they are stored as they are.
    """

    population: str
    zoo: str
    target: str
    kendall: str
    icc_bench_version: str
    command: str
    created: str
    n_models: int
    axes: list[str]
    rows: list[MeasureRow]
    points: dict[str, list[Point]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bootstrap: dict[str, Any] = field(default_factory=lambda: {"draws": 0, "level": 0.9, "seed": 0, "resampled": "off"})
    paired: dict[str, dict[str, float]] = field(default_factory=dict)  # P(Ψ of row > Ψ of column) over the draws
    best: dict[str, list[str]] = field(default_factory=dict)  # column key -> measures marked best
    verdict: list[str] = field(default_factory=list)
    show_sign_error: bool = False

    def __post_init__(self) -> None:
        if self.target not in _TARGET_LABELS:
            raise ValueError(f"leaderboard target {self.target!r} is not one of {tuple(_TARGET_LABELS)}.")
        if self.kendall not in _KENDALL_VARIANTS:
            raise ValueError(f"leaderboard kendall {self.kendall!r} is not one of {_KENDALL_VARIANTS}.")
        names = [row.measure for row in self.rows]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"leaderboard has several rows for measure(s) {duplicates}; rows and scatter points are "
                "keyed by measure name, so give each settings variant its own name."
            )
        for row in self.rows:
            unknown = sorted(set(row.per_axis) - set(self.axes))
            if unknown:
                raise ValueError(f"row {row.measure!r} scores axes {unknown} that are not in the leaderboard's axes {self.axes}.")
        orphans = sorted(set(self.points) - set(names))
        if orphans:
            raise ValueError(f"leaderboard has scatter points for measure(s) {orphans} but no row for them.")

    def row(self, measure: str) -> MeasureRow:
        for row in self.rows:
            if row.measure == measure:
                return row
        raise KeyError(f"leaderboard has no measure {measure!r}; it has: {', '.join(r.measure for r in self.rows)}.")


# ----------------------------------------------------------------------------- JSON


def _jsonable(obj: Any) -> Any:
    """Strict-JSON form: NaN -> null, +-inf -> "Infinity"/"-Infinity", tuples -> lists."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _float(value: Any) -> float:
    """Inverse of :func:`_jsonable` for a float field: null -> NaN."""
    if value is None:
        return float("nan")
    return float(value)  # float("Infinity") parses


def to_json(lb: Leaderboard) -> str:
    """The leaderboard as strict JSON (no NaN literals), read back by :func:`from_json`."""
    payload = {"format": JSON_FORMAT, "version": JSON_VERSION, **asdict(lb)}
    return json.dumps(_jsonable(payload), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def from_json(text: str) -> Leaderboard:
    """Read a leaderboard written by :func:`to_json`; null floats come back as NaN."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"leaderboard JSON is not valid JSON ({e}); regenerate it with icc-bench evaluate.") from None
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise ValueError(f"this JSON is not an icc-bench leaderboard (no \"format\": \"{JSON_FORMAT}\").")
    if data.get("version") != JSON_VERSION:
        raise ValueError(
            f"leaderboard JSON has version {data.get('version')!r}, this icc-bench reads version "
            f"{JSON_VERSION}; regenerate it with icc-bench evaluate."
        )
    try:
        rows = [
            MeasureRow(
                **{k: r[k] for k in ("measure", "label", "family", "higher_is_better", "settings", "settings_hash", "plugin")},
                per_axis={axis: _float(v) for axis, v in r["per_axis"].items()},
                groups={axis: int(v) for axis, v in r["groups"].items()},
                total=_float(r["total"]),
                cmi=_float(r["cmi"]),
                n_models=int(r["n_models"]),
                n_nan_dropped=int(r["n_nan_dropped"]),
                errors=[(str(model_id), str(message)) for model_id, message in r["errors"]],
                not_applicable=r["not_applicable"],
                intervals={key: [_float(lo), _float(hi)] for key, (lo, hi) in r["intervals"].items()},
                reference=bool(r["reference"]),
                sign_error=r["sign_error"],
                reads_heldout=bool(r["reads_heldout"]),
            )
            for r in data["rows"]
        ]
        points = {
            measure: [
                Point(p["model_id"], None if p["value"] is None else float(p["value"]), _float(p["target"]), p["hyperparams"])
                for p in plist
            ]
            for measure, plist in data["points"].items()
        }
        scalars = ("population", "zoo", "target", "kendall", "icc_bench_version", "command", "created")
        return Leaderboard(
            **{k: data[k] for k in scalars}, n_models=int(data["n_models"]), axes=list(data["axes"]),
            rows=rows, points=points, notes=list(data["notes"]), bootstrap=dict(data["bootstrap"]),
            paired={a: {b: _float(v) for b, v in row.items()} for a, row in data["paired"].items()},
            best={key: list(v) for key, v in data["best"].items()}, verdict=list(data["verdict"]),
            show_sign_error=bool(data["show_sign_error"]),
        )
    except KeyError as e:
        raise ValueError(f"leaderboard JSON lacks the field {e.args[0]!r}; regenerate it with icc-bench evaluate.") from None


def read_leaderboard(path: str | Path) -> Leaderboard:
    """Read a leaderboard JSON file; errors name the file."""
    path = Path(path)
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no leaderboard JSON here; run icc-bench evaluate to make one.") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- shared layout


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


def _cell(row: MeasureRow, key: str, sep: str = " ") -> str:
    """A cell's value and, when there is one, its interval."""
    interval = _interval_text(row, key)
    value = _fmt(_value(row, key))
    return f"{value}{sep}{interval}" if interval and value != _NAN_TEXT else value


def _sign_error_columns(lb: Leaderboard) -> list[tuple[str, str]]:
    """(key, header) of the optional sign-error columns: robust and mean over all axes."""
    return [("robust", "SE max"), ("mean", "SE mean")] if lb.show_sign_error else []


def _sign_error_value(row: MeasureRow, kind: str) -> float:
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


def _one_line(message: str) -> str:
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
            lines = [f"{model_id}: {_one_line(message)}" for model_id, message in row.errors[:_MAX_ERRORS_LISTED]]
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
        ("target", f"{lb.target} (scored as {_TARGET_LABELS[lb.target]}; higher = better generalization)"),
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


# ----------------------------------------------------------------------------- terminal


def render_terminal(lb: Leaderboard, console: Console) -> None:
    """Print the table (paper's shape, families as sections) and its footnotes to ``console``.

    The best value of each column is bold and followed by ``*``.
    """
    from rich.table import Table
    from rich.text import Text

    best = best_by_column(lb)
    numbers = _footnote_numbers(lb)
    table = Table(
        title=f"Granulated Kendall: {lb.population}", caption=_caption(lb) + " · bold* = best of column",
        title_justify="left", caption_justify="left",
    )
    if lb.bootstrap.get("draws"):
        table.caption += f" (and every measure not distinguishable from it at {100 * lb.bootstrap['level']:g}%) · \\[interval]"
    table.add_column("family", style="bold", overflow="fold", max_width=24)
    table.add_column("measure", overflow="fold", max_width=36)
    for _, header in [*_columns(lb), *_sign_error_columns(lb)]:
        table.add_column(header, justify="right", min_width=11 if lb.bootstrap.get("draws") else None)
    for i, (family, rows) in enumerate(_families(lb)):
        if i:
            table.add_section()
        for j, row in enumerate(rows):
            name = Text(row.label + (f" {HELDOUT_MARK}" if row.reads_heldout else ""))
            if row.label != row.measure:
                name.append(f" {row.measure}", style="dim")
            if row.measure in numbers:
                name.append(f" [{numbers[row.measure]}]", style="yellow")
            family_cell = Text(family) if j == 0 else Text("")
            if row.not_applicable is not None:
                name.append(f"\nnot applicable: {row.not_applicable}", style="italic")
                table.add_row(family_cell, name, *([""] * (len(_columns(lb)) + len(_sign_error_columns(lb)))), style="dim")
                continue
            cells = []
            for key, _ in _columns(lb):
                text = _fmt(_value(row, key))
                interval = _interval_text(row, key)
                cell = Text(text + "*", style="bold") if row.measure in best[key] else Text(text + " ")
                if interval and text != _NAN_TEXT:
                    cell.append("\n" + interval.replace(" ", ""), style="dim")
                cells.append(cell)
            cells += [Text(_fmt(_sign_error_value(row, kind)) + " ") for kind, _ in _sign_error_columns(lb)]
            table.add_row(family_cell, name, *cells, style="dim" if row.reference else None)
    for line in lb.verdict:
        console.print(Text(line, style="bold"))
    console.print(table)
    if any(row.reads_heldout for row in lb.rows):
        console.print(HELDOUT_LEGEND)
    for number, row, lines in _footnotes(lb):
        console.print(Text(f"[{number}] {_footnote_title(row)}", style="yellow"))
        for line in lines:
            console.print(Text(f"    {line}"))


# ----------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    """Inline code that survives backticks inside ``text``."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_measure_name(row: MeasureRow) -> str:
    name = _md_escape(row.label) + (f" {HELDOUT_MARK}" if row.reads_heldout else "")
    if row.label != row.measure:
        name += f" ({_md_code(row.measure)})"
    return name


def to_markdown(lb: Leaderboard) -> str:
    """The leaderboard as a Markdown document: provenance, table, footnotes, how to read it."""
    best = best_by_column(lb)
    numbers = _footnote_numbers(lb)
    columns = _columns(lb)
    out = [f"# Granulated Kendall: {_md_escape(lb.population)}", ""]
    out += ["**Verdict.** " + " ".join(_md_escape(line) for line in lb.verdict), ""] if lb.verdict else []
    out += [f"- **{key}**: {_md_escape(value)}" for key, value in _provenance(lb)]
    out += [f"- {_md_escape(note)}" for note in lb.notes]
    out += ["- **measures**:"]
    for row in lb.rows:
        direction = "higher is better" if row.higher_is_better else "lower is better"
        out.append(
            f"  - {_md_measure_name(row)}: {_md_escape(row.family)}, {direction}; "
            f"{_md_escape(_settings_text(row.settings))}; settings hash {_md_code(row.settings_hash)}; "
            f"plugin {_md_escape(row.plugin)}"
        )
    out += ["", f"Regenerate with: {_md_code(lb.command)}", ""]

    extra = _sign_error_columns(lb)
    out.append("| family | measure | " + " | ".join(header for _, header in [*columns, *extra]) + " |")
    out.append("| --- | --- | " + " | ".join("---:" for _ in [*columns, *extra]) + " |")
    for family, rows in _families(lb):
        for j, row in enumerate(rows):
            name = _md_measure_name(row) + (f" [{numbers[row.measure]}]" if row.measure in numbers else "")
            if row.not_applicable is not None:
                name += f" — *not applicable: {_md_escape(row.not_applicable)}*"
                cells = [""] * (len(columns) + len(extra))
            else:
                cells = [
                    f"**{_fmt(_value(row, key))}** {_interval_text(row, key)}".strip() if row.measure in best[key] else _cell(row, key)
                    for key, _ in columns
                ] + [_fmt(_sign_error_value(row, kind)) for kind, _ in extra]
            out.append(f"| {_md_escape(family) if j == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    out.append("")

    if lb.best and lb.bootstrap.get("draws"):
        out += [f"Bold: the best measure of each column and every measure not distinguishable from it at "
                f"{100 * lb.bootstrap['level']:g}% (paired bootstrap); reference rows are never bold.", ""]
    if any(row.reads_heldout for row in lb.rows):
        out += [HELDOUT_LEGEND + ".", ""]
    paired = [row for row in lb.rows if row.measure in lb.paired]
    if paired:
        out += ["## Paired comparisons", "", "Fraction of bootstrap draws in which the row's Ψ exceeds the column's (ties count one half).", ""]
        out.append("| | " + " | ".join(_md_escape(r.label) for r in paired) + " |")
        out.append("| --- | " + " | ".join("---:" for _ in paired) + " |")
        for a in paired:
            out.append(f"| {_md_escape(a.label)} | " + " | ".join(_paired_text(lb, a.measure, b.measure) for b in paired) + " |")
        out.append("")
    footnotes = _footnotes(lb)
    if footnotes:
        out += ["## Footnotes", ""]
        for number, row, lines in footnotes:
            out.append(f"[{number}] {_md_escape(_footnote_title(row))}:")
            out += [f"  - {_md_escape(line)}" for line in lines]
        out.append("")
    out += ["## How to read", "", HOW_TO_READ, ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- CSV


def to_csv(lb: Leaderboard) -> str:
    """One row per measure, full precision, NaN as an empty field, provenance as ``# key: value``.

    Read it with ``pandas.read_csv(path, comment="#")``; every text field is quoted, so a ``#``
    inside one is kept.
    """
    buffer = io.StringIO()
    for key, value in [*_provenance(lb), ("command", lb.command), *(("verdict", line) for line in lb.verdict)]:
        buffer.write(f"# {key}: {' '.join(value.split())}\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    keys = [key for key, _ in _columns(lb)]
    extra = [f"sign_error_{kind}" for kind, _ in _sign_error_columns(lb)]
    writer.writerow(["measure", "family", "direction", "reference", *[f"{k}{suffix}" for k in keys for suffix in ("", "_lo", "_hi")],
                     *extra, "n_models", "n_errors", "settings_hash", "not_applicable"])
    finite = lambda v: v if v is not None and math.isfinite(v) else None
    for row in lb.rows:
        scores = []
        for key in keys:
            lo, hi = row.intervals.get(key, (math.nan, math.nan))
            scores += [finite(_value(row, key)), finite(lo), finite(hi)]
        writer.writerow([
            row.measure, row.family, "higher_is_better" if row.higher_is_better else "lower_is_better", int(row.reference),
            *scores, *[finite(_sign_error_value(row, kind)) for kind, _ in _sign_error_columns(lb)],
            row.n_models, len(row.errors), row.settings_hash, row.not_applicable,
        ])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- figures and HTML


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scatter_figure(lb: Leaderboard, measure: str, color_by: str = "learning_rate") -> Figure:
    """The measure's value (x) against the target (y) per model, coloured by one hyperparameter.

    As the paper's Figure 3 (which has the axes the other way round). Models without a value or
    target are left out; the title says how many are shown. A hyperparameter with few distinct
    values (any grid axis) gets one colour per value and a legend; a numeric one with more gets a
    colour scale (logarithmic when positive and spanning over a decade) and a colour bar.

    Built on :class:`matplotlib.figure.Figure` with the Agg canvas, never pyplot, so it changes no
    global matplotlib state.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    row = lb.row(measure)
    points = lb.points.get(measure, [])
    shown = [p for p in points if p.value is not None and math.isfinite(p.value) and math.isfinite(p.target)]
    missing = [p.model_id for p in shown if color_by not in p.hyperparams]
    if missing:
        available = sorted(shown[0].hyperparams) if shown else []
        raise ValueError(
            f"cannot colour by {color_by!r}: model {missing[0]!r} has no such hyperparameter; "
            f"pick one of {available}."
        )
    fig = Figure(figsize=(4.2, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlabel(f"{row.label} ({'higher' if row.higher_is_better else 'lower'} predicts better)")
    ax.set_ylabel(_TARGET_LABELS[lb.target])
    ax.set_title(f"{row.label}: Ψ = {_fmt(row.total)}, {len(shown)} of {len(points)} models", fontsize=9)
    ax.grid(alpha=0.3)
    colour_values = [p.hyperparams[color_by] for p in shown]
    x = [p.value for p in shown]
    y = [p.target for p in shown]
    # Numbers in numeric order, then anything else (optimizer names, booleans) by its text.
    distinct = sorted(set(colour_values), key=lambda v: (0, v, "") if _is_number(v) else (1, 0, str(v)))
    if all(_is_number(v) for v in distinct) and len(distinct) > _MAX_CATEGORIES:
        low, high = min(distinct), max(distinct)
        norm = LogNorm(low, high) if low > 0 and high > 10 * low else Normalize(low, high)
        dots = ax.scatter(x, y, c=colour_values, norm=norm, cmap="viridis", s=14)
        fig.colorbar(dots, ax=ax, label=color_by)
    else:
        palette = colormaps["tab10" if len(distinct) <= 10 else "tab20"]  # beyond 20 categories, colours repeat
        for i, category in enumerate(distinct):
            xs = [xv for xv, cv in zip(x, colour_values) if cv == category]
            ys = [yv for yv, cv in zip(y, colour_values) if cv == category]
            ax.scatter(xs, ys, s=14, color=palette(i % palette.N), label=f"{category:g}" if _is_number(category) else str(category))
        if distinct:
            ax.legend(title=color_by, fontsize=7, title_fontsize=7, loc="best")
    return fig


def psi_figure(lb: Leaderboard) -> Figure:
    """Ψ of every scored row with its bootstrap interval as an error bar, best at the top;
    reference rows in grey. Rows without an interval are drawn as a dot alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in lb.rows if r.not_applicable is None and math.isfinite(r.total)]
    rows.sort(key=lambda r: r.total)
    fig = Figure(figsize=(6.0, 0.35 * len(rows) + 1.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        lo, hi = row.intervals.get("total", (math.nan, math.nan))
        colour = "#999999" if row.reference else ("#2a7a2a" if row.measure in lb.best.get("total", []) else "#1f4e99")
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            # A percentile interval need not contain the point value, so it is drawn as a bar of its own.
            ax.plot([lo, hi], [i, i], "-", color=colour, linewidth=2, solid_capstyle="butt")
        ax.plot([row.total], [i], "o", color=colour)
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
    ax.axvline(0.0, color="#bbbbbb", linewidth=1)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Ψ (granulated Kendall)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _figure_png_base64(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No "Software" chunk: it names a URL and a version, and the page should be reproducible.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table.scores { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.scores th, table.scores td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; }
table.scores td.num { text-align: right; }
table.scores td.best { font-weight: bold; background: #eef6ee; }
table.scores tr.family-start td { border-top: 2px solid #888; }
table.scores tr.na td { color: #999; font-style: italic; }
table.scores tr.reference td { color: #666; background: #fafafa; }
table.scores .ci { font-size: 0.8em; color: #777; }
p.verdict { font-weight: bold; background: #f6f6ee; padding: 0.6em; border-left: 4px solid #aa8; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.provenance dt { font-weight: bold; }
code { background: #f4f4f4; padding: 0.1em 0.3em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _html_table(lb: Leaderboard) -> str:
    e = html.escape
    best = best_by_column(lb)
    numbers = _footnote_numbers(lb)
    columns = _columns(lb)
    extra = _sign_error_columns(lb)
    out = ['<table class="scores">', "<thead><tr><th>family</th><th>measure</th>"]
    out += [f"<th>{e(header)}</th>" for _, header in [*columns, *extra]]
    out.append("</tr></thead><tbody>")
    for family, rows in _families(lb):
        for j, row in enumerate(rows):
            classes = (["family-start"] if j == 0 else []) + (["na"] if row.not_applicable is not None else []) + (["reference"] if row.reference else [])
            name = e(row.label) + (f" {HELDOUT_MARK}" if row.reads_heldout else "") + (f" <code>{e(row.measure)}</code>" if row.label != row.measure else "")
            if row.measure in numbers:
                name += f' <sup><a href="#note-{numbers[row.measure]}">[{numbers[row.measure]}]</a></sup>'
            cells = [f"<td>{e(family) if j == 0 else ''}</td>", f"<td>{name}</td>"]
            if row.not_applicable is not None:
                cells.append(f'<td colspan="{len(columns) + len(extra)}">not applicable: {e(row.not_applicable)}</td>')
            else:
                for key, _ in columns:
                    text = e(_fmt(_value(row, key)))
                    interval = _interval_text(row, key)
                    shown = f"<strong>{text}</strong>" if row.measure in best[key] else text
                    if interval and text != _NAN_TEXT:
                        shown += f'<br><span class="ci">{e(interval)}</span>'
                    cells.append(f'<td class="num best">{shown}</td>' if row.measure in best[key] else f'<td class="num">{shown}</td>')
                cells += [f'<td class="num">{e(_fmt(_sign_error_value(row, kind)))}</td>' for kind, _ in extra]
            out.append(f'<tr class="{" ".join(classes)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_html(lb: Leaderboard, *, color_by: str = "learning_rate", analyses: list[str] | None = None) -> str:
    """A single self-contained HTML page: provenance, table, footnotes and one scatter per measure.

    Plots are embedded as base64 PNG and the style is inline, so the file has no external assets.
    Measures that do not apply, or have no value on any model, get no plot. ``analyses`` are the
    paths, relative to the page, of figures written by ``icc-bench analyze`` (each beside a CSV of
    the same name); they are linked, not embedded, in a last section.
    """
    e = html.escape
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>icc-bench leaderboard: {e(lb.population)}</title>", f"<style>{_CSS}</style>", "</head><body>",
        f"<h1>Granulated Kendall: {e(lb.population)}</h1>",
    ]
    out += [f'<p class="verdict">{e(line)}</p>' for line in lb.verdict]
    out.append('<dl class="provenance">')
    out += [f"<dt>{e(key)}</dt><dd>{e(value)}</dd>" for key, value in _provenance(lb)]
    out.append(f"<dt>regenerate with</dt><dd><code>{e(lb.command)}</code></dd>")
    out += [f"<dt>note</dt><dd>{e(note)}</dd>" for note in lb.notes]
    out.append("</dl><h2>Measures</h2><ul>")
    for row in lb.rows:
        direction = "higher is better" if row.higher_is_better else "lower is better"
        out.append(
            f"<li><code>{e(row.measure)}</code> ({e(row.label)}): {e(row.family)}, {direction}; "
            f"{e(_settings_text(row.settings))}; settings hash <code>{e(row.settings_hash)}</code>; "
            f"plugin {e(row.plugin)}</li>"
        )
    out += ["</ul><h2>Scores</h2>", _html_table(lb)]
    if any(row.reads_heldout for row in lb.rows):
        out.append(f"<p>{e(HELDOUT_LEGEND)}.</p>")
    if any(row.intervals.get("total") for row in lb.rows):
        out.append(f'<figure><img alt="Ψ with its interval, per measure" src="data:image/png;base64,{_figure_png_base64(psi_figure(lb))}">'
                   f"<figcaption>Ψ of every row with its {100 * lb.bootstrap['level']:g}% bootstrap interval</figcaption></figure>")
    paired = [row for row in lb.rows if row.measure in lb.paired]
    if paired:
        out.append("<h3>Paired comparisons</h3><p>Fraction of bootstrap draws in which the row's Ψ exceeds the column's.</p>")
        out.append('<table class="scores"><thead><tr><th></th>' + "".join(f"<th>{e(r.label)}</th>" for r in paired) + "</tr></thead><tbody>")
        for a in paired:
            out.append(f"<tr><td>{e(a.label)}</td>" + "".join(f'<td class="num">{e(_paired_text(lb, a.measure, b.measure))}</td>' for b in paired) + "</tr>")
        out.append("</tbody></table>")
    footnotes = _footnotes(lb)
    if footnotes:
        out.append("<h3>Footnotes</h3>")
        for number, row, lines in footnotes:
            out.append(f'<p id="note-{number}">[{number}] {e(_footnote_title(row))}:</p><ul>')
            out += [f"<li>{e(line)}</li>" for line in lines]
            out.append("</ul>")
    out += ["<h2>How to read</h2>", f"<p>{e(HOW_TO_READ)}</p>", f"<h2>Measure against {e(lb.target)}</h2>",
            '<div class="plots">']
    for row in lb.rows:
        if row.not_applicable is not None or row.reference:
            continue
        if not any(p.value is not None for p in lb.points.get(row.measure, [])):
            out.append(f"<p>{e(row.label)}: no model has a value, nothing to plot.</p>")
            continue
        fig = scatter_figure(lb, row.measure, color_by)
        out.append(
            f'<figure><img alt="{e(row.label)} against {e(lb.target)}" '
            f'src="data:image/png;base64,{_figure_png_base64(fig)}">'
            f"<figcaption>{e(row.label)}, coloured by {e(color_by)}</figcaption></figure>"
        )
    out.append("</div>")
    if analyses:
        out.append("<h2>Analyses</h2><p>Written by <code>icc-bench analyze</code>; each figure's data is in the CSV of the same name.</p>")
        out.append('<div class="plots">')
        for path in analyses:
            name, data = Path(path).stem, Path(path).with_suffix(".csv").as_posix()
            out.append(
                f'<figure><a href="{e(path)}"><img alt="{e(name)}" src="{e(path)}" width="480"></a>'
                f'<figcaption>{e(name)} · <a href="{e(data)}">data (CSV)</a></figcaption></figure>'
            )
        out.append("</div>")
    out += ["</body></html>", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- files


def write_leaderboard(
    lb: Leaderboard, out_dir: Path, stem: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Write ``out_dir/stem.<format>`` for each format, each atomically; return the paths in order."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown leaderboard format(s) {unknown}; pick from {FORMATS}.")
    # The figures of `icc-bench analyze` beside the page (the default out_dir is the zoo, where they live).
    analysis_dir = Path(out_dir) / "analysis"
    analyses = sorted(p.relative_to(out_dir).as_posix() for p in analysis_dir.glob("*.png")) if analysis_dir.is_dir() else []
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": lambda lb: to_html(lb, analyses=analyses)}
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        atomic_write_bytes(path, renderers[fmt](lb).encode("utf-8"))
        paths.append(path)
    return paths
