"""The results store: every measured value of a zoo, in ``<zoo>/results.sqlite``.

One row per (model, checkpoint sha256, measure, settings hash, evaluation seed), built by
:func:`result_key` alone. The checkpoint hash in the key means
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
from typing import TYPE_CHECKING, Any, NamedTuple

from icc_bench.claims import TTL, Owner

if TYPE_CHECKING:
    from icc_bench.measure import Measure

#: The store's file name in a zoo folder.
STORE_NAME = "results.sqlite"

RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS results (
    model_id          TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    measure           TEXT NOT NULL,
    settings_hash     TEXT NOT NULL,   -- Measure.settings_hash: the measure's name and settings
    seed              INTEGER NOT NULL,-- the evaluation seed (probe sample, random draws)
    settings          TEXT NOT NULL,   -- canonical JSON of the settings
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error', 'not_applicable')),
    value             REAL,
    error             TEXT,
    seconds           REAL,
    versions          TEXT,            -- JSON: icc-bench, plugin, torch
    created           TEXT NOT NULL,
    PRIMARY KEY (model_id, checkpoint_sha256, measure, settings_hash, seed)
)
"""
SCHEMA = RESULTS_TABLE + """;
CREATE TABLE IF NOT EXISTS claims (
    model_id TEXT PRIMARY KEY,       -- the model whose missing values a process is measuring
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    token    TEXT NOT NULL,          -- tells apart two processes that had the same pid
    expires  REAL NOT NULL           -- unix time; renewed by the holder's heartbeat
);
"""


class ResultKey(NamedTuple):
    """What a stored value is keyed by: the model (and the exact checkpoint bytes), the measure with
    its settings, and the evaluation seed. Build it with :func:`result_key`, the one place that does."""

    model_id: str
    checkpoint_sha256: str
    measure: str
    settings_hash: str
    seed: int


def measure_key(measure: Measure, seed: int) -> tuple[str, str, int]:
    """(name, settings hash, seed): the part of a :class:`ResultKey` that names one measure's values."""
    return (measure.name, measure.settings_hash, int(seed))


def result_key(model_id: str, checkpoint_sha256: str, measure: Measure, seed: int) -> ResultKey:
    """The store key of ``measure``'s value on one model, evaluated with ``seed``."""
    return ResultKey(model_id, checkpoint_sha256, *measure_key(measure, seed))


def store_for(zoo) -> ResultStore:
    """The results store of a zoo (anything with a ``root`` folder): ``<zoo>/results.sqlite``."""
    return ResultStore(Path(zoo.root) / STORE_NAME)


@dataclass(frozen=True)
class Result:
    model_id: str
    checkpoint_sha256: str
    measure: str
    settings_hash: str
    seed: int
    settings: dict[str, Any]
    status: str
    value: float | None
    error: str | None
    seconds: float | None
    versions: dict[str, str]
    created: str

    @property
    def key(self) -> ResultKey:
        """This row's :class:`ResultKey`."""
        return ResultKey(self.model_id, self.checkpoint_sha256, self.measure, self.settings_hash, self.seed)

    @property
    def measure_key(self) -> tuple[str, str, int]:
        """This row's :func:`measure_key`: which measure's values it is one of."""
        return (self.measure, self.settings_hash, self.seed)


