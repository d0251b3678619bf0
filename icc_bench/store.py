"""The results store: every measured value of a zoo, in ``<zoo>/results.sqlite``.

One row per (model, checkpoint sha256, measure, settings hash). The checkpoint hash in the key means
a retrained or altered model never reuses an old value; the settings hash means a measure run with
other settings is a different row. Each value is committed as soon as it is computed, so a killed
evaluation loses at most the value it was computing.

A row's ``status`` is ``ok`` (``value`` set), ``error`` (the measure raised: ``error`` holds the
exception's one-line summary; not retried unless asked, so a deterministic failure costs once) or
``not_applicable`` (e.g. a hierarchy measure on flat labels).

Table ``claims`` holds the leases of :class:`Leases`: which process is measuring which model now,
so that two evaluations of one zoo split the models between them (see ``icc_bench.claims``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from icc_bench.claims import TTL, Owner

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model_id          TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    measure           TEXT NOT NULL,
    settings_hash     TEXT NOT NULL,
    settings          TEXT NOT NULL,   -- canonical JSON of the settings
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error', 'not_applicable')),
    value             REAL,
    error             TEXT,
    seconds           REAL,
    versions          TEXT,            -- JSON: icc-bench, plugin, torch
    created           TEXT NOT NULL,
    PRIMARY KEY (model_id, checkpoint_sha256, measure, settings_hash)
);
CREATE TABLE IF NOT EXISTS claims (
    model_id TEXT PRIMARY KEY,       -- the model whose missing values a process is measuring
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    token    TEXT NOT NULL,          -- tells apart two processes that had the same pid
    expires  REAL NOT NULL           -- unix time; renewed by the holder's heartbeat
);
"""


@dataclass(frozen=True)
class Result:
    model_id: str
    checkpoint_sha256: str
    measure: str
    settings_hash: str
    settings: dict[str, Any]
    status: str
    value: float | None
    error: str | None
    seconds: float | None
    versions: dict[str, str]
    created: str


class ResultStore:
    """SQLite-backed; safe to open from several processes (WAL journal), one writer at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def put(
        self,
        *,
        model_id: str,
        checkpoint_sha256: str,
        measure: str,
        settings_hash: str,
        settings: dict[str, Any],
        status: str,
        value: float | None = None,
        error: str | None = None,
        seconds: float | None = None,
        versions: dict[str, str] | None = None,
    ) -> None:
        """Insert or replace one result and commit it at once."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model_id, checkpoint_sha256, measure, settings_hash,
                    json.dumps(settings, sort_keys=True), status, value, error, seconds,
                    json.dumps(versions or {}, sort_keys=True),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ),
            )

    def get(self, model_id: str, checkpoint_sha256: str, measure: str, settings_hash: str) -> Result | None:
        row = self._db.execute(
            "SELECT * FROM results WHERE model_id=? AND checkpoint_sha256=? AND measure=? AND settings_hash=?",
            (model_id, checkpoint_sha256, measure, settings_hash),
        ).fetchone()
        return _result(row) if row else None

    def keys(self) -> set[tuple[str, str, str, str]]:
        """(model_id, checkpoint_sha256, measure, settings_hash) of every stored row."""
        return set(self._db.execute("SELECT model_id, checkpoint_sha256, measure, settings_hash FROM results"))

    def results(self, measures: Iterable[tuple[str, str]] | None = None) -> list[Result]:
        """Every row, or only those of the given (measure, settings_hash) pairs."""
        rows = self._db.execute("SELECT * FROM results ORDER BY measure, model_id").fetchall()
        out = [_result(r) for r in rows]
        if measures is not None:
            wanted = set(measures)
            out = [r for r in out if (r.measure, r.settings_hash) in wanted]
        return out

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def _result(row: tuple) -> Result:
    (model_id, sha, measure, shash, settings, status, value, error, seconds, versions, created) = row
    return Result(model_id, sha, measure, shash, json.loads(settings), status, value, error, seconds, json.loads(versions or "{}"), created)


class Leases:
    """Claims on models in a results store (the ``Claims`` protocol of ``icc_bench.claims``).

    A claim is one row of ``claims``; taking it, and taking over a stale one, are each a single
    conditional statement, so two processes never both get it.
    """

    def __init__(self, store: ResultStore, owner: Owner | None = None, ttl: float = TTL):
        self.store = store
        self.owner = owner or Owner.this_process()
        self.ttl = ttl
        self.held: set[str] = set()

    def claim(self, key: str) -> bool:
        db, me = self.store._db, self.owner
        with db:
            now = time.time()
            taken = db.execute(
                "INSERT INTO claims VALUES (?, ?, ?, ?, ?) ON CONFLICT(model_id) DO UPDATE SET host = excluded.host, "
                "pid = excluded.pid, token = excluded.token, expires = excluded.expires WHERE claims.expires < ?",
                (key, me.host, me.pid, me.token, now + self.ttl, now),
            ).rowcount
            if not taken:
                row = db.execute("SELECT host, pid, token FROM claims WHERE model_id = ?", (key,)).fetchone()
                holder = Owner(row[0], int(row[1]), row[2]) if row else None
                if holder is not None and holder.gone():  # its process is gone: take it over, if still its
                    taken = db.execute(
                        "UPDATE claims SET host = ?, pid = ?, token = ?, expires = ? WHERE model_id = ? AND token = ?",
                        (me.host, me.pid, me.token, now + self.ttl, key, holder.token),
                    ).rowcount
        if taken:
            self.held.add(key)
        return bool(taken)

    def release(self, key: str) -> None:
        if key in self.held:
            self.held.discard(key)
            with self.store._db:
                self.store._db.execute("DELETE FROM claims WHERE model_id = ? AND token = ?", (key, self.owner.token))

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)

    def renew(self) -> None:
        """Push back the expiry of every claim held; on a connection of its own (the heartbeat's thread)."""
        db = sqlite3.connect(self.store.path, timeout=60)
        try:
            with db:
                db.execute("UPDATE claims SET expires = ? WHERE token = ?", (time.time() + self.ttl, self.owner.token))
        finally:
            db.close()
