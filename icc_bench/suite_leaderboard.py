"""Suite leaderboards: every measure's Psi on each population of a suite, and across them.

This module only renders, like :mod:`icc_bench.leaderboard` (whose conventions and helpers it
shares); :func:`icc_bench.suite_scores.score_suite` fills a :class:`SuiteLeaderboard` from one
:class:`~icc_bench.leaderboard.Leaderboard` per population. One row per measure, grouped by family,
the reference rows in their own family; the columns:

- per population, the measure's Psi with its bootstrap interval, in bold when the measure is best
  on that population or not distinguishable from the best (the population's ``best["total"]``);
  "n/a" when the measure does not apply to the population (c1, c2 without a label hierarchy),
  with the reason below the table; "–" when it has no value there;
- ``mean``: the mean Psi over the populations where the measure has one, saying over how many when
  that is not all of them;
- ``worst``: the lowest of those Psi and its population (the worst case over environments of
  Dziugaite et al. 2020);
- ``best on``: on how many populations the measure is best or tied best (never counted for the
  reference rows).

Renderings: terminal (:func:`render_terminal`), Markdown (:func:`to_markdown`), CSV
(:func:`to_csv`), JSON (:func:`to_json` / :func:`from_json`) and a self-contained HTML page with the
per-population Psi and their intervals in one figure, one panel per population (:func:`to_html`);
files are written atomically (:func:`write_suite_leaderboard`).
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.leaderboard.files import FORMATS, write_formats
from icc_bench.leaderboard.markdown import _md_code, _md_escape
from icc_bench.leaderboard.model import TARGET_LABELS as _TARGET_LABELS
from icc_bench.leaderboard.model import _float, envelope_json, open_envelope
from icc_bench.leaderboard.page import _CSS, _figure_png_base64
from icc_bench.leaderboard.table import _NAN_TEXT, _bootstrap_text, _fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

#: Identifies a suite leaderboard JSON file; bump the version when a field changes meaning.
JSON_FORMAT = "icc-bench-suite-leaderboard"
JSON_VERSION = 1

_NA_TEXT = "n/a"

HOW_TO_READ = (
    "Each population column is the measure's Ψ on that population (granulated Kendall, in [-1, 1]; positive means the "
    "measure ranks the models the right way round), with its percentile bootstrap interval in brackets, exactly as in the "
    "population's own leaderboard. Bold: the measure is the best on that population or not distinguishable from the best "
    "(paired bootstrap at the stated level). n/a: the measure does not apply to the population (the reason is listed below "
    "the table; c1 and c2 need a label hierarchy); –: no value. mean: the mean Ψ over the populations where the measure has "
    "one, with 'over k of n' when that is not all of them; worst: the lowest of those Ψ and its population, the worst case "
    "over environments (Dziugaite et al. 2020); in bold, the highest mean and the highest worst case among the measures "
    "scored on every population. best on: on how many of the suite's populations the measure is bold. Reference rows "
    "(oracles, random) show what each population's noise allows and are never counted as best."
)


# ----------------------------------------------------------------------------- data structures


@dataclass
class SuiteCell:
    """One measure on one population, as that population's leaderboard scored it."""

    total: float  # Psi; NaN when the measure has no value there
    lo: float = math.nan  # bootstrap interval of Psi; NaN without a bootstrap
    hi: float = math.nan
    best: bool = False  # best on the population, or not distinguishable from the best
    not_applicable: str | None = None  # the reason, when the measure does not apply there
    n_models: int = 0
    settings_hash: str = ""


@dataclass
class SuiteRow:
    """One measure across the suite. ``cells`` has no key for a population whose leaderboard has
    no row for the measure; ``best_on`` is None for reference rows."""

    measure: str
    label: str
    family: str
    higher_is_better: bool
    reference: bool
    cells: dict[str, SuiteCell]
    mean: float
    n_mean: int  # populations the mean is taken over
    worst: float
    worst_population: str | None
    best_on: int | None


