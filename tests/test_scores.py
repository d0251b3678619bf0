"""Scores with their uncertainty, end to end: every format carries intervals, references and a verdict."""

from __future__ import annotations

import csv

import pytest

from icc_bench.cli import main
from icc_bench.leaderboard import read_leaderboard, to_markdown
from icc_bench.zoo import Zoo
from tiny_population import write_tiny


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scores")
    spec = write_tiny(tmp, epochs=2)
    runs = tmp / "runs"
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "c3,c4", "--bootstrap", "200",
                 "--score", "sign-error"]) == 0
    return runs / "tiny"


def test_every_format_carries_intervals_references_and_the_verdict(evaluated):
    lb = read_leaderboard(evaluated / "tiny.json")
    assert lb.bootstrap["draws"] == 200 and lb.bootstrap["resampled"] == "groups and test images"
    assert lb.verdict and any("Reference rows" in line for line in lb.verdict)
    for row in lb.rows:
        lo, hi = row.intervals["total"]
        assert lo <= hi
        assert row.sign_error is not None and row.sign_error["n_test"] > 0
    assert {r.measure for r in lb.rows if r.reference} == {"oracle_noise_0.01", "oracle_noise_0.05", "random"}
    assert not set(lb.best["total"]) & {r.measure for r in lb.rows if r.reference}  # references are never best
    assert lb.paired["c3"]["c4"] == pytest.approx(1 - lb.paired["c4"]["c3"])
    # tiny is a one-at-a-time design: one group per axis, so the verdict cautions about seed noise.
    assert {n for r in lb.rows if not r.reference for n in r.groups.values()} <= {0, 1}
    assert any(line.startswith("Caution: every axis has one group") for line in lb.verdict)
    md = (evaluated / "tiny.md").read_text()
    assert md.startswith("# Granulated Kendall: tiny\n\n**Verdict.**")
    c3 = lb.row("c3")
    assert f"{c3.total:.2f} [{c3.intervals['total'][0]:.2f}, {c3.intervals['total'][1]:.2f}]".replace("-0.00", "0.00") in md
    assert "## Paired comparisons" in md and "SE max" in md
    with open(evaluated / "tiny.csv") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    by_name = {r["measure"]: r for r in rows}
    assert float(by_name["c3"]["total_lo"]) == pytest.approx(c3.intervals["total"][0])
    assert by_name["random"]["reference"] == "1" and "sign_error_robust" in rows[0]
    html = (evaluated / "tiny.html").read_text()
    assert 'class="verdict"' in html and "bootstrap interval</figcaption>" in html


def test_bootstrap_off_and_a_zoo_without_predictions(evaluated, tmp_path, monkeypatch):
    assert main(["leaderboard", str(evaluated), "--measures", "c3,c4", "--bootstrap", "0", "--out", str(tmp_path / "off")]) == 0
    off = read_leaderboard(tmp_path / "off" / "tiny.json")
    assert all(not r.intervals for r in off.rows) and "Intervals are off" in off.verdict[0]
    on = read_leaderboard(evaluated / "tiny.json")
    assert [r.total for r in off.rows] == [r.total for r in on.rows]  # the point values do not depend on it

    # An old zoo: records without predictions (trained before they were kept) still score, with the
    # bootstrap over configurations only. Rewriting the records would reseal them and change the
    # checkpoints' hashes, so the zoo's reader is told there are none.
    monkeypatch.setattr(Zoo, "read_predictions", lambda self, model_id: None)
    assert main(["leaderboard", str(evaluated), "--measures", "c3,c4", "--bootstrap", "200", "--out", str(tmp_path / "old")]) == 0
    old = read_leaderboard(tmp_path / "old" / "tiny.json")
    assert old.bootstrap["resampled"].startswith("groups only")
    assert any("Intervals resample groups only" in line for line in old.verdict)
    assert "groups only" in to_markdown(old)
    assert [r.total for r in old.rows if not r.reference] == [r.total for r in on.rows if not r.reference]


@pytest.mark.parametrize("args, message", [
    (["--bootstrap", "-5"], "--bootstrap -5"),
    (["--ci", "1.2"], "--ci 1.2"),
])
def test_bad_bootstrap_options_are_one_sentence(evaluated, capsys, args, message):
    assert main(["leaderboard", str(evaluated), "--measures", "c3,c4", *args]) == 2
    assert message in capsys.readouterr().err


def test_the_seed_noise_caution_needs_one_group_on_every_axis(evaluated):
    """A row with two groups on some axis (a full grid) takes the caution away."""
    import dataclasses

    from icc_bench.verdict import verdict_lines

    lb = read_leaderboard(evaluated / "tiny.json")
    assert any(line.startswith("Caution:") for line in verdict_lines(lb))
    rows = [dataclasses.replace(r, groups={**r.groups, "learning_rate": 2}) for r in lb.rows]
    assert not any(line.startswith("Caution:") for line in verdict_lines(dataclasses.replace(lb, rows=rows)))


def test_a_value_shared_by_many_models_gets_a_tie_note():
    """More than 5% of the models on one value (a sharpness measure at its cap): a note says how
    many, so the reader knows Kendall ranks fewer pairs; a few coincidences get none."""
    import numpy as np

    from icc_bench.scores import tie_note

    capped = np.array([1.1e12] * 42 + list(np.linspace(1.0, 2.0, 102)))
    assert tie_note("inv_alpha_dprime", capped) == (
        "ties: inv_alpha_dprime gives 42 of 144 models one value (1.1e+12); Kendall cannot order them among themselves"
    )
    few = np.array([3.0] * 7 + list(np.linspace(1.0, 2.0, 137)) + [np.nan] * 5)  # 7 of 144 finite: 4.9%
    assert tie_note("m", few) is None
    eight = np.array([3.0] * 8 + list(np.linspace(1.0, 2.0, 136)))  # 8 of 144: 5.6%
    assert tie_note("m", eight).startswith("ties: m gives 8 of 144 models one value (3)")
    assert tie_note("m", np.array([1.0, 1.0])) == "ties: m gives 2 of 2 models one value (1); Kendall cannot order them among themselves"
    assert tie_note("m", np.array([1.0, np.nan])) is None
