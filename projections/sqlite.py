"""Views in the journal's SQLite file (WAL), and in memory for a ``memory:`` journal.

The SQLite recorder has no ``subscribe()``, so following polls the log's last notification
id (an index lookup on the primary key) every ``poll_interval`` seconds. Timestamps are
stored as fixed-width ISO-8601 UTC text, so they sort and compare as text; money as the
Decimal's text, never a float.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from journal.store import EVENTS_TABLE, Store
from projections.backend import Backend

__all__ = ["MemoryBackend", "SQLiteBackend"]


class SQLiteBackend(Backend):
    """Views in the same SQLite file as the journal, on a connection of their own."""

    types = {"UUID": "TEXT", "TS": "TEXT", "DEC": "TEXT", "BIGINT": "INTEGER", "FLOAT": "REAL",
             "INTEGER": "INTEGER", "TEXT": "TEXT"}

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        connect = getattr(self.store, "connect", None)
        if connect is None:
            raise TypeError(f"store {self.store.url} has no connect()")
        conn: sqlite3.Connection = connect()
        return conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock, self.translated():
            return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.lock, self.translated():
            return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.lock, self.translated():
            self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock, self.translated():
            # IMMEDIATE: take the write lock up front, so two projectors serialize here
            # instead of failing to upgrade a read lock halfway through a page.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def read_page(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        with self.lock, self.translated():
            return self.conn.execute(
                f"SELECT notification_id, topic, state FROM {EVENTS_TABLE} "
                "WHERE notification_id > ? ORDER BY notification_id LIMIT ?",
                (after, limit),
            ).fetchall()

    def head(self) -> int:
        with self.lock, self.translated():
            row = self.conn.execute(f"SELECT MAX(notification_id) FROM {EVENTS_TABLE}").fetchone()
        return int(row[0] or 0)

    @staticmethod
    def uuid(value: UUID) -> Any:
        return str(value)

    @staticmethod
    def ts(value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is not UTC and value.utcoffset():
            value = value.astimezone(UTC)
        # Fixed width (always microseconds, always +00:00), so text order is time order.
        return value.isoformat(timespec="microseconds")

    @staticmethod
    def dec(value: Decimal) -> Any:
        return str(value)

    @staticmethod
    def to_ts(value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class MemoryBackend(SQLiteBackend):
    """Views of a ``memory:`` journal in an in-memory SQLite database (tests, experiments)."""

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)

    def read_page(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        page = self.store.notifications(after=after, limit=limit)
        return [(n.id, n.topic, n.state) for n in page]

    def head(self) -> int:
        return self.store.max_notification_id()
