"""``memory:``: the whole journal in this process's memory, for tests and experiments.

Same contract as the databases (positions enforced, notification ids never reused, blobs
with their references); views live in an in-memory SQLite database per view store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from uuid import UUID

from journal.errors import ConcurrencyConflict
from journal.storage import forks
from journal.storage.base import (
    WORKER_FORGOTTEN_AFTER,
    Blob,
    Listener,
    LogRow,
    Storage,
    StoredEvent,
    StreamRow,
    ViewStore,
    Wake,
    WorkerRow,
)
from journal.storage.leases import ProcessLeases
from journal.storage.schema import SQLITE
from journal.storage.sqlite_views import SQLiteViewStore

__all__ = ["MemoryStorage"]


class _Wakeup(Listener):
    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage
        self.seen = storage._last_id

    def wait(self, timeout: float) -> None:
        with self.storage._appended:
            self.storage._appended.wait_for(lambda: self.storage._last_id != self.seen, timeout)
            self.seen = self.storage._last_id


class MemoryStorage(Storage):
    """Streams, the log and blobs in process memory; gone when the process ends."""

    dialect = SQLITE
    write_threads = 0  # an append is a few µs of CPU: a thread hand-off would cost more

    def __init__(self, url: str = "memory:", *, create: bool = True, **_: object) -> None:
        self.url = url
        self.create = create
        self._log: list[LogRow] = []
        self._streams: dict[UUID, list[StreamRow]] = {}
        self._positions: dict[UUID, set[int]] = {}
        self._blobs: dict[str, bytes] = {}
        self._refs: dict[str, set[UUID]] = {}
        self._snapshots: dict[UUID, tuple[int, bytes]] = {}
        self._wakes: dict[UUID, tuple[float, int]] = {}
        self._workers: dict[str, WorkerRow] = {}
        self._last_id = 0
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)
        self.leases = ProcessLeases()
        forks.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)
        self.leases._after_fork()

    def _append(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob], wakes: Sequence[Wake]
    ) -> list[int]:
        with self._lock:
            batch: set[tuple[UUID, int]] = set()
            for s in events:
                eid: UUID = s.originator_id  # type: ignore[assignment]
                key = (eid, s.originator_version)
                if key in batch or s.originator_version in self._positions.get(eid, ()):
                    raise ConcurrencyConflict(eid, s.originator_version)
                batch.add(key)
            owner: UUID = events[0].originator_id  # type: ignore[assignment]
            for digest, data in blobs:
                self._blobs.setdefault(digest, data)
                self._refs.setdefault(digest, set()).add(owner)
            ids = []
            for s in events:
                self._last_id += 1
                eid = s.originator_id  # type: ignore[assignment]
                row: StreamRow = (s.originator_version, s.topic, bytes(s.state))
                stream = self._streams.setdefault(eid, [])
                stream.append(row)
                self._positions.setdefault(eid, set()).add(row[0])
                if len(stream) > 1 and stream[-2][0] > row[0]:
                    stream.sort(key=lambda r: r[0])
                self._log.append((self._last_id, eid, *row))
                ids.append(self._last_id)
            for wid, due, position in wakes:
                if due is None:
                    self._wakes.pop(wid, None)
                else:
                    self._wakes[wid] = (due, position)
            self._appended.notify_all()
            return ids

    def keeps_wakeups(self) -> bool:
        return True

    def due(self, now: float, limit: int = 100) -> list[Wake]:
        with self._lock:
            found = sorted((due, eid, position) for eid, (due, position) in self._wakes.items()
                           if due <= now)
            return [(eid, due, position) for due, eid, position in found[:limit]]

    def next_due(self) -> float | None:
        with self._lock:
            return min((due for due, _ in self._wakes.values()), default=None)

    def settle_wake(self, wake: Wake) -> bool:
        eid, due, position = wake
        with self._lock:
            kept = self._wakes.get(eid)
            if kept is None or kept[1] != position:
                return False
            if due is None:
                del self._wakes[eid]
            else:
                self._wakes[eid] = (due, position)
            return True

    def put_worker(self, worker: WorkerRow) -> bool:
        with self._lock:
            kept = self._workers.get(worker.runner)
            self._workers[worker.runner] = worker if kept is None else kept._replace(
                seen_at=worker.seen_at, workflows=dict(worker.workflows))
            for runner in [r for r, w in self._workers.items()
                           if w.seen_at < worker.seen_at - WORKER_FORGOTTEN_AFTER]:
                del self._workers[runner]
            return True

    def drop_worker(self, runner: str) -> None:
        with self._lock:
            self._workers.pop(runner, None)

    def workers(self, alive_for: float | None = None) -> list[WorkerRow] | None:
        since = -1.0 if alive_for is None else time.time() - alive_for
        with self._lock:
            return sorted((w for w in self._workers.values() if w.seen_at >= since),
                          key=lambda w: (w.host, w.pid))

    def put_snapshot(self, execution_id: UUID, position: int, data: bytes) -> bool:
        with self._lock:
            kept = self._snapshots.get(execution_id)
            if kept is None or kept[0] < position:
                self._snapshots[execution_id] = (position, bytes(data))
            return True

    def get_snapshot(self, execution_id: UUID) -> tuple[int, bytes] | None:
        with self._lock:
            return self._snapshots.get(execution_id)

    def read_stream(self, execution_id: UUID, *, after: int = 0) -> list[StreamRow]:
        with self._lock:
            return [r for r in self._streams.get(execution_id, ()) if r[0] > after]

    def read_log(self, after: int, limit: int, *, topics: Sequence[str] = ()) -> list[LogRow]:
        with self._lock:
            log = self._log
            lo, hi = 0, len(log)
            while lo < hi:  # ids ascend: bisect for the first id > after
                mid = (lo + hi) // 2
                if log[mid][0] <= after:
                    lo = mid + 1
                else:
                    hi = mid
            if not topics:
                return log[lo:lo + limit]
            wanted = set(topics)
            out = []
            for row in log[lo:]:
                if row[3] in wanted:
                    out.append(row)
                    if len(out) == limit:
                        break
            return out

    def head(self) -> int:
        with self._lock:
            return self._log[-1][0] if self._log else 0

    def listen(self, *, poll_interval: float = 0.05) -> Listener:
        return _Wakeup(self)

    def get_blob(self, digest: str) -> bytes:
        with self._lock:
            return self._blobs[digest]

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        with self._lock:
            gone = set(execution_ids)
            removed = sum(len(self._streams.pop(eid, ())) for eid in gone)
            for eid in gone:
                self._positions.pop(eid, None)
                self._snapshots.pop(eid, None)
                self._wakes.pop(eid, None)
            self._log = [r for r in self._log if r[1] not in gone]
            for digest in list(self._refs):
                owners = self._refs[digest] - gone
                if owners:
                    self._refs[digest] = owners
                else:
                    del self._refs[digest]
                    self._blobs.pop(digest, None)
            return removed

    def views(self) -> ViewStore:
        def connect() -> sqlite3.Connection:
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)

        return SQLiteViewStore(connect, self.url, "memory:", shared=False)

    def close(self) -> None:
        self.leases.close()
