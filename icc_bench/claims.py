"""Claims on work, so that processes sharing a zoo split the work instead of each doing all of it.

Two ``icc-bench train`` on one zoo (or two ``evaluate``, which train first, then measure) would
otherwise each train every missing model and measure every missing value: nothing is corrupted
(every file is written atomically, every value keyed), but the work is done twice. So each process
claims a model before it trains or measures it, and skips what another process holds:

- ``train`` claims with a lock file per model, ``<zoo>/models/<model_id>.lock``, created
  exclusively (written whole, then hard-linked into place, which fails if it exists; the
  ``O_CREAT | O_EXCL`` of a file that is never seen half written) (:class:`LockFiles`);
- ``evaluate`` claims a model's missing values with a lease in the results store, table ``claims``
  of ``results.sqlite`` (:meth:`icc_bench.store.ResultStore.claim`).

Both record the holder (host, pid, a random token) and an expiry. A claim is *stale*, and the next
process that finds it takes it over, when its holder's process is gone (same host: checked at
once) or its expiry has passed (another host: the holder renews its claims every ``ttl / 4``
seconds from a :class:`Heartbeat` thread, so only a holder that stopped renewing lets it pass).

:func:`claimed_rounds` drives either: a round hands out, one at a time as they are claimed, the
items this process can claim now, and skips those another process holds. When a round has
claimed nothing, the process waits and tries the held items again: they are either done by their
holder (and dropped) or, their holder dead, claimed here. A process never waits while it holds a
claim, so two processes cannot wait for each other.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

#: Seconds a claim lasts without renewal (the heartbeat renews it every TTL / 4).
TTL = 600.0
#: Seconds between two looks at the items another process holds.
POLL = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: this process, or the one named in a lock or lease."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    @property
    def label(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def gone(self) -> bool:
        """True when the holder is a process of this host that no longer runs; a process of
        another host is never known to be gone (its claim expires instead)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process: it runs
            return False
        return False


def is_stale(holder: Owner, expires: float, now: float | None = None) -> bool:
    return holder.gone() or expires < (time.time() if now is None else now)


