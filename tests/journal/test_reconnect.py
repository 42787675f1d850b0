"""PostgreSQL sessions that die under the journal: the next read or write goes through.

Every session of the test database is ended from an admin connection with
``pg_terminate_backend`` (what a failover, a restarted server or a pooler does to clients).
The journal must retry on a new session within ``reconnect_timeout``, never record an append
twice (a write whose commit the client did not hear about), and ``Projections.follow()`` must
keep going. A database that stays away raises ``JournalUnavailable`` once the timeout is up.
This is about PostgreSQL sessions: there is no SQLite variant.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sized
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest

from journal import (
    ExecutionStarted,
    Journal,
    JournalUnavailable,
    LogRecorded,
    StepCompleted,
    StepStarted,
)
from journal.errors import (
    JournalNotFound,
    NotAJournal,
    StorageFull,
    StoragePermissionDenied,
    StorageReadOnly,
)
from projections import Projections
from tests.conftest import ADMIN_URL

#: Terminations while the threads append (each lands somewhere in an append, or between).
ROUNDS = 8
NAMED = (JournalNotFound, NotAJournal, StorageFull, StorageReadOnly, StoragePermissionDenied)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A journal URL in a fresh schema of this module's database."""
    return f"{pg_database}?schema=s_{uuid.uuid4().hex[:12]}"


def _dbname(db_url: str) -> str:
    return db_url.rpartition("/")[2].partition("?")[0]


def terminate_sessions(db_url: str) -> int:
    """End every session of the database (but this admin one); wait until they are gone."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        pids = [
            pid for pid, ok in admin.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (_dbname(db_url),),
            ).fetchall()
            if ok
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"sessions {pids} still there 10 s after pg_terminate_backend")
    return len(pids)


def terminate_some_sessions(db_url: str, timeout: float = 10.0) -> int:
    """``terminate_sessions`` until it has ended at least one session: while threads append
    across terminations, there may be a moment with no session of theirs at all (the last
    one lost or being closed, the next not open yet), and ending none proves nothing."""
    deadline = time.monotonic() + timeout
    while True:
        ended = terminate_sessions(db_url)
        if ended or time.monotonic() >= deadline:
            return ended
        time.sleep(0.01)


def wait_for(condition: Callable[[], bool], what: str, *errors: list[BaseException],
             timeout: float = 20.0) -> None:
    """Poll ``condition``; fail at once if a thread recorded an error in one of ``errors``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raised = [e for found in errors for e in found]
        if raised:
            raise AssertionError(f"while waiting for {what}: {raised[0]!r}") from raised[0]
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"{what}: not within {timeout} s")


def grown(*targets: tuple[Sized, int]) -> Callable[[], bool]:
    """A condition: each collection has at least so many items."""
    return lambda: all(len(items) >= n for items, n in targets)


def all_notifications(journal: Journal) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    after = 0
    while page := journal.notifications(after=after, limit=1000):
        out.extend(page)
        after = page[-1][0]
    return out


def assert_log_is_whole(journal: Journal) -> list[tuple[int, Any]]:
    """Each (execution, position) once in the notification log, ids increasing, streams whole."""
    log = all_notifications(journal)
    ids = [nid for nid, _ in log]
    assert ids == sorted(set(ids))
    keys = Counter((e.execution_id, e.position) for _, e in log)
    assert max(keys.values(), default=1) == 1, [k for k, n in keys.items() if n > 1][:5]
    per_stream: dict[UUID, list[int]] = {}
    for _, e in log:
        per_stream.setdefault(e.execution_id, []).append(e.position)
    for eid, positions in per_stream.items():
        assert sorted(positions) == list(range(1, len(positions) + 1)), eid
    return log



