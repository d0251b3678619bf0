"""The leaderboard on a terminal (rich), in the shape of the paper's Tables 1-3."""

from __future__ import annotations

from typing import TYPE_CHECKING

from icc_bench.leaderboard.model import Leaderboard
from icc_bench.leaderboard.table import HELDOUT_LEGEND, HELDOUT_MARK, _caption, _fmt, _footnote_title, _footnotes, build_table

if TYPE_CHECKING:
    from rich.console import Console


def render_terminal(lb: Leaderboard, console: Console) -> None:
    """Print the table (paper's shape, families as sections) and its footnotes to ``console``.

    The best value of each column is bold and followed by ``*``.
    """
    from rich.table import Table
    from rich.text import Text

    layout = build_table(lb)
    table = Table(
        title=f"Granulated Kendall: {lb.population}", caption=_caption(lb) + " · bold* = best of column",
        title_justify="left", caption_justify="left",
    )
    if lb.bootstrap.get("draws"):
        table.caption += f" (and every measure not distinguishable from it at {100 * lb.bootstrap['level']:g}%) · \\[interval]"
    table.add_column("family", style="bold", overflow="fold", max_width=24)
    table.add_column("measure", overflow="fold", max_width=36)
    for header in layout.headers:
        table.add_column(header, justify="right", min_width=11 if lb.bootstrap.get("draws") else None)
    for i, line in enumerate(layout.rows):
        row = line.row
        if line.first_of_family and i:
            table.add_section()
        name = Text(row.label + (f" {HELDOUT_MARK}" if row.reads_heldout else ""))
        if row.label != row.measure:
            name.append(f" {row.measure}", style="dim")
        if line.footnote is not None:
            name.append(f" [{line.footnote}]", style="yellow")
        family_cell = Text(line.family)
        if row.not_applicable is not None:
            name.append(f"\nnot applicable: {row.not_applicable}", style="italic")
            table.add_row(family_cell, name, *([""] * len(layout.headers)), style="dim")
            continue
        cells = []
        for cell in line.cells:
            shown = Text(cell.text + "*", style="bold") if cell.best else Text(cell.text + " ")
            if cell.with_interval:
                shown.append("\n" + cell.interval.replace(" ", ""), style="dim")
            cells.append(shown)
        cells += [Text(_fmt(value) + " ") for value in line.sign_errors]
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
