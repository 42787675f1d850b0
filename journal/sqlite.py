"""The embedded default: one SQLite file in WAL mode, durable on commit (synchronous=FULL).

Built on eventsourcing's SQLite recorder with two changes: the events table numbers
notifications with ``INTEGER PRIMARY KEY AUTOINCREMENT`` (so ids are never reused after
retention deletes old streams, which would confuse followers), and every connection sets
``synchronous`` explicitly (``FULL`` by default; ``?synchronous=NORMAL`` in the URL trades
durability on power loss for speed, as SQLite documents).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)

from journal.errors import JournalUnavailable
from journal.lease import LeaseKeeper
from journal.store import BLOBS_TABLE, EVENTS_TABLE, Store

__all__ = ["SQLiteStore", "sqlite_path"]

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
#: Batches up to this many events are one multi-row INSERT statement.
MULTI_ROW_LIMIT = 240  # 960 parameters: within SQLite's oldest default limit (999)


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """Split ``sqlite:///rel.db`` / ``sqlite:////abs.db`` into a path and its query options."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or not parts.path.startswith("/") or parts.netloc:
        raise ValueError(
            f"bad SQLite URL {url!r}: write sqlite:///relative.db or sqlite:////absolute.db"
        )
    path = parts.path[1:]
    if not path:
        raise ValueError(f"bad SQLite URL {url!r}: no file name")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return path, options


class _Pool(SQLiteConnectionPool):
    """Connections with explicit durability and a busy timeout for other processes."""

    synchronous = "FULL"

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        c = conn._sqlite_conn.cursor()
        c.execute(f"PRAGMA synchronous={self.synchronous}")
        c.execute("PRAGMA busy_timeout=10000")
        return conn


@functools.lru_cache(maxsize=64)
def _multi_row_sql(table: str, rows: int) -> str:
    return (
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES "
        + ",".join(["(?,?,?,?)"] * rows)
    )


class JournalSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder with never-reused notification ids."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name)
        self.insert_events_statement = (
            f"INSERT INTO {self.events_table_name} "
            "(originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
        )

    def construct_create_table_statements(self) -> list[str]:
        t = self.events_table_name
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "topic TEXT NOT NULL, "
            "state BLOB NOT NULL)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {t}_stream_idx "
            f"ON {t} (originator_id, originator_version)",
            f"CREATE TABLE IF NOT EXISTS {BLOBS_TABLE} (sha256 TEXT PRIMARY KEY, data BLOB)",
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert atomically in as few statements as possible (each commit is one fsync).

        Up to ``MULTI_ROW_LIMIT`` events are one multi-row INSERT in autocommit (a statement
        is atomic); larger batches are one explicit transaction.
        """
        n = len(stored_events)
        conn = self.datastore.pool.get_connection(is_writer=True)
        try:
            c = conn._sqlite_conn
            if n <= MULTI_ROW_LIMIT:
                flat: list[Any] = []
                for s in stored_events:
                    flat += (s.originator_id.hex, s.originator_version, s.topic, s.state)  # type: ignore[union-attr]
                c.execute(self._multi_row_statement(n), flat)
                return None
            params = [
                (s.originator_id.hex, s.originator_version, s.topic, s.state)  # type: ignore[union-attr]
                for s in stored_events
            ]
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(self.insert_events_statement, params)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return None
        finally:
            self.datastore.pool.put_connection(conn)

    def _multi_row_statement(self, rows: int) -> str:
        return _multi_row_sql(self.events_table_name, rows)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Keyset read of the notification log (the stock query names ``rowid``)."""
        clauses: list[str] = []
        params: list[Any] = []
        if start is not None:
            clauses.append("notification_id >= ?" if inclusive_of_start else "notification_id > ?")
            params.append(start)
        if stop is not None:
            clauses.append("notification_id <= ?")
            params.append(stop)
        if topics:
            clauses.append(f"topic IN ({','.join('?' * len(topics))})")
            params.extend(topics)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        statement = (
            f"SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name} {where}ORDER BY notification_id LIMIT ?"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [*params, limit])
            return [
                Notification(
                    id=row[0],
                    originator_id=UUID(row[1]),
                    originator_version=row[2],
                    topic=row[3],
                    state=row[4],
                )
                for row in c.fetchall()
            ]


