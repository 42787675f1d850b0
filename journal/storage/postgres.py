"""PostgreSQL at scale: many processes on many machines share one log through psycopg 3.

* An append is one statement in autocommit (a multi-row INSERT; ``unnest`` of arrays for a
  big batch). eventsourcing's recorder takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` and
  ``NOTIFY`` inside the writing transaction; both are held until COMMIT, so commits of
  concurrent writers are serialized and PostgreSQL's group commit never happens.
* Without the lock, notification ids (a sequence) can commit out of order: id 7 may become
  visible before id 6. Readers never pass a gap that an in-flight writer may still fill:
  :meth:`PostgresStorage._safe_id` returns the highest id below which every id is final,
  waiting, when it must, only for the transactions that held a write lock on the table when
  the gap was seen. Gaps left by rolled-back writers (a lost race) are passed once those
  writers are gone.
* Followers are woken by a ``NOTIFY`` sent just after the commit, from a background thread
  that coalesces bursts; it is a hint, so followers also poll at a low rate as a backstop.
* Sessions come and go (restarts, failovers, ``pg_terminate_backend``, a proxy's idle
  timeout). A lost session is replaced and the call retried for up to ``reconnect_timeout``
  seconds; an append whose commit outcome is unknown is retried only after checking, by
  position, whether it landed: never a duplicate, never a silent loss.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import psycopg
from psycopg import pq

from journal.errors import (
    ConcurrencyConflict,
    JournalError,
    JournalNotFound,
    JournalUnavailable,
)
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
    worker_row,
    workflows_text,
)
from journal.storage.errors import is_connection_lost, translate
from journal.storage.leases import LeaseKeeper, identity
from journal.storage.schema import (
    BLOB_REFS,
    BLOBS,
    EVENTS,
    JOURNAL_TABLES,
    LEASES,
    LEGACY_OWNER,
    POSTGRES,
    SNAPSHOTS,
    WAKEUPS,
    WORKERS,
    Table,
)

__all__ = ["PostgresStorage", "connect_params", "parse_postgres_url"]

logger = logging.getLogger("journal")
T = TypeVar("T")

#: URL query options the journal reads itself; every other one is a libpq parameter.
JOURNAL_OPTIONS = frozenset({"schema", "lease_grace"})
#: How long a reader waits for in-flight writers before returning what is final so far.
GAP_WAIT_SECONDS = 5.0
#: Batches up to this many events are one multi-row INSERT with scalar parameters.
MULTI_ROW_LIMIT = 64
#: Followers are woken at most once per interval per writing process (adds at most this lag).
NOTIFY_INTERVAL_SECONDS = 0.002
#: PostgreSQL's tables: the journal's, and lease renewals (SQLite's leases are flocks).
_PG_TABLES = (*JOURNAL_TABLES, LEASES)
#: Reads of a topic-filtered page scan at most this many ids per round.
TOPIC_SCAN = 5000


def parse_postgres_url(url: str) -> dict[str, Any]:
    """Read host, port, user, password, database and options from a PostgreSQL URL."""
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError(f"bad PostgreSQL URL {url!r}: no database name")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return {
        "dbname": dbname,
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "options": options,
    }


def connect_params(url: str) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect`` from a journal URL.

    Every query option except the journal's own (``schema``) is passed to libpq, so
    ``?sslmode=verify-full&sslrootcert=...`` or ``?application_name=`` take effect on every
    connection the journal and its projections open.
    """
    p = parse_postgres_url(url)
    params: dict[str, Any] = {
        "host": p["host"], "port": p["port"], "user": p["user"],
        "password": p["password"] or None, "dbname": p["dbname"],
    }
    params.update({k: v for k, v in p["options"].items() if k not in JOURNAL_OPTIONS})
    params["connect_timeout"] = max(1, int(float(params.get("connect_timeout", 5))))
    return params


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception as e:  # a dead socket: nothing left to release
        logger.debug("journal: closing a lost connection: %s", e)


_IDLE = pq.TransactionStatus.IDLE


def _session(conninfo: dict[str, Any], *setup: str, **extra: Any) -> psycopg.Connection[Any]:
    """A session of the journal's own (autocommit), with ``setup`` statements run first:
    the pool's, the notifier's, the listener's, the views' and the leases' all come here."""
    conn = psycopg.connect(**{**conninfo, **extra}, autocommit=True)
    try:
        for statement in setup:
            conn.execute(statement)
    except BaseException:
        _close_quietly(conn)
        raise
    return conn


class PoolExhausted(Exception):
    """Every session of this process stayed in use (not a lost session: no reconnect)."""