@dataclass
class SuitePopulation:
    """One population of the suite, as scored."""

    name: str
    zoo: str
    n_models: int
    bootstrap: dict[str, Any]
    verdict: list[str] = field(default_factory=list)


@dataclass
class SuiteLeaderboard:
    """Everything a suite leaderboard shows; populations and rows in display order."""

    suite: str
    description: str
    populations: list[SuitePopulation]
    target: str
    kendall: str
    icc_bench_version: str
    command: str
    created: str
    rows: list[SuiteRow]

    def __post_init__(self) -> None:
        if self.target not in _TARGET_LABELS:
            raise ValueError(f"suite leaderboard target {self.target!r} is not one of {tuple(_TARGET_LABELS)}.")
        names = [p.name for p in self.populations]
        for row in self.rows:
            unknown = sorted(set(row.cells) - set(names))
            if unknown:
                raise ValueError(f"suite row {row.measure!r} has cells for populations {unknown} that are not in the suite {names}.")

    def row(self, measure: str) -> SuiteRow:
        for row in self.rows:
            if row.measure == measure:
                return row
        raise KeyError(f"suite leaderboard has no measure {measure!r}; it has: {', '.join(r.measure for r in self.rows)}.")

    @property
    def level(self) -> float:
        """The bootstrap level of the intervals and of "not distinguishable" (shared by all populations)."""
        return float(self.populations[0].bootstrap.get("level", math.nan)) if self.populations else math.nan


# ----------------------------------------------------------------------------- shared layout


def _population_names(slb: SuiteLeaderboard) -> list[str]:
    return [p.name for p in slb.populations]


def _cell_text(cell: SuiteCell | None) -> str:
    """A population cell: "Ψ [lo, hi]", "n/a" or "–"."""
    if cell is None:
        return _NAN_TEXT
    if cell.not_applicable is not None:
        return _NA_TEXT
    value = _fmt(cell.total)
    if value != _NAN_TEXT and math.isfinite(cell.lo) and math.isfinite(cell.hi):
        return f"{value} [{_fmt(cell.lo)}, {_fmt(cell.hi)}]"
    return value


def _mean_text(slb: SuiteLeaderboard, row: SuiteRow) -> str:
    if row.n_mean == 0:
        return _NAN_TEXT
    n = len(slb.populations)
    return _fmt(row.mean) + ("" if row.n_mean == n else f" (over {row.n_mean} of {n})")


def _worst_text(row: SuiteRow) -> str:
    return _NAN_TEXT if row.worst_population is None else f"{_fmt(row.worst)} ({row.worst_population})"


def _best_on_text(slb: SuiteLeaderboard, row: SuiteRow) -> str:
    return "" if row.best_on is None else f"{row.best_on} of {len(slb.populations)}"


def best_summary(slb: SuiteLeaderboard) -> dict[str, set[str]]:
    """The measures in bold in the ``mean`` and ``worst`` columns: the highest value, compared as
    displayed (two decimals), among the non-reference rows scored on every population (a mean over
    fewer populations is not comparable)."""
    n = len(slb.populations)
    full = [r for r in slb.rows if not r.reference and r.n_mean == n and n > 0]
    best: dict[str, set[str]] = {}
    for key in ("mean", "worst"):
        shown = {r.measure: round(getattr(r, key), 2) for r in full if math.isfinite(getattr(r, key))}
        top = max(shown.values(), default=None)
        best[key] = {m for m, v in shown.items() if v == top} if top is not None else set()
    return best


def _families(slb: SuiteLeaderboard) -> list[tuple[str, list[SuiteRow]]]:
    """Rows grouped by family, families in order of first appearance, rows in their given order."""
    groups: dict[str, list[SuiteRow]] = {}
    for row in slb.rows:
        groups.setdefault(row.family, []).append(row)
    return list(groups.items())