class Claims(Protocol):
    """What :func:`claimed_rounds` and :class:`Heartbeat` need of a store of claims."""

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this process (taking over a stale claim); False when another holds it."""

    def release(self, key: str) -> None:
        """Give ``key`` back, if this process holds it."""

    def renew(self) -> None:
        """Push back the expiry of every claim this process holds (called from another thread)."""


# -- lock files (train) --------------------------------------------------------------------------
class LockFiles:
    """One lock file per key in ``folder``: ``<key>.lock``, JSON of the holder and its expiry."""

    def __init__(self, folder: Path, owner: Owner | None = None, ttl: float = TTL):
        self.folder = Path(folder)
        self.owner = owner or Owner.this_process()
        self.ttl = ttl
        self._held: set[str] = set()
        self._lock = threading.Lock()  # the heartbeat thread renews what the main thread holds

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.lock"

    def _content(self) -> bytes:
        return json.dumps({**asdict(self.owner), "expires": time.time() + self.ttl}).encode()

    def _read(self, path: Path) -> tuple[Owner, float] | None:
        try:
            data = json.loads(path.read_bytes())
            return Owner(str(data["host"]), int(data["pid"]), str(data["token"])), float(data["expires"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError):
            return None  # being written, or damaged

    def claim(self, key: str) -> bool:
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            # Written whole under a name of our own, then linked into place: link fails when the
            # lock exists (as O_CREAT | O_EXCL would), and a lock is never seen half written, not
            # even after a kill between the two steps.
            tmp = path.with_name(f".{path.name}.{self.owner.token}.tmp")
            tmp.write_bytes(self._content())
            try:
                os.link(tmp, path)
            except FileExistsError:
                if not self._break_if_stale(path):
                    return False
                continue
            finally:
                tmp.unlink(missing_ok=True)
            with self._lock:
                self._held.add(key)
            return True
        return False

    def _break_if_stale(self, path: Path) -> bool:
        """Remove the lock at ``path`` when it is stale; True when it is gone (removed or released)."""
        try:
            found = self._read(path)
            if found is None:  # damaged (locks appear whole): stale once older than a claim lasts
                if time.time() - path.stat().st_mtime < self.ttl:
                    return False
            elif found[0] == self.owner:
                return False  # ours: claim() is not re-entrant
            elif not is_stale(*found):
                return False
            # Moved aside before it is removed, so that of two processes breaking the same stale
            # lock, the second cannot remove the fresh lock the first has made meanwhile.
            aside = path.with_name(f".{path.name}.{self.owner.token}.stale")
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        if self._read(aside) != found:  # we moved a fresh lock: put it back (or lose the race)
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def holder(self, key: str) -> Owner | None:
        try:
            found = self._read(self.path(key))
        except FileNotFoundError:
            return None
        return found[0] if found else None

    def release(self, key: str) -> None:
        with self._lock:
            if key not in self._held:
                return
            self._held.discard(key)
            try:
                found = self._read(self.path(key))
            except FileNotFoundError:
                return
            if found is not None and found[0] == self.owner:
                self.path(key).unlink(missing_ok=True)

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)

    def renew(self) -> None:
        with self._lock:
            for key in list(self._held):
                path = self.path(key)
                try:
                    found = self._read(path)
                except FileNotFoundError:
                    continue
                if found is None or found[0] != self.owner:
                    continue  # taken over (we were thought dead): the other process goes on with it
                tmp = path.with_name(f".{path.name}.{self.owner.token}.tmp")
                tmp.write_bytes(self._content())
                os.replace(tmp, path)


# -- the heartbeat -------------------------------------------------------------------------------
class Heartbeat:
    """Renews ``claims`` every ``interval`` seconds from a daemon thread, while in a ``with``."""

    def __init__(self, claims: Claims, interval: float):
        self.claims = claims
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="icc-bench claims heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.claims.renew()
            except Exception:
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- handing out the work ------------------------------------------------------------------------
def claimed_rounds(
    items: Iterable[T],
    claims: Claims,
    *,
    key: Callable[[T], str],
    remaining: Callable[[T], T | None],
    on_done_elsewhere: Callable[[T, T | None], Any] | None = None,
    on_wait: Callable[[list[T]], Any] | None = None,
    poll: float = POLL,
) -> Iterator[Iterator[T]]:
    """Rounds of work for this process; each round is an iterator of the items it has claimed.

    Parameters
    ----------
    items
        The work, each item a unit that one claim covers (a model).
    claims
        Where claims are made (lock files, the results store's leases).
    key
        The claim's key of an item.
    remaining
        What is left to do of an item now: the item, a smaller one, or None when it is all done
        (by another process). Asked before claiming and again once claimed.
    on_done_elsewhere
        Called with (item, what is left of it) when another process did some or all of it.
    on_wait
        Called with the items other processes hold, before each wait for them.

    Each round claims lazily, one item as the consumer asks for the next, so that the work of a
    process that takes one item at a time (the local executor) is claimed one model at a time,
    and another process starting meanwhile finds the rest free. The consumer must release each
    claim when its item is done (``claims.release(key(item))``).
    """
    pending = list(items)
    while pending:
        held: list[T] = []
        claimed = 0

        def round_() -> Iterator[T]:
            nonlocal claimed
            for item in pending:  # noqa: B023 (called within this iteration)
                left = remaining(item)
                if left is not None and not claims.claim(key(item)):
                    held.append(item)  # looked at again next round, what others did counted then  # noqa: B023
                    continue
                if left is not None:
                    left = remaining(left)  # it may have been finished between the look and the claim
                    if left is None:
                        claims.release(key(item))
                if left is not item and on_done_elsewhere is not None:
                    on_done_elsewhere(item, left)
                if left is not None:
                    claimed += 1
                    yield left

        yield round_()
        pending = held
        if pending and not claimed:
            if on_wait is not None:
                on_wait(pending)
            time.sleep(poll)
