"""The embedded default: one SQLite file in WAL mode, durable on commit (synchronous=FULL).

Notification ids are ``INTEGER PRIMARY KEY AUTOINCREMENT``, so they are never reused after
retention deletes old streams (which would confuse followers). Every connection sets
``synchronous`` (``FULL`` by default; ``?synchronous=NORMAL`` trades durability on power
loss for speed, as SQLite documents) and a busy timeout for other processes' writers.
Writers in one process take turns on a lock instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from uuid import UUID

from journal.errors import JournalError, JournalNotFound, NotAJournal
from journal.storage import forks
from journal.storage.base import (
    WORKER_FORGOTTEN_AFTER,
    Blob,
    LogRow,
    Storage,
    StoredEvent,
    StreamRow,
    ViewStore,
    Wake,
    WorkerRow,
    worker_row,
    workflows_text,
)
from journal.storage.errors import path_problem, translate, translate_os_error
from journal.storage.leases import LeaseKeeper, identity
from journal.storage.schema import (
    BLOB_REFS,
    BLOBS,
    EVENTS,
    JOURNAL_TABLES,
    LEGACY_OWNER,
    SNAPSHOTS,
    SQLITE,
    WAKEUPS,
    WORKERS,
)

__all__ = ["SQLiteStorage", "sqlite_path"]

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
#: Batches up to this many events are one multi-row INSERT statement.
MULTI_ROW_LIMIT = 240  # 960 parameters: within SQLite's oldest default limit (999)
BUSY_TIMEOUT_MS = 10_000

logger = logging.getLogger("journal")

_E, _B, _R, _S = EVENTS.name, BLOBS.name, BLOB_REFS.name, SNAPSHOTS.name
_W = WAKEUPS.name
_K = WORKERS.name
_SET_WAKE = (f"INSERT INTO {_W} (execution_id, due_at, position) VALUES (?, ?, ?) "
             "ON CONFLICT (execution_id) DO UPDATE SET due_at = excluded.due_at, "
             "position = excluded.position")
_FORGET_WAKE = f"DELETE FROM {_W} WHERE execution_id = ?"
_READ_STREAM = (
    f"SELECT originator_version, topic, state FROM {_E} "
    "WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version"
)
_READ_LOG = (
    f"SELECT notification_id, originator_id, originator_version, topic, state FROM {_E} "
    "WHERE notification_id > ? ORDER BY notification_id LIMIT ?"
)
_INSERT_ONE = (
    f"INSERT INTO {_E} (originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
)


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """Split ``sqlite:///rel.db`` / ``sqlite:////abs.db`` into a path and its query options."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or not url.startswith("sqlite:///") or parts.netloc:
        raise ValueError(
            f"bad SQLite URL {url!r}: write sqlite:///relative.db (three slashes) or "
            "sqlite:////absolute/path.db (four)"
        )
    path = parts.path[1:]
    if not path:
        raise ValueError(f"bad SQLite URL {url!r}: no file name (sqlite:///journal.db)")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ValueError(f"unknown option {', '.join(sorted(unknown))} in {url!r}: "
                         "SQLite URLs take ?synchronous=FULL|NORMAL")
    return path, options


@functools.lru_cache(maxsize=256)
def _multi_row_sql(rows: int) -> str:
    return (
        f"INSERT INTO {_E} (originator_id, originator_version, topic, state) VALUES "
        + ",".join(["(?,?,?,?)"] * rows)
    )


