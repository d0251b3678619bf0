"""Claims on work: two processes on one zoo split it; a dead holder's claim is taken over."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest

from icc_bench.claims import LockFiles, Owner, claimed_rounds
from icc_bench.config import load_spec
from icc_bench.population import train_population
from icc_bench.store import Leases, ResultStore
from icc_bench.zoo import Zoo
from tiny_population import subprocess_env, write_tiny
from installed_plugins import block_installed_plugins
from two_population import write_two


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    block_installed_plugins(monkeypatch)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _other_live_owner() -> Owner:
    """A process of this host that runs (this test's parent), under another token."""
    import os
    import socket

    return Owner(socket.gethostname(), os.getppid(), "someone-else")


# -- the two stores of claims ----------------------------------------------------------------------
def test_lock_files_exclude_others_and_are_taken_over_from_the_dead(tmp_path):
    mine = LockFiles(tmp_path)
    other = LockFiles(tmp_path, owner=_other_live_owner())
    assert other.claim("m0")
    assert not mine.claim("m0")  # held by a live process
    assert mine.holder("m0") == other.owner
    assert mine.claim("m1")
    assert not other.claim("m1")

    dead = LockFiles(tmp_path, owner=Owner(mine.owner.host, _dead_pid(), "dead"))
    assert dead.claim("m2")
    assert mine.claim("m2")  # its holder is gone
    assert mine.holder("m2") == mine.owner

    far = LockFiles(tmp_path, owner=Owner("another-host", 1, "far"), ttl=-1)  # expired at once
    assert far.claim("m3")
    assert mine.claim("m3")

    mine.renew()
    assert json.loads(mine.path("m1").read_text())["token"] == mine.owner.token
    mine.release_all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m0.lock"]  # only the other's is left
    mine.release("m0")  # not ours: left alone
    assert other.holder("m0") == other.owner


def test_leases_exclude_others_and_are_taken_over_from_the_dead_or_expired(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        mine = Leases(store)
        other = Leases(store, owner=_other_live_owner())
        assert other.claim("m0") and not mine.claim("m0")
        assert mine.claim("m1") and not other.claim("m1")
        assert Leases(store, owner=Owner(mine.owner.host, _dead_pid(), "dead")).claim("m2")
        assert mine.claim("m2")
        assert Leases(store, owner=Owner("another-host", 1, "far"), ttl=-1).claim("m3")
        assert mine.claim("m3")
        mine.renew()
        mine.release_all()
        rows = store._db.execute("SELECT model_id, token FROM claims").fetchall()
        assert rows == [("m0", "someone-else")]


def test_claimed_rounds_skip_what_others_hold_and_wait_for_it(tmp_path):
    """A process that finds a model claimed does the others, then waits: the model is done by its
    holder (dropped) or, its holder dead, claimed and done here."""
    mine, other = LockFiles(tmp_path), LockFiles(tmp_path, owner=_other_live_owner())
    done: set[str] = set()
    assert other.claim("b") and other.claim("c")
    rounds, waits, elsewhere = [], [], []

    def wait(held):
        waits.append(sorted(held))
        if len(waits) == 1:  # the other process finishes b and dies holding c
            done.add("b")
            other.release("b")
            mine.path("c").write_text(json.dumps({"host": mine.owner.host, "pid": _dead_pid(), "token": "x", "expires": 1e12}))

    for claimed in claimed_rounds(
        ["a", "b", "c"], mine, key=str, remaining=lambda m: None if m in done else m,
        on_done_elsewhere=lambda m, left: elsewhere.append((m, left)), on_wait=wait, poll=0.01,
    ):
        got = list(claimed)
        rounds.append(got)
        for m in got:
            done.add(m)
            mine.release(m)
    assert rounds == [["a"], [], ["c"]]
    assert waits == [["b", "c"]] and elsewhere == [("b", None)]
    assert not list(tmp_path.glob("*.lock"))


# -- two processes on one zoo ----------------------------------------------------------------------
def _trained(out: str) -> int:
    return int(re.search(r"\((\d+) trained now", " ".join(out.split())).group(1))


def test_two_trains_split_the_models_of_a_population(tmp_path):
    spec = write_tiny(tmp_path, epochs=6)
    cmd = [sys.executable, "-m", "icc_bench.cli", "train", str(spec), "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "7/7 models in the zoo" in " ".join(out.split()), out
    trained = [_trained(out) for out, _ in outs]
    assert sum(trained) == 7, trained  # each model trained once (before: 7 + 7)
    zoo = Zoo(tmp_path / "runs" / "tiny")
    for model_id in zoo.model_ids():
        zoo.check_model(model_id)
    assert not [p.name for p in zoo.models_dir.iterdir() if p.suffix in (".lock", ".tmp") or p.name.startswith(".")]


SLOW = '''
import os, time
from pydantic import BaseModel
from icc_bench import Measure, hookimpl


class Settings(BaseModel, frozen=True):
    sleep: float = 1.5


def slow_copy(ctx, settings):
    """The training accuracy, slowly; each call logged."""
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(f"{os.getpid()} {ctx.record['model_id']}\\n")
    time.sleep(settings.sleep)
    return float(ctx.record["train_accuracy"])


@hookimpl
def icc_bench_register_measures(registry):
    registry.add(Measure(name="slow_copy", family="test", higher_is_better=True, needs_hierarchy=False,
                         fn=slow_copy, settings=Settings()))
'''


def test_two_evaluates_split_the_values_and_both_show_the_leaderboard(tmp_path):
    train_population(load_spec(write_two(tmp_path)), tmp_path / "runs", device="cpu")
    zoo = Zoo(tmp_path / "runs" / "two")
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    log = tmp_path / "calls.log"
    cmd = [sys.executable, "-m", "icc_bench.cli", "evaluate", str(zoo.root), "--plugin", str(plugin), "--measures", "slow_copy"]
    env = dict(subprocess_env(), CALL_LOG=str(log))
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "slow_copy" in out and "written:" in out  # each printed the whole leaderboard
    calls = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert calls == Counter(zoo.model_ids()), calls  # each value computed once (before: twice)
    db = sqlite3.connect(zoo.root / "results.sqlite")
    try:
        assert db.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released
    finally:
        db.close()
    assert sorted(p.name for p in zoo.root.iterdir() if p.name.startswith("results.sqlite")) == ["results.sqlite"]


@pytest.mark.parametrize("what", ["train", "evaluate"])
def test_a_killed_holders_claim_does_not_block_the_next_run(tmp_path, what):
    """A process killed with its claim held (no chance to release it) leaves work that the next run does."""
    zoo = Zoo(tmp_path / "runs" / "two")
    spec = write_two(tmp_path)
    dead = Owner(LockFiles(tmp_path).owner.host, _dead_pid(), "killed")
    if what == "train":
        zoo.models_dir.mkdir(parents=True)
        for model_id in ("lr0.01_wd0_bs16_sgd_do0_aug0_w1_d1_s0", "lr0.05_wd0_bs16_sgd_do0_aug0_w1_d1_s0"):
            assert LockFiles(zoo.models_dir, owner=dead).claim(model_id)
        summary = train_population(load_spec(spec), tmp_path / "runs", device="cpu")
        assert summary.trained == 2
        assert not list(zoo.models_dir.glob("*.lock"))
        return
    train_population(load_spec(spec), tmp_path / "runs", device="cpu")
    with ResultStore(zoo.root / "results.sqlite") as store:
        for model_id in zoo.model_ids():
            assert Leases(store, owner=dead).claim(model_id)
    from icc_bench.cli import main

    assert main(["evaluate", str(zoo.root), "--measures", "c3"]) == 0
    db = sqlite3.connect(zoo.root / "results.sqlite")
    try:
        assert db.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    finally:
        db.close()


@pytest.mark.parametrize("batch_models", [1, "auto"])
def test_one_at_a_time_takes_each_job_only_when_the_previous_is_done(monkeypatch, batch_models):
    """The lock files of ``train_population`` are claimed as the executor pulls jobs: one at a time,
    it must pull the next job only after the previous one's result is out, or the first process
    on a zoo claims every model and a second one waits instead of sharing the work. "auto" (the
    CLI's default) where nothing batches (wide networks on the CPU) must do the same: it once
    pulled every job first, and a second process on digits_mini sat waiting for 140 claims."""
    import icc_bench.population as population
    import icc_bench.train_batched as train_batched

    events = []
    monkeypatch.setattr(population, "run_job", lambda job, **kw: events.append(f"train {job}") or f"result {job}")
    monkeypatch.setattr(train_batched, "auto_batches", lambda architecture, hyperparams, dev: False)

    class Job(str):  # what "auto" reads of a job: its architecture and hyperparameters
        architecture = hyperparams = None

    def jobs():
        for job in map(Job, ("a", "b", "c")):
            events.append(f"claim {job}")
            yield job

    for result in population.train_in_process(jobs(), data_dir=None, device="cpu", batch_models=batch_models):
        events.append(f"done {result.split()[1]}")
    assert events == ["claim a", "train a", "done a", "claim b", "train b", "done b", "claim c", "train c", "done c"]