class FileLeases(LeaseKeeper):
    """A lease is an ``flock`` on a file in ``<journal file>.leases/``; the OS drops it when
    the process dies. Files are removed only with their execution's stream (retention), so
    no process can lock an unlinked file while another locks its successor."""

    def __init__(self, url: str, directory: Path) -> None:
        super().__init__()
        self.url = url
        self.directory = directory
        self._fds: dict[UUID, int] = {}

    def path(self, execution_id: UUID) -> Path:
        """The lock file of one execution."""
        return self.directory / execution_id.hex

    def _acquire(self, execution_id: UUID) -> bool:
        try:
            self.directory.mkdir(exist_ok=True)
            fd = os.open(self.path(execution_id), os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as e:
            raise JournalUnavailable(self.url, f"lease file for {execution_id}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as e:
            os.close(fd)
            raise JournalUnavailable(self.url, f"lease file for {execution_id}: {e}") from e
        self._fds[execution_id] = fd
        return True

    def _release(self, execution_id: UUID) -> None:
        fd = self._fds.pop(execution_id, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock


class SQLiteStore(Store):
    """A journal in one SQLite file."""

    leases: FileLeases

    def __init__(self, url: str, **_: Any) -> None:
        self.url = url
        path, options = sqlite_path(url)
        synchronous = options.get("synchronous", "FULL").upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"bad synchronous={synchronous!r} in {url!r}: use FULL or NORMAL")
        parent = Path(path).parent
        if not parent.exists():
            raise JournalUnavailable(url, f"directory {parent} does not exist")
        self.path = path
        self.datastore = SQLiteDatastore(path)
        self.datastore.pool.close()
        pool = _Pool(db_name=path, pool_size=5, max_overflow=10)
        pool.synchronous = synchronous
        self.datastore.pool = pool
        self.recorder = JournalSQLiteRecorder(self.datastore)
        self.leases = FileLeases(url, Path(f"{path}.leases"))
        self._read_stream_sql = (
            f"SELECT originator_version, topic, state FROM {EVENTS_TABLE} "
            "WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version"
        )
        with self.translated():
            self.recorder.create_table()

    def _append(self, stored: Sequence[StoredEvent]) -> None:
        self.recorder.insert_events(stored)

    def read_stream(
        self, execution_id: UUID, *, after: int = 0
    ) -> Sequence[tuple[int, str, bytes]]:
        with self.translated(execution_id), self.datastore.transaction(commit=False) as c:
            c.execute(self._read_stream_sql, (execution_id.hex, after))
            rows: list[tuple[int, str, bytes]] = c.fetchall()
            return rows

    def put_blob(self, digest: str, data: bytes) -> None:
        with self.translated(), self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT OR IGNORE INTO {BLOBS_TABLE} (sha256, data) VALUES (?, ?)",
                (digest, data),
            )

    def get_blob(self, digest: str) -> bytes:
        with self.translated(), self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT data FROM {BLOBS_TABLE} WHERE sha256 = ?", (digest,))
            row = c.fetchone()
        if row is None:
            raise KeyError(digest)
        return bytes(row[0])

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        removed = 0
        with self.translated(), self.datastore.transaction(commit=True) as c:
            for eid in execution_ids:
                c.execute(f"DELETE FROM {EVENTS_TABLE} WHERE originator_id = ?", (eid.hex,))
                c.execute("SELECT changes()")
                removed += int(c.fetchone()[0])
        for eid in execution_ids:  # their lease files go with them (they have ended)
            with contextlib.suppress(FileNotFoundError):
                self.leases.path(eid).unlink()
        return removed

    def connect(self) -> sqlite3.Connection:
        """A plain connection to the same file (for projections' own tables)."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous={self.datastore.pool.synchronous}")  # type: ignore[attr-defined]
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        self.leases.close()
        self.datastore.close()