class _Connections:
    """Idle connections to one file, reused last-in first-out (any thread may take one)."""

    def __init__(self, storage: SQLiteStorage) -> None:
        self.storage = storage
        self.idle: list[sqlite3.Connection] = []
        self.lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return self.storage.connect()

    def put(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            if len(self.idle) < 8:
                self.idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class SQLiteStorage(Storage):
    """A journal in one SQLite file."""

    dialect = SQLITE
    leases: FileLeases

    def __init__(self, url: str, *, create: bool = True, **_: Any) -> None:
        self.url = url
        self.create = create
        path, options = sqlite_path(url)
        synchronous = options.get("synchronous", "FULL").upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"bad synchronous={synchronous!r} in {url!r}: use FULL or NORMAL")
        self.synchronous = synchronous
        self.path = path
        self._check_path()
        self._pool = _Connections(self)
        self._write_lock = threading.Lock()
        #: The one connection appends use (under ``_write_lock``): held, not pooled.
        self._writer: sqlite3.Connection | None = None
        self._wakeups = False  # whether the wake-up table exists (asked until it does)
        self.leases = FileLeases(url, Path(f"{path}.leases"))
        self._closed = False
        self._ensure_schema()
        forks.register(self)

    @property
    def where(self) -> str:
        return self.path

    # -- connections ---------------------------------------------------------------------------

    def _check_path(self) -> None:
        problem = path_problem(self.url, self.path, must_exist=not self.create)
        if problem is not None:
            raise problem

    def connect(self) -> sqlite3.Connection:
        """A new connection to the file (never creating it unless this open may create)."""
        mode = "rwc" if self.create else "rw"
        uri = f"file:{quote(os.path.abspath(self.path))}?mode={mode}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as e:
            raise translate(e, self.url, where=self.path) from e
        return conn

    @contextmanager
    def _conn(self, eid: UUID | None = None, position: int = 0) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise JournalError(f"the journal {self.path} is closed")
        conn = self._pool.get()
        try:
            yield conn
        except BaseException as e:
            # Whatever interrupted it (a driver error, Ctrl-C), no transaction goes back to
            # the pool open: a later append on it would never be committed.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise translate(e, self.url, where=self.path, execution_id=eid,
                                position=position) from e
            raise
        finally:
            if conn.in_transaction:
                conn.close()  # could not roll back: never reuse it
            else:
                self._pool.put(conn)

    def _ensure_schema(self) -> None:
        with self._conn() as c:
            names = {r[0] for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )}
            missing = [t for t in JOURNAL_TABLES if t.name not in names]
            if not missing:
                return
            if EVENTS.name not in names and names and not self.create:
                raise NotAJournal(self.url, f"it has no {EVENTS.name} table", where=self.path)
            if not self.create:
                if EVENTS.name not in names:
                    raise JournalNotFound(self.url, "the file holds no journal yet",
                                          where=self.path)
                return  # an older journal without the blob references: readable as it is
            if not names:
                c.execute("PRAGMA journal_mode=WAL")
            with self._write_lock:
                c.execute("BEGIN IMMEDIATE")
                for table in missing:
                    for statement in SQLITE.create(table, table.name):
                        c.execute(statement)
                if BLOB_REFS in missing and BLOBS.name in names:
                    # Blobs of a journal older than the references: which streams use them
                    # is unknown, so they are kept for good (never deleted by retention).
                    c.execute(f"INSERT OR IGNORE INTO {_R} (execution_id, sha256) "
                              f"SELECT ?, sha256 FROM {_B}", (LEGACY_OWNER.hex,))
                c.execute("COMMIT")

    def _before_fork(self) -> None:
        self._pool.close()  # a child must inherit no SQLite connection (see forks)
        with self._write_lock:  # not while an append is under way
            self._close_writer()

    def _after_fork(self) -> None:
        forks.abandon(*self._pool.idle)  # only those in use by another thread at the fork
        if self._writer is not None:
            forks.abandon(self._writer)
            self._writer = None
        self._pool = _Connections(self)
        self._write_lock = threading.Lock()
        self.leases._after_fork()

    # -- writing -------------------------------------------------------------------------------

    def _append(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob], wakes: Sequence[Wake]
    ) -> list[int]:
        n = len(events)
        first = events[0]
        eid: Any = first.originator_id
        flat: list[Any] = []
        for s in events:
            flat += (s.originator_id.hex, s.originator_version, s.topic, s.state)  # type: ignore[union-attr]
        with self._write_lock:
            c = self._writer
            if c is None:
                if self._closed:
                    raise JournalError(f"the journal {self.path} is closed")
                c = self._writer = self.connect()
            try:
                return self._insert(c, n, flat, eid, blobs, wakes)
            except BaseException as e:
                # Whatever interrupted it (a driver error, Ctrl-C), no transaction stays
                # open on the writer: a later append on it would never be committed.
                if c.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        c.execute("ROLLBACK")
                    if c.in_transaction:
                        self._close_writer()  # could not roll back: never reuse it
                if isinstance(e, sqlite3.Error):
                    raise translate(e, self.url, where=self.path, execution_id=eid,
                                    position=first.originator_version) from e
                raise

    def _close_writer(self) -> None:
        c, self._writer = self._writer, None
        if c is not None:
            with contextlib.suppress(sqlite3.Error):
                c.close()

    def _insert(
        self, c: sqlite3.Connection, n: int, flat: list[Any], eid: UUID, blobs: Sequence[Blob],
        wakes: Sequence[Wake] = (),
    ) -> list[int]:
        if n <= MULTI_ROW_LIMIT and not blobs and not wakes:
            # One statement in autocommit is atomic, and one fsync.
            last = c.execute(_multi_row_sql(n), flat).lastrowid
            assert last is not None
            return list(range(last - n + 1, last + 1))
        c.execute("BEGIN IMMEDIATE")
        for digest, data in blobs:
            c.execute(f"INSERT OR IGNORE INTO {_B} (sha256, data) VALUES (?, ?)",
                      (digest, data))
            c.execute(f"INSERT OR IGNORE INTO {_R} (execution_id, sha256) VALUES (?, ?)",
                      (eid.hex, digest))
        ids: list[int] = []
        for i in range(0, n, MULTI_ROW_LIMIT):
            chunk = flat[i * 4:(i + MULTI_ROW_LIMIT) * 4]
            rows = len(chunk) // 4
            last = c.execute(_multi_row_sql(rows), chunk).lastrowid
            assert last is not None
            ids += range(last - rows + 1, last + 1)
        if wakes and self._keeps_wakeups(c):
            for wid, due, position in wakes:
                if due is None:
                    c.execute(_FORGET_WAKE, (wid.hex,))
                else:
                    c.execute(_SET_WAKE, (wid.hex, due, position))
        c.execute("COMMIT")
        return ids

    # -- wake-ups ------------------------------------------------------------------------------

    def _keeps_wakeups(self, c: sqlite3.Connection) -> bool:
        """Whether the wake-up table exists (an older journal opened without ``create`` has
        none: its writes go on without, nothing of it can wait yet). Asked until it does."""
        if not self._wakeups:
            self._wakeups = self._has_table(c, _W)
            if not self._wakeups:
                logger.warning("journal: %s has no %s table (opened without create): "
                               "wake-ups are not kept", self.path, _W)
        return self._wakeups

    def keeps_wakeups(self) -> bool:
        if self._wakeups:  # asked until it does: then once per process, not per enqueue
            return True
        with self._conn() as c:
            return self._keeps_wakeups(c)

    def due(self, now: float, limit: int = 100) -> list[Wake]:
        with self._conn() as c:
            if not self._has_table(c, _W):
                return []  # an older journal, opened without create: nothing waits in it
            return [(UUID(hex=r[0]), float(r[1]), int(r[2])) for r in c.execute(
                f"SELECT execution_id, due_at, position FROM {_W} WHERE due_at <= ? "
                "ORDER BY due_at LIMIT ?", (now, limit),
            )]

    def next_due(self) -> float | None:
        with self._conn() as c:
            if not self._has_table(c, _W):
                return None
            row = c.execute(f"SELECT min(due_at) FROM {_W}").fetchone()
            return None if row is None or row[0] is None else float(row[0])

    def settle_wake(self, wake: Wake) -> bool:
        eid, due, position = wake
        with self._write_lock, self._conn(eid, position) as c:
            if due is None:
                cur = c.execute(f"{_FORGET_WAKE} AND position = ?", (eid.hex, position))
            else:
                cur = c.execute(
                    f"UPDATE {_W} SET due_at = ? WHERE execution_id = ? AND position = ?",
                    (due, eid.hex, position),
                )
            return bool(cur.rowcount)

    # -- workers -----------------------------------------------------------------------------

    def put_worker(self, worker: WorkerRow) -> bool:
        with self._write_lock, self._conn() as c:
            if not self._has_table(c, _K):
                return False
            c.execute(
                f"INSERT INTO {_K} (runner, host, pid, started_at, seen_at, workflows) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (runner) DO UPDATE SET "
                "seen_at = excluded.seen_at, workflows = excluded.workflows",
                (*worker[:5], workflows_text(worker.workflows)),
            )
            c.execute(f"DELETE FROM {_K} WHERE seen_at < ?",
                      (worker.seen_at - WORKER_FORGOTTEN_AFTER,))
            return True

    def drop_worker(self, runner: str) -> None:
        with self._write_lock, self._conn() as c:
            if self._has_table(c, _K):
                c.execute(f"DELETE FROM {_K} WHERE runner = ?", (runner,))

    def workers(self, alive_for: float | None = None) -> list[WorkerRow] | None:
        since = -1.0 if alive_for is None else time.time() - alive_for
        with self._conn() as c:
            if not self._has_table(c, _K):
                return None
            return [worker_row(r) for r in c.execute(
                f"SELECT runner, host, pid, started_at, seen_at, workflows FROM {_K} "
                "WHERE seen_at >= ? ORDER BY host, pid", (since,))]

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        removed = 0
        with self._write_lock, self._conn() as c:
            has_refs = self._has_table(c, _R)
            beside = [t for t in (_S, _W) if self._has_table(c, t)]
            c.execute("BEGIN IMMEDIATE")
            for eid in execution_ids:
                removed += c.execute(
                    f"DELETE FROM {_E} WHERE originator_id = ?", (eid.hex,)
                ).rowcount
                for table in beside:
                    c.execute(f"DELETE FROM {table} WHERE execution_id = ?", (eid.hex,))
                if has_refs:
                    digests = [r[0] for r in c.execute(
                        f"SELECT sha256 FROM {_R} WHERE execution_id = ?", (eid.hex,)
                    )]
                    c.execute(f"DELETE FROM {_R} WHERE execution_id = ?", (eid.hex,))
                    for digest in digests:
                        c.execute(
                            f"DELETE FROM {_B} WHERE sha256 = ? AND NOT EXISTS "
                            f"(SELECT 1 FROM {_R} WHERE sha256 = ?)", (digest, digest),
                        )
            c.execute("COMMIT")
        for eid in execution_ids:  # their lease files go with them (they have ended)
            with contextlib.suppress(FileNotFoundError):
                self.leases.path(eid).unlink()
        return removed

    @staticmethod
    def _has_table(c: sqlite3.Connection, name: str) -> bool:
        return bool(c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone())

    def put_snapshot(self, execution_id: UUID, position: int, data: bytes) -> bool:
        with self._write_lock, self._conn(execution_id, position) as c:
            if not self._has_table(c, _S):
                return False
            c.execute(
                f"INSERT INTO {_S} (execution_id, position, data) VALUES (?, ?, ?) "
                "ON CONFLICT (execution_id) DO UPDATE SET position = excluded.position, "
                f"data = excluded.data WHERE excluded.position > {_S}.position",
                (execution_id.hex, position, data),
            )
            return True

    def get_snapshot(self, execution_id: UUID) -> tuple[int, bytes] | None:
        with self._conn(execution_id) as c:
            try:
                row = c.execute(
                    f"SELECT position, data FROM {_S} WHERE execution_id = ?",
                    (execution_id.hex,),
                ).fetchone()
            except sqlite3.OperationalError:
                if self._has_table(c, _S):
                    raise
                return None  # an older journal, opened without create: no snapshots
            return None if row is None else (int(row[0]), bytes(row[1]))

    # -- reading -------------------------------------------------------------------------------

    def read_stream(self, execution_id: UUID, *, after: int = 0) -> list[StreamRow]:
        with self._conn(execution_id) as c:
            rows: list[StreamRow] = c.execute(
                _READ_STREAM, (execution_id.hex, after)
            ).fetchall()
            return rows

    def read_log(self, after: int, limit: int, *, topics: Sequence[str] = ()) -> list[LogRow]:
        # Writers commit in id order here (one writer at a time): every id read is final.
        sql = _READ_LOG
        params: list[Any] = [after, limit]
        if topics:
            sql = sql.replace(
                "ORDER BY", f"AND topic IN ({','.join('?' * len(topics))}) ORDER BY"
            )
            params = [after, *topics, limit]
        ids: dict[str, UUID] = {}  # a page holds few executions, many events each
        with self._conn() as c:
            rows = c.execute(sql, params).fetchall()
        out: list[LogRow] = []
        for nid, hex_id, pos, topic, state in rows:
            eid = ids.get(hex_id)
            if eid is None:
                eid = ids[hex_id] = UUID(hex_id)
            out.append((nid, eid, pos, topic, state))
        return out

    def head(self) -> int:
        with self._conn() as c:
            row = c.execute(f"SELECT MAX(notification_id) FROM {_E}").fetchone()
        return int(row[0] or 0)

    def get_blob(self, digest: str) -> bytes:
        with self._conn() as c:
            row = c.execute(f"SELECT data FROM {_B} WHERE sha256 = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        return bytes(row[0])

    # -- views and lifetime ----------------------------------------------------------------------

    def views(self) -> ViewStore:
        from journal.storage.sqlite_views import SQLiteViewStore

        return SQLiteViewStore(self.connect, self.url, self.path)

    def close(self) -> None:
        self._closed = True
        self.leases.close()
        with self._write_lock:
            self._close_writer()
        self._pool.close()


class _LockFile:
    """This process's one descriptor of a journal's lock file, shared by every FileLeases
    on that file. POSIX record locks belong to the process, not to a descriptor: closing
    any descriptor of the file would drop them all, and two descriptors never exclude
    each other; so one descriptor per process, and an in-process set of what it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.users = 0
        self.held: set[UUID] = set()
        self.lock = threading.Lock()
        self.named = False  # this process's identity file is written
        #: F_WRLCK; F_RDLCK where the file is another user's and opened read-only.
        self.kind = fcntl.F_WRLCK

    @classmethod
    def of(cls, path: Path) -> _LockFile:
        with _LOCK_FILES_LOCK:
            key = os.path.abspath(path)
            lf = _LOCK_FILES.get(key)
            if lf is None:
                lf = _LOCK_FILES[key] = cls(path)
            lf.users += 1
            return lf

    def done(self) -> None:
        # All under the registry's lock: closing drops every lock this process holds on
        # the file, so no new descriptor of it may be opened (and locked) before that.
        with _LOCK_FILES_LOCK:
            self.users -= 1
            if self.users > 0:
                return
            _LOCK_FILES.pop(os.path.abspath(self.path), None)
            with self.lock:
                if self.fd is not None:
                    os.close(self.fd)  # drops this process's locks on the file
                    self.fd = None
                if self.named:
                    with contextlib.suppress(OSError):
                        _identity_path(self.path.parent, os.getpid()).unlink()


_LOCK_FILES: dict[str, _LockFile] = {}
_LOCK_FILES_LOCK = threading.Lock()


def _forget_lock_files() -> None:
    """In a forked child: record locks are not inherited; the parent's stay the parent's
    (closing the child's copy of a descriptor drops only the child's, i.e. none)."""
    global _LOCK_FILES_LOCK
    _LOCK_FILES_LOCK = threading.Lock()
    for lf in _LOCK_FILES.values():
        lf.lock = threading.Lock()
        lf.held = set()
        lf.named = False
        if lf.fd is not None:
            with contextlib.suppress(OSError):
                os.close(lf.fd)
            lf.fd = None


os.register_at_fork(after_in_child=_forget_lock_files)


def _has_legacy_files(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(len(e.name) == 32 for e in entries)
    except OSError:
        return False


def _identity_path(directory: Path, pid: int) -> Path:
    return directory / f"pid-{pid}"


def _pid_namespace() -> str:
    """This process's pid namespace (``pid:[4026531836]``), "" where it cannot be told: a
    pid means a process only within its namespace (containers sharing the folder)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


_NAMESPACE_MARK = "\npid namespace "


def _identity_text() -> str:
    """What a ``pid-N`` file says: who holds leases under that pid, and in which pid
    namespace (so that only a process of the same namespace judges it dead)."""
    return identity() + _NAMESPACE_MARK + _pid_namespace()


def _forget_dead_identities(directory: Path) -> None:
    """Remove the ``pid-N`` files of processes that are gone (killed before they could
    remove their own), so the folder holds one small file per live process, not one per
    process that ever drove a run. Only files written in this process's pid namespace
    are judged (a container sharing the folder sees other pids); one without a namespace
    (an older release) is left alone."""
    mine = _pid_namespace()
    if not mine:
        return
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not entry.name.startswith("pid-"):
                continue
            try:
                with open(entry.path) as f:
                    text = f.read(4096)
                if text.rpartition(_NAMESPACE_MARK)[2] != mine:
                    continue
                os.kill(int(entry.name[4:]), 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            except (ValueError, OSError):
                continue  # not ours to judge: another user's live process, or a stray


def _lock_range(fd: int, offset: int, kind: int, *, query: bool = False) -> tuple[int, int]:
    """F_SETLK (or F_GETLK) of one byte at ``offset``: (lock type, pid) of the answer."""
    packed = struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK if query else fcntl.F_SETLK, packed)
    ltype, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return ltype, pid


#: struct flock on Linux and the BSDs: l_type, l_whence (short), l_start, l_len (off_t),
#: l_pid (pid_t), padding.
_FLOCK = "hhqqi4x"


class FileLeases(LeaseKeeper):
    """A lease is a POSIX record lock on one byte of ``<journal file>.leases/locks`` (the
    byte at a 62-bit offset taken from the execution id): the OS drops it when the process
    dies, and taking or dropping one is a single ``fcntl`` call, with no file made per
    execution. Who holds it is the pid the OS reports, named by that process's identity
    file beside the lock file.

    A journal written by a release that kept one flocked file per execution
    (``<journal file>.leases/<id>``) is still respected: where such a file exists, its
    flock is taken too. (A process of that release creates the file when it locks; stop
    those processes before new ones drive the same journal.)"""

    def __init__(self, url: str, directory: Path) -> None:
        super().__init__()
        self.url = url
        self.directory = directory
        self._file = _LockFile.of(directory / "locks")
        self._legacy: dict[UUID, int] = {}
        self._closed = False
        #: Whether files of the earlier release are here (looked at once: its processes
        #: are to be stopped before this release's drive the journal).
        self._any_legacy = _has_legacy_files(directory)

    def path(self, execution_id: UUID) -> Path:
        """The per-execution lock file of the earlier releases (removed by retention)."""
        return self.directory / execution_id.hex

    @staticmethod
    def _offset(execution_id: UUID) -> int:
        # A hash of all 128 bits: ids a user gives (sequential, time-ordered) share
        # their top bits, and one byte for two executions would be one lease for both.
        digest = hashlib.blake2b(execution_id.bytes, digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 2

    def _fd(self) -> int:
        lf = self._file
        if lf.fd is None:
            try:
                self.directory.mkdir(exist_ok=True)
                try:
                    lf.fd = os.open(lf.path, os.O_RDWR | os.O_CREAT, 0o666)
                except PermissionError:  # made by another user: lockable for reading
                    lf.fd = os.open(lf.path, os.O_RDONLY)
                    lf.kind = fcntl.F_RDLCK
            except OSError as e:
                raise translate_os_error(e, self.url, where=str(lf.path)) from e
        if not lf.named:
            lf.named = True
            with contextlib.suppress(OSError):  # who we are, for other processes to name
                _identity_path(self.directory, os.getpid()).write_text(_identity_text())
            _forget_dead_identities(self.directory)
        return lf.fd

    def _acquire(self, execution_id: UUID) -> bool:
        lf = self._file
        with lf.lock:
            if execution_id in lf.held:  # another journal object of this process
                return False
            fd = self._fd()
            offset = self._offset(execution_id)
            try:
                _lock_range(fd, offset, lf.kind)
            except (BlockingIOError, PermissionError):
                return False
            except OSError as e:
                raise translate_os_error(e, self.url, where=str(lf.path)) from e
            if not self._legacy_lock(execution_id):
                _lock_range(fd, offset, fcntl.F_UNLCK)
                return False
            lf.held.add(execution_id)
            return True

    def _legacy_lock(self, execution_id: UUID) -> bool:
        if not self._any_legacy:
            return True
        try:
            fd = os.open(self.path(execution_id), os.O_RDONLY)
        except OSError:
            return True  # no such file: no process of the earlier release holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._legacy[execution_id] = fd
        return True

    def _holder(self, execution_id: UUID) -> str | None:
        lf = self._file
        with lf.lock:
            if execution_id in lf.held:
                return f"this process ({identity()})"
            try:
                fd = self._fd()
                ltype, pid = _lock_range(fd, self._offset(execution_id), fcntl.F_WRLCK,
                                         query=True)
            except (OSError, JournalError):
                return None
        if ltype == fcntl.F_UNLCK:
            return self._legacy_holder(execution_id)
        try:
            text = _identity_path(self.directory, pid).read_text()
            return text.partition(_NAMESPACE_MARK)[0].strip() or f"pid {pid}"
        except OSError:
            return f"process {pid} (on this host)"

    def _legacy_holder(self, execution_id: UUID) -> str | None:
        try:
            text = self.path(execution_id).read_text().strip()
        except OSError:
            return None
        return text or None

    def _release(self, execution_id: UUID) -> None:
        lf = self._file
        with lf.lock:
            if execution_id in lf.held:
                lf.held.discard(execution_id)
                if lf.fd is not None:
                    with contextlib.suppress(OSError):
                        _lock_range(lf.fd, self._offset(execution_id), fcntl.F_UNLCK)
        fd = self._legacy.pop(execution_id, None)
        if fd is not None:
            os.close(fd)

    def _after_fork(self) -> None:
        # The child holds none of the parent's locks (see _forget_lock_files); the legacy
        # flocks' copies are closed without unlocking the parent's.
        for fd in self._legacy.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._legacy = {}
        super()._after_fork()

    def close(self) -> None:
        super().close()
        if not self._closed:
            self._closed = True
            self._file.done()