class ResultStore:
    """SQLite-backed; safe to open from several processes (WAL journal), one writer at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT)
        _retry_while_locked(self._set_up, self.path)

    def _set_up(self) -> None:
        if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        _migrate_seed_column(self._db)
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
        seed: int,
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
                f"INSERT OR REPLACE INTO results ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS.split(', ')))})",
                (
                    model_id, checkpoint_sha256, measure, settings_hash, int(seed),
                    json.dumps(settings, sort_keys=True), status, value, error, seconds,
                    json.dumps(versions or {}, sort_keys=True),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ),
            )

    def get(self, key: ResultKey) -> Result | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM results WHERE model_id=? AND checkpoint_sha256=? AND measure=? AND settings_hash=? AND seed=?",
            tuple(key),
        ).fetchone()
        return _result(row) if row else None

    def keys(self) -> set[ResultKey]:
        """The :class:`ResultKey` of every stored row."""
        return {ResultKey(*row) for row in self._db.execute("SELECT model_id, checkpoint_sha256, measure, settings_hash, seed FROM results")}

    def results(self, measures: Iterable[tuple[str, str, int]] | None = None) -> list[Result]:
        """Every row, or only those of the given :func:`measure_key` triples."""
        rows = self._db.execute(f"SELECT {COLUMNS} FROM results ORDER BY measure, model_id").fetchall()
        out = [_result(r) for r in rows]
        if measures is not None:
            wanted = set(measures)
            out = [r for r in out if r.measure_key in wanted]
        return out

    def stored(self, measures: Iterable[Measure], seed: int) -> list[Measure]:
        """Those of ``measures`` with at least one row (a value, an error) under ``seed``: what a
        leaderboard can score without computing anything."""
        keys = {r.measure_key for r in self.results()}
        return [m for m in measures if measure_key(m, seed) in keys]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


#: Seconds a connection waits for another process's lock before giving up.
BUSY_TIMEOUT = 60.0


def _retry_while_locked(step, path: Path) -> None:
    """Run ``step`` until it gets past SQLite's "database is locked".

    Switching a new file to WAL and the first schema write take locks that SQLite does not wait
    for with its busy handler when another process is creating the same file at that instant, so
    two evaluations started together could crash on open. They retry here, with a short
    backoff, for up to :data:`BUSY_TIMEOUT` seconds, then name the file in the error.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"{path} is still locked by another process after {BUSY_TIMEOUT:.0f} s; "
                    "let the other icc-bench on this zoo finish (or stop it) and run the command again"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


COLUMNS = "model_id, checkpoint_sha256, measure, settings_hash, seed, settings, status, value, error, seconds, versions, created"


def _result(row: tuple) -> Result:
    (model_id, sha, measure, shash, seed, settings, status, value, error, seconds, versions, created) = row
    return Result(model_id, sha, measure, shash, seed, json.loads(settings), status, value, error, seconds,
                  json.loads(versions or "{}"), created)


def _migrate_seed_column(db: sqlite3.Connection) -> None:
    """Bring a store written before the seed was a key column to today's schema, in one transaction.

    Such a store kept a seed-0 value under the measure's plain settings hash, and a value of seed
    s != 0 under a hash of "<settings hash>:seed=<s>" with ``"_seed": s`` added to its settings.
    Each row becomes (plain settings hash, seed), its settings without ``_seed``; the plain hash is
    recomputed exactly as ``Measure.settings_hash`` computes it, from the measure's name and settings.
    """
    import hashlib

    columns = [row[1] for row in db.execute("PRAGMA table_info(results)")]
    if not columns or "seed" in columns:
        return
    db.execute("BEGIN IMMEDIATE")  # DDL too: Python's sqlite3 opens no transaction for it by itself
    try:
        if "seed" in [row[1] for row in db.execute("PRAGMA table_info(results)")]:
            db.commit()  # another process migrated it while this one waited for the lock
            return
        rows = db.execute(
            "SELECT model_id, checkpoint_sha256, measure, settings_hash, settings, status, value, error, seconds, versions, created FROM results"
        ).fetchall()
        db.execute("ALTER TABLE results RENAME TO results_before_seed_column")
        db.execute(RESULTS_TABLE)  # execute, not executescript, which would commit the rename alone
        for model_id, sha, measure, shash, settings_json, *rest in rows:
            settings = json.loads(settings_json)
            seed = int(settings.pop("_seed", 0))
            if seed:
                canonical = json.dumps({"measure": measure, "settings": settings}, sort_keys=True, separators=(",", ":"))
                shash = hashlib.sha256(canonical.encode()).hexdigest()[:16]
            db.execute(
                f"INSERT OR REPLACE INTO results ({COLUMNS}) VALUES ({', '.join('?' * 12)})",
                (model_id, sha, measure, shash, seed, json.dumps(settings, sort_keys=True), *rest),
            )
        db.execute("DROP TABLE results_before_seed_column")
        db.commit()
    except BaseException:
        db.rollback()
        raise


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
