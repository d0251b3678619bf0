"""The leaderboard as a self-contained HTML page, with the scatter plots of the paper's Figure 3."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icc_bench.leaderboard.model import TARGET_LABELS, Leaderboard
from icc_bench.leaderboard.table import (
    HELDOUT_LEGEND,
    HELDOUT_MARK,
    HOW_TO_READ,
    _fmt,
    _footnote_title,
    _footnotes,
    _paired_text,
    _provenance,
    _settings_text,
    build_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAX_CATEGORIES = 10  # a numeric hyperparameter with more distinct values gets a colour scale


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
    ax.set_ylabel(TARGET_LABELS[lb.target])
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
    layout = build_table(lb)
    out = ['<table class="scores">', "<thead><tr><th>family</th><th>measure</th>"]
    out += [f"<th>{e(header)}</th>" for header in layout.headers]
    out.append("</tr></thead><tbody>")
    for line in layout.rows:
        row = line.row
        classes = (["family-start"] if line.first_of_family else []) + (["na"] if row.not_applicable is not None else []) + (["reference"] if row.reference else [])
        name = e(row.label) + (f" {HELDOUT_MARK}" if row.reads_heldout else "") + (f" <code>{e(row.measure)}</code>" if row.label != row.measure else "")
        if line.footnote is not None:
            name += f' <sup><a href="#note-{line.footnote}">[{line.footnote}]</a></sup>'
        cells = [f"<td>{e(line.family)}</td>", f"<td>{name}</td>"]
        if row.not_applicable is not None:
            cells.append(f'<td colspan="{len(layout.headers)}">not applicable: {e(row.not_applicable)}</td>')
        else:
            for cell in line.cells:
                text = e(cell.text)
                shown = f"<strong>{text}</strong>" if cell.best else text
                if cell.with_interval:
                    shown += f'<br><span class="ci">{e(cell.interval)}</span>'
                cells.append(f'<td class="num best">{shown}</td>' if cell.best else f'<td class="num">{shown}</td>')
            cells += [f'<td class="num">{e(_fmt(value))}</td>' for value in line.sign_errors]
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