class _Pool:
    """This process's sessions, reused last-in first-out; at most ``size`` at once."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self.connect = connect
        self.size = size
        self.idle: list[psycopg.Connection[Any]] = []
        self.count = 0
        self.cond = threading.Condition()
        self.closed = False

    def get(self, timeout: float) -> psycopg.Connection[Any]:
        with self.cond:
            if not self.idle and self.count >= self.size and not self.cond.wait_for(
                lambda: self.idle or self.count < self.size, timeout=timeout
            ):
                raise PoolExhausted(
                    f"all {self.size} connections of this process stayed busy for "
                    f"{timeout:.0f} s"
                )
            if self.idle:
                return self.idle.pop()
            self.count += 1
        try:
            return self.connect()
        except BaseException:
            with self.cond:
                self.count -= 1
                self.cond.notify()
            raise

    def put(self, conn: psycopg.Connection[Any], *, discard: bool = False) -> None:
        if (discard or self.closed or conn.broken or conn.closed
                or conn.info.transaction_status != _IDLE):
            _close_quietly(conn)
            with self.cond:
                self.count -= 1
                self.cond.notify()
            return
        with self.cond:
            self.idle.append(conn)
            self.cond.notify()

    def drop_idle(self) -> None:
        """Close every idle session: after one was found dead, the others likely are."""
        with self.cond:
            idle, self.idle = self.idle, []
            self.count -= len(idle)
            self.cond.notify_all()
        for conn in idle:
            _close_quietly(conn)

    def close(self) -> None:
        self.closed = True
        self.drop_idle()


@functools.lru_cache(maxsize=256)
def _multi_row_sql(table: str, rows: int) -> str:
    values = ",".join(["(%s, %s, %s, %b)"] * rows)
    return (
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        f"VALUES {values} RETURNING notification_id"
    )


class PostgresStorage(Storage):
    """A journal in one PostgreSQL schema, shared by any number of processes."""

    dialect = POSTGRES
    leases: AdvisoryLeases

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        reconnect_timeout: float = 10.0,
        pool_size: int = 1,
        max_overflow: int = 15,
    ) -> None:
        self.url = url
        self.create = create
        if reconnect_timeout < 0:
            raise ValueError(f"reconnect_timeout must be >= 0 seconds, not {reconnect_timeout}")
        self.reconnect_timeout = reconnect_timeout
        options = parse_postgres_url(url)["options"]
        self.schema = options.get("schema") or "public"
        self.lease_grace = float(options.get("lease_grace", 10.0))
        if self.lease_grace <= 0:
            raise ValueError(f"lease_grace must be > 0 seconds, not {self.lease_grace}")
        self.conninfo = connect_params(url)
        self.max_connections = max(1, int(pool_size) + int(max_overflow))
        # Appends that meet commit together (see _append): more threads, bigger groups; a
        # group uses one session, so threads are not bounded by the pool.
        self.write_threads = 16
        self._tables = {t.name: f"{_quote(self.schema)}.{t.name}" for t in _PG_TABLES}
        self.events_table = self._tables[EVENTS.name]
        self.channel = f"{self.schema}_{EVENTS.name}"
        self._sql()
        self._snapshots: bool | None = None  # whether the snapshot table exists (asked once)
        self._wakeups = False  # whether the wake-up table exists (asked until it does)
        self._closed = False
        self._pool = _Pool(self._connect, self.max_connections)
        self._notifier = _Notifier(self)
        self._group: list[_Commit] = []
        self._group_lock = threading.Lock()
        self._leading = False
        try:
            # One direct connection first: the user needs the driver's reason (refused,
            # unknown database, bad password), not a retry loop's timeout.
            conn = self._connect()
        except psycopg.Error as e:
            raise translate(e, url) from e
        with self._cond_put(conn):
            pass  # the pool's first session
        # Then the schema, retried on a new session if this one is dropped meanwhile (a
        # restart, pg_terminate_backend) as any other call is: its DDL is one transaction.
        self._run(self._ensure_schema)
        self.leases = AdvisoryLeases(
            url, self.conninfo, self.events_table, self._tables[LEASES.name], self.lease_grace
        )
        forks.register(self)

    def _sql(self) -> None:
        e, b, r = self.events_table, self._tables[BLOBS.name], self._tables[BLOB_REFS.name]
        self._read_stream_sql = (
            f"SELECT originator_version, topic, state FROM {e} "
            "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version"
        )
        self._read_log_sql = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {e} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )
        self._read_log_topics_sql = self._read_log_sql.replace(
            "ORDER BY", "AND topic = ANY(%s) ORDER BY"
        )
        self._append_many_sql = (
            f"INSERT INTO {e} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %b::bytea[]) "
            "RETURNING notification_id"
        )
        self._landed_sql = (
            f"SELECT e.originator_id, e.originator_version, e.notification_id, e.topic, e.state "
            f"FROM {e} e JOIN unnest(%s::uuid[], %s::bigint[]) AS k(id, v) "
            "ON e.originator_id = k.id AND e.originator_version = k.v"
        )
        self._put_blob_sql = (
            f"INSERT INTO {b} (sha256, data) VALUES (%s, %b) ON CONFLICT DO NOTHING"
        )
        self._put_ref_sql = (
            f"INSERT INTO {r} (execution_id, sha256) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        )
        self._get_blob_sql = f"SELECT data FROM {b} WHERE sha256 = %s"
        sn = self._tables[SNAPSHOTS.name]
        self._put_snapshot_sql = (
            f"INSERT INTO {sn} (execution_id, position, data) VALUES (%s, %s, %b) "
            "ON CONFLICT (execution_id) DO UPDATE SET position = excluded.position, "
            f"data = excluded.data WHERE excluded.position > {sn}.position"
        )
        self._get_snapshot_sql = f"SELECT position, data FROM {sn} WHERE execution_id = %s"
        self._delete_snapshots_sql = f"DELETE FROM {sn} WHERE execution_id = ANY(%s)"
        w = self._tables[WAKEUPS.name]
        self._set_wake_sql = (
            f"INSERT INTO {w} (execution_id, due_at, position) VALUES (%s, %s, %s) "
            "ON CONFLICT (execution_id) DO UPDATE SET due_at = excluded.due_at, "
            "position = excluded.position"
        )
        self._forget_wake_sql = f"DELETE FROM {w} WHERE execution_id = %s"
        self._due_sql = (
            f"SELECT execution_id, due_at, position FROM {w} WHERE due_at <= %s "
            "ORDER BY due_at LIMIT %s"
        )
        self._next_due_sql = f"SELECT min(due_at) FROM {w}"
        self._settle_wake_sql = (
            f"UPDATE {w} SET due_at = %s WHERE execution_id = %s AND position = %s"
        )
        self._forget_settled_sql = f"DELETE FROM {w} WHERE execution_id = %s AND position = %s"
        self._delete_wakes_sql = f"DELETE FROM {w} WHERE execution_id = ANY(%s)"
        k = self._tables[WORKERS.name]
        # Times by the server's clock: the hosts serving one journal need not agree.
        self._put_worker_sql = (
            f"INSERT INTO {k} (runner, host, pid, started_at, seen_at, workflows) "
            "VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp()), %s) "
            "ON CONFLICT (runner) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "seen_at = excluded.seen_at, workflows = excluded.workflows"
        )
        self._drop_worker_sql = f"DELETE FROM {k} WHERE runner = %s"
        self._forget_workers_sql = (
            f"DELETE FROM {k} WHERE seen_at < extract(epoch FROM clock_timestamp()) - %s")
        self._workers_sql = (
            f"SELECT runner, host, pid, started_at, seen_at, workflows FROM {k} "
            "WHERE seen_at >= extract(epoch FROM clock_timestamp()) - %s ORDER BY host, pid"
        )
        self._workers: bool | None = None
        self._delete_sql = f"DELETE FROM {e} WHERE originator_id = ANY(%s)"
        self._refs_of_sql = f"SELECT DISTINCT sha256 FROM {r} WHERE execution_id = ANY(%s)"
        self._delete_refs_sql = f"DELETE FROM {r} WHERE execution_id = ANY(%s)"
        self._delete_blobs_sql = (
            f"DELETE FROM {b} WHERE sha256 = ANY(%s) AND NOT EXISTS "
            f"(SELECT 1 FROM {r} WHERE {r}.sha256 = {b}.sha256)"
        )
        self._count_ids_sql = (
            "SELECT count(*), max(notification_id) FROM (SELECT notification_id "
            f"FROM {e} WHERE notification_id > %s ORDER BY notification_id LIMIT %s) AS page"
        )
        self._select_ids_sql = (
            f"SELECT notification_id FROM {e} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        )
        self._max_sql = f"SELECT max(notification_id) FROM {e}"
        self._writers_sql = (
            "SELECT coalesce(array_agg(virtualtransaction), '{}') FROM pg_locks "
            "WHERE locktype = 'relation' AND relation = %s::regclass "
            "AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()"
        )
        self._still_writing_sql = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
            "AND relation = %s::regclass AND virtualtransaction = ANY(%s)"
        )

    # -- sessions ------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return _session(self.conninfo)

    @contextmanager
    def _cond_put(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Hand ``conn`` (taken outside the pool) to the pool when done, as one of its own."""
        with self._pool.cond:
            self._pool.count += 1
        try:
            yield
        except BaseException:
            self._pool.put(conn, discard=True)
            raise
        self._pool.put(conn)

    def _run(
        self,
        op: Callable[[psycopg.Connection[Any]], T],
        *,
        execution_id: UUID | None = None,
        position: int = 0,
    ) -> T:
        """Run ``op`` on a session; on a lost session, retry on a new one until
        ``reconnect_timeout`` passes. ``op`` must be safe to run again (appends check first)."""
        deadline: float | None = None
        delay = 0.0
        while True:
            if self._closed:
                raise JournalError(f"the journal {self.where} is closed")
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._pool.get(timeout=max(self.reconnect_timeout, 1.0))
                result = op(conn)
            except PoolExhausted as e:
                raise JournalUnavailable(self.url, str(e)) from e
            except psycopg.Error as e:
                lost = (conn is not None and conn.broken) or is_connection_lost(e)
                if conn is not None:
                    self._pool.put(conn, discard=lost)
                if not lost:
                    raise translate(e, self.url, execution_id=execution_id,
                                    position=position) from e
                self._pool.drop_idle()
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.reconnect_timeout
                if now >= deadline:
                    raise JournalUnavailable(
                        self.url,
                        f"{str(e).strip() or type(e).__name__} (no working session for "
                        f"{self.reconnect_timeout:g} s)",
                    ) from e
                logger.info("journal: session to %s lost (%s); reconnecting", self.where,
                            str(e).strip())
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(max(delay * 2, 0.05), 1.0)
                continue
            except BaseException:
                if conn is not None:
                    self._pool.put(conn, discard=True)  # interrupted mid-call: state unknown
                raise
            self._pool.put(conn)
            return result

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        try:
            missing = self._missing(conn, _PG_TABLES)
            if not missing:
                return
            if not self.create:
                if EVENTS in missing:
                    raise JournalNotFound(
                        self.url, f"schema {self.schema} holds no journal tables",
                        where=self.where,
                    )
                return  # an older journal without blob references: readable as it is
            # Processes opening a new journal at once would race on its DDL ("tuple
            # concurrently updated"): one creates it, the others wait, then find it.
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                             (f"journal schema {self.schema}",))
                if self.schema != "public":
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
                for table in missing:
                    for statement in POSTGRES.create(table, self._tables[table.name]):
                        conn.execute(statement)
                if BLOB_REFS in missing and BLOBS not in missing:
                    # Blobs of a journal older than the references: which streams use them
                    # is unknown, so they are kept for good (never deleted by retention).
                    conn.execute(
                        f"INSERT INTO {self._tables[BLOB_REFS.name]} (execution_id, sha256) "
                        f"SELECT %s, sha256 FROM {self._tables[BLOBS.name]} "
                        "ON CONFLICT DO NOTHING", (LEGACY_OWNER,),
                    )
        except psycopg.Error as e:
            raise translate(e, self.url) from e

    def _missing(self, conn: psycopg.Connection[Any], tables: Sequence[Table]) -> list[Table]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (self.schema, [t.name for t in tables]),
        ).fetchall()
        present = {r[0] for r in rows}
        return [t for t in tables if t.name not in present]

    def _after_fork(self) -> None:
        forks.abandon(*self._pool.idle)
        self._pool = _Pool(self._connect, self.max_connections)
        self._notifier = _Notifier(self)
        self._group = []  # the parent's waiting appends are the parent's
        self._group_lock = threading.Lock()
        self._leading = False
        self.leases._after_fork()

    # -- writing -------------------------------------------------------------------------------

    def _append(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob], wakes: Sequence[Wake]
    ) -> list[int]:
        """Group commit: appends that arrive while one is committing are committed together,
        in one transaction, by the thread whose turn it is (each caller still returns only
        once its events are committed). Concurrent writers (the writer threads of async
        workflows, a threaded service) then share one round trip and one WAL flush."""
        if blobs or wakes or len(events) > MULTI_ROW_LIMIT:
            return self._append_alone(events, blobs, wakes)
        mine = _Commit(events)
        with self._group_lock:
            leading = not self._leading
            if not leading:  # only a waiter needs something to wait on
                mine.done = threading.Event()
            self._group.append(mine)
            self._leading = True
        if mine.done is not None:
            try:
                mine.done.wait()
            except BaseException:  # interrupted (Ctrl-C): out of the queue, turn passed on
                self._leave_group(mine)
                raise
            if not mine.lead:
                return mine.result()
            mine.done.clear()  # handed the turn: commit what is queued now
        with self._group_lock:
            batch, self._group = self._group, []
        try:
            self._commit_group(batch)
        finally:
            with self._group_lock:
                self._pass_turn()
        return mine.result()

    def _pass_turn(self) -> None:
        """Hand the turn to the first waiting append, or to nobody (under ``_group_lock``)."""
        if self._group:
            nxt = self._group[0]
            nxt.lead = True
            assert nxt.done is not None  # a queued append is a waiting one
            nxt.done.set()
        else:
            self._leading = False

    def _leave_group(self, mine: _Commit) -> None:
        with self._group_lock:
            if any(c is mine for c in self._group):  # not committed: its caller is told
                self._group.remove(mine)
            if mine.lead:  # the turn was handed to it: to the next one, or to nobody
                self._pass_turn()

    def _commit_group(self, batch: list[_Commit]) -> None:
        try:
            if len(batch) == 1:
                batch[0].settle(self._append_alone, ())
                return
            events = [e for c in batch for e in c.events]
            try:
                ids = self._append_alone(events, ())
            except ConcurrencyConflict:
                for c in batch:  # one of them lost a race: each on its own tells which
                    c.settle(self._append_alone, ())
                return
            except Exception as e:
                for c in batch:
                    c.error = e
                return
            i = 0
            for c in batch:
                c.ids = ids[i:i + len(c.events)]
                i += len(c.events)
        except BaseException as e:  # interrupted: nobody waits forever
            for c in batch:
                if c.ids is None and c.error is None:
                    c.error = JournalError(f"the commit was interrupted ({e!r}); its outcome "
                                           "is unknown")
            raise
        finally:
            for c in batch:
                if c.done is not None:
                    c.done.set()

    def _append_alone(
        self, events: Sequence[StoredEvent], blobs: Sequence[Blob], wakes: Sequence[Wake] = ()
    ) -> list[int]:
        first = events[0]
        eid: Any = first.originator_id
        sent = False

        def op(conn: psycopg.Connection[Any]) -> list[int]:
            nonlocal sent
            retry = sent
            if retry:  # the last attempt's outcome is unknown: did it land?
                landed = self._landed(conn, events)
                if landed is not None:
                    return landed
            sent = True
            try:
                return self._insert(conn, events, blobs, wakes)
            except psycopg.errors.UniqueViolation:
                # The lost session's INSERT may have committed after the look above (its
                # backend was still running it): if those are our rows, it landed.
                landed = self._landed(conn, events) if retry else None
                if landed is None:
                    raise
                return landed

        ids = self._run(op, execution_id=eid, position=first.originator_version)
        self._notifier.wake()
        return ids

    def _insert(
        self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent], blobs: Sequence[Blob],
        wakes: Sequence[Wake] = (),
    ) -> list[int]:
        if wakes and self._has_wakeups(conn):
            with conn.transaction():
                ids = self._insert(conn, events, blobs)
                for eid, due, position in wakes:
                    if due is None:
                        conn.execute(self._forget_wake_sql, (eid,), prepare=True)
                    else:
                        conn.execute(self._set_wake_sql, (eid, due, position), prepare=True)
                return ids
        if blobs:
            with conn.transaction():
                owner = events[0].originator_id
                # Retention deletes a blob whose last reference goes; taking the digest's
                # lock first makes it see this reference (or this append see the deletion
                # and store the blob again).
                self._lock_digests(conn, [d for d, _ in blobs])
                for digest, data in blobs:
                    conn.execute(self._put_blob_sql, (digest, data), prepare=True)
                    conn.execute(self._put_ref_sql, (owner, digest), prepare=True)
                return self._insert_events(conn, events)
        return self._insert_events(conn, events)

    def _insert_events(
        self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]
    ) -> list[int]:
        n = len(events)
        if n <= MULTI_ROW_LIMIT:
            # Scalar parameters: psycopg dumps them several times faster than arrays.
            flat: list[Any] = []
            for s in events:
                flat += (s.originator_id, s.originator_version, s.topic, s.state)
            rows = conn.execute(
                _multi_row_sql(self.events_table, n), flat, prepare=True
            ).fetchall()
        else:
            rows = conn.execute(
                self._append_many_sql,
                (
                    [s.originator_id for s in events],
                    [s.originator_version for s in events],
                    [s.topic for s in events],
                    [s.state for s in events],
                ),
                prepare=True,
            ).fetchall()
        return [r[0] for r in rows]

    def _lock_digests(self, conn: psycopg.Connection[Any], digests: Sequence[str]) -> None:
        for digest in sorted(set(digests)):  # one order everywhere: no deadlock
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         (f"{self.schema} blob {digest}",))

    def _landed(
        self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]
    ) -> list[int] | None:
        """The ids of ``events`` if an earlier attempt committed them; None if it did not.

        Raises ConcurrencyConflict if other events hold (some of) their positions.
        """
        with conn.cursor(binary=True) as cur:
            cur.execute(
                self._landed_sql,
                ([s.originator_id for s in events], [s.originator_version for s in events]),
            )
            found = {(r[0], r[1]): (r[2], r[3], bytes(r[4])) for r in cur.fetchall()}
        if not found:
            return None
        ids = []
        for s in events:
            row = found.get((s.originator_id, s.originator_version))  # type: ignore[arg-type]
            if row is None or row[1] != s.topic or row[2] != bytes(s.state):
                raise ConcurrencyConflict(s.originator_id, s.originator_version)  # type: ignore[arg-type]
            ids.append(row[0])
        logger.info("journal: an append whose outcome was unknown had landed (%d events)",
                    len(events))
        return ids

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        ids = list(execution_ids)

        def op(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                removed = conn.execute(self._delete_sql, (ids,)).rowcount
                self._snapshots = None  # made since by a newer process? look again
                if self._has_snapshots(conn):
                    conn.execute(self._delete_snapshots_sql, (ids,))
                if self._has_wakeups(conn):
                    conn.execute(self._delete_wakes_sql, (ids,))
                if not self._missing(conn, [BLOB_REFS]):
                    digests = [r[0] for r in conn.execute(self._refs_of_sql, (ids,))]
                    if digests:
                        # The digests' locks: a concurrent append of the same value, or a
                        # prune of the other stream sharing it, is seen by the next statement.
                        self._lock_digests(conn, digests)
                        conn.execute(self._delete_refs_sql, (ids,))
                        conn.execute(self._delete_blobs_sql, (digests,))
                return removed

        return self._run(op)

    def _has_wakeups(self, conn: psycopg.Connection[Any]) -> bool:
        if not self._wakeups:
            self._wakeups = not self._missing(conn, [WAKEUPS])
        return self._wakeups

    def keeps_wakeups(self) -> bool:
        return self._run(self._has_wakeups)

    def due(self, now: float, limit: int = 100) -> list[Wake]:
        def op(conn: psycopg.Connection[Any]) -> list[Wake]:
            if not self._has_wakeups(conn):
                return []  # an older journal, opened without create: nothing waits in it
            rows = conn.execute(self._due_sql, (now, limit), prepare=True).fetchall()
            return [(r[0], float(r[1]), int(r[2])) for r in rows]

        return self._run(op)

    def next_due(self) -> float | None:
        def op(conn: psycopg.Connection[Any]) -> float | None:
            if not self._has_wakeups(conn):
                return None
            row = conn.execute(self._next_due_sql, prepare=True).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return self._run(op)

    def settle_wake(self, wake: Wake) -> bool:
        eid, due, position = wake

        def op(conn: psycopg.Connection[Any]) -> bool:
            if due is None:
                cur = conn.execute(self._forget_settled_sql, (eid, position), prepare=True)
            else:
                cur = conn.execute(self._settle_wake_sql, (due, eid, position), prepare=True)
            return bool(cur.rowcount)

        return self._run(op, execution_id=eid, position=position)

    def _has_workers(self, conn: psycopg.Connection[Any]) -> bool:
        if not self._workers:
            self._workers = not self._missing(conn, [WORKERS])
        return self._workers

    def put_worker(self, worker: WorkerRow) -> bool:
        def op(conn: psycopg.Connection[Any]) -> bool:
            if not self._has_workers(conn):
                return False
            conn.execute(self._put_worker_sql, (*worker[:4], workflows_text(worker.workflows)))
            conn.execute(self._forget_workers_sql, (WORKER_FORGOTTEN_AFTER,))
            return True

        return self._run(op)

    def drop_worker(self, runner: str) -> None:
        def op(conn: psycopg.Connection[Any]) -> None:
            if self._has_workers(conn):
                conn.execute(self._drop_worker_sql, (runner,))

        self._run(op)

    def workers(self, alive_for: float | None = None) -> list[WorkerRow] | None:
        def op(conn: psycopg.Connection[Any]) -> list[WorkerRow] | None:
            if not self._has_workers(conn):
                return None
            window = 1e18 if alive_for is None else alive_for
            return [worker_row(r) for r in conn.execute(self._workers_sql, (window,))]

        return self._run(op)

    def _has_snapshots(self, conn: psycopg.Connection[Any]) -> bool:
        if self._snapshots is None:
            self._snapshots = not self._missing(conn, [SNAPSHOTS])
        return self._snapshots

    def put_snapshot(self, execution_id: UUID, position: int, data: bytes) -> bool:
        def op(conn: psycopg.Connection[Any]) -> bool:
            if not self._has_snapshots(conn):
                return False
            conn.execute(self._put_snapshot_sql, (execution_id, position, data), prepare=True)
            return True

        return self._run(op, execution_id=execution_id, position=position)

    def get_snapshot(self, execution_id: UUID) -> tuple[int, bytes] | None:
        def op(conn: psycopg.Connection[Any]) -> tuple[int, bytes] | None:
            if not self._has_snapshots(conn):
                return None
            with conn.cursor(binary=True) as cur:
                cur.execute(self._get_snapshot_sql, (execution_id,), prepare=True)
                row = cur.fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return self._run(op, execution_id=execution_id)

    # -- reading -------------------------------------------------------------------------------

    def read_stream(self, execution_id: UUID, *, after: int = 0) -> list[StreamRow]:
        def op(conn: psycopg.Connection[Any]) -> list[StreamRow]:
            with conn.cursor(binary=True) as cur:
                cur.execute(self._read_stream_sql, (execution_id, after), prepare=True)
                rows: list[StreamRow] = cur.fetchall()
                return rows

        return self._run(op, execution_id=execution_id)

    def read_log(self, after: int, limit: int, *, topics: Sequence[str] = ()) -> list[LogRow]:
        def op(conn: psycopg.Connection[Any]) -> list[LogRow]:
            if not topics:
                safe = self._safe_id(conn, after, max(limit, 1))
                if safe <= after:
                    return []
                with conn.cursor(binary=True) as cur:
                    cur.execute(self._read_log_sql, (after, safe, limit), prepare=True)
                    rows: list[LogRow] = cur.fetchall()
                    return rows
            # Filtered: scan forward window by window until enough rows or the safe end.
            out: list[LogRow] = []
            start = after
            while len(out) < limit:
                safe = self._safe_id(conn, start, TOPIC_SCAN)
                if safe <= start:
                    break
                with conn.cursor(binary=True) as cur:
                    cur.execute(self._read_log_topics_sql,
                                (start, safe, list(topics), limit - len(out)))
                    out += cur.fetchall()
                start = safe
            return out

        return self._run(op)

    def head(self) -> int:
        def op(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(self._max_sql).fetchone()
            highest = row[0] if row else None
            # Writers in flight now may hold ids below it; once they end, all below is final.
            deadline = time.monotonic() + GAP_WAIT_SECONDS
            if not self._wait_for(conn, self._writers(conn), deadline):
                # Readers still never pass a gap (read_log checks); this is only a target.
                logger.warning(
                    "journal: a transaction has held a write lock on %s for over %.0f s "
                    "(appends are single statements: look for a stuck session in "
                    "pg_stat_activity); followers wait at the first gap it may fill",
                    self.events_table, GAP_WAIT_SECONDS,
                )
            return int(highest or 0)

        return self._run(op)

    def _safe_id(self, conn: psycopg.Connection[Any], after: int, limit: int) -> int:
        """The highest id ``n >= after`` such that every id in ``(after, n]`` is final.

        Final means committed (visible) or never to appear (rolled back or deleted). Reads
        ahead at most ``limit`` ids.
        """
        final_below = after + 1  # ids below this are known final
        deadline = time.monotonic() + GAP_WAIT_SECONDS
        while True:
            # The common case, no gap: one row back instead of ``limit``.
            row = conn.execute(self._count_ids_sql, (after, limit), prepare=True).fetchone()
            if row is None or row[0] == 0:
                return after
            if row[1] - after == row[0] and after + 1 >= final_below:
                return int(row[1])
            ids = [r[0] for r in conn.execute(self._select_ids_sql, (after, limit),
                                              prepare=True).fetchall()]
            expected, last_final = after + 1, after
            blocked_at: int | None = None
            writers: list[str] | None = None
            for i in ids:
                if i != expected and i > final_below:
                    # A gap: final unless a writer that was in flight may still fill it.
                    if writers is None:
                        writers = self._writers(conn)
                    if writers:
                        blocked_at = i
                        break
                last_final, expected = i, i + 1
            if blocked_at is None or last_final > after:
                return last_final
            if not self._wait_for(conn, writers or [], deadline):
                return after
            final_below = blocked_at

    def _writers(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Transactions (other than ours) holding a write lock on the events table now."""
        row = conn.execute(self._writers_sql, (self.events_table,)).fetchone()
        return list(row[0]) if row else []

    def _wait_for(self, conn: psycopg.Connection[Any], writers: list[str],
                  deadline: float) -> bool:
        """Wait until none of ``writers`` holds its lock; False if the deadline passed."""
        while writers:
            row = conn.execute(self._still_writing_sql, (self.events_table, writers)).fetchone()
            if not row or not row[0]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def get_blob(self, digest: str) -> bytes:
        def op(conn: psycopg.Connection[Any]) -> Any:
            with conn.cursor(binary=True) as cur:
                return cur.execute(self._get_blob_sql, (digest,)).fetchone()

        row = self._run(op)
        if row is None:
            raise KeyError(digest)
        return bytes(row[0])

    def listen(self, *, poll_interval: float = 0.05) -> Listener:
        return _PgListener(self)

    # -- views and lifetime ----------------------------------------------------------------------

    def views(self) -> ViewStore:
        from journal.storage.postgres_views import PostgresViewStore

        return PostgresViewStore(self)

    def close(self) -> None:
        self._closed = True
        self.leases.close()
        self._notifier.close()
        self._pool.close()


class _Commit:
    """One caller's append waiting in a group commit."""

    __slots__ = ("done", "error", "events", "ids", "lead")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        #: What a waiting caller waits on (None for the caller that commits it itself).
        self.done: threading.Event | None = None
        self.ids: list[int] | None = None
        self.error: BaseException | None = None
        #: Set when the turn to commit the queued appends is handed to this caller.
        self.lead = False

    def settle(self, append: Callable[[Sequence[StoredEvent], Sequence[Blob]], list[int]],
               blobs: Sequence[Blob]) -> None:
        try:
            self.ids = append(self.events, blobs)
        except Exception as e:
            self.error = e

    def result(self) -> list[int]:
        if self.error is not None:
            raise self.error
        assert self.ids is not None
        return self.ids


class _Notifier:
    """Sends ``NOTIFY`` after appends, from its own session, at most every 2 ms.

    Its own session: NOTIFY assigns a transaction id, so in the writing transaction its
    commit would wait for a WAL flush and serialize committers; the hint needs no durability
    (``synchronous_commit=off``).
    """

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.statement = f"NOTIFY {_quote(storage.channel)}"
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="journal-notify", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._closing.is_set():
                self._wake.wait(timeout=1.0)
                if self._closing.is_set():
                    return
                if not self._wake.is_set():
                    continue
                self._wake.clear()
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = _session(self.storage.conninfo, "SET synchronous_commit TO off")
                    conn.execute(self.statement)
                except psycopg.Error:  # a missed hint: followers' backstop poll picks it up
                    _close_quietly(conn)
                    conn = None
                    self._closing.wait(0.1)
                # At most one NOTIFY per interval: appends in between ride on the next one.
                self._closing.wait(NOTIFY_INTERVAL_SECONDS)
        finally:
            _close_quietly(conn)

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _PgListener(Listener):
    """``LISTEN`` on the journal's channel; a dropped session is re-established, and the
    first wait after that returns at once (appends may have happened while it was down)."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.conn: psycopg.Connection[Any] | None = None
        try:
            self.conn = self._connect()
        except psycopg.Error as e:
            raise translate(e, storage.url) from e
        forks.register(self)

    def _connect(self) -> psycopg.Connection[Any]:
        return _session(self.storage.conninfo, f"LISTEN {_quote(self.storage.channel)}")

    def wait(self, timeout: float) -> None:
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            try:
                self.conn = self._connect()
            except psycopg.Error as e:
                logger.info("journal: listener cannot reconnect yet: %s", e)
                time.sleep(min(timeout, 0.2))
            return
        try:
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as e:
            logger.info("journal: listener session lost (%s); reconnecting", e)
            _close_quietly(conn)
            self.conn = None

    def _after_fork(self) -> None:
        forks.abandon(self.conn)
        self.conn = None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        _close_quietly(conn)


class AdvisoryLeases(LeaseKeeper):
    """A lease is two things on PostgreSQL:

    * a session-level advisory lock on this process's own lease session: PostgreSQL drops
      it when that session ends, so a dead process frees its leases at once; and
    * a row in ``journal_leases`` (holder, renewed_at) that this process renews every
      ``grace / 4`` seconds. A session can drop while its process lives (a restart, a
      failover, ``pg_terminate_backend``): the advisory lock is gone then, but the row is
      not, and nobody else may take the lease until the row is ``grace`` seconds old.

    The holder confirms its lease at every renewal; a driver whose lease was not confirmed
    within ``grace / 2`` (or was taken over) stops before its next step, so no step's code
    runs in two processes at once even when a session drops in the middle of a long step.
    A lease released cleanly deletes its row (no wait for the next driver); one of a process
    that died waits at most ``grace`` seconds (``?lease_grace=`` in the URL, default 10).
    """

    #: libpq keepalives for the lease session: a dead client host is noticed in ~1 minute.
    KEEPALIVES: dict[str, Any] = {
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
        "keepalives_count": 3,
    }

    def __init__(
        self, url: str, conninfo: dict[str, Any], namespace: str, table: str, grace: float
    ) -> None:
        super().__init__()
        self.url = url
        self.conninfo = conninfo
        self.namespace = namespace
        self.table = table
        self.grace = grace  # instance value over the class default
        self.me = f"{identity()} #{uuid.uuid4().hex[:8]}"
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._renewed: dict[UUID, float] = {}  # monotonic time each lease was last confirmed
        self._lost: set[UUID] = set()
        self._graced: set[UUID] = set()
        self._next_renewal = 0.0
        t = table
        # The row is looked at first: a claimant never takes the advisory lock, even for a
        # moment, of a lease another holder renewed within the grace period (that moment
        # could make the holder's own re-take after a reconnect fail).
        self._claim_sql = (
            f"WITH r AS (SELECT holder, renewed_at >= now() - make_interval(secs => %(grace)s) "
            f"AS fresh FROM {t} WHERE execution_id = %(eid)s), "
            "g AS (SELECT NOT EXISTS (SELECT 1 FROM r WHERE fresh AND holder <> %(me)s) AS go), "
            "locked AS (SELECT CASE WHEN go THEN pg_try_advisory_lock(%(key)s) ELSE false END "
            "AS ok FROM g), "
            f"up AS (INSERT INTO {t} (execution_id, holder, renewed_at) "
            "SELECT %(eid)s, %(me)s, now() FROM locked WHERE ok "
            f"ON CONFLICT (execution_id) DO UPDATE SET holder = excluded.holder, "
            f"renewed_at = now() WHERE {t}.holder = excluded.holder "
            f"OR {t}.renewed_at < now() - make_interval(secs => %(grace)s) RETURNING 1) "
            "SELECT (SELECT go FROM g), (SELECT ok FROM locked), (SELECT count(*) FROM up)"
        )
        self._locked_sql = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1 "
            "AND granted"
        )
        self._renew_sql = (
            f"UPDATE {t} SET renewed_at = now() WHERE holder = %s "
            "AND execution_id = ANY(%s) RETURNING execution_id"
        )
        self._release_sql = (
            f"WITH gone AS (DELETE FROM {t} WHERE execution_id = %s AND holder = %s) "
            "SELECT pg_advisory_unlock(%s)"
        )
        self._rows_sql = (
            f"SELECT execution_id, holder, extract(epoch FROM now() - renewed_at) FROM {t} "
            "WHERE execution_id = ANY(%s)"
        )

    def _key(self, execution_id: UUID) -> int:
        digest = hashlib.sha256(f"{self.namespace}:{execution_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _claim(self, conn: psycopg.Connection[Any], execution_id: UUID) -> bool:
        key = self._key(execution_id)
        asked = time.monotonic()  # the row gets the server's now() from before the reply
        row = conn.execute(self._claim_sql, {
            "key": key, "eid": execution_id, "me": self.me, "grace": self.grace,
        }).fetchone()
        go, locked, claimed = (bool(row[0]), bool(row[1]), int(row[2])) if row else (
            False, False, 0)
        self._graced.discard(execution_id)
        if not go:
            # Another holder renewed it within the grace period. If no session holds its
            # lock, that process died just now or its session is coming back: waiting out
            # the grace period tells which. Not ours to take (yet).
            unsigned = key & 0xFFFFFFFFFFFFFFFF
            held = conn.execute(self._locked_sql, (unsigned >> 32, unsigned & 0xFFFFFFFF))
            count = held.fetchone()
            if not count or not count[0]:
                self._graced.add(execution_id)
            return False
        if locked and not claimed:  # the row changed under us: let go, try again later
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            self._graced.add(execution_id)
            return False
        if claimed:
            self._renewed[execution_id] = asked
            self._lost.discard(execution_id)
        return locked and bool(claimed)

    def _session(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise JournalError("the journal is closed; no lease can be taken through it")
        if self._conn is not None and not self._conn.broken and not self._conn.closed:
            return self._conn
        try:
            # Lease rows are liveness hints beside the session's advisory locks, which a
            # server crash drops anyway: their commits need not wait for a WAL flush.
            conn = _session(
                self.conninfo, "SET idle_session_timeout = 0",
                "SET synchronous_commit TO off", **self.KEEPALIVES,
                application_name=f"journal lease {identity()}"[:63],
            )
            for eid in self._held:  # the old session's locks died with it: take them again
                if eid not in self._lost and not self._claim(conn, eid):
                    self._lost.add(eid)
                    logger.error(
                        "journal: the lease of %s was taken over while this process's lease "
                        "session was down; its driver stops before its next step", eid,
                    )
        except psycopg.Error as e:
            raise translate(e, self.url) from e
        self._conn = conn
        return conn

    def in_grace(self, execution_id: UUID) -> bool:
        return execution_id in self._graced

    def confirmed(self, execution_id: UUID) -> bool:
        renewed = self._renewed.get(execution_id)
        return (
            execution_id not in self._lost and renewed is not None
            and time.monotonic() - renewed < self.grace / 2
        )

    def check(self) -> None:
        """Renew the held leases when due (every ``grace / 4`` s; cheap to call often): a
        lost session is replaced and its locks taken again; a lease someone else took after
        the grace period is marked lost, so its driver stops before its next step."""
        with self._lock:
            if not self._held or self._closed or time.monotonic() < self._next_renewal:
                return
            self._next_renewal = time.monotonic() + min(self.grace / 4, 2.5)
            held = [eid for eid in self._held if eid not in self._lost]
            for attempt in (1, 2):  # a dead session is only found out by using it
                try:
                    conn = self._session()
                    asked = time.monotonic()
                    rows = conn.execute(self._renew_sql, (self.me, held)).fetchall()
                    break
                except (psycopg.Error, JournalError) as e:
                    broken = self._conn is not None and self._conn.broken
                    if broken and attempt == 1:
                        continue  # a new session, now: its locks are taken again first
                    # Soon again (not a whole interval later: confirmation would lapse).
                    self._next_renewal = 0.0 if broken else time.monotonic() + 0.1
                    logger.warning("journal: could not renew leases: %s", e)
                    return
            renewed = {r[0] for r in rows}
            for eid in held:
                if eid in renewed:
                    self._renewed[eid] = asked
                else:
                    self._lost.add(eid)
                    logger.error("journal: the lease of %s was taken over; its driver stops "
                                 "before its next step", eid)

    def _acquire(self, execution_id: UUID) -> bool:
        try:
            return self._claim(self._session(), execution_id)
        except psycopg.Error as e:
            if self._conn is not None and not self._conn.broken:
                raise translate(e, self.url) from e
            try:  # the session broke: a new one, once
                return self._claim(self._session(), execution_id)
            except psycopg.Error as e:
                raise translate(e, self.url) from e

    def _holder(self, execution_id: UUID) -> str | None:
        return self._holders([execution_id]).get(execution_id)

    def holders(self, execution_ids: Iterable[UUID]) -> dict[UUID, str | None]:
        wanted = list(execution_ids)
        with self._lock:
            mine = {eid for eid in wanted if eid in self._held}
        found: dict[UUID, str | None] = {eid: f"this process ({identity()})" for eid in mine}
        found.update(self._holders([eid for eid in wanted if eid not in mine]))
        return found

    def _holders(self, execution_ids: list[UUID]) -> dict[UUID, str | None]:
        """Who holds each lease: the session holding its advisory lock, else a renewal row
        younger than the grace period (a session that dropped may come back). One session
        and two queries, however many are asked."""
        if not execution_ids:
            return {}
        by_key: dict[tuple[int, int], UUID] = {}
        for eid in execution_ids:
            key = self._key(eid) & 0xFFFFFFFFFFFFFFFF
            by_key[(key >> 32, key & 0xFFFFFFFF)] = eid
        try:
            with _session(self.conninfo) as conn:
                locks = conn.execute(
                    "SELECT l.classid::bigint, l.objid::bigint, a.application_name, "
                    "a.client_addr::text, a.pid FROM pg_locks l "
                    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) "
                    "AND l.classid = ANY(%s::bigint[]::oid[]) "
                    "AND l.objid = ANY(%s::bigint[]::oid[])",
                    ([k[0] for k in by_key], [k[1] for k in by_key]),
                ).fetchall()
                rows = conn.execute(self._rows_sql, (execution_ids,)).fetchall()
        except psycopg.Error:
            return dict.fromkeys(execution_ids)
        found: dict[UUID, str | None] = dict.fromkeys(execution_ids)
        for eid, holder, age in rows:
            if float(age) < self.grace:
                found[eid] = (f"{holder} (its session is down, renewed {float(age):.1f} s "
                              "ago; it may come back)")
        prefix = "journal lease "
        for classid, objid, name, addr, pid in locks:
            held = by_key.get((int(classid), int(objid)))
            if held is None:
                continue
            who = name[len(prefix):] if name and name.startswith(prefix) else (
                name or "a session")
            found[held] = f"{who} (server pid {pid}{f', from {addr}' if addr else ''})"
        return found

    def _release(self, execution_id: UUID) -> None:
        self._renewed.pop(execution_id, None)
        self._lost.discard(execution_id)
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return  # the session is gone, and the lock with it (the row ages out)
        try:
            conn.execute(self._release_sql, (execution_id, self.me, self._key(execution_id)))
        except psycopg.Error as e:
            logger.warning("journal: could not release the lease of %s: %s", execution_id, e)

    def _after_fork(self) -> None:
        # The parent's session (and its locks) stay the parent's: never close it here.
        forks.abandon(self._conn)
        self._conn = None
        self._renewed = {}
        self._lost = set()
        self.me = f"{identity()} #{uuid.uuid4().hex[:8]}"
        super()._after_fork()

    def close(self) -> None:
        """Delete this process's lease rows, then close the session (dropping every lock at
        once): the next driver need not wait out the grace period."""
        with self._lock:
            self._closed = True
            conn = self._conn
            if self._held and conn is not None and not conn.broken and not conn.closed:
                try:
                    conn.execute(f"DELETE FROM {self.table} WHERE holder = %s", (self.me,))
                except psycopg.Error as e:
                    logger.warning("journal: could not delete lease rows: %s", e)
            self._held.clear()
            _close_quietly(conn)