def not_applicable_notes(slb: SuiteLeaderboard) -> list[str]:
    """One line per measure that does not apply to some population: where, and why."""
    lines = []
    for row in slb.rows:
        reasons: dict[str, list[str]] = {}
        for population, cell in row.cells.items():
            if cell.not_applicable is not None:
                reasons.setdefault(cell.not_applicable, []).append(population)
        for reason, populations in reasons.items():
            lines.append(f"{row.label}: not applicable on {', '.join(populations)} ({' '.join(reason.split())})")
    return lines


def _provenance(slb: SuiteLeaderboard) -> list[tuple[str, str]]:
    populations = "; ".join(f"{p.name} ({p.n_models} models, zoo {p.zoo})" for p in slb.populations)
    bootstrap = _bootstrap_text(slb.populations[0]) if slb.populations else "off"
    return [
        ("suite", slb.suite),
        ("description", slb.description),
        ("populations", populations),
        ("target", f"{slb.target} (scored as {_TARGET_LABELS[slb.target]}; higher = better generalization)"),
        ("kendall", slb.kendall),
        ("bootstrap", bootstrap),
        ("icc-bench", slb.icc_bench_version),
        ("created", slb.created),
    ]


def _headers(slb: SuiteLeaderboard) -> list[str]:
    return [*_population_names(slb), "mean Ψ", "worst Ψ", "best on"]


def _summary_cells(slb: SuiteLeaderboard, row: SuiteRow) -> list[str]:
    return [_mean_text(slb, row), _worst_text(row), _best_on_text(slb, row)]


# ----------------------------------------------------------------------------- terminal


def render_terminal(slb: SuiteLeaderboard, console: Console) -> None:
    """Print the suite table, families as sections, bold* for best, and the not-applicable notes."""
    from rich.table import Table
    from rich.text import Text

    best = best_summary(slb)
    table = Table(
        title=f"Suite {slb.suite}: Ψ per population", title_justify="left", caption_justify="left",
        caption=f"suite {slb.suite} · target {slb.target} · Kendall {slb.kendall} · icc-bench {slb.icc_bench_version}"
        " · bold* = best on the population or not distinguishable from it · n/a = not applicable",
    )
    table.add_column("family", style="bold", overflow="fold", max_width=24)
    table.add_column("measure", overflow="fold", max_width=30)
    for header in _headers(slb):
        table.add_column(header, justify="right")
    for i, (family, rows) in enumerate(_families(slb)):
        if i:
            table.add_section()
        for j, row in enumerate(rows):
            cells = []
            for population in _population_names(slb):
                cell = row.cells.get(population)
                value, _, interval = _cell_text(cell).partition(" ")
                text = Text(value + "*", style="bold") if cell is not None and cell.best else Text(value + " ")
                if interval:
                    text.append("\n" + interval.replace(" ", ""), style="dim")
                cells.append(text)
            mean, worst, best_on = _summary_cells(slb, row)
            cells += [
                Text(mean, style="bold" if row.measure in best["mean"] else ""),
                Text(worst, style="bold" if row.measure in best["worst"] else ""),
                Text(best_on),
            ]
            table.add_row(Text(family) if j == 0 else Text(""), Text(row.label), *cells, style="dim" if row.reference else None)
    console.print(table)
    for line in not_applicable_notes(slb):
        console.print(Text(f"  {line}", style="italic"))


# ----------------------------------------------------------------------------- Markdown


