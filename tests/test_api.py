"""The Python API: DataFrames of a zoo, values shared with the CLI both ways, and the documented example."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest

import icc_bench
import icc_bench.api
from icc_bench.cli import main
from icc_bench.leaderboard import read_leaderboard
from icc_bench.registry import UnknownMeasureError
from tiny_population import write_tiny, write_two_population_suite

REPO = Path(__file__).resolve().parents[1]

# Two measures with a known value that log "<model_id> <measure> <offset>" to $CALL_LOG on every call,
# so that a test counts what was really computed, and by whom.
PLUGIN = '''
import os
from pydantic import BaseModel
from icc_bench import Measure, hookimpl


class Settings(BaseModel, frozen=True):
    offset: float = 0.0


def _counted(name):
    def fn(ctx, settings):
        with open(os.environ["CALL_LOG"], "a") as f:
            f.write(f"{ctx.record['model_id']} {name} {settings.offset}\\n")
        return float(ctx.record["train_accuracy"]) + settings.offset
    return fn


@hookimpl
def icc_bench_register_measures(registry):
    for name in ("first_python", "first_cli"):
        registry.add(Measure(name=name, family="test", higher_is_better=True, needs_hierarchy=False,
                             fn=_counted(name), settings=Settings()))
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    spec = write_tiny(tmp_path, epochs=2)
    # A population setting, which Python must apply exactly as the CLI does, or the keys differ.
    spec.write_text(spec.read_text() + "\n[measure_settings.first_python]\noffset = 1.0\n[measure_settings.first_cli]\noffset = 2.0\n")
    plugin = tmp_path / "counted.py"
    plugin.write_text(PLUGIN)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CALL_LOG", str(log))
    return spec, plugin, log, tmp_path / "runs"


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_values_computed_in_python_are_reused_by_the_cli_and_back(setup, capsys):
    spec, plugin, log, runs = setup
    zoo = icc_bench.open_zoo(spec, runs_dir=runs, plugins=[str(plugin)])
    summary = zoo.train()
    assert summary.trained == 7 and zoo.root == runs / "tiny"
    records = zoo.records()
    assert len(records) == 7 and records.index.name == "model_id"
    assert {"train_accuracy", "test_accuracy", "learning_rate", "batch_size", "optimizer", "dropout"} <= set(records.columns)

    # Python first: seven calls, values with the population's offset.
    first = zoo.compute("first_python")
    assert len(_calls(log)) == 7 and sorted({tuple(line.split()[1:]) for line in _calls(log)}) == [("first_python", "1.0")]
    assert first.attrs == {"computed": 7, "reused": 0, "errors": 0, "not_applicable": 0}
    np.testing.assert_allclose(first.loc[records.index], records["train_accuracy"] + 1.0)

    # The CLI reuses it, and computes the other measure.
    args = ["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "first_python,first_cli", "--plugin", str(plugin),
            "--bootstrap", "50"]
    assert main(args) == 0
    assert "7 values computed, 7 reused" in " ".join(capsys.readouterr().out.split())
    calls = _calls(log)
    assert len(calls) == 14 and sorted({tuple(line.split()[1:]) for line in calls[7:]}) == [("first_cli", "2.0")]

    # Python reuses what the CLI computed.
    second = zoo.compute("first_cli")
    assert len(_calls(log)) == 14 and second.attrs["computed"] == 0 and second.attrs["reused"] == 7
    np.testing.assert_allclose(second.loc[records.index], records["train_accuracy"] + 2.0)

    # Other settings are other values: computed, and not mistaken for the stored ones.
    third = zoo.compute("first_cli", offset=5.0)
    assert len(_calls(log)) == 21 and third.attrs["computed"] == 7
    np.testing.assert_allclose(third.loc[records.index], records["train_accuracy"] + 5.0)

    values = zoo.values()  # the registered measures, with the population's settings, that have values
    assert list(values.columns) == ["first_python", "first_cli"] and list(values.index) == list(records.index)
    np.testing.assert_allclose(values["first_cli"], second.loc[values.index])

    # Scores: the numbers of the CLI's leaderboard, as columns.
    scores = zoo.scores(bootstrap=50)
    lb = read_leaderboard(runs / "tiny" / "tiny.json")
    assert list(scores.index) == [row.measure for row in lb.rows]
    for row in lb.rows:
        got = scores.loc[row.measure]
        assert got["reference"] == row.reference and got["best"] == (row.measure in lb.best["total"])
        for column, key in [("Psi", "total"), ("cmi", "cmi"), *((f"psi_{a}", a) for a in lb.axes)]:
            value = row.total if key == "total" else row.cmi if key == "cmi" else row.per_axis[key]
            assert got[column] == pytest.approx(value, nan_ok=True)
            lo, hi = row.intervals.get(key, (math.nan, math.nan))
            assert (got[f"{column}_lo"], got[f"{column}_hi"]) == pytest.approx((lo, hi), nan_ok=True)
        for kind in ("robust", "mean"):
            expected = (row.sign_error or {}).get(kind, {}).get("all")
            assert got[f"sign_error_{kind}"] == pytest.approx(math.nan if expected is None else expected, nan_ok=True)
    assert len(_calls(log)) == 21  # scoring computes nothing

    with pytest.raises(UnknownMeasureError, match="did you mean 'first_cli'"):
        zoo.compute("first_clj")


def test_documented_examples_run(tmp_path, monkeypatch):
    """The example of icc_bench.api's docstring and README.md's Python section, as written.

    Population and suite names are the real ones (quick, laptop); $ICC_BENCH_SPECS points them at
    tiny stand-ins, as a user would point icc-bench at their own specs.
    """
    specs = write_two_population_suite(tmp_path / "specs", suite="laptop")
    for stand_in, name in (("tiny_hier", "quick"), ("tiny_flat", "mini")):
        (specs / f"{stand_in}.toml").rename(specs / f"{name}.toml")
    (specs / "suites" / "laptop.toml").write_text('populations = ["quick", "mini"]\n')
    monkeypatch.setenv("ICC_BENCH_SPECS", str(specs))
    monkeypatch.setenv("ICC_BENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    results = doctest.testmod(icc_bench.api, optionflags=flags, raise_on_error=False)
    assert results.attempted >= 10 and results.failed == 0
    readme = doctest.testfile(str(REPO / "README.md"), module_relative=False, optionflags=flags)
    assert readme.attempted >= 5 and readme.failed == 0
    assert (tmp_path / "runs" / "quick" / "results.sqlite").is_file() and (tmp_path / "runs" / "mini" / "results.sqlite").is_file()
