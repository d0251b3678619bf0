"""`icc-bench evaluate` end to end: nothing computed twice, failures isolated, kills survived."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icc_bench.cli import main
from icc_bench.leaderboard import read_leaderboard
from tiny_population import subprocess_env, write_tiny

# A third-party measure in a single file. It appends "<model_id> <measure>" to $CALL_LOG on every
# call, so the tests can count what was really computed; SLEEP slows it down for the kill test.
PLUGIN = '''
import os, time
from pydantic import BaseModel
from icc_bench import Measure, hookimpl


class Settings(BaseModel, frozen=True):
    sleep: float = float(os.environ.get("SLEEP", "0"))


def _log(ctx, name):
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(f"{ctx.record['model_id']} {name}\\n")


def train_acc_copy(ctx, settings):
    """The recorded training accuracy: a measure with a known value."""
    _log(ctx, "train_acc_copy")
    time.sleep(settings.sleep)
    return float(ctx.record["train_accuracy"])


def fails_on_adam(ctx, settings):
    """Raises on the Adam models, to check failure isolation."""
    _log(ctx, "fails_on_adam")
    if ctx.hyperparams.optimizer == "adam":
        raise RuntimeError("adam is not supported by this measure")
    return float(ctx.record["test_accuracy"])


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="train_acc_copy", family="test", higher_is_better=True,
                         needs_hierarchy=False, fn=train_acc_copy, settings=Settings()))
    registry.add(Measure(name="fails_on_adam", family="test", higher_is_better=True,
                         needs_hierarchy=False, fn=fails_on_adam, settings=Settings()))
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    spec = write_tiny(tmp_path, epochs=2)
    plugin = tmp_path / "my_measures.py"
    plugin.write_text(PLUGIN)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CALL_LOG", str(log))
    return spec, plugin, log, tmp_path / "runs"


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _store_rows(zoo: Path) -> dict[tuple[str, str], tuple]:
    with sqlite3.connect(zoo / "results.sqlite") as db:
        try:
            rows = db.execute("SELECT model_id, measure, status, value, error, created FROM results").fetchall()
        except sqlite3.OperationalError:  # the evaluating process has not created the table yet
            return {}
    return {(r[0], r[1]): r[2:] for r in rows}


def test_evaluate_then_add_a_measure_computes_only_the_new_one(setup, capsys):
    spec, plugin, log, runs = setup
    zoo = runs / "tiny"
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "c3,c4"]) == 0
    first = _store_rows(zoo)
    assert len(first) == 7 * 2 and {m for _, m in first} == {"c3", "c4"}
    lb = read_leaderboard(zoo / "tiny.json")
    assert [r.measure for r in lb.rows if not r.reference] == ["c3", "c4"]
    assert [r.measure for r in lb.rows if r.reference] == ["oracle_noise_0.01", "oracle_noise_0.05", "random"]

    args = ["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "c3,c4,train_acc_copy", "--plugin", str(plugin)]
    assert main(args) == 0
    second = _store_rows(zoo)
    assert {k: v for k, v in second.items() if k[1] in ("c3", "c4")} == first  # untouched, not recomputed
    assert sorted(_calls(log)) == sorted(f"{m} train_acc_copy" for m, _ in first if _ == "c3")
    lb = read_leaderboard(zoo / "tiny.json")
    assert [r.measure for r in lb.rows if not r.reference] == ["c3", "c4", "train_acc_copy"]
    out = capsys.readouterr().out
    assert "7 values computed, 14 reused" in " ".join(out.split())
    md = (zoo / "tiny.md").read_text()
    assert "train_acc_copy" in md and "icc-bench evaluate" in md

    # A third run computes nothing at all.
    assert main(args) == 0
    assert len(_calls(log)) == 7

    # The re-render needs no computation and gives the same scores.
    assert main(["leaderboard", str(zoo), "--plugin", str(plugin), "--measures", "c3,c4,train_acc_copy"]) == 0
    again = read_leaderboard(zoo / "tiny.json")
    assert [(r.measure, r.total) for r in again.rows] == [(r.measure, r.total) for r in lb.rows]
    assert len(_calls(log)) == 7


def test_a_failing_measure_is_isolated_and_footnoted(setup, capsys):
    spec, plugin, log, runs = setup
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "fails_on_adam,c3", "--plugin", str(plugin)]) == 0
    rows = _store_rows(runs / "tiny")
    errors = {k: v for k, v in rows.items() if v[0] == "error"}
    assert len(errors) == 1  # one Adam model in the one-at-a-time grid
    ((model_id, measure), (_, value, error, _)) = next(iter(errors.items()))
    assert "_adam_" in model_id and value is None and "adam is not supported" in error
    assert sum(1 for k, v in rows.items() if k[1] == "c3" and v[0] == "ok") == 7  # the run went on
    lb = read_leaderboard(runs / "tiny" / "tiny.json")
    row = lb.row("fails_on_adam")
    assert row.errors == [(model_id, "RuntimeError: adam is not supported by this measure")]
    assert row.n_models == 6
    out = " ".join(capsys.readouterr().out.split())
    assert "adam is not supported" in out  # the footnote under the table

    # Errors are not retried unless asked.
    n = len(_calls(log))
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "fails_on_adam", "--plugin", str(plugin)]) == 0
    assert len(_calls(log)) == n
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "fails_on_adam", "--plugin", str(plugin), "--retry-errors"]) == 0
    assert _calls(log)[n:] == [f"{model_id} fails_on_adam"]


def test_hierarchy_measures_are_not_applicable_on_flat_labels(setup):
    spec, plugin, log, runs = setup
    flat = spec.read_text().replace('name = "synthetic_hierarchy"', 'name = "digits"').replace(
        "options = { superclasses = 2, subclasses = 2, train_per_subclass = 12, test_per_subclass = 8, resolution = 8 }",
        'options = { labels = "fine", resolution = 8, train_per_class = 6, test_per_class = 4 }',
    )
    spec.write_text(flat)
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "c1,c3"]) == 0
    rows = _store_rows(runs / "tiny")
    assert {v[0] for k, v in rows.items() if k[1] == "c1"} == {"not_applicable"}
    lb = read_leaderboard(runs / "tiny" / "tiny.json")
    assert "needs subclass labels" in lb.row("c1").not_applicable
    assert lb.row("c3").not_applicable is None and lb.row("c3").n_models == 7


def test_unknown_measure_is_one_clear_error(setup, capsys):
    spec, plugin, log, runs = setup
    assert main(["evaluate", str(spec), "--runs-dir", str(runs), "--measures", "inv_sigma_prim"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no measure matches 'inv_sigma_prim'" in err and "did you mean 'inv_sigma_prime'" in err
    assert not runs.exists()  # refused before anything was trained


def test_sigkill_midway_then_rerun_loses_and_recomputes_nothing(setup, tmp_path):
    spec, plugin, log, runs = setup
    zoo = runs / "tiny"
    assert main(["train", str(spec), "--runs-dir", str(runs)]) == 0
    env = {**subprocess_env(), "CALL_LOG": str(log), "SLEEP": "0.4"}
    cmd = [sys.executable, "-m", "icc_bench.cli", "evaluate", str(zoo), "--measures", "train_acc_copy", "--plugin", str(plugin)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if (zoo / "results.sqlite").exists() and len(_store_rows(zoo)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "evaluate finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _store_rows(zoo)
    assert 3 <= len(before) < 7
    calls_before = _calls(log)

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = _store_rows(zoo)
    assert len(after) == 7
    for key, row in before.items():  # nothing stored before the kill was recomputed or lost
        assert after[key] == row
    recomputed = [c for c in _calls(log)[len(calls_before):] if (c.split()[0], "train_acc_copy") in before]
    assert recomputed == []
    for (model_id, _), (status, value, *_rest) in after.items():
        record = json.loads((zoo / "models" / f"{model_id}.json").read_text())
        assert status == "ok" and value == record["train_accuracy"]