class Worker(threading.Thread):
    """Runs ``body(stop)`` until stopped; keeps what it raised instead of losing it."""

    def __init__(self, body: Callable[[threading.Event], Any], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.body = body
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            self.body(self.stop_event)
        except BaseException as e:
            self.errors.append(e)

    def finish(self, timeout: float = 20.0) -> None:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop within {timeout} s"


@contextlib.contextmanager
def workers(*threads: Worker) -> Iterator[None]:
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for t in threads:
            t.stop_event.set()
        for t in threads:
            t.join(20)


# -- (a) the next write and read after the sessions went ------------------------------------


def test_the_next_write_and_read_succeed_after_every_session_is_ended(
    pg_url: str, pg_database: str
) -> None:
    with Journal.open(pg_url) as journal:
        run = journal.start("a", {"n": 1})
        seq = run.step_started("one")
        views = Projections(journal)
        views.catch_up()

        assert terminate_sessions(pg_database) > 0
        run.step_completed(seq, 1)  # a write first
        assert journal.state(run.id).position == 3

        assert terminate_sessions(pg_database) > 0
        assert [e.position for e in journal.events(run.id)] == [1, 2, 3]  # a read first

        assert terminate_sessions(pg_database) > 0
        with run.atomic():  # a batch
            seq = run.step_started("two")
            run.step_completed(seq, 2)

        assert terminate_sessions(pg_database) > 0
        other = journal.start("a", {"n": 2})  # position 1 of a new stream

        assert terminate_sessions(pg_database) > 0
        run.log("after the sessions were ended")
        journal.flush()  # buffered lines go through a new session too

        assert terminate_sessions(pg_database) > 0
        assert views.catch_up() == 5  # the views' session was ended too
        summary = views.execution(run.id)
        assert summary is not None and summary.event_count == 6
        views.close()

    with Journal.open(pg_url) as fresh:
        events = fresh.events(run.id)
        assert [type(e) for e in events] == [
            ExecutionStarted, StepStarted, StepCompleted, StepStarted, StepCompleted, LogRecorded,
        ]
        assert [e.position for e in events] == list(range(1, 7))
        assert [type(e) for e in fresh.events(other.id)] == [ExecutionStarted]
        assert len(assert_log_is_whole(fresh)) == 7


# -- (b) appends racing the terminations -----------------------------------------------------


def test_appends_racing_terminations_are_each_recorded_once(
    pg_url: str, pg_database: str
) -> None:
    with Journal.open(pg_url) as journal:
        run = journal.start("b")
        # What returned, in order: ("StepStarted" | "StepCompleted", seq).
        returned: list[tuple[str, int]] = []
        started: list[UUID] = []

        def stream(stop: threading.Event) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                if n % 3:
                    seq = run.step_started(f"s{n}")
                    returned.append(("StepStarted", seq))
                    run.step_completed(seq, n)
                    returned.append(("StepCompleted", seq))
                else:
                    with run.atomic():
                        seq = run.step_started(f"s{n}")
                        run.step_completed(seq, n)
                    returned.extend([("StepStarted", seq), ("StepCompleted", seq)])

        def starts(stop: threading.Event) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                started.append(journal.start("b-start", {"n": n}).id)

        appender, starter = Worker(stream, "appender"), Worker(starts, "starter")
        with workers(appender, starter):
            for _ in range(ROUNDS):
                wait_for(lambda: len(returned) >= 20 and len(started) >= 5,
                         "appends before the termination", appender.errors, starter.errors)
                before, before_started = len(returned), len(started)
                assert terminate_some_sessions(pg_database) > 0
                # Appends go on after it: both threads get through again.
                wait_for(grown((returned, before + 20), (started, before_started + 5)),
                         "appends after the termination", appender.errors, starter.errors)
            appender.finish()
            starter.finish()
        errors = [*appender.errors, *starter.errors]
        assert not errors, f"an append raised after a termination: {errors[0]!r}"
        assert len(returned) >= 20 + 20 * ROUNDS

    with Journal.open(pg_url) as fresh:
        events = fresh.events(run.id)
        assert [(type(e).__name__, e.seq) for e in events[1:]] == returned  # type: ignore[attr-defined]
        assert [e.position for e in events] == list(range(1, len(returned) + 2))
        for eid in started:
            assert [type(e) for e in fresh.events(eid)] == [ExecutionStarted]
        log = assert_log_is_whole(fresh)
        starts_logged = [e.execution_id for _, e in log
                         if isinstance(e, ExecutionStarted) and e.workflow == "b-start"]
        assert Counter(starts_logged) == Counter(started)
        assert len(log) == 1 + len(returned) + len(started)


# -- (b2) the reply to a committed append is lost: its outcome is unknown to the client --------


class CuttingRelay:
    """A TCP relay to the PostgreSQL server that, when armed, drops a connection just after
    the server has committed a write and before the client hears of it.

    It reads the server's messages (type byte, int32 length): when an INSERT or COMMIT is
    followed by ReadyForQuery in state idle, the commit is done; the relay then closes both
    sides without passing on that reply. The client's append has landed, and it cannot know.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    @staticmethod
    def _hang_up(*sockets: socket.socket) -> None:
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                server.sendall(data)
        except OSError:
            pass
        self._hang_up(client, server)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        pending = b""
        wrote = False
        try:
            while data := server.recv(65536):
                pending += data
                out = bytearray()
                while len(pending) >= 5:
                    size = 1 + int.from_bytes(pending[1:5], "big")
                    if len(pending) < size:
                        break
                    message, pending = pending[:size], pending[size:]
                    kind, body = message[:1], message[5:]
                    if kind == b"C" and body.startswith((b"INSERT", b"COMMIT")):
                        wrote = True
                    elif kind == b"Z":
                        if wrote and body[:1] == b"I" and self.armed.is_set():
                            self.armed.clear()
                            self.cuts += 1
                            self._hang_up(client, server)  # the reply is never passed on
                            return
                        wrote = False
                    out += message
                client.sendall(out)
        except OSError:
            pass
        self._hang_up(client, server)


@pytest.fixture
def relay() -> Iterator[CuttingRelay]:
    parts = urlsplit(ADMIN_URL)
    r = CuttingRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield r
    finally:
        r.close()


def test_an_append_whose_reply_was_lost_after_its_commit_is_not_repeated(
    pg_url: str, relay: CuttingRelay
) -> None:
    parts = urlsplit(pg_url)
    # Through the relay, in clear text (so that it can read the replies).
    via_relay = urlunsplit(parts._replace(
        netloc=f"{parts.username}@127.0.0.1:{relay.port}",
        query=f"{parts.query}&sslmode=disable&gssencmode=disable",
    ))
    big = "x" * 300_000  # stored out of line: blob, reference and events in one transaction
    with Journal.open(via_relay) as journal:
        run = journal.start("lost-reply")

        relay.arm()
        seq = run.step_started("one")  # one event, autocommit
        assert relay.cuts == 1, "the relay did not cut the append's reply"
        relay.arm()
        run.step_completed(seq, 1)
        relay.arm()
        with run.atomic():  # a batch
            seq = run.step_started("two")
            run.step_completed(seq, 2)
        relay.arm()
        other = journal.start("lost-reply", {"n": 2})  # position 1 of a new stream
        relay.arm()
        run.log("a log line")
        journal.flush()
        relay.arm()
        seq = run.step_started("big")
        relay.arm()
        run.step_completed(seq, big)  # an explicit transaction: cut after its COMMIT
        assert relay.cuts == 7
        run.completed("done")  # the handle is where the log is
        assert journal.state(run.id).position == 9

    with Journal.open(pg_url) as fresh:
        events = fresh.events(run.id)
        assert [type(e).__name__ for e in events] == [
            "ExecutionStarted", "StepStarted", "StepCompleted", "StepStarted", "StepCompleted",
            "LogRecorded", "StepStarted", "StepCompleted", "ExecutionCompleted",
        ]
        assert [e.position for e in events] == list(range(1, 10))
        assert isinstance(events[7], StepCompleted) and events[7].output == big
        assert [type(e) for e in fresh.events(other.id)] == [ExecutionStarted]
        assert len(assert_log_is_whole(fresh)) == 10


# -- (c) follow() through the terminations ---------------------------------------------------


def test_follow_keeps_going_when_its_sessions_are_ended(pg_url: str, pg_database: str) -> None:
    with Journal.open(pg_url) as journal, Projections(journal) as views:
        ids: list[UUID] = []
        stop_following = threading.Event()
        follow_errors: list[BaseException] = []

        def follow() -> None:
            try:
                views.follow(stop=stop_following, poll_interval=0.01)
            except BaseException as e:
                follow_errors.append(e)

        def write(stop: threading.Event) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                h = journal.start("c", {"n": n})
                seq = h.step_started("work")
                h.log("working", n=n)
                h.step_completed(seq, n)
                if n % 2:
                    h.completed(n)
                ids.append(h.id)
                time.sleep(0.002)

        follower = threading.Thread(target=follow, name="follower", daemon=True)
        writer = Worker(write, "writer")
        follower.start()
        try:
            with workers(writer):
                wait_for(lambda: len(ids) > 5 and views.execution(ids[0]) is not None,
                         "follow() to apply the first executions", follow_errors, writer.errors)
                for _ in range(3):
                    before = len(ids)
                    assert terminate_some_sessions(pg_database) > 0
                    wait_for(grown((ids, before + 10)),
                             "writes after the termination", writer.errors, follow_errors)
                    time.sleep(0.1)
                writer.finish()
            assert not writer.errors, f"a write raised after a termination: {writer.errors[0]!r}"
            expected = {eid: journal.state(eid).position for eid in ids}

            def caught_up() -> bool:
                for eid, count in expected.items():
                    summary = views.execution(eid)
                    if summary is None or summary.event_count != count:
                        return False
                return True

            wait_for(caught_up, "the views to hold every execution", follow_errors)
            assert follower.is_alive(), "follow() returned by itself"
            assert not follow_errors
        finally:
            stop_following.set()
            follower.join(10)
        assert not follower.is_alive(), "follow() did not stop"
        assert not follow_errors, f"follow() raised: {follow_errors[0]!r}"
        assert set(views.positions().values()) == {views.head()}
        assert len(expected) >= 30
        for eid in ids:
            summary = views.execution(eid)
            assert summary is not None
            assert summary.status == ("completed" if expected[eid] == 5 else "running")


# -- (d) a database that stays away ------------------------------------------------------------


def test_a_server_that_is_not_there_raises_within_the_reconnect_timeout() -> None:
    began = time.monotonic()
    with pytest.raises(JournalUnavailable) as info:
        Journal.open("postgresql://postgres@127.0.0.1:1/journal", reconnect_timeout=1.0)
    assert time.monotonic() - began < 5
    assert not isinstance(info.value, NAMED)
    assert "check that the database is running" in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_a_database_that_goes_away_while_open_raises_within_the_timeout(
    pg_url: str, pg_database: str
) -> None:
    name = _dbname(pg_database)
    with Journal.open(pg_url, reconnect_timeout=1.0) as journal:
        run = journal.start("d")
        seq = run.step_started("one")
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                assert terminate_sessions(pg_database) > 0
                began = time.monotonic()
                with pytest.raises(JournalUnavailable) as info:
                    run.step_completed(seq, 1)
                took = time.monotonic() - began
                assert took < 6, took  # retried for about reconnect_timeout, no longer
                assert not isinstance(info.value, NAMED)
                began = time.monotonic()
                with pytest.raises(JournalUnavailable):
                    journal.events(run.id)
                assert time.monotonic() - began < 6
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # Back: nothing of the failed write was recorded, and it can be retried.
        assert journal.state(run.id).position == 2
        run.step_completed(seq, 1)
        run.completed("ok")
    with Journal.open(pg_url) as fresh:
        assert [type(e).__name__ for e in fresh.events(run.id)] == [
            "ExecutionStarted", "StepStarted", "StepCompleted", "ExecutionCompleted",
        ]
