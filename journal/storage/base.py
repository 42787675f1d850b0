"""What every backend offers: the log, blobs, leases, and a store for view tables.

:class:`Storage` is the one owner of a journal's database. The recording API appends and
reads streams through it; projections read the log by position, ask for the safe head and
wait for appends through it, and keep their view tables in a :class:`ViewStore` it opens on
the same database. Nothing outside ``journal.storage`` names a journal table, writes SQL
against one, or sees a driver exception: every error leaves here translated
(:mod:`journal.storage.errors`).
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from journal.errors import mask_url
from journal.storage.leases import LeaseKeeper
from journal.storage.schema import Dialect, Table

__all__ = [
    "Blob", "Listener", "LogRow", "Storage", "StoredEvent", "StreamRow", "ViewStore", "Wake",
]


class StoredEvent(NamedTuple):
    """One event as it is stored: stream id, position, topic and body.

    The journal's own row type (a tuple: cheap to make, and importing it costs nothing),
    with the four attributes of eventsourcing's ``StoredEvent``: a backend appends either.
    """

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


#: (position, topic, bytes): one event of one stream.
StreamRow = tuple[int, str, bytes]
#: (notification id, execution id, position, topic, bytes): one event of the whole log.
LogRow = tuple[int, UUID, int, str, bytes]
#: (sha256 hex digest, bytes): a value kept out of line.
Blob = tuple[str, bytes]
#: (execution id, when it is due as a POSIX timestamp or None: never by itself, the stream
#: position it was worked out at): when ``serve()`` must look at a waiting execution again.
Wake = tuple[UUID, float | None, int]


#: How often a serving process says it is alive, and for how long after its last word it
#: still counts as alive (three missed beats: a process killed -9 drops out within it).
WORKER_HEARTBEAT = 10.0
WORKER_ALIVE_FOR = 30.0
#: A worker not seen for this long (killed, never signed off) is forgotten by the next one
#: that says it is alive: the table holds the processes of about a day.
WORKER_FORGOTTEN_AFTER = 86400.0


class WorkerRow(NamedTuple):
    """A process that serves the journal: its runner id, host and pid, when it started and
    was last seen alive (POSIX timestamps), and the workflows it runs, by name, with the
    version of each one's code."""

    runner: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    workflows: dict[str, str]


def workflows_text(workflows: dict[str, str]) -> str:
    """How a worker's workflows are stored (JSON, keys sorted)."""
    return json.dumps(workflows, sort_keys=True)


def worker_row(row: Sequence[Any]) -> WorkerRow:
    """A stored worker row as a :class:`WorkerRow` (an unreadable workflow list: none)."""
    try:
        workflows = json.loads(row[5])
    except ValueError:
        workflows = {}
    return WorkerRow(str(row[0]), str(row[1]), int(row[2]), float(row[3]), float(row[4]),
                     workflows if isinstance(workflows, dict) else {})


class Listener(ABC):
    """Wakes a follower when something may have been appended (a hint, never the data)."""

    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Return when an append may have happened, or after ``timeout`` seconds."""

    def close(self) -> None:  # noqa: B027 - nothing to release where waiting is polling
        """Stop listening."""

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PollingListener(Listener):
    """Wakes every ``interval`` seconds (SQLite has no notification channel)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._stop = threading.Event()

    def wait(self, timeout: float) -> None:
        self._stop.wait(min(timeout, self.interval))

    def close(self) -> None:
        self._stop.set()


