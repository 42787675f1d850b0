"""View tables in the journal's PostgreSQL schema, on a session of their own."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from journal.errors import JournalError
from journal.storage import forks
from journal.storage.base import ViewStore
from journal.storage.errors import is_connection_lost, translate
from journal.storage.postgres import PostgresStorage, _close_quietly, _quote, _session
from journal.storage.schema import POSTGRES, Table, _pg_text, _same

__all__ = ["PostgresViewStore"]

T = TypeVar("T")

#: The catalog's names (``format_type``) of the declared types that it spells otherwise.
_PG_TYPE_NAMES = {"timestamp with time zone": "timestamptz"}


@functools.lru_cache(maxsize=64)
def _copy_row(table: Table) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """``POSTGRES.dumper(table)`` for COPY, written out: text columns are checked for NUL
    (which PostgreSQL text cannot hold) inline, the function called only when one has it."""
    items = []
    for i, c in enumerate(table.columns):
        if POSTGRES.dump[c.type] is _pg_text:
            test = f'"\\x00" not in r[{i}]'
            if c.nullable:
                test = f"r[{i}] is None or {test}"
            items.append(f"(r[{i}] if {test} else t(r[{i}]))")
        else:
            assert POSTGRES.dump[c.type] is _same, c
            items.append(f"r[{i}]")
    if all(item == f"r[{i}]" for i, item in enumerate(items)):
        return lambda r: r
    return eval(f"lambda r: ({', '.join(items)},)", {"t": _pg_text})  # type: ignore[no-any-return]


class PostgresViewStore(ViewStore):
    """View tables in the journal's schema, on a session of their own (``search_path`` set to
    the schema, so view SQL needs no qualification). A lost session is re-established at the
    next statement outside a transaction, or the next transaction."""

    dialect = POSTGRES

    def __init__(self, storage: PostgresStorage) -> None:
        super().__init__()
        self.storage = storage
        self._depth = 0
        self._closed = False
        self.conn: psycopg.Connection[Any] | None = None
        try:
            self.conn = self._connect()
        except psycopg.Error as e:
            raise translate(e, storage.url) from e
        forks.register(self)

    def _connect(self) -> psycopg.Connection[Any]:
        return _session(self.storage.conninfo, f"SET search_path TO {_quote(self.storage.schema)}")

    def _after_fork(self) -> None:
        forks.abandon(self.conn)  # the parent's session; a new one at first use
        self.lock = threading.RLock()
        self._depth = 0
        self.conn = None

    def _usable(self) -> psycopg.Connection[Any]:
        """The session, re-established (within reconnect_timeout) if it was lost."""
        if self._closed:
            raise JournalError(f"the views of {self.storage.where} are closed")
        if self.conn is not None and not (self.conn.broken or self.conn.closed):
            return self.conn
        deadline = time.monotonic() + self.storage.reconnect_timeout
        while True:
            try:
                self.conn = self._connect()
                return self.conn
            except psycopg.Error as e:
                if not is_connection_lost(e) or time.monotonic() >= deadline:
                    raise translate(e, self.storage.url) from e
                time.sleep(0.1)

    def _call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self.lock:
            for attempt in (1, 2):
                conn = self._usable()
                try:
                    return fn(conn)
                except psycopg.Error as e:
                    lost = conn.broken or is_connection_lost(e)
                    if lost and self._depth == 0 and attempt == 1:
                        continue  # outside a transaction a read or write can just go again
                    raise translate(e, self.storage.url) from e
            raise AssertionError("unreachable")

    def missing(self, tables: Sequence[Table]) -> list[Table]:
        def op(conn: psycopg.Connection[Any]) -> list[Table]:
            return self.storage._missing(conn, tables)

        return self._call(op)

    def columns(self, tables: Sequence[Table]) -> dict[str, list[tuple[str, str]]]:
        if not tables:
            return {}
        rows = self.query(
            "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relname = ANY(?) AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            (self.storage.schema, [t.name for t in tables]),
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for table, column, sql_type in rows:
            found.setdefault(table, []).append((column, _PG_TYPE_NAMES.get(sql_type, sql_type)))
        return found

    def lock_schema(self) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS of one table fails in PostgreSQL (duplicate
        # pg_type), and two processes rebuilding a changed table would drop each other's:
        # they take turns (a transaction-scoped lock, taken again at no cost).
        self.execute("SELECT pg_advisory_xact_lock(hashtext(?))",
                     (f"projections {self.storage.schema}",))

    def create(self, tables: Sequence[Table]) -> None:
        self.lock_schema()
        for table in tables:
            for statement in POSTGRES.create(table, table.name):
                self.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            conn = self._usable()
            try:
                with conn.transaction():
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
            except psycopg.Error as e:
                raise translate(e, self.storage.url) from e

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        statement = POSTGRES.sql(sql)
        p = [POSTGRES.param(v) for v in params]
        return self._call(lambda conn: conn.execute(statement, p).rowcount)  # type: ignore[arg-type]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statement = POSTGRES.sql(sql)
        p = [POSTGRES.param(v) for v in params]
        return self._call(lambda conn: conn.execute(statement, p).fetchall())  # type: ignore[arg-type]

    def upsert(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        dump = POSTGRES.dumper(table)
        columns = [list(c) for c in zip(*(dump(r) for r in rows), strict=True)]
        statement = POSTGRES.upsert_arrays(table, table.name)
        self._call(lambda conn: conn.execute(statement, columns))  # type: ignore[arg-type]

    # -- bulk builds -----------------------------------------------------------------------------

    def sibling(self) -> ViewStore:
        return PostgresViewStore(self.storage)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        # One transaction: the fresh tables are invisible to every other session until the
        # swap commits, and a build that fails or is killed leaves nothing behind. Builds
        # take turns (a later one may find the views already built).
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(hashtext(?))",
                         (f"projections bulk {self.storage.schema}",))
            yield

    def create_fresh(self, tables: Sequence[Table], suffix: str) -> None:
        for table in tables:
            self.execute(POSTGRES.create_bare(table, table.name + suffix))

    def bulk_insert(self, table: Table, rows: Iterable[Sequence[Any]], suffix: str) -> None:
        dump = _copy_row(table)
        types = [POSTGRES.sql_types[c.type] for c in table.columns]
        statement = (
            f"COPY {table.name}{suffix} ({table.select_list}) FROM STDIN (FORMAT BINARY)"
        )

        def op(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(types)
                write = copy.write_row
                for row in rows:
                    write(dump(row))

        self._call(op)

    def index_fresh(self, tables: Sequence[Table], suffix: str) -> None:
        super().index_fresh(tables, suffix)
        for table in tables:
            # The planner's statistics before any reader plans on the new table (a sample of
            # its rows: a fixed cost, however large the table).
            self.execute(f"ANALYZE {table.name}{suffix}")

    def swap(self, tables: Sequence[Table], suffix: str) -> None:
        for table in tables:
            self.execute(f"DROP TABLE IF EXISTS {table.name}")
            self.execute(f"ALTER TABLE {table.name}{suffix} RENAME TO {table.name}")
            for fresh, declared in POSTGRES.key_indexes(table, suffix):
                self.execute(f"ALTER INDEX {fresh} RENAME TO {declared}")

    def drop_fresh(self, tables: Sequence[Table], suffix: str | None = None) -> list[str]:
        rows = self.query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relkind = 'r'", (self.storage.schema,),
        )
        doomed = [r[0] for r in rows if any(self.is_fresh(r[0], t, suffix) for t in tables)]
        for name in doomed:
            self.execute(f"DROP TABLE IF EXISTS {name}")
        return doomed

    def close(self) -> None:
        with self.lock:
            self._closed = True
            _close_quietly(self.conn)
            self.conn = None
