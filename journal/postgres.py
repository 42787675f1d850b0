"""PostgreSQL at scale: many processes on many machines share one log through psycopg 3.

Built on eventsourcing's PostgreSQL recorder, with the write path rebuilt for concurrency
(measured in scripts/bench_append.py):

* An append is one statement in autocommit: a plain INSERT (``unnest`` of four binary arrays
  for a batch). The stock recorder takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` and ``NOTIFY``
  inside the writing transaction; both are held until COMMIT, so commits of concurrent
  writers are serialized and PostgreSQL's group commit never happens. (``NOTIFY`` alone does
  the same: PostgreSQL serializes the commits of notifying transactions.)
* Without the lock, notification ids (a sequence) can commit out of order: id 7 may become
  visible before id 6. Readers therefore never pass a gap that an in-flight writer may still
  fill: :meth:`JournalPostgresRecorder.safe_notification_id` returns the highest id below
  which every id is final, waiting, when it must, only for the transactions that held a
  write lock on the table when the gap was seen (a transaction that took an id holds
  ``RowExclusiveLock`` on the table from before it took the id until it ends). Gaps left by
  rolled-back writers (a lost race is a rollback) are passed once those writers are gone.
* Followers are woken by a ``NOTIFY`` sent just after the commit, from a background thread
  that coalesces bursts; it is a hint, so followers also poll at a low rate as a backstop.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from journal.errors import JournalError, JournalUnavailable
from journal.lease import LeaseKeeper
from journal.store import BLOBS_TABLE, EVENTS_TABLE, Store

__all__ = ["JournalPostgresRecorder", "PostgresStore", "connect_params", "parse_postgres_url"]

logger = logging.getLogger("journal")

#: URL query options the journal reads itself; every other one is a libpq parameter.
JOURNAL_OPTIONS = frozenset({"schema"})
#: How long a reader waits for in-flight writers before returning what is final so far.
GAP_WAIT_SECONDS = 5.0
#: Batches up to this many events are one multi-row INSERT with scalar parameters.
MULTI_ROW_LIMIT = 64
#: Followers are woken at most once per interval per writing process (adds at most this lag).
NOTIFY_INTERVAL_SECONDS = 0.002


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


@functools.lru_cache(maxsize=64)
def _multi_row_sql(schema: str, table: str, rows: int) -> Composed:
    values = SQL(",").join([SQL("(%s, %s, %s, %b)")] * rows)
    return SQL(
        "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
        "VALUES {values} RETURNING notification_id"
    ).format(schema=Identifier(schema), table=Identifier(table), values=values)


class JournalPostgresRecorder(PostgresApplicationRecorder):
    """Lock-free appends, gap-aware notification reads, NOTIFY after commit."""

    def __init__(self, datastore: PostgresDatastore, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name=events_table_name)
        # Channels are per database: name it by schema too, so journals don't wake each other.
        self.channel_name = f"{self.datastore.schema}_{self.events_table_name}"
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.qualified_table = f"{self.datastore.schema}.{self.events_table_name}"
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{blobs} "
                "(sha256 text PRIMARY KEY, data bytea NOT NULL)"
            ).format(schema=schema, blobs=Identifier(BLOBS_TABLE))
        )
        self.append_many_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=schema, table=table)
        self.select_ids_statement = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.count_ids_statement = SQL(
            "SELECT count(*) AS n, max(notification_id) AS last FROM (SELECT notification_id "
            "FROM {schema}.{table} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s) AS page"
        ).format(schema=schema, table=table)
        self.notify_statement = SQL("NOTIFY {}").format(Identifier(self.channel_name))
        self._writers_statement = (
            "SELECT coalesce(array_agg(virtualtransaction), '{}') FROM pg_locks "
            "WHERE locktype = 'relation' AND relation = %s::regclass "
            "AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()"
        )
        self._still_writing_statement = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
            "AND relation = %s::regclass AND virtualtransaction = ANY(%s)"
        )
        self.conninfo: dict[str, Any] = {}
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._notifier: threading.Thread | None = None
        self._notifier_lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        n = len(stored_events)
        with self.datastore.get_connection() as conn:
            if n <= MULTI_ROW_LIMIT:
                # Scalar parameters: psycopg dumps them several times faster than arrays.
                flat: list[Any] = []
                for s in stored_events:
                    flat += (s.originator_id, s.originator_version, s.topic, s.state)
                rows = conn.execute(self._multi_row_statement(n), flat, prepare=True).fetchall()
            else:
                rows = conn.execute(
                    self.append_many_statement,
                    (
                        [s.originator_id for s in stored_events],
                        [s.originator_version for s in stored_events],
                        [s.topic for s in stored_events],
                        [s.state for s in stored_events],
                    ),
                    prepare=True,
                ).fetchall()
        self._wake_followers()
        return [r["notification_id"] for r in rows]

    def _multi_row_statement(self, rows: int) -> Composed:
        return _multi_row_sql(self.datastore.schema, self.events_table_name, rows)

    def _wake_followers(self) -> None:
        if self._notifier is None:
            with self._notifier_lock:
                if self._notifier is None:
                    self._notifier = threading.Thread(
                        target=self._notify_loop, name="journal-notify", daemon=True
                    )
                    self._notifier.start()
        self._wake.set()

    def _notify_loop(self) -> None:
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
                    if conn is None or conn.closed:
                        conn = self._notifier_connection()
                    conn.execute(self.notify_statement)
                except Exception:  # a missed hint: followers' backstop poll picks it up
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._closing.wait(0.1)
                # At most one NOTIFY per interval: appends in between ride on the next one.
                self._closing.wait(NOTIFY_INTERVAL_SECONDS)
        finally:
            if conn is not None:
                conn.close()

    def _notifier_connection(self) -> psycopg.Connection[Any]:
        """Its own session: NOTIFY assigns a transaction id, so its commit would wait for a
        WAL flush like a real write; the hint needs no durability (synchronous_commit off)."""
        conn = psycopg.connect(**self.conninfo, autocommit=True)
        conn.execute("SET synchronous_commit TO off")
        return conn

    def close(self) -> None:
        """Stop the notifier thread."""
        self._closing.set()
        self._wake.set()
        if self._notifier is not None:
            self._notifier.join(timeout=5)

    # -- reading -----------------------------------------------------------------------------

    def safe_notification_id(self, after: int, limit: int = 1000) -> int:
        """The highest id ``n >= after`` such that every id in ``(after, n]`` is final.

        Final means committed (visible) or never to appear (rolled back or deleted). Reads
        ahead at most ``limit`` ids.
        """
        final_below = after + 1  # ids below this are known final
        deadline = time.monotonic() + GAP_WAIT_SECONDS
        with self.datastore.get_connection() as conn:
            while True:
                # The common case, no gap: one row back instead of ``limit``.
                row = conn.execute(
                    self.count_ids_statement, (after, limit), prepare=True
                ).fetchone()
                if row is None or row["n"] == 0:
                    return after
                if row["last"] - after == row["n"] and after + 1 >= final_below:
                    return int(row["last"])
                with conn.cursor(row_factory=tuple_row) as cur:
                    cur.execute(self.select_ids_statement, (after, limit), prepare=True)
                    ids = [r[0] for r in cur.fetchall()]
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

    def _writers(self, conn: Any) -> list[str]:
        """Transactions (other than ours) holding a write lock on the events table now."""
        row = conn.execute(self._writers_statement, (self.qualified_table,)).fetchone()
        return list(row["coalesce"]) if row else []

    def _wait_for(self, conn: Any, writers: list[str], deadline: float) -> bool:
        """Wait until none of ``writers`` holds its lock; False if the deadline passed."""
        while writers:
            row = conn.execute(
                self._still_writing_statement, (self.qualified_table, writers)
            ).fetchone()
            if not row or not row["count"]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """eventsourcing's read of the notification log, never past a gap that may fill."""
        after = 0 if start is None else (start - 1 if inclusive_of_start else start)
        safe = self.safe_notification_id(after, max(limit, 1))
        if safe <= after:
            return []
        stop = safe if stop is None else min(stop, safe)
        notifications: Sequence[Notification] = super().select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )
        return notifications

    def max_notification_id(self) -> int | None:
        """The highest id up to which the log is final (what a follower can safely read)."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(self.max_notification_id_statement).fetchone()
            highest = row["max"] if row else None
            # Writers in flight now may hold ids below it; once they end, all below is final.
            if not self._wait_for(conn, self._writers(conn), time.monotonic() + GAP_WAIT_SECONDS):
                raise JournalError(
                    f"{self.qualified_table}: a transaction has held a write lock for over "
                    f"{GAP_WAIT_SECONDS:.0f} s, so the last final event is unknown; appends are "
                    "single statements, so look for a stuck session in pg_stat_activity"
                )
        return int(highest) if highest is not None else None


class AdvisoryLeases(LeaseKeeper):
    """A lease is a session-level advisory lock held on this process's own connection;
    PostgreSQL drops it when that session ends, so when the process dies. TCP keepalives
    make the server notice a vanished client host within about a minute. A session lost
    while this process lives is replaced and its leases taken again (a lease another process
    took meanwhile is logged: the log still fences every writer)."""

    #: libpq keepalives for the lease session: a dead client host is noticed in ~1 minute.
    KEEPALIVES: dict[str, Any] = {
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
        "keepalives_count": 3,
    }

    def __init__(self, url: str, conninfo: dict[str, Any], namespace: str) -> None:
        super().__init__()
        self.url = url
        self.conninfo = conninfo
        self.namespace = namespace
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False

    def _key(self, execution_id: UUID) -> int:
        digest = hashlib.sha256(f"{self.namespace}:{execution_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _try_lock(self, conn: psycopg.Connection[Any], execution_id: UUID) -> bool:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (self._key(execution_id),)
        ).fetchone()
        return bool(row and row[0])

    def _session(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise JournalError("the journal is closed; no lease can be taken through it")
        if self._conn is not None and not self._conn.broken and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(**{**self.conninfo, **self.KEEPALIVES}, autocommit=True)
            conn.execute("SET idle_session_timeout = 0")
            for eid in self._held:  # the old session's locks died with it: take them again
                if not self._try_lock(conn, eid):
                    logger.warning(
                        "journal: lease of %s was taken by another process while this "
                        "one's lease session was down", eid,
                    )
        except psycopg.Error as e:
            raise JournalUnavailable(self.url, e) from e
        self._conn = conn
        return conn

    def check(self) -> None:
        """Ping the lease session while leases are held; if it died, open a new one and
        take the leases again (the old session's locks died with it)."""
        with self._lock:
            if not self._held or self._closed:
                return
            conn = self._conn
            try:
                if conn is not None and not conn.broken and not conn.closed:
                    conn.execute("SELECT 1")
                    return
            except psycopg.Error:
                pass
            try:
                self._session()
            except JournalError as e:
                logger.warning("journal: lease session down: %s", e)

    def _acquire(self, execution_id: UUID) -> bool:
        try:
            return self._try_lock(self._session(), execution_id)
        except psycopg.Error as e:
            if self._conn is not None and not self._conn.broken:
                raise JournalUnavailable(self.url, e) from e
            try:  # the session broke: a new one, once
                return self._try_lock(self._session(), execution_id)
            except psycopg.Error as e:
                raise JournalUnavailable(self.url, e) from e

    def _release(self, execution_id: UUID) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return  # the session is gone, and the lock with it
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key(execution_id),))
        except psycopg.Error as e:
            logger.warning("journal: could not release the lease of %s: %s", execution_id, e)

    def close(self) -> None:
        """Closing the session drops every lock at once (no round trip per lease)."""
        with self._lock:
            self._closed = True
            self._held.clear()
            if self._conn is not None:
                self._conn.close()


