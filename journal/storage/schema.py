"""Tables declared once: columns, types, keys and indexes; DDL, upserts, select lists and row
mapping all derive from the declaration, per dialect.

The journal's own tables are declared here; projections declare their view tables with the
same types and hand them to :class:`journal.storage.ViewStore`. A column type is one of
:data:`TYPES`; each dialect says how it stores it and converts values at the boundary, so a
view row is plain Python (UUID, aware UTC datetime, Decimal) on every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

__all__ = [
    "BLOBS",
    "BLOB_REFS",
    "EVENTS",
    "JOURNAL_TABLES",
    "LEASES",
    "POSTGRES",
    "SNAPSHOTS",
    "SQLITE",
    "TYPES",
    "WAKEUPS",
    "WORKERS",
    "Column",
    "Dialect",
    "Index",
    "Table",
]

#: Column types a table may declare.
TYPES = ("uuid", "text", "int", "bigint", "float", "ts", "decimal", "bytes", "serial")


@dataclass(frozen=True)
class Column:
    """One column: its name, type (one of :data:`TYPES`) and whether it may be NULL."""

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r} (use {TYPES})")


@dataclass(frozen=True)
class Index:
    """A secondary index over ``columns`` (in order)."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class Table:
    """A table: columns in order, its primary key, its indexes."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[Index, ...] = ()
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        missing = [k for k in self.key if k not in self.names]
        for index in self.indexes:
            missing += [c for c in index.columns if c not in self.names]
        if missing:
            raise ValueError(f"table {self.name}: no column {', '.join(missing)}")

    @property
    def select_list(self) -> str:
        """``a, b, c``: every column, in declaration order (what :meth:`Dialect.row` reads)."""
        return ", ".join(self.names)


def _uuid_text(value: Any) -> Any:
    return None if value is None else str(value)


def _ts_text(value: datetime | None) -> Any:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: pass an aware datetime (UTC)")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Fixed width (always microseconds, always +00:00), so text order is time order.
    return value.isoformat(timespec="microseconds")


def _text_ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _pg_ts(value: Any) -> datetime | None:
    # The server hands back its own time zone object; the journal's events use UTC.
    return None if value is None else value.astimezone(UTC)  # type: ignore[no-any-return]


def _dec_text(value: Any) -> Any:
    return None if value is None else str(value)


def _text_dec(value: Any) -> Decimal | None:
    return None if value is None else value if isinstance(value, Decimal) else Decimal(value)


def _text_uuid(value: Any) -> UUID | None:
    return None if value is None else value if isinstance(value, UUID) else UUID(value)


def _pg_text(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL; an exception message can.
    return value.replace("\x00", "\ufffd") if type(value) is str and "\x00" in value else value


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per family
class Dialect:
    """How one database family spells types, placeholders and upserts."""

    name: str
    sql_types: dict[str, str]
    #: Python value -> stored value, per column type.
    dump: dict[str, Callable[[Any], Any]]
    #: Stored value -> Python value, per column type.
    load: dict[str, Callable[[Any], Any]]
    placeholder: str
    #: Whether percentile_cont() exists (aggregates in SQL rather than in Python).
    percentiles: bool = False

    def column_ddl(self, c: Column, table: Table) -> str:
        sql_type = self.sql_types[c.type]
        if c.type == "serial" and self.name == "sqlite":
            return f"{c.name} INTEGER PRIMARY KEY AUTOINCREMENT"
        return f"{c.name} {sql_type}" + ("" if c.nullable or c.name in table.key else " NOT NULL")

    def create(self, table: Table, qualified: str) -> list[str]:
        """``CREATE TABLE IF NOT EXISTS`` and its indexes."""
        columns = [self.column_ddl(c, table) for c in table.columns]
        serial_pk = self.name == "sqlite" and any(c.type == "serial" for c in table.columns)
        if table.key and not serial_pk:
            columns.append(f"PRIMARY KEY ({', '.join(table.key)})")
        statements = [f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(columns)})"]
        serial = {c.name for c in table.columns if c.type == "serial"}
        for index in table.indexes:
            if index.columns == table.key and not serial_pk:
                continue  # the primary key is that index already
            if serial_pk and set(index.columns) <= serial:
                continue  # SQLite's serial is the rowid: indexed by nature
            unique = "UNIQUE " if index.unique else ""
            statements.append(
                f"CREATE {unique}INDEX IF NOT EXISTS {index.name} "
                f"ON {qualified} ({', '.join(index.columns)})"
            )
        return statements

    def create_bare(self, table: Table, qualified: str) -> str:
        """``CREATE TABLE`` for a bulk load: the columns only (key columns NOT NULL), no key
        and no index; :meth:`create_keys` adds them once the rows are in."""
        if any(c.type == "serial" for c in table.columns):
            raise ValueError(f"table {table.name}: a serial column cannot be bulk loaded")
        columns = [
            f"{c.name} {self.sql_types[c.type]}"
            + ("" if c.nullable and c.name not in table.key else " NOT NULL")
            for c in table.columns
        ]
        return f"CREATE TABLE {qualified} ({', '.join(columns)})"

    def key_indexes(self, table: Table, suffix: str) -> list[tuple[str, str]]:
        """(name with ``suffix``, declared name) of each index :meth:`create_keys` builds,
        the key's first (PostgreSQL names a primary key's index ``<table>_pkey``)."""
        names = [(f"{table.name}{suffix}_pkey", f"{table.name}_pkey")] if table.key else []
        names += [
            (f"{index.name}{suffix}", index.name)
            for index in table.indexes if index.columns != table.key
        ]
        return names

    def create_keys(self, table: Table, qualified: str, suffix: str) -> list[str]:
        """The key and indexes of a table made by :meth:`create_bare`, named with
        ``suffix`` (the declared names may still belong to the table it will replace).

        PostgreSQL: the primary key itself. SQLite cannot add a primary key to a table: a
        unique index on the key columns, which upserts' ``ON CONFLICT`` target equally."""
        statements = []
        names = iter(self.key_indexes(table, suffix))
        if table.key:
            key = ", ".join(table.key)
            name = next(names)[0]
            if self.name == "sqlite":
                statements.append(f"CREATE UNIQUE INDEX {name} ON {qualified} ({key})")
            else:
                statements.append(
                    f"ALTER TABLE {qualified} ADD CONSTRAINT {name} PRIMARY KEY ({key})"
                )
        for index, (name, _) in zip(
            [i for i in table.indexes if i.columns != table.key], names, strict=True
        ):
            unique = "UNIQUE " if index.unique else ""
            statements.append(
                f"CREATE {unique}INDEX {name} ON {qualified} ({', '.join(index.columns)})"
            )
        return statements

    def sql(self, statement: str) -> str:
        """A statement written with ``?`` placeholders, in this dialect's."""
        return statement if self.placeholder == "?" else _convert(statement, self.placeholder)

    def upsert(self, table: Table, qualified: str) -> str:
        """Insert one row (``?`` per column), replacing the row with the same key."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in table.names if c not in table.key)
        marks = ", ".join([self.placeholder] * len(table.names))
        return (
            f"INSERT INTO {qualified} ({table.select_list}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
        )

    def upsert_arrays(self, table: Table, qualified: str) -> str:
        """Upsert many rows in one statement: one typed array per column, unnested
        (PostgreSQL: several times faster than a statement per row)."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in table.names if c not in table.key)
        arrays = ", ".join(f"%b::{self.sql_types[c.type]}[]" for c in table.columns)
        return (
            f"INSERT INTO {qualified} ({table.select_list}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
        )

    def dumper(self, table: Table) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """A function turning a row of Python values into stored values."""
        return _dumper(self, table)

    def loader(self, table: Table) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """A function turning a stored row (``select_list`` order) into Python values."""
        return _loader(self, table)

    def param(self, value: Any) -> Any:
        """A query parameter as stored (chosen by its Python type)."""
        if isinstance(value, UUID):
            return self.dump["uuid"](value)
        if isinstance(value, datetime):
            return self.dump["ts"](value)
        if isinstance(value, Decimal):
            return self.dump["decimal"](value)
        if isinstance(value, str):
            return self.dump["text"](value)
        return value