class Storage(ABC):
    """Append-only streams, a notification log, blobs and leases, on one database."""

    #: The URL it was opened with (with any password; show it with ``mask_url``).
    url: str
    #: Whether this open may create the journal's tables (``Journal.open(create=...)``).
    create: bool
    leases: LeaseKeeper
    dialect: Dialect
    #: Seconds a lost session is retried before ``JournalUnavailable`` (PostgreSQL).
    reconnect_timeout: float = 10.0
    #: Threads that commit for async workflows (off the event loop): as many as commits can
    #: usefully run at once here. 0: appends never wait on I/O, so they run where called.
    write_threads: int = 2

    @property
    def where(self) -> str:
        """The journal's place, for messages: its file, or its URL with the password masked."""
        return mask_url(self.url)

    # -- the log -------------------------------------------------------------------------------

    def append(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob] = (), wakes: Sequence[Wake] = ()
    ) -> list[int]:
        """Append ``events`` (and the out-of-line values they reference, and when their
        executions are due next: ``wakes``) atomically.

        Returns their notification ids. All are committed, or none and an error is raised:
        :class:`ConcurrencyConflict` when another writer holds one of the positions.
        """
        if not events:
            return []
        return self._append(events, blobs, wakes)

    @abstractmethod
    def _append(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob], wakes: Sequence[Wake]
    ) -> list[int]: ...

    # -- wake-ups ------------------------------------------------------------------------------

    @abstractmethod
    def keeps_wakeups(self) -> bool:
        """Whether this journal has its wake-up table (an older journal opened without
        ``create`` has none: nothing of it can wait, and nothing can be enqueued)."""

    @abstractmethod
    def due(self, now: float, limit: int = 100) -> list[Wake]:
        """Executions due at ``now`` (a POSIX timestamp), earliest first: an index range,
        however many executions wait."""

    @abstractmethod
    def next_due(self) -> float | None:
        """When the earliest wake-up is due (None: none is kept)."""

    @abstractmethod
    def settle_wake(self, wake: Wake) -> bool:
        """Set (or, due None, forget) an execution's wake-up, if the one kept is still the
        one worked out at ``wake``'s position: a signal that came meanwhile is not undone.
        False if it was not."""

    # -- the processes serving it ----------------------------------------------------------

    @abstractmethod
    def put_worker(self, worker: WorkerRow) -> bool:
        """Say that ``worker`` is alive (insert or renew its row), and forget the workers
        not seen for ``WORKER_FORGOTTEN_AFTER``. False when this journal has no place for
        workers (an older journal opened without ``create``). Where the database has a
        clock of its own (PostgreSQL) it says when, not ``worker.seen_at``: the hosts of a
        shared journal need not agree on the time."""

    @abstractmethod
    def drop_worker(self, runner: str) -> None:
        """Forget the worker of ``runner`` (it stopped cleanly)."""

    @abstractmethod
    def workers(self, alive_for: float | None = None) -> list[WorkerRow] | None:
        """The workers seen in the last ``alive_for`` seconds (None: all that are kept), by
        host and pid; None if this journal keeps no workers (not known: not "nobody")."""

    @abstractmethod
    def put_snapshot(self, execution_id: UUID, position: int, data: bytes) -> bool:
        """Keep ``data`` as the snapshot of the execution's state at ``position``, unless a
        snapshot at a later position is kept already. Returns False when this journal has
        no place for snapshots (an older journal opened without ``create``)."""

    @abstractmethod
    def get_snapshot(self, execution_id: UUID) -> tuple[int, bytes] | None:
        """The latest snapshot of the execution (its position and bytes), if any."""

    @abstractmethod
    def read_stream(self, execution_id: UUID, *, after: int = 0) -> list[StreamRow]:
        """One execution's events after position ``after``, in order."""

    @abstractmethod
    def read_log(self, after: int, limit: int, *, topics: Sequence[str] = ()) -> list[LogRow]:
        """Every execution's events after notification id ``after``, in id order, up to
        ``limit`` of them (only ``topics``, if given).

        Never reads past an id that a writer still in flight may fill: a follower that
        resumes from the last id it saw misses nothing.
        """

    @abstractmethod
    def head(self) -> int:
        """The last notification id below which every event is final (0 when empty)."""

    def listen(self, *, poll_interval: float = 0.05) -> Listener:
        """A listener that wakes when something may have been appended (where the database
        has no notifications, every ``poll_interval`` seconds)."""
        return PollingListener(poll_interval)

    @abstractmethod
    def get_blob(self, digest: str) -> bytes:
        """An out-of-line value's bytes; KeyError if absent."""

    @abstractmethod
    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        """Delete whole streams (retention) with the blobs only they referenced, in one
        transaction; returns the number of events removed."""

    # -- views and lifetime --------------------------------------------------------------------

    @abstractmethod
    def views(self) -> ViewStore:
        """A store for view tables in the same database (its own connection)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections, leases and threads."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}>"


class ViewStore(ABC):
    """Tables that projections declare, in the journal's database; SQL with ``?`` marks.

    Rows go in and come out as Python values (UUID, aware UTC datetime, Decimal), converted
    by the column types of the table's declaration. Thread-safe.
    """

    dialect: Dialect

    def __init__(self) -> None:
        self.lock = threading.RLock()

    @abstractmethod
    def missing(self, tables: Sequence[Table]) -> list[Table]:
        """Which of ``tables`` do not exist (a catalog read; no DDL)."""

    def survey(self, tables: Sequence[Table]) -> tuple[list[Table], list[Table]]:
        """(missing, changed): which of ``tables`` do not exist, and which exist with other
        columns (names, order or types) than declared, from one catalog read; no DDL.

        A view table of an older release is "changed": its view must be rebuilt (views are
        derived data, so they are dropped and folded again rather than migrated)."""
        found = self.columns(tables)
        missing: list[Table] = []
        changed: list[Table] = []
        for table in tables:
            columns = found.get(table.name)
            if columns is None:
                missing.append(table)
            elif columns != [(c.name, self.dialect.sql_types[c.type]) for c in table.columns]:
                changed.append(table)
        return missing, changed

    @abstractmethod
    def columns(self, tables: Sequence[Table]) -> dict[str, list[tuple[str, str]]]:
        """The columns each of ``tables`` that exists has, in order, as (name, type) with
        the type spelled as the dialect's ``sql_types`` spell it (one catalog read)."""

    def lock_schema(self) -> None:  # noqa: B027 - SQLite's BEGIN IMMEDIATE is the turn already
        """Inside the current transaction: wait for any other process changing the view
        tables' schema to commit, so that a survey taken next stays true until the commit."""

    @abstractmethod
    def create(self, tables: Sequence[Table]) -> None:
        """Create ``tables`` and their indexes inside the current transaction; concurrent
        creators in other processes wait for each other."""

    def drop(self, tables: Sequence[Table]) -> None:
        """Drop ``tables`` inside the current transaction."""
        for table in tables:
            self.execute(f"DROP TABLE IF EXISTS {table.name}")

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (``?`` marks, Python values); returns the row count."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query (``?`` marks, Python values); rows as stored."""

    @abstractmethod
    def upsert(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (Python values, in column order), replacing those whose key exists."""

    def select(
        self,
        table: Table,
        where: str = "",
        params: Sequence[Any] = (),
        *,
        order: str = "",
        limit: int | None = None,
    ) -> list[tuple[Any, ...]]:
        """Whole rows of ``table`` as Python values (column order)."""
        sql = f"SELECT {table.select_list} FROM {table.name}"
        args = list(params)
        if where:
            sql += f" WHERE {where}"
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        load = self.dialect.loader(table)
        return [load(r) for r in self.query(sql, args)]

    # -- bulk builds --------------------------------------------------------------------------
    #
    # A view rebuilt from scratch is written into fresh tables (the declared ones with a
    # suffix), without key or index while rows go in, indexed once full, then swapped in for
    # the current ones in one transaction: readers see the old view or the new, whole.

    @staticmethod
    def fresh_suffix() -> str:
        """A suffix no other build uses: ``__f`` and 8 hex digits (tables swapped out are
        renamed with ``__o`` and the same digits)."""
        return f"__f{uuid4().hex[:8]}"

    @staticmethod
    def is_fresh(name: str, table: Table, suffix: str | None = None) -> bool:
        """Whether ``name`` is a fresh or swapped-out table of ``table`` (of ``suffix``)."""
        if suffix is not None:
            return name in (table.name + suffix, table.name + "__o" + suffix[3:])
        return re.fullmatch(re.escape(table.name) + "__[fo][0-9a-f]{8}", name) is not None

    def sibling(self) -> ViewStore:
        """Another store on the same views with a connection of its own, so a long bulk
        build does not hold this one; itself where the database is the connection (an
        in-memory one). Close it if it is not ``self``."""
        return self

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """The scope of one bulk build (fresh tables made, loaded, indexed and swapped in).

        PostgreSQL: one transaction, so fresh tables are never seen by another session and
        a build that fails leaves nothing behind. SQLite: builds take turns across processes
        (what :meth:`drop_fresh` finds inside is then surely dead), and each
        ``transaction()`` inside commits, so the journal's writers are never held up for a
        whole build."""
        yield

    @abstractmethod
    def create_fresh(self, tables: Sequence[Table], suffix: str) -> None:
        """Create ``<table><suffix>`` for each table: its columns only, no key or index."""

    @abstractmethod
    def bulk_insert(self, table: Table, rows: Iterable[Sequence[Any]], suffix: str) -> None:
        """Insert rows (Python values, column order) into ``table``'s fresh table, as fast as
        the database loads (``COPY`` on PostgreSQL); keys are not checked until indexed."""

    def index_fresh(self, tables: Sequence[Table], suffix: str) -> None:
        """Build the key and indexes of each fresh table (its rows are all in)."""
        for table in tables:
            for statement in self.dialect.create_keys(table, table.name + suffix, suffix):
                self.execute(statement)

    @abstractmethod
    def swap(self, tables: Sequence[Table], suffix: str) -> None:
        """Inside the current transaction: each fresh table takes its table's place (under
        its name, with its indexes); the one it replaces is dropped, or renamed away for
        :meth:`drop_fresh` to drop after the commit."""

    @abstractmethod
    def drop_fresh(self, tables: Sequence[Table], suffix: str | None = None) -> list[str]:
        """Drop what bulk builds of ``tables`` left (fresh tables, tables swapped out): of
        the build with ``suffix``, or of any build (None). Returns the names dropped."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""
