"""The storage contract of the views, and choosing a backend for a journal's store.

A backend owns one connection to the journal's database (the same SQLite file or the same
PostgreSQL schema), reads raw pages of the journal's notification log with a keyset query,
and writes view rows. SQL is written once with ``?`` placeholders and type tokens
(``{UUID}``, ``{TS}``, ``{DEC}``); each backend maps them, and converts values at the
boundary (:meth:`Backend.uuid`, :meth:`Backend.ts`, :meth:`Backend.dec` and back).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from journal import Journal
from journal.errors import JournalError, JournalUnavailable
from journal.store import Store

__all__ = ["SCHEMA", "Backend", "Upsert", "open_backend"]

TRACKING_TABLE = "proj_tracking"

#: Table and index statements per view. Every listed table belongs to that view only.
SCHEMA: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "executions": (
        ("proj_executions",),
        [
            "CREATE TABLE IF NOT EXISTS proj_executions ("
            "execution_id {UUID} PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, "
            "started_at {TS} NOT NULL, updated_at {TS} NOT NULL, ended_at {TS}, "
            "duration {FLOAT}, "
            "last_started_name TEXT, last_started_seq INTEGER, last_started_at {TS}, "
            "last_completed_name TEXT, last_completed_seq INTEGER, last_completed_at {TS}, "
            "finalization_path TEXT, error_type TEXT, error_message TEXT, "
            "error_step TEXT, error_step_seq INTEGER, pause_reason TEXT, paused_at {TS}, "
            "steps_completed INTEGER NOT NULL, steps_failed INTEGER NOT NULL, "
            "retries INTEGER NOT NULL, event_count INTEGER NOT NULL, "
            "log_count INTEGER NOT NULL, cost_usd {DEC} NOT NULL, "
            "input_tokens {BIGINT} NOT NULL, output_tokens {BIGINT} NOT NULL)",
            # Keyset pagination newest first, with or without each filter.
            "CREATE INDEX IF NOT EXISTS proj_executions_started "
            "ON proj_executions (started_at, execution_id)",
            "CREATE INDEX IF NOT EXISTS proj_executions_status "
            "ON proj_executions (status, started_at, execution_id)",
            "CREATE INDEX IF NOT EXISTS proj_executions_workflow "
            "ON proj_executions (workflow, status, started_at, execution_id)",
            "CREATE INDEX IF NOT EXISTS proj_executions_workflow_started "
            "ON proj_executions (workflow, started_at, execution_id)",
            # stuck(): running executions by time of their last event.
            "CREATE INDEX IF NOT EXISTS proj_executions_updated "
            "ON proj_executions (status, updated_at)",
        ],
    ),
    "steps": (
        ("proj_steps",),
        [
            "CREATE TABLE IF NOT EXISTS proj_steps ("
            "execution_id {UUID} NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, "
            "status TEXT NOT NULL, attempts INTEGER NOT NULL, started_at {TS}, "
            "ended_at {TS}, duration {FLOAT}, cost_usd {DEC} NOT NULL, "
            "input_tokens {BIGINT} NOT NULL, output_tokens {BIGINT} NOT NULL, "
            "error_type TEXT, error_message TEXT, PRIMARY KEY (execution_id, seq))",
            "CREATE INDEX IF NOT EXISTS proj_steps_name ON proj_steps (name, status)",
        ],
    ),
    "costs": (
        ("proj_costs",),
        [
            "CREATE TABLE IF NOT EXISTS proj_costs ("
            "dimension TEXT NOT NULL, key TEXT NOT NULL, usd {DEC} NOT NULL, "
            "input_tokens {BIGINT} NOT NULL, output_tokens {BIGINT} NOT NULL, "
            "calls {BIGINT} NOT NULL, PRIMARY KEY (dimension, key))",
        ],
    ),
}

TRACKING_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} "
    "(name TEXT PRIMARY KEY, position {BIGINT} NOT NULL)"
)


class Upsert:
    """Insert-or-replace rows of one table, keyed by ``key``."""

    def __init__(
        self, table: str, columns: tuple[str, ...], types: tuple[str, ...], key: tuple[str, ...]
    ) -> None:
        self.table, self.columns, self.types, self.key = table, columns, types, key
        self.updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        self.sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {self.updates}"
        )


class Backend(ABC):
    """One connection to the journal's database, for reading the log and writing views.

    Thread-safe: every use of the connection holds :attr:`lock`.
    """

    #: Type tokens of the DDL mapped to this backend's column types.
    types: dict[str, str]

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.RLock()

    # -- SQL ---------------------------------------------------------------------------------

    def ddl(self, statement: str) -> str:
        """Replace type tokens by this backend's types."""
        return statement.format(**self.types)

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the row count."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row."""

    def upsert(self, upsert: Upsert, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, replacing those whose key exists (within a transaction)."""
        self.executemany(upsert.sql, rows)

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Translate driver errors to ``JournalUnavailable`` naming the URL."""
        try:
            yield
        except JournalError:
            raise
        except Exception as e:
            # Only "the database did not answer" errors; a bad statement is a bug, not an outage.
            names = {c.__name__ for c in type(e).__mro__}
            if type(e).__module__.startswith(("psycopg", "sqlite3", "psycopg_pool")) and (
                names & {"OperationalError", "InterfaceError", "PoolTimeout"}
            ):
                raise JournalUnavailable(self.store.url, e) from e
            raise

    # -- the journal's log -------------------------------------------------------------------

    def lock_ddl(self) -> None:  # noqa: B027 - a no-op where one writer is the rule (SQLite)
        """Inside a transaction: make concurrent schema changes by other processes wait."""

    @abstractmethod
    def read_page(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Notifications after id ``after`` in id order: (notification id, topic, state)."""

    def head(self) -> int:
        """The id of the last notification in the log (0 when empty)."""
        return self.store.max_notification_id()

    def wait_for_append(self, timeout: float) -> None:
        """Block until something may have been appended, or ``timeout`` seconds pass."""
        threading.Event().wait(timeout)

    # -- values ------------------------------------------------------------------------------

    @staticmethod
    def uuid(value: UUID) -> Any:
        """A UUID as this backend stores it."""
        return value

    @staticmethod
    def ts(value: datetime | None) -> Any:
        """A timestamp as this backend stores it."""
        return value

    @staticmethod
    def dec(value: Decimal) -> Any:
        """A Decimal as this backend stores it (never a float)."""
        return value

    @staticmethod
    def text(value: str | None) -> str | None:
        """Free text (names, messages) as this backend can store it."""
        return value

    @staticmethod
    def to_uuid(value: Any) -> UUID:
        """Read back a stored UUID."""
        return value if isinstance(value, UUID) else UUID(value)

    @staticmethod
    def to_ts(value: Any) -> datetime | None:
        """Read back a stored timestamp."""
        return value  # type: ignore[no-any-return]

    @staticmethod
    def to_dec(value: Any) -> Decimal:
        """Read back a stored Decimal."""
        return value if isinstance(value, Decimal) else Decimal(value)

    # -- percentile support ------------------------------------------------------------------

    #: Whether step_stats() can compute percentiles in SQL (PostgreSQL's percentile_cont).
    sql_percentiles = False

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


def open_backend(journal: Journal) -> Backend:
    """The backend for the journal's store: same database, same schema."""
    store = journal.store
    kind = type(store).__name__
    if kind == "SQLiteStore":
        from projections.sqlite import SQLiteBackend

        return SQLiteBackend(store)
    if kind == "PostgresStore":
        from projections.postgres import PostgresBackend

        return PostgresBackend(store)
    if kind == "MemoryStore":
        from projections.sqlite import MemoryBackend

        return MemoryBackend(store)
    raise TypeError(f"projections do not support the journal store {kind} ({store.url})")
