"""The leaderboard as a Markdown document."""

from __future__ import annotations

from icc_bench.leaderboard.model import Leaderboard, MeasureRow
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
    layout = build_table(lb)
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

    out.append("| family | measure | " + " | ".join(layout.headers) + " |")
    out.append("| --- | --- | " + " | ".join("---:" for _ in layout.headers) + " |")
    for line in layout.rows:
        row = line.row
        name = _md_measure_name(row) + (f" [{line.footnote}]" if line.footnote is not None else "")
        if row.not_applicable is not None:
            name += f" — *not applicable: {_md_escape(row.not_applicable)}*"
            cells = [""] * len(layout.headers)
        else:
            cells = [
                f"**{cell.text}** {cell.interval}".strip() if cell.best
                else (f"{cell.text} {cell.interval}" if cell.with_interval else cell.text)
                for cell in line.cells
            ] + [_fmt(value) for value in line.sign_errors]
        out.append(f"| {_md_escape(line.family)} | {name} | " + " | ".join(cells) + " |")
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