@functools.lru_cache(maxsize=256)
def _convert(statement: str, placeholder: str) -> str:
    return statement.replace("?", placeholder)


def _row_function(fns: list[Callable[[Any], Any]]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``lambda r: (f0(r[0]), r[1], ...)``, written out: columns that need no conversion
    are copied, the others called directly (a rebuild converts millions of rows)."""
    if all(f is _same for f in fns):
        return tuple
    names = {f"f{i}": f for i, f in enumerate(fns) if f is not _same}
    items = ", ".join(f"r[{i}]" if f is _same else f"f{i}(r[{i}])" for i, f in enumerate(fns))
    code = f"lambda r: ({items},)"
    return eval(code, names)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=64)
def _dumper(dialect: Dialect, table: Table) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    return _row_function([dialect.dump[c.type] for c in table.columns])


@functools.lru_cache(maxsize=64)
def _loader(dialect: Dialect, table: Table) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    return _row_function([dialect.load[c.type] for c in table.columns])


_IDENTITY = dict.fromkeys(TYPES, _same)

SQLITE = Dialect(
    name="sqlite",
    sql_types={"uuid": "TEXT", "text": "TEXT", "int": "INTEGER", "bigint": "INTEGER",
               "float": "REAL", "ts": "TEXT", "decimal": "TEXT", "bytes": "BLOB",
               "serial": "INTEGER"},
    dump={**_IDENTITY, "uuid": _uuid_text, "ts": _ts_text, "decimal": _dec_text},
    load={**_IDENTITY, "uuid": _text_uuid, "ts": _text_ts, "decimal": _text_dec},
    placeholder="?",
)

POSTGRES = Dialect(
    name="postgresql",
    sql_types={"uuid": "uuid", "text": "text", "int": "integer", "bigint": "bigint",
               "float": "double precision", "ts": "timestamptz", "decimal": "numeric",
               "bytes": "bytea", "serial": "bigserial"},
    dump={**_IDENTITY, "text": _pg_text},
    load={**_IDENTITY, "ts": _pg_ts, "decimal": _text_dec},
    placeholder="%s",
    percentiles=True,
)

# -- the journal's own tables ----------------------------------------------------------------

#: One row per event. Column names are eventsourcing's, so journals made by earlier releases
#: (on eventsourcing's own recorders) open unchanged.
EVENTS = Table(
    "journal_events",
    (
        Column("notification_id", "serial", nullable=False),
        Column("originator_id", "uuid", nullable=False),
        Column("originator_version", "bigint", nullable=False),
        Column("topic", "text", nullable=False),
        Column("state", "bytes", nullable=False),
    ),
    key=("originator_id", "originator_version"),
    indexes=(
        Index("journal_events_stream_idx", ("originator_id", "originator_version"), True),
        Index("journal_events_notification_id_idx", ("notification_id",), True),
    ),
)

#: Values too big to keep inline, by the sha256 of their encoding (shared by streams).
BLOBS = Table(
    "journal_blobs",
    (Column("sha256", "text", nullable=False), Column("data", "bytes", nullable=False)),
    key=("sha256",),
)

#: Which stream references which blob: retention deletes a blob with its last reference.
BLOB_REFS = Table(
    "journal_blob_refs",
    (Column("execution_id", "uuid", nullable=False), Column("sha256", "text", nullable=False)),
    key=("execution_id", "sha256"),
    indexes=(Index("journal_blob_refs_sha256", ("sha256",)),),
)

#: The latest snapshot of each execution's folded state (a cache: the log stays the truth),
#: so loading a long execution reads one row and the events after it, not its history.
SNAPSHOTS = Table(
    "journal_snapshots",
    (Column("execution_id", "uuid", nullable=False),
     Column("position", "bigint", nullable=False),
     Column("data", "bytes", nullable=False)),
    key=("execution_id",),
)

#: When each waiting execution is due (a timer, a timeout, a signal it waits for): written
#: with the events that make it so, in their transaction; ``serve()`` reads the earliest.
WAKEUPS = Table(
    "journal_wakeups",
    (Column("execution_id", "uuid", nullable=False),
     Column("due_at", "float", nullable=False),
     Column("position", "bigint", nullable=False)),
    key=("execution_id",),
    indexes=(Index("journal_wakeups_due_idx", ("due_at",)),),
)

#: The processes that serve this journal (``Runner.serve``), the workflows and code versions
#: each runs, and when each last said it was alive: what tells an execution that no live
#: process can drive (its workflow, or its version, is deployed nowhere) from one that only
#: waits for its turn. Not the log: rows come and go with the processes.
WORKERS = Table(
    "journal_workers",
    (Column("runner", "text", nullable=False), Column("host", "text", nullable=False),
     Column("pid", "int", nullable=False), Column("started_at", "float", nullable=False),
     Column("seen_at", "float", nullable=False), Column("workflows", "text", nullable=False)),
    key=("runner",),
)

JOURNAL_TABLES = (EVENTS, BLOBS, BLOB_REFS, SNAPSHOTS, WAKEUPS, WORKERS)

#: PostgreSQL only: who holds each execution's lease and when they last renewed it (a lease
#: outlives a dropped session for a grace period; see ``storage.postgres.AdvisoryLeases``).
LEASES = Table(
    "journal_leases",
    (Column("execution_id", "uuid", nullable=False), Column("holder", "text", nullable=False),
     Column("renewed_at", "ts", nullable=False)),
    key=("execution_id",),
)

#: The owner of blobs stored before references existed: never pruned.
LEGACY_OWNER = UUID(int=0)
