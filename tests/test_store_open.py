"""Opening a results store while other processes open it too: never 'database is locked'.

CI once failed because two `icc-bench evaluate` started together on one zoo: one of them hit
SQLite's "database is locked" while switching the brand-new file to WAL, a lock SQLite does not
wait for with its busy handler. The store retries those steps (``_retry_while_locked``).
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

import icc_bench.store as store_module
from icc_bench.store import ResultStore


def _open_and_write(path: str, barrier, failures) -> None:
    barrier.wait()
    try:
        with ResultStore(path) as store:
            store.put(model_id=f"m{mp.current_process().pid}", checkpoint_sha256="0", measure="x",
                      settings_hash="h", seed=0, settings={}, status="ok", value=1.0)
    except Exception as exc:  # reported to the parent, which fails the test with it
        failures.put(repr(exc))


def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path):
    ctx = mp.get_context("fork")
    failures = ctx.SimpleQueue()
    rounds, width = 15, 6
    for r in range(rounds):  # a new file each round: the race is in creating it
        path = str(tmp_path / f"round{r}" / "results.sqlite")
        barrier = ctx.Barrier(width)
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier, failures)) for _ in range(width)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * width
        errors = []
        while not failures.empty():
            errors.append(failures.get())
        assert errors == [], f"round {r}: {errors}"
        with ResultStore(path) as store:
            assert store.count() == width


def test_a_locked_step_is_retried_until_it_passes(tmp_path):
    calls = []

    def step():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert store_module._retry_while_locked(step, tmp_path / "r.sqlite") == "done"
    assert len(calls) == 3


def test_other_sqlite_errors_are_not_retried(tmp_path):
    calls = []

    def step():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: results")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store_module._retry_while_locked(step, tmp_path / "r.sqlite")
    assert len(calls) == 1


def test_a_lock_that_never_goes_names_the_file_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.05)

    def step():
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match=r"r\.sqlite is still locked by another process.*run the command again"):
        store_module._retry_while_locked(step, tmp_path / "r.sqlite")
