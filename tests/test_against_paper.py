"""leaderboards/against_paper.py: the paper's transcribed tables beside a leaderboard, cell by cell."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
spec = importlib.util.spec_from_file_location("against_paper", LEADERBOARDS / "against_paper.py")
against_paper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(against_paper)


def _board(values: dict[str, list[float]], half_width: float) -> dict:
    """A leaderboard JSON whose rows take ``values`` (lr..depth, Psi), each with an interval."""
    rows = []
    for measure, v in values.items():
        cells = dict(zip([*against_paper.AXES, "total"], v))
        rows.append({
            "measure": measure, "per_axis": {a: cells[a] for a in against_paper.AXES}, "total": cells["total"],
            "intervals": {a: [x - half_width, x + half_width] for a, x in cells.items()}, "not_applicable": None,
        })
    return {"n_models": 192, "command": "icc-bench evaluate fake --out leaderboards", "rows": rows,
            "bootstrap": {"level": 0.9}, "verdict": ["Best: c3.", "Families: c3 ahead."]}


def test_the_paper_against_itself_is_inside_every_interval_and_shifted_values_are_not(tmp_path):
    shutil.copy(LEADERBOARDS / "paper.md", tmp_path / "paper.md")
    tables = against_paper.paper_tables(tmp_path / "paper.md")
    assert sorted(tables) == ["1", "2", "3"]
    table1 = tables["1"][1]
    assert list(table1) == ["c1", "c2", "c3", "c4", "inv_sigma_prime", "inv_sigma_dprime", "inv_alpha_prime", "inv_alpha_dprime"]
    assert table1["c3"][-1] == 0.73 and table1["inv_alpha_prime"][1] == 0.94  # Psi of c3; bs of 1/alpha'

    (tmp_path / "same.json").write_text(json.dumps(_board(table1, 0.01)))
    (tmp_path / "low.json").write_text(json.dumps(_board({m: [x - 0.5 for x in v] for m, v in table1.items()}, 0.1)))
    assert against_paper.main(["--dir", str(tmp_path), "same=1", "low=1"]) == 0
    text = (tmp_path / "against_paper.md").read_text()
    same, low = text.split("## same beside")[1].split("## low beside")
    assert "inside our interval in 72 of 72 cells, above it in 0, below it in 0" in same
    assert "inside our interval in 0 of 72 cells, above it in 72, below it in 0" in low
    assert "| c3 | 0.88 [0.87, 0.89] / 0.88 in |" in same
    assert "python leaderboards/against_paper.py same=1 low=1" in text and "Our verdict. Families: c3 ahead." in text
