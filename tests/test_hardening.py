"""What a broken measure or an interrupted run may leave: non-finite values stored as errors, files
readable by the group, no write-ahead log left beside the results store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from icc_bench.cli import main
from icc_bench.config import load_spec
from icc_bench.population import train_population
from icc_bench.zoo import Zoo
from tiny_population import subprocess_env
from installed_plugins import block_installed_plugins
from two_population import write_two

@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    block_installed_plugins(monkeypatch)


# nan on the first model, inf on the second: neither is a value a score can use.
NON_FINITE = '''
import math, os, time
from pydantic import BaseModel
from icc_bench import Measure, hookimpl


class Settings(BaseModel, frozen=True):
    sleep: float = float(os.environ.get("SLEEP", "0"))


def not_finite(ctx, settings):
    """nan or inf, depending on the model."""
    return math.nan if ctx.hyperparams.learning_rate == 0.05 else math.inf


def slow(ctx, settings):
    """A finite value, slowly."""
    time.sleep(settings.sleep)
    return 1.0


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="not_finite", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=not_finite, settings=Settings()))
    registry.add(Measure(name="slow", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=slow, settings=Settings()))
'''


@pytest.fixture
def two(tmp_path):
    """A trained zoo of two models, and a plugin file."""
    train_population(load_spec(write_two(tmp_path)), tmp_path / "runs", device="cpu")
    plugin = tmp_path / "measures.py"
    plugin.write_text(NON_FINITE)
    return Zoo(tmp_path / "runs" / "two"), plugin


def test_nan_and_inf_are_stored_as_errors_with_the_reason_and_footnoted(two, capsys):
    zoo, plugin = two
    assert main(["evaluate", str(zoo.root), "--plugin", str(plugin), "--measures", "not_finite,c3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 errors" in out  # counted in the summary like any failure
    with sqlite3.connect(zoo.root / "results.sqlite") as db:
        rows = dict(db.execute("SELECT model_id, status || ' ' || COALESCE(value, 'NULL') || ' ' || error FROM results "
                               "WHERE measure = 'not_finite'").fetchall())
    db.close()
    assert sorted(rows.values()) == [
        "error NULL returned inf; measures must return a finite float",
        "error NULL returned nan; measures must return a finite float",
    ]
    board = json.loads((zoo.root / "two.json").read_text())
    (row,) = [r for r in board["rows"] if r["measure"] == "not_finite"]
    assert sorted(message for _, message in row["errors"]) == [
        "returned inf; measures must return a finite float", "returned nan; measures must return a finite float",
    ]
    assert "returned nan; measures must return a finite float" in (zoo.root / "two.md").read_text()  # the footnote


def test_checkpoints_are_readable_by_the_group_like_records(tmp_path):
    previous = os.umask(0o022)
    try:
        train_population(load_spec(write_two(tmp_path)), tmp_path / "runs", device="cpu", limit=1)
    finally:
        os.umask(previous)
    files = sorted((tmp_path / "runs" / "two" / "models").iterdir())
    assert {p.suffix for p in files} == {".json", ".safetensors"}
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes


def test_sigterm_closes_the_results_store_and_keeps_every_value(two):
    zoo, plugin = two
    cmd = [sys.executable, "-m", "icc_bench.cli", "evaluate", str(zoo.root), "--plugin", str(plugin), "--measures", "slow"]
    env = dict(subprocess_env(), SLEEP="3")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = zoo.root / "results.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _count(store) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the evaluation finished before it could be stopped: make it slower"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "Traceback" not in err
    left = sorted(p.name for p in zoo.root.iterdir() if p.name.startswith("results.sqlite"))
    assert left == ["results.sqlite"], left
    assert _count(store) == 1


def _count(store) -> int:
    """Rows in the results store, through a connection closed at once (an open one would keep the
    write-ahead log alive)."""
    if not store.exists():
        return 0
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        db.close()


def test_sigterm_turned_into_another_error_by_native_code_still_ends_as_terminated(monkeypatch, tmp_path):
    """safetensors' ``load_file`` calls back into Python; a SIGTERM landing there came out as a
    ValueError ("could not determine the shape of object type 'torch.storage.UntypedStorage'") and
    the command crashed with status 1. Whatever the error, once SIGTERM has arrived the command
    ends as terminated (143); without SIGTERM the same error still propagates."""
    import icc_bench.cli as cli

    def native_code_that_swallows_the_signal(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
        except cli.Terminated:
            raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'") from None
        return 0

    def plain_error(args):
        raise ValueError("a real bug")

    monkeypatch.setattr(cli, "cmd_populations", native_code_that_swallows_the_signal)
    assert cli.main(["populations"]) == 143
    monkeypatch.setattr(cli, "cmd_populations", plain_error)
    with pytest.raises(ValueError, match="a real bug"):
        cli.main(["populations"])
