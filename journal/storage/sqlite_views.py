"""View tables in a SQLite database (a file's, or an in-memory one for ``memory:``), on one
connection of their own."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any

from journal.storage import forks
from journal.storage.base import ViewStore
from journal.storage.errors import translate, translate_os_error
from journal.storage.schema import SQLITE, Table, _same

__all__ = ["SQLiteViewStore"]

#: Conversions bulk_insert remembers at most (each keeps its object alive, so ids are unique).
_TEXTS = 50_000


def _memo(convert: Callable[[Any], Any], texts: dict[int, tuple[Any, Any]]) -> Callable[[Any], Any]:
    get = texts.get

    def memo(value: Any) -> Any:
        hit = get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = convert(value)
        texts[id(value)] = (value, text)
        return text

    return memo


def _ts_fast(value: Any) -> Any:
    """``SQLITE.dump["ts"]``, faster: with microseconds, the plain ``isoformat()`` spells
    the same text, and parsing ``timespec=`` costs more than the formatting itself."""
    if value is not None and value.tzinfo is UTC and value.microsecond:
        return value.isoformat()
    return SQLITE.dump["ts"](value)


def _memo_dumper(
    table: Table, texts: dict[int, tuple[Any, Any]]
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``SQLITE.dumper(table)``, remembering the text of UUIDs and timestamps in ``texts``."""
    convert = {**SQLITE.dump, "ts": _ts_fast}
    fns = [
        _memo(convert[c.type], texts) if c.type in ("uuid", "ts") else convert[c.type]
        for c in table.columns
    ]
    names = {f"f{i}": f for i, f in enumerate(fns) if f is not _same}
    items = ", ".join(f"r[{i}]" if f is _same else f"f{i}(r[{i}])" for i, f in enumerate(fns))
    return eval(f"lambda r: ({items},)", names)  # type: ignore[no-any-return]


class SQLiteViewStore(ViewStore):
    """View tables in a SQLite database, on one connection of their own."""

    dialect = SQLITE

    def __init__(self, connect: Any, url: str, where: str, *, shared: bool = True) -> None:
        super().__init__()
        self._connect = connect
        #: Whether the database outlives this connection (a file): after a fork the child
        #: opens its own. An in-memory database is the connection: the child keeps its copy.
        self._shared = shared
        self.url = url
        self.where = where
        self._conn: sqlite3.Connection | None = connect()
        self._closed = False
        #: Stored text of the UUIDs and timestamps bulk_insert converted lately, by object:
        #: one execution's rows share them (its id in every step row, its last step's times
        #: as its markers), and formatting a timestamp costs more than writing it.
        self._texts: dict[int, tuple[Any, Any]] = {}
        forks.register(self)

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, opened again after a fork closed it."""
        if self._conn is None:
            if self._closed:
                from journal.errors import JournalError

                raise JournalError(f"the views of {self.where} are closed")
            self._conn = self._connect()
        return self._conn

    def _before_fork(self) -> None:
        # A file's connection must not cross a fork (see forks); an in-memory database is
        # the connection itself, and a child keeps its copy.
        if self._shared and self._conn is not None and self.lock.acquire(timeout=1.0):
            try:
                if not self._conn.in_transaction:
                    self._conn.close()
                    self._conn = None
            finally:
                self.lock.release()

    def _after_fork(self) -> None:
        self.lock = threading.RLock()
        if self._shared and self._conn is not None:
            forks.abandon(self._conn)  # it was busy at the fork: never touch it here
            self._conn = None

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise translate(e, self.url, where=self.where) from e

    def missing(self, tables: Sequence[Table]) -> list[Table]:
        names = {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return [t for t in tables if t.name not in names]

    def columns(self, tables: Sequence[Table]) -> dict[str, list[tuple[str, str]]]:
        names = [t.name for t in tables]
        if not names:
            return {}
        rows = self.query(
            "SELECT m.name, p.name, p.type FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS p "
            f"WHERE m.type = 'table' AND m.name IN ({', '.join('?' * len(names))}) "
            "ORDER BY m.name, p.cid",
            names,
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for table, column, sql_type in rows:
            # Declared types are kept as written; ours are written upper-case.
            found.setdefault(table, []).append((column, sql_type.upper()))
        return found

    def create(self, tables: Sequence[Table]) -> None:
        for table in tables:
            for statement in SQLITE.create(table, table.name):
                self.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock, self._translated():
            # IMMEDIATE: take the write lock up front, so two projectors serialize here
            # instead of failing to upgrade a read lock halfway through a page.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # the block or the COMMIT itself failed
                    self.conn.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        p = [SQLITE.param(v) for v in params]
        with self.lock, self._translated():
            return self.conn.execute(sql, p).rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        p = [SQLITE.param(v) for v in params]
        with self.lock, self._translated():
            return self.conn.execute(sql, p).fetchall()

    def upsert(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        dump = SQLITE.dumper(table)
        with self.lock, self._translated():
            self.conn.executemany(SQLITE.upsert(table, table.name), [dump(r) for r in rows])

    # -- bulk builds -----------------------------------------------------------------------------

    def sibling(self) -> ViewStore:
        if not self._shared:
            return self  # an in-memory database: this connection is the database
        return SQLiteViewStore(self._connect, self.url, self.where)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        # Builds take turns (an flock beside the file, dropped by the OS if the process
        # dies), so what an earlier build left can be dropped without touching a live one.
        if not self._shared:
            yield  # an in-memory database: no other process has it
            return
        path = f"{self.where}.views-lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise translate_os_error(e, self.url, where=path) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def create_fresh(self, tables: Sequence[Table], suffix: str) -> None:
        for table in tables:
            self.execute(SQLITE.create_bare(table, table.name + suffix))

    def bulk_insert(self, table: Table, rows: Iterable[Sequence[Any]], suffix: str) -> None:
        marks = ", ".join("?" * len(table.names))
        sql = f"INSERT INTO {table.name}{suffix} ({table.select_list}) VALUES ({marks})"
        with self.lock, self._translated():
            if len(self._texts) > _TEXTS:
                self._texts.clear()
            self.conn.executemany(sql, map(_memo_dumper(table, self._texts), rows))

    def swap(self, tables: Sequence[Table], suffix: str) -> None:
        # Renamed away rather than dropped: dropping frees every page of the old table,
        # which can wait until after the commit (drop_fresh).
        present = {t.name for t in tables} - {t.name for t in self.missing(tables)}
        for table in tables:
            if table.name in present:
                self.execute(f"ALTER TABLE {table.name} RENAME TO {table.name}__o{suffix[3:]}")
            self.execute(f"ALTER TABLE {table.name}{suffix} RENAME TO {table.name}")
        # SQLite cannot rename an index: the new ones keep their suffixed names (which no
        # query names; the table they index follows the rename).

    def drop_fresh(self, tables: Sequence[Table], suffix: str | None = None) -> list[str]:
        names = [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        doomed = [n for n in names if any(self.is_fresh(n, t, suffix) for t in tables)]
        for name in doomed:
            with self.transaction():
                self.execute(f"DROP TABLE IF EXISTS {name}")
        return doomed

    def close(self) -> None:
        with self.lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