class PostgresStore(Store):
    """A journal in one PostgreSQL database, shared by any number of processes."""

    recorder: JournalPostgresRecorder

    def __init__(self, url: str, *, pool_size: int = 1, max_overflow: int = 15) -> None:
        self.url = url
        params = parse_postgres_url(url)
        options = params.pop("options")
        self.datastore = PostgresDatastore(
            **params,
            connect_timeout=float(options.get("connect_timeout", 5)),
            pool_size=pool_size,
            max_overflow=max_overflow,
            schema=options.get("schema", ""),
        )
        self._read_stream_sql = SQL(
            "SELECT originator_version, topic, state FROM {} "
            "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version"
        ).format(self._table(EVENTS_TABLE))
        conninfo = connect_params(url)
        libpq_extra = {k: v for k, v in conninfo.items() if k not in params}
        pool_kwargs: dict[str, Any] = self.datastore.pool.kwargs  # type: ignore[assignment]
        pool_kwargs.update(libpq_extra)  # sslmode & co. for pooled connections too
        try:
            # One direct connection first: the pool would report only its own timeout, and
            # the user needs the driver's reason (refused, unknown database, bad password).
            psycopg.connect(**conninfo).close()
        except psycopg.Error as e:
            raise JournalUnavailable(url, str(e).strip()) from e
        with self.translated(), self.datastore.get_connection() as conn:
            # Processes opening a new journal at once would race on its DDL ("tuple
            # concurrently updated"): one creates the schema, the others wait, then find it.
            lock = f"journal schema {self.datastore.schema}"
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock,))
            try:
                if self.datastore.schema != "public":
                    conn.execute(
                        SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            Identifier(self.datastore.schema)
                        )
                    )
                self.recorder = JournalPostgresRecorder(self.datastore)
                self.recorder.conninfo = conninfo
                self.leases = AdvisoryLeases(url, conninfo, self.recorder.qualified_table)
                self.recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock,))

    def _append(self, stored: Sequence[StoredEvent]) -> None:
        self.recorder.insert_events(stored)

    def read_stream(
        self, execution_id: UUID, *, after: int = 0
    ) -> Sequence[tuple[int, str, bytes]]:
        with (
            self.translated(execution_id),
            self.datastore.get_connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as cur,
        ):
            cur.execute(self._read_stream_sql, (execution_id, after), prepare=True)
            rows: list[tuple[int, str, bytes]] = cur.fetchall()
            return rows

    def _table(self, name: str) -> Any:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def put_blob(self, digest: str, data: bytes) -> None:
        with self.translated(), self.datastore.get_connection() as conn:
            conn.execute(
                SQL("INSERT INTO {} (sha256, data) VALUES (%s, %b) ON CONFLICT DO NOTHING")
                .format(self._table(BLOBS_TABLE)),
                (digest, data),
            )

    def get_blob(self, digest: str) -> bytes:
        with self.translated(), self.datastore.get_connection() as conn:
            row = conn.execute(
                SQL("SELECT data FROM {} WHERE sha256 = %s").format(self._table(BLOBS_TABLE)),
                (digest,),
            ).fetchone()
        if row is None:
            raise KeyError(digest)
        return bytes(row["data"])

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        with self.translated(), self.datastore.get_connection() as conn:
            cur = conn.execute(
                SQL("DELETE FROM {} WHERE originator_id = ANY(%s)").format(
                    self._table(EVENTS_TABLE)
                ),
                (list(execution_ids),),
            )
            return cur.rowcount

    def close(self) -> None:
        self.leases.close()
        self.recorder.close()
        self.datastore.close()
