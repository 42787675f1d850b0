"""Views in the journal's PostgreSQL database and schema, followed through LISTEN/NOTIFY.

The projector has its own psycopg connection (autocommit; writes in explicit transactions)
with ``search_path`` set to the journal's schema, so the views sit beside the log and the
shared SQL needs no qualification. Writers ``NOTIFY`` on ``recorder.channel_name`` just
after their commits (at most every 2 ms per process); :meth:`wait_for_append` blocks on a
second, listening connection until one arrives (or the timeout passes, which is only a
safety net: a notification received while the projector was busy is kept by the server
socket and read at the next wait). Pages never extend past a gap in notification ids that
an in-flight writer may still fill (``JournalPostgresRecorder.safe_notification_id``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from journal.postgres import JournalPostgresRecorder, connect_params
from journal.store import EVENTS_TABLE, Store
from projections.backend import Backend, Upsert

__all__ = ["PostgresBackend"]


class PostgresBackend(Backend):
    """Views in the same PostgreSQL schema as the journal."""

    types = {
        "UUID": "uuid", "TS": "timestamptz", "DEC": "numeric", "BIGINT": "bigint",
        "FLOAT": "double precision", "INTEGER": "integer", "TEXT": "text",
    }
    sql_percentiles = True

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        datastore: Any = getattr(store, "datastore", None)
        self.schema: str = datastore.schema if datastore is not None else "public"
        self.recorder: JournalPostgresRecorder = store.recorder  # type: ignore[assignment]
        self.channel: str = self.recorder.channel_name
        self._sql: dict[str, str] = {}
        self._listener: psycopg.Connection[Any] | None = None
        with self.translated():
            self.conn = self._connect()
        self._read_sql = (
            f"SELECT notification_id, topic, state FROM {EVENTS_TABLE} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )

    @staticmethod
    def text(value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; an exception message can.
        return value.replace("\x00", "\ufffd") if value and "\x00" in value else value

    @staticmethod
    def to_ts(value: Any) -> datetime | None:
        # The server hands back its own time zone object; the journal's events use UTC.
        return None if value is None else value.astimezone(UTC)  # type: ignore[no-any-return]

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(**connect_params(self.store.url), autocommit=True)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        return conn

    def _pg(self, statement: str) -> str:
        converted = self._sql.get(statement)
        if converted is None:
            converted = self._sql[statement] = statement.replace("?", "%s")
        return converted

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock, self.translated():
            return self.conn.execute(self._pg(sql), params).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.lock, self.translated():
            return self.conn.execute(self._pg(sql), params).rowcount  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.lock, self.translated(), self.conn.cursor() as cur:
            cur.executemany(self._pg(sql), rows)  # type: ignore[arg-type]

    def upsert(self, upsert: Upsert, rows: Sequence[Sequence[Any]]) -> None:
        # One statement per page and table: the rows as typed binary arrays, unnested.
        # executemany costs a protocol round of work per row; this is several times faster.
        statement = self._sql.get(upsert.table)
        if statement is None:
            arrays = ", ".join(f"%b::{self.types[t]}[]" for t in upsert.types)
            statement = self._sql[upsert.table] = (
                f"INSERT INTO {upsert.table} ({', '.join(upsert.columns)}) "
                f"SELECT * FROM unnest({arrays}) "
                f"ON CONFLICT ({', '.join(upsert.key)}) DO UPDATE SET {upsert.updates}"
            )
        columns = [list(c) for c in zip(*rows, strict=True)]
        with self.lock, self.translated():
            self.conn.execute(statement, columns)  # type: ignore[arg-type]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock, self.translated(), self.conn.transaction():
            yield

    def lock_ddl(self) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS of one table fails in PostgreSQL
        # (duplicate pg_type): projectors opening a fresh schema at once take turns.
        self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"projections {self.schema}",))

    def read_page(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        # Appends take no table lock, so ids can commit out of order: never read past a gap
        # that an in-flight writer may still fill (see journal.postgres).
        with self.translated():
            safe = self.recorder.safe_notification_id(after, limit)
        if safe <= after:
            return []
        with self.lock, self.translated(), self.conn.cursor(binary=True) as cur:
            cur.execute(self._read_sql, (after, safe, limit))  # type: ignore[arg-type]
            return cur.fetchall()

    def head(self) -> int:
        with self.translated():
            return self.recorder.max_notification_id() or 0

    def listen(self) -> None:
        """Start listening on the journal's channel (idempotent)."""
        if self._listener is not None:
            return
        with self.translated():
            listener = self._connect()
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self._listener = listener

    def unlisten(self) -> None:
        """Stop listening and close the listening connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def wait_for_append(self, timeout: float) -> None:
        if self._listener is None:
            self.listen()
        assert self._listener is not None
        with self.translated():
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                pass

    def close(self) -> None:
        self.unlisten()
        with self.lock:
            self.conn.close()
