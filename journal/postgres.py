"""PostgreSQL at scale: many processes on many machines share one log through psycopg 3.

Built on eventsourcing's PostgreSQL recorder. Its insert path costs about 1 ms of protocol
per event (pipeline, two sync points, three statements); here one append is one statement:
a per-table plpgsql function that takes the table lock, notifies followers and inserts, called
in autocommit with the rows passed as four binary arrays. The table lock is kept because it
is what makes notification ids commit in order, so followers never skip a row that commits
late. The function is named after the table, so two journals in one schema never share it
(unlike eventsourcing's shared ``es_insert_events_uuid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier

from journal.store import BLOBS_TABLE, EVENTS_TABLE, Store

__all__ = ["PostgresStore", "parse_postgres_url"]


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


class JournalPostgresRecorder(PostgresApplicationRecorder):
    """Appends through one plpgsql call per transaction (lock, notify, insert)."""

    def __init__(self, datastore: PostgresDatastore, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name=events_table_name)
        # Channels are per database: name it by schema too, so journals don't wake each other.
        self.channel_name = f"{self.datastore.schema}_{self.events_table_name}"
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        function = Identifier(f"{self.events_table_name}_append")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "BEGIN "
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "  NOTIFY {channel}; "
                "  RETURN QUERY INSERT INTO {schema}.{table} "
                "    (originator_id, originator_version, topic, state) "
                "    SELECT * FROM unnest(ids, versions, topics, states) "
                "    RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                schema=schema, function=function, table=table,
                channel=Identifier(self.channel_name),
            )
        )
        function_one = Identifier(f"{self.events_table_name}_append_one")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "id uuid, version bigint, topic text, state bytea) "
                "RETURNS bigint LANGUAGE plpgsql AS $BODY$ "
                "DECLARE n bigint; "
                "BEGIN "
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "  NOTIFY {channel}; "
                "  INSERT INTO {schema}.{table} "
                "    (originator_id, originator_version, topic, state) "
                "    VALUES (id, version, topic, state) RETURNING notification_id INTO n; "
                "  RETURN n; "
                "END; $BODY$"
            ).format(
                schema=schema, function=function_one, table=table,
                channel=Identifier(self.channel_name),
            )
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{blobs} "
                "(sha256 text PRIMARY KEY, data bytea NOT NULL)"
            ).format(schema=schema, blobs=Identifier(BLOBS_TABLE))
        )
        self.append_statement = SQL(
            "SELECT * FROM {schema}.{function}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(schema=schema, function=function)
        # One event (the common case): scalar parameters dump several times faster than arrays.
        self.append_one_statement = SQL(
            "SELECT {schema}.{function}(%s, %s, %s, %b) AS n"
        ).format(schema=schema, function=function_one)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        if len(stored_events) == 1:
            s = stored_events[0]
            with self.datastore.get_connection() as conn:
                row = conn.execute(
                    self.append_one_statement,
                    (s.originator_id, s.originator_version, s.topic, s.state),
                    prepare=True,
                ).fetchone()
                return [row["n"]] if row else []
        params = (
            [s.originator_id for s in stored_events],
            [s.originator_version for s in stored_events],
            [s.topic for s in stored_events],
            [s.state for s in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.append_statement, params, prepare=True)
            return [row[f"{self.events_table_name}_append"] for row in curs.fetchall()]


class PostgresStore(Store):
    """A journal in one PostgreSQL database, shared by any number of processes."""

    def __init__(self, url: str, *, pool_size: int = 4, max_overflow: int = 12) -> None:
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
        with self.translated():
            if self.datastore.schema != "public":
                with self.datastore.get_connection() as conn:
                    conn.execute(
                        SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            Identifier(self.datastore.schema)
                        )
                    )
            self.recorder = JournalPostgresRecorder(self.datastore)
            self.recorder.create_table()

    def _append(self, stored: Sequence[StoredEvent]) -> None:
        self.recorder.insert_events(stored)

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
        self.datastore.close()
