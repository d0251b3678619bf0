"""Suites: the files, the suite leaderboard's arithmetic and renderings, and `--suite` end to end."""

from __future__ import annotations

import io
import json
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from icc_bench.cli import main
from icc_bench.leaderboard import Leaderboard, MeasureRow, read_leaderboard
from icc_bench.population import available_specs
from icc_bench.suite_leaderboard import (
    from_json,
    read_suite_leaderboard,
    suite_psi_figure,
    table_records,
    to_csv,
    to_html,
    to_json,
    to_markdown,
)
from icc_bench.suite_scores import score_suite
from icc_bench.suites import SuiteError, SuiteSpec, find_suite, load_suite
from tiny_population import write_two_population_suite

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- suite files


def test_shipped_suites_name_known_populations():
    paper = find_suite("paper")
    assert paper.populations == ["wrn_cifar100_coarse", "wrn_cifar100", "vgg_cifar10"]
    laptop = find_suite("laptop")  # checks that every population it names has a spec
    assert laptop.populations == ["quick", "mini", "digits_mini"]
    assert {"digits_quick", "digits_mini"} <= set(available_specs())


def _suite_file(tmp_path: Path, text: str, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('populations = ["quick", "mnii"]', "population 'mnii' names no population spec; did you mean 'mini'?"),
        ('populations = ["quick"]\ncolour = "red"', "field 'colour': Extra inputs are not permitted"),
        ("populations = []", "field 'populations'"),
        ('populations = ["quick", "quick"]', "population 'quick' is listed twice"),
        ('name = "other"\npopulations = ["quick"]', "name 'other' differs from the file name"),
        ("populations = [", "not valid TOML"),
    ],
)
def test_a_bad_suite_file_is_one_sentence_naming_the_file(tmp_path, text, expected):
    path = _suite_file(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_an_unknown_suite_name_says_did_you_mean():
    with pytest.raises(SuiteError, match=r"no suite named 'lapto'; did you mean 'laptop'\?"):
        find_suite("lapto")


# ----------------------------------------------------------------------------- score_suite on known numbers


def _row(measure: str, total: float, interval=(math.nan, math.nan), *, family="intraclass clustering", reference=False,
         not_applicable=None) -> MeasureRow:
    return MeasureRow(
        measure=measure, label=measure, family=family if not reference else "reference", higher_is_better=True, settings={},
        settings_hash="h" + measure, plugin="test", per_axis={"learning_rate": total}, groups={"learning_rate": 1}, total=total,
        cmi=math.nan, n_models=4, n_nan_dropped=0, not_applicable=not_applicable,
        intervals={"total": list(interval)} if math.isfinite(interval[0]) else {}, reference=reference,
    )


def _lb(population: str, rows: list[MeasureRow], best: list[str]) -> Leaderboard:
    return Leaderboard(
        population=population, zoo=f"runs/{population}", target="test_accuracy", kendall="tau_a", icc_bench_version="0",
        command="", created="", n_models=4, axes=["learning_rate"], rows=rows, best={"total": best},
        bootstrap={"draws": 10, "level": 0.9, "seed": 0, "resampled": "groups only"}, verdict=[f"{population} verdict"],
    )


@pytest.fixture
def three_populations() -> tuple[SuiteSpec, list[Leaderboard]]:
    suite = SuiteSpec(name="s", description="three", populations=["a", "b", "c"])
    leaderboards = [
        _lb("a", [_row("c1", 0.5, (0.3, 0.7)), _row("c3", 0.4, (0.1, 0.6)), _row("sharp", 0.1, (-0.2, 0.3), family="sharpness"),
                  _row("random", 0.9, (0.8, 1.0), reference=True)], best=["c1", "c3"]),
        _lb("b", [_row("c1", math.nan, not_applicable="needs a hierarchy"), _row("c3", 0.2, (0.0, 0.4)),
                  _row("sharp", 0.6, (0.5, 0.7), family="sharpness"), _row("random", -0.1, reference=True)], best=["sharp"]),
        _lb("c", [_row("c1", math.nan, not_applicable="needs a hierarchy"), _row("c3", -0.3, (-0.5, 0.0)),
                  _row("sharp", math.nan, family="sharpness"), _row("random", 0.0, reference=True)], best=["c3"]),
    ]
    return suite, leaderboards


def test_score_suite_mean_worst_and_best_on(three_populations):
    suite, leaderboards = three_populations
    slb = score_suite(suite, leaderboards, command="icc-bench evaluate --suite s")
    assert [r.measure for r in slb.rows] == ["c1", "c3", "sharp", "random"]
    c1, c3, sharp, random = slb.rows
    # c1 applies to one population only: the mean is over it alone, and says so.
    assert (c1.mean, c1.n_mean, c1.worst, c1.worst_population, c1.best_on) == (0.5, 1, 0.5, "a", 1)
    assert c1.cells["b"].not_applicable == "needs a hierarchy" and not c1.cells["b"].best
    assert c3.mean == pytest.approx((0.4 + 0.2 - 0.3) / 3) and c3.n_mean == 3
    assert (c3.worst, c3.worst_population, c3.best_on) == (-0.3, "c", 2)
    assert (c3.cells["a"].lo, c3.cells["a"].hi) == (0.1, 0.6)
    # A NaN Psi (no value) is left out of the mean like a not-applicable one.
    assert sharp.mean == pytest.approx(0.35) and sharp.n_mean == 2 and (sharp.worst_population, sharp.best_on) == ("a", 1)
    # Reference rows: their own family, averaged, never counted as best.
    assert random.reference and random.family == "reference" and random.best_on is None
    assert random.mean == pytest.approx(0.8 / 3) and random.worst_population == "b"


def test_score_suite_refuses_leaderboards_of_other_populations(three_populations):
    suite, leaderboards = three_populations
    with pytest.raises(ValueError, match="lists the populations"):
        score_suite(suite, leaderboards[::-1])


def test_suite_renderings(three_populations):
    suite, leaderboards = three_populations
    slb = score_suite(suite, leaderboards, command="icc-bench evaluate --suite s")
    md = to_markdown(slb)
    assert "| family | measure | a | b | c | mean Ψ | worst Ψ | best on |" in md
    assert "| intraclass clustering | c1 | **0.50** [0.30, 0.70] | n/a | n/a | 0.50 (over 1 of 3) | 0.50 (a) | 1 of 3 |" in md
    assert "| reference | random | 0.90 [0.80, 1.00] | -0.10 | 0.00 | 0.27 | -0.10 (b) |  |" in md
    assert "c1: not applicable on b, c (needs a hierarchy)" in md
    assert "`icc-bench evaluate --suite s`" in md
    # Only c3 is scored on every population: its mean and worst case are the bold ones.
    assert "| **0.10** | **-0.30 (c)** | 2 of 3 |" in md

    again = from_json(to_json(slb))  # (dataclass equality would say NaN != NaN: compare the JSON)
    assert json.loads(to_json(again)) == json.loads(to_json(slb)) and to_markdown(again) == md

    frame = pd.read_csv(io.StringIO(to_csv(slb)), comment="#").set_index("measure")
    expected = pd.DataFrame(table_records(slb)).set_index("measure")
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_series_equal(frame["Psi_a_lo"], expected["Psi_a_lo"])
    assert frame.loc["c1", "not_applicable"] == "b: needs a hierarchy; c: needs a hierarchy"
    assert math.isnan(frame.loc["c1", "Psi_b"]) and frame.loc["c3", "n_mean"] == 3 and frame.loc["c3", "best_on"] == 2

    page = to_html(slb)
    assert page.count("<img ") == 1 and "one panel per population" in page
    fig = suite_psi_figure(slb)
    assert [ax.get_title() for ax in fig.axes] == ["a (4 models)", "b (4 models)", "c (4 models)"]



# ----------------------------------------------------------------------------- end to end


def _store_rows(zoo: Path) -> list[tuple]:
    with sqlite3.connect(zoo / "results.sqlite") as db:
        return sorted(db.execute("SELECT model_id, measure, status, value, created FROM results").fetchall())


def test_suite_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ICC_BENCH_SPECS", str(write_two_population_suite(tmp_path / "specs")))
    runs = tmp_path / "runs"
    common = ["--suite", "two", "--runs-dir", str(runs), "--measures", "c1,c3,c4", "--bootstrap", "100"]

    assert main(["leaderboard", *common]) == 2  # nothing trained yet: one sentence, nothing written
    assert "population 'tiny_hier' has no stored values" in capsys.readouterr().err
    assert main(["evaluate", "tiny_hier", *common]) == 2
    assert "not both" in capsys.readouterr().err

    assert main(["evaluate", *common]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "21 values computed, 0 reused" in out and "14 values computed, 0 reused" in out and "7 not applicable" in out
    slb = read_suite_leaderboard(runs / "suites" / "two" / "two.json")
    assert [p.name for p in slb.populations] == ["tiny_hier", "tiny_flat"] and all(p.n_models == 7 for p in slb.populations)
    assert slb.command.startswith("icc-bench evaluate --suite two")
    assert [r.measure for r in slb.rows] == ["c1", "c3", "c4", "oracle_noise_0.01", "oracle_noise_0.05", "random"]
    population_lbs = {name: read_leaderboard(runs / name / f"{name}.json") for name in ("tiny_hier", "tiny_flat")}
    for row in slb.rows:
        scored = []
        for name, lb in population_lbs.items():
            own = lb.row(row.measure)
            cell = row.cells[name]
            assert cell.not_applicable == own.not_applicable and cell.best == (row.measure in lb.best["total"] and not own.reference)
            if own.not_applicable is None and math.isfinite(own.total):
                assert (cell.total, [cell.lo, cell.hi]) == (own.total, own.intervals["total"])
                scored.append(own.total)
        assert row.n_mean == len(scored) and (row.mean == pytest.approx(sum(scored) / len(scored)) if scored else math.isnan(row.mean))
    c1 = slb.row("c1")
    assert c1.cells["tiny_flat"].not_applicable and "label hierarchy" in c1.cells["tiny_flat"].not_applicable
    assert c1.n_mean == 1 and c1.worst_population == "tiny_hier"
    md = (runs / "suites" / "two" / "two.md").read_text()
    assert "(over 1 of 2)" in md and "n/a" in md
    assert (runs / "suites" / "two" / "two.html").read_text().count("<img ") == 1

    # Again: nothing trained or computed; then the suite leaderboard alone, from the stores.
    before = {name: _store_rows(runs / name) for name in population_lbs}
    assert main(["evaluate", *common]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("0 values computed, 21 reused") == 2 and out.count("(0 trained now") == 2
    out_dir = tmp_path / "board"
    assert main(["leaderboard", *common, "--out", str(out_dir)]) == 0
    assert {name: _store_rows(runs / name) for name in population_lbs} == before
    again = read_suite_leaderboard(out_dir / "two.json")
    assert [(r.measure, r.mean, r.n_mean, r.worst_population, r.best_on) for r in again.rows] == \
        [(r.measure, r.mean, r.n_mean, r.worst_population, r.best_on) for r in read_suite_leaderboard(runs / "suites" / "two" / "two.json").rows]
