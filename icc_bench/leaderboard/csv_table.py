"""The leaderboard as CSV: one row per measure, full precision."""

from __future__ import annotations

import csv
import io
import math

from icc_bench.leaderboard.model import Leaderboard
from icc_bench.leaderboard.table import _provenance, build_table


def to_csv(lb: Leaderboard) -> str:
    """One row per measure, full precision, NaN as an empty field, provenance as ``# key: value``.

    Read it with ``pandas.read_csv(path, comment="#")``; every text field is quoted, so a ``#``
    inside one is kept. Rows keep the leaderboard's order (the other formats group families).
    """
    layout = build_table(lb)
    buffer = io.StringIO()
    for key, value in [*_provenance(lb), ("command", lb.command), *(("verdict", line) for line in lb.verdict)]:
        buffer.write(f"# {key}: {' '.join(value.split())}\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    keys = [key for key, _ in layout.columns]
    extra = [f"sign_error_{kind}" for kind, _ in layout.sign_error_columns]
    writer.writerow(["measure", "family", "direction", "reference", *[f"{k}{suffix}" for k in keys for suffix in ("", "_lo", "_hi")],
                     *extra, "n_models", "n_errors", "settings_hash", "not_applicable"])
    finite = lambda v: v if v is not None and math.isfinite(v) else None
    by_measure = layout.by_measure
    for row in lb.rows:
        line = by_measure[row.measure]
        scores = [v for cell in line.cells for v in (finite(cell.value), finite(cell.lo), finite(cell.hi))]
        writer.writerow([
            row.measure, row.family, "higher_is_better" if row.higher_is_better else "lower_is_better", int(row.reference),
            *scores, *[finite(value) for value in line.sign_errors],
            row.n_models, len(row.errors), row.settings_hash, row.not_applicable,
        ])
    return buffer.getvalue()
