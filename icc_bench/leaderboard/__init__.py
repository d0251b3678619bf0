"""Leaderboards: the scores of every measure on one population, rendered for people and programs.

This package only renders. :mod:`icc_bench.scores` scores each measure from the results store
(:func:`icc_bench.scoring.granulated_kendall`, :func:`icc_bench.scoring.conditional_mutual_information`,
the bootstrap) and fills a :class:`Leaderboard` (:mod:`~icc_bench.leaderboard.model`, the data model
and its JSON); everything here turns that object into

- a terminal table (:func:`render_terminal`, rich), in the shape of the paper's Tables 1-3: one row
  per measure grouped by family, one column per hyperparameter axis, then Psi and CMI;
- Markdown (:func:`to_markdown`), CSV (:func:`to_csv`), JSON (:func:`to_json` / :func:`from_json`)
  and a self-contained HTML page with the scatter plots of the paper's Figure 3 (:func:`to_html`);
- files, each written atomically (:func:`write_leaderboard`).

Every rendering carries its provenance (population, zoo, target, Kendall variant, icc-bench version,
measures with their settings) and the command that regenerates it, so that a leaderboard file is
never edited by hand. The JSON holds everything shown and reads back with :func:`from_json`;
``icc-bench leaderboard`` does not read it: it re-scores from the results store
(:mod:`icc_bench.scores`), computing no measure.

The modules: :mod:`~icc_bench.leaderboard.model` (data model, JSON), :mod:`~icc_bench.leaderboard.table`
(the one table builder: columns, cells, best marks, footnotes, provenance), which feeds
:mod:`~icc_bench.leaderboard.terminal`, :mod:`~icc_bench.leaderboard.markdown`,
:mod:`~icc_bench.leaderboard.csv_table` and :mod:`~icc_bench.leaderboard.page` (HTML and its
figures); :mod:`~icc_bench.leaderboard.files` writes them.

Conventions shared by every format: every file opens with the verdict (:mod:`icc_bench.verdict`);
numbers with two decimals, each score followed by its bootstrap interval in brackets (CSV: columns
``<key>_lo`` and ``<key>_hi``), NaN (an axis with no group, a measure with no value) as "–"; in bold,
per column, the best value and every measure not distinguishable from it (:mod:`icc_bench.scores`;
reference rows are never marked); the reference rows in their own family; a measure that failed on
some models gets a numbered footnote listing them; a measure that does not apply to the population
shows the reason and no numbers; the paired comparisons of Psi as a matrix below the table; the
sign-error columns when asked for (always in the JSON).
"""

from icc_bench.leaderboard.csv_table import to_csv
from icc_bench.leaderboard.files import FORMATS, write_leaderboard
from icc_bench.leaderboard.markdown import to_markdown
from icc_bench.leaderboard.model import (
    JSON_FORMAT,
    JSON_VERSION,
    SHORT_AXIS_NAMES,
    Leaderboard,
    MeasureRow,
    Point,
    from_json,
    read_leaderboard,
    to_json,
)
from icc_bench.leaderboard.page import psi_figure, scatter_figure, to_html
from icc_bench.leaderboard.table import HELDOUT_LEGEND, HELDOUT_MARK, HOW_TO_READ, best_by_column, build_table, sign_error_value
from icc_bench.leaderboard.terminal import render_terminal

__all__ = [
    "FORMATS", "HELDOUT_LEGEND", "HELDOUT_MARK", "HOW_TO_READ", "JSON_FORMAT", "JSON_VERSION", "SHORT_AXIS_NAMES",
    "Leaderboard", "MeasureRow", "Point", "best_by_column", "build_table", "from_json", "psi_figure", "read_leaderboard",
    "render_terminal", "scatter_figure", "sign_error_value", "to_csv", "to_html", "to_json", "to_markdown",
    "write_leaderboard",
]