def to_markdown(slb: SuiteLeaderboard) -> str:
    """The suite leaderboard as a Markdown document: provenance, table, notes, how to read it."""
    best = best_summary(slb)
    out = [f"# Suite {_md_escape(slb.suite)}: Ψ per population", ""]
    out += [f"- **{key}**: {_md_escape(value)}" for key, value in _provenance(slb)]
    out += ["", f"Regenerate with: {_md_code(slb.command)}", ""]
    headers = _headers(slb)
    out.append("| family | measure | " + " | ".join(_md_escape(h) for h in headers) + " |")
    out.append("| --- | --- | " + " | ".join("---:" for _ in headers) + " |")
    for family, rows in _families(slb):
        for j, row in enumerate(rows):
            cells = []
            for population in _population_names(slb):
                cell = row.cells.get(population)
                text = _cell_text(cell)
                if cell is not None and cell.best:
                    value, _, interval = text.partition(" ")
                    text = f"**{value}** {interval}".strip()
                cells.append(text)
            mean, worst, best_on = _summary_cells(slb, row)
            cells += [f"**{mean}**" if row.measure in best["mean"] else mean,
                      f"**{worst}**" if row.measure in best["worst"] else worst, best_on]
            name = _md_escape(row.label) + (f" ({_md_code(row.measure)})" if row.label != row.measure else "")
            out.append(f"| {_md_escape(family) if j == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    out.append("")
    notes = not_applicable_notes(slb)
    if notes:
        out += [f"- {_md_escape(line)}" for line in notes] + [""]
    out += ["## Per population", ""]
    for p in slb.populations:
        out.append(f"- **{_md_escape(p.name)}** ({p.n_models} models, zoo {_md_code(p.zoo)}): " + _md_escape(" ".join(p.verdict)))
    out += ["", "## How to read", "", HOW_TO_READ, ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- CSV


def table_records(slb: SuiteLeaderboard) -> list[dict[str, Any]]:
    """One dict per row, with the CSV's columns (NaN where there is no value): :func:`to_csv` writes
    them, :meth:`icc_bench.api.SuiteResults.summary` makes a DataFrame of them.

    Per population ``Psi_<population>``, ``Psi_<population>_lo`` and ``_hi`` (NaN where the measure
    has no value or does not apply; ``not_applicable`` says where and why), then ``mean`` over
    ``n_mean`` of ``n_populations``, ``worst`` and ``worst_population``, ``best_on`` (None for
    reference rows).
    """
    names = _population_names(slb)
    records = []
    for row in slb.rows:
        record: dict[str, Any] = {
            "measure": row.measure, "family": row.family,
            "direction": "higher_is_better" if row.higher_is_better else "lower_is_better", "reference": row.reference,
        }
        for p in names:
            cell = row.cells.get(p)
            scored = cell is not None and cell.not_applicable is None
            record[f"Psi_{p}"] = cell.total if scored else math.nan
            record[f"Psi_{p}_lo"] = cell.lo if scored else math.nan
            record[f"Psi_{p}_hi"] = cell.hi if scored else math.nan
        record.update(
            mean=row.mean, n_mean=row.n_mean, n_populations=len(names), worst=row.worst,
            worst_population=row.worst_population, best_on=row.best_on,
            not_applicable="; ".join(f"{p}: {c.not_applicable}" for p, c in row.cells.items() if c.not_applicable is not None) or None,
        )
        records.append(record)
    return records


def to_csv(slb: SuiteLeaderboard) -> str:
    """One row per measure (the columns of :func:`table_records`), full precision, NaN as an empty
    field, provenance as ``# key: value``. Read it with ``pandas.read_csv(path, comment="#")``."""
    buffer = io.StringIO()
    for key, value in [*_provenance(slb), ("command", slb.command)]:
        buffer.write(f"# {key}: {' '.join(value.split())}\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    records = table_records(slb)
    if not records:
        return buffer.getvalue()
    writer.writerow(list(records[0]))
    for record in records:
        writer.writerow([
            None if isinstance(v, float) and not math.isfinite(v) else int(v) if isinstance(v, bool) else v
            for v in record.values()
        ])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- JSON


def to_json(slb: SuiteLeaderboard) -> str:
    """The suite leaderboard as strict JSON (no NaN literals), read back by :func:`from_json`."""
    return envelope_json(JSON_FORMAT, JSON_VERSION, slb)


def from_json(text: str) -> SuiteLeaderboard:
    """Read a suite leaderboard written by :func:`to_json`; null floats come back as NaN."""
    data = open_envelope(
        text, JSON_FORMAT, JSON_VERSION, what="suite leaderboard", regenerate="icc-bench leaderboard --suite"
    )
    try:
        rows = [
            SuiteRow(
                **{k: r[k] for k in ("measure", "label", "family", "higher_is_better", "reference", "n_mean", "worst_population", "best_on")},
                cells={
                    p: SuiteCell(total=_float(c["total"]), lo=_float(c["lo"]), hi=_float(c["hi"]), best=bool(c["best"]),
                                 not_applicable=c["not_applicable"], n_models=int(c["n_models"]), settings_hash=c["settings_hash"])
                    for p, c in r["cells"].items()
                },
                mean=_float(r["mean"]), worst=_float(r["worst"]),
            )
            for r in data["rows"]
        ]
        populations = [SuitePopulation(**p) for p in data["populations"]]
        scalars = ("suite", "description", "target", "kendall", "icc_bench_version", "command", "created")
        return SuiteLeaderboard(**{k: data[k] for k in scalars}, populations=populations, rows=rows)
    except (KeyError, TypeError) as e:
        raise ValueError(f"suite leaderboard JSON lacks or garbles a field ({e}); regenerate it with icc-bench leaderboard --suite.") from None


def read_suite_leaderboard(path: str | Path) -> SuiteLeaderboard:
    """Read a suite leaderboard JSON file; errors name the file."""
    path = Path(path)
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no suite leaderboard JSON here; run icc-bench evaluate --suite to make one.") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- figure and HTML


def suite_psi_figure(slb: SuiteLeaderboard) -> Figure:
    """Ψ of every row with its bootstrap interval as an error bar, one panel per population.

    Rows share the vertical axis across panels: the measures, the highest mean at the top, then
    below a line the reference rows, in grey. The best (and not distinguishable) measures of a
    population in green, the others in blue.
    A measure that does not apply to a population is marked "n/a" in its panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_mean = lambda r: (math.isfinite(r.mean), r.mean if math.isfinite(r.mean) else 0.0)
    references = sorted((r for r in slb.rows if r.reference), key=by_mean)
    rows = references + sorted((r for r in slb.rows if not r.reference), key=by_mean)  # bottom to top
    names = _population_names(slb)
    fig = Figure(figsize=(1.6 + 2.8 * max(len(names), 1), 0.35 * len(rows) + 1.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(names), 1), sharey=True, squeeze=False)[0]
    for ax, (population, info) in zip(axes, zip(names, slb.populations)):
        for i, row in enumerate(rows):
            cell = row.cells.get(population)
            if cell is None:
                continue
            if cell.not_applicable is not None:
                ax.text(0.0, i, _NA_TEXT, ha="center", va="center", fontsize=7, color="#999999")
                continue
            if not math.isfinite(cell.total):
                continue
            colour = "#999999" if row.reference else ("#2a7a2a" if cell.best else "#1f4e99")
            if math.isfinite(cell.lo) and math.isfinite(cell.hi):
                # A percentile interval need not contain the point value: drawn as a bar of its own.
                ax.plot([cell.lo, cell.hi], [i, i], "-", color=colour, linewidth=2, solid_capstyle="butt")
            ax.plot([cell.total], [i], "o", color=colour)
        ax.axvline(0.0, color="#bbbbbb", linewidth=1)
        if references and len(references) < len(rows):
            ax.axhline(len(references) - 0.5, color="#888888", linewidth=0.8)  # the reference family, below
        ax.set_xlim(-1.05, 1.05)
        ax.set_title(f"{population} ({info.n_models} models)", fontsize=9)
        ax.set_xlabel("Ψ")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
    axes[0].set_ylim(-0.6, len(rows) - 0.4)
    return fig


def _html_table(slb: SuiteLeaderboard) -> str:
    e = html.escape
    best = best_summary(slb)
    out = ['<table class="scores">', "<thead><tr><th>family</th><th>measure</th>"]
    out += [f"<th>{e(h)}</th>" for h in _headers(slb)]
    out.append("</tr></thead><tbody>")
    for family, rows in _families(slb):
        for j, row in enumerate(rows):
            classes = (["family-start"] if j == 0 else []) + (["reference"] if row.reference else [])
            name = e(row.label) + (f" <code>{e(row.measure)}</code>" if row.label != row.measure else "")
            cells = [f"<td>{e(family) if j == 0 else ''}</td>", f"<td>{name}</td>"]
            for population in _population_names(slb):
                cell = row.cells.get(population)
                value, _, interval = _cell_text(cell).partition(" ")
                is_best = cell is not None and cell.best
                shown = f"<strong>{e(value)}</strong>" if is_best else e(value)
                if interval:
                    shown += f'<br><span class="ci">{e(interval)}</span>'
                na = cell is not None and cell.not_applicable is not None
                css = "num best" if is_best else ("num na" if na else "num")
                title = f' title="not applicable: {e(cell.not_applicable)}"' if na else ""
                cells.append(f'<td class="{css}"{title}>{shown}</td>')
            mean, worst, best_on = _summary_cells(slb, row)
            for key, text in (("mean", mean), ("worst", worst)):
                cells.append(f'<td class="num best"><strong>{e(text)}</strong></td>' if row.measure in best[key] else f'<td class="num">{e(text)}</td>')
            cells.append(f'<td class="num">{e(best_on)}</td>')
            out.append(f'<tr class="{" ".join(classes)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_html(slb: SuiteLeaderboard) -> str:
    """A single self-contained HTML page: provenance, table, notes, the per-population figure."""
    e = html.escape
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>icc-bench suite leaderboard: {e(slb.suite)}</title>",
        f"<style>{_CSS} td.na {{ color: #999; font-style: italic; }}</style>", "</head><body>",
        f"<h1>Suite {e(slb.suite)}: Ψ per population</h1>", '<dl class="provenance">',
    ]
    out += [f"<dt>{e(key)}</dt><dd>{e(value)}</dd>" for key, value in _provenance(slb)]
    out.append(f"<dt>regenerate with</dt><dd><code>{e(slb.command)}</code></dd></dl>")
    out += ["<h2>Scores</h2>", _html_table(slb)]
    notes = not_applicable_notes(slb)
    if notes:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in notes) + "</ul>")
    if slb.populations:
        level = slb.level
        interval = f"its {100 * level:g}% bootstrap interval" if math.isfinite(level) and any(
            math.isfinite(c.lo) for r in slb.rows for c in r.cells.values()) else "no interval (bootstrap off)"
        out.append(
            f'<figure><img alt="Ψ with its interval, per measure, one panel per population" '
            f'src="data:image/png;base64,{_figure_png_base64(suite_psi_figure(slb))}">'
            f"<figcaption>Ψ of every row on each population, with {e(interval)}; green: best on the population "
            "or not distinguishable from it; grey: reference rows</figcaption></figure>"
        )
    out.append("<h2>Per population</h2><ul>")
    out += [f"<li><strong>{e(p.name)}</strong> ({p.n_models} models, zoo <code>{e(p.zoo)}</code>): {e(' '.join(p.verdict))}</li>"
            for p in slb.populations]
    out += ["</ul>", "<h2>How to read</h2>", f"<p>{e(HOW_TO_READ)}</p>", "</body></html>", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- files


def write_suite_leaderboard(slb: SuiteLeaderboard, out_dir: Path, stem: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``out_dir/stem.<format>`` for each format, each atomically; return the paths in order."""
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": to_html}
    return write_formats(slb, renderers, out_dir, stem, formats)
