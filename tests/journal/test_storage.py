"""The storage contract, one suite run on SQLite, PostgreSQL and memory.

Everything above ``journal.storage`` relies on these promises: atomic appends with
notification ids, a position taken once, streams and the log read back byte for byte, blobs
committed with their events and freed with their last stream, and view tables whose rows
come back as the Python values that went in.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from journal.errors import (
    ConcurrencyConflict,
    JournalError,
    NotAJournal,
    StorageFull,
    StorageReadOnly,
)
from journal.storage import Column, Index, Storage, Table, open_storage
from journal.storage.errors import translate


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    s = open_storage(storage_url)
    try:
        yield s
    finally:
        s.close()


def ev(eid: UUID, position: int, state: bytes = b"x", topic: str = "t") -> StoredEvent:
    return StoredEvent(originator_id=eid, originator_version=position, topic=topic, state=state)


def test_append_returns_ids_and_reads_back(storage: Storage) -> None:
    a, b = uuid4(), uuid4()
    assert storage.append([]) == []
    ids = storage.append([ev(a, 1, b"one"), ev(a, 2, b"two\x00")])
    ids += storage.append([ev(b, 1, b"three", "u")])
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert storage.read_stream(a) == [(1, "t", b"one"), (2, "t", b"two\x00")]
    assert [tuple(r) for r in storage.read_stream(a, after=1)] == [(2, "t", b"two\x00")]
    assert storage.read_stream(uuid4()) == []
    log = storage.read_log(0, 10)
    assert [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in log] == [
        (ids[0], a, 1, "t", b"one"), (ids[1], a, 2, "t", b"two\x00"), (ids[2], b, 1, "u", b"three"),
    ]
    assert [r[0] for r in storage.read_log(ids[0], 1)] == [ids[1]]
    assert [r[0] for r in storage.read_log(0, 10, topics=["u"])] == [ids[2]]
    assert storage.head() == ids[2]


def test_a_taken_position_is_a_conflict_and_writes_nothing(storage: Storage) -> None:
    a = uuid4()
    storage.append([ev(a, 1)])
    head = storage.head()
    with pytest.raises(ConcurrencyConflict) as info:
        storage.append([ev(a, 2), ev(a, 1, b"again")])
    assert info.value.execution_id == a
    assert storage.read_stream(a) == [(1, "t", b"x")]
    assert storage.head() == head
    with pytest.raises(ConcurrencyConflict):
        storage.append([ev(a, 2), ev(a, 2)])  # a batch that holds one position twice
    assert storage.read_stream(a) == [(1, "t", b"x")]


def test_big_batches_are_atomic(storage: Storage) -> None:
    a = uuid4()
    storage.append([ev(a, i, b"%d" % i) for i in range(1, 601)])  # beyond one statement
    assert [r[0] for r in storage.read_stream(a)] == list(range(1, 601))
    with pytest.raises(ConcurrencyConflict):
        storage.append([ev(a, i) for i in range(601, 1200)] + [ev(a, 5)])
    assert len(storage.read_stream(a)) == 600


def test_blobs_go_with_their_events_and_with_their_last_stream(storage: Storage) -> None:
    a, b = uuid4(), uuid4()
    data = b"big value" * 1000
    digest = hashlib.sha256(data).hexdigest()
    storage.append([ev(a, 1)], [(digest, data)])
    storage.append([ev(b, 1)], [(digest, data)])
    assert storage.get_blob(digest) == data
    with pytest.raises(ConcurrencyConflict):  # a rejected append stores no blob either
        storage.append([ev(a, 1)], [("0" * 64, b"orphan")])
    with pytest.raises(KeyError):
        storage.get_blob("0" * 64)
    assert storage.delete_streams([a]) == 1
    assert storage.get_blob(digest) == data  # b still refers to it
    assert storage.read_stream(a) == []
    assert storage.delete_streams([b]) == 1
    with pytest.raises(KeyError):
        storage.get_blob(digest)
    assert storage.read_log(0, 10) == []


VIEW = Table(
    "test_view",
    (Column("id", "uuid", False), Column("at", "ts"), Column("usd", "decimal", False),
     Column("name", "text"), Column("n", "bigint", False), Column("f", "float")),
    key=("id",),
    indexes=(Index("test_view_at", ("at", "id")),),
)


def test_view_tables_round_trip_python_values(storage: Storage) -> None:
    views = storage.views()
    try:
        assert views.missing([VIEW]) == [VIEW]
        with views.transaction():
            views.create([VIEW])
        assert views.missing([VIEW]) == []
        ids = [uuid4(), uuid4()]
        at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        rows = [(ids[0], at, Decimal("0.000123"), "a\x00b", 2**40, 1.5),
                (ids[1], None, Decimal(7), None, 0, None)]
        with views.transaction():
            views.upsert(VIEW, rows)
            views.upsert(VIEW, [(ids[1], at + timedelta(hours=1), Decimal("7.10"), "b", 1, None)])
        got = views.select(VIEW, "at >= ?", (at,), order="at")
        assert [r[0] for r in got] == ids
        assert got[0][1] == at and got[0][1].tzinfo is not None
        assert got[0][2] == Decimal("0.000123") and isinstance(got[0][2], Decimal)
        assert got[0][3] in ("a\x00b", "a\ufffdb")  # PostgreSQL text cannot hold NUL
        assert got[0][4] == 2**40 and got[1][2] == Decimal("7.10")
        assert views.select(VIEW, "id = ?", (ids[0],))[0][0] == ids[0]
        with pytest.raises(RuntimeError), views.transaction():  # rolled back whole
            views.execute("DELETE FROM test_view")
            raise RuntimeError
        assert len(views.select(VIEW)) == 2
    finally:
        views.close()


def test_view_tables_are_surveyed_against_their_declaration(storage: Storage) -> None:
    """One catalog read says which tables are missing and which have other columns (names,
    order, types) than declared: what projections rebuild at open."""
    wider = Table(VIEW.name, (*VIEW.columns, Column("extra", "ts")), key=VIEW.key)
    retyped = Table(VIEW.name, (*VIEW.columns[:-1], Column("f", "text")), key=VIEW.key)
    other = Table("test_view_other", (Column("id", "uuid", False),), key=("id",))
    views = storage.views()
    try:
        assert views.survey([VIEW, other]) == ([VIEW, other], [])
        with views.transaction():
            views.lock_schema()
            views.create([VIEW])
        assert views.survey([VIEW, other]) == ([other], [])
        assert views.survey([wider, retyped]) == ([], [wider, retyped])
        with views.transaction():
            views.execute(f"ALTER TABLE {VIEW.name} DROP COLUMN f")
        assert views.survey([VIEW]) == ([], [VIEW])  # a dropped column is gone (PostgreSQL)
        with views.transaction():
            views.drop([VIEW])
            views.create([wider])
        assert views.survey([VIEW, wider]) == ([], [VIEW])
        assert views.columns([other]) == {}
    finally:
        views.close()


# -- one translation of driver errors, from real driver errors ---------------------------------


def test_sqlite_errors_are_named_by_result_code(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute("PRAGMA max_page_count = 3")  # the database is full at 3 pages
    with pytest.raises(sqlite3.Error) as full:
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    conn.close()
    error = translate(full.value, "sqlite:///x.db", where=str(path))
    assert isinstance(error, StorageFull) and str(path) in str(error)
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    ro.close()
    assert isinstance(translate(readonly.value, "sqlite:///x.db"), StorageReadOnly)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.Error) as notadb:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master")
    assert isinstance(translate(notadb.value, "sqlite:///junk.db"), NotAJournal)
    bad = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.Error) as syntax:
        bad.execute("SELECT * FROM no_such_table")
    error = translate(syntax.value, "sqlite:///x.db")
    assert type(error) is JournalError and "check that the database is running" not in str(error)
    for e in (full, readonly, notadb):
        assert "check that the database is running" not in str(
            translate(e.value, "sqlite:///x.db"))


def test_concurrent_appends_each_get_their_own_ids_and_conflicts(storage_url: str) -> None:
    """Many threads append at once (PostgreSQL commits them in groups): every append gets
    the ids of its own rows, racers for one position get exactly one win, nothing is lost."""
    import threading

    storage = open_storage(storage_url)
    try:
        shared = uuid4()
        threads, results = 12, []
        lock = threading.Lock()
        barrier = threading.Barrier(threads)

        def writer(k: int) -> None:
            own = uuid4()
            barrier.wait()
            for p in range(1, 21):
                mine = [ev(own, p, state=f"{k}:{p}".encode())]
                ids = storage.append(mine)
                try:
                    won = storage.append([ev(shared, p, state=f"{k}:{p}".encode())])
                except ConcurrencyConflict:
                    won = None
                with lock:
                    results.append((own, p, ids, won, k))

        workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert len(results) == threads * 20
        by_id = {nid: (eid, pos, bytes(data)) for nid, eid, pos, _, data
                 in storage.read_log(0, 10_000)}
        for own, p, ids, won, k in results:
            assert [by_id[i] for i in ids] == [(own, p, f"{k}:{p}".encode())]
            if won is not None:
                assert [by_id[i] for i in won] == [(shared, p, f"{k}:{p}".encode())]
        winners = sorted(r[1] for r in results if r[3] is not None)
        assert winners == list(range(1, 21))  # every position won exactly once
        assert [r[0] for r in storage.read_stream(shared)] == winners
    finally:
        storage.close()
