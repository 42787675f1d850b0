"""The database goes away mid-run: the run stops with JournalUnavailable, no step code runs
without its StepStarted committed, and recover() finishes the run once the database is back.

On PostgreSQL the outage is real (connections refused and killed); on SQLite the store's
writes fail with the error a full or broken disk gives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from journal import Journal, JournalUnavailable
from journal.storage.postgres import parse_postgres_url
from runner import Context, Runner
from tests.conftest import _admin_conninfo
from tests.runner.workflows import effect, effects


@contextmanager
def outage(journal: Journal) -> Iterator[Callable[[], None]]:
    """Yields a function that takes the database away; it comes back when the block ends."""
    if journal.url.startswith("sqlite"):
        store: Any = journal.storage
        real = store._append

        def fail(stored: object, blobs: object = (), wakes: object = ()) -> None:
            raise JournalUnavailable(journal.url, "disk I/O error")

        def down() -> None:
            store._append = fail

        try:
            yield down
        finally:
            store._append = real
        return
    dbname = parse_postgres_url(journal.url)["dbname"]

    def down_pg() -> None:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,),
            )

    try:
        yield down_pg
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


def build(journal: Journal, path: Path, take_down: Callable[[], None] | None) -> Runner:
    runner = Runner(journal)

    def first() -> str:
        effect(path, "first")
        if take_down is not None:
            take_down()
        return "one"

    def later(name: str) -> str:
        effect(path, name)
        return name

    @runner.workflow(name="outage")
    def wf(ctx: Context) -> list[str]:
        return [ctx.step("first", first), ctx.step("second", later, "second"),
                ctx.step("third", later, "third")]

    return runner


def test_journal_failure_stops_the_run_and_recover_finishes_it(
    journal_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "effects.txt"
    # The outage lasts: a second of retrying (not the default 10) before JournalUnavailable.
    journal = Journal.open(journal_url, reconnect_timeout=1.0)
    try:
        with outage(journal) as down, build(journal, path, down) as runner:
            with pytest.raises(JournalUnavailable):
                runner.run("outage")
            # second's StepStarted could not be committed, so its code never ran
            assert effects(path) == ["first"]
    finally:
        try:
            journal.close()
        except JournalUnavailable:
            pass

    with Journal.open(journal_url) as again, build(again, path, None) as runner:
        [eid] = [r.id for r in runner.recover(stale_after=timedelta(0))]
        state = again.state(eid)
    assert state.status == "completed" and state.output == ["one", "second", "third"]
    # "first" was in flight (its completion rode with the commit that failed): it ran again
    assert effects(path) == ["first", "first", "second", "third"]
    assert state.steps[1].attempts == 2


def fail_append(journal: Journal, monkeypatch: pytest.MonkeyPatch, *, at: int) -> list[int]:
    """Make the store's ``at``-th append raise a RuntimeError (not a journal error), once."""
    store: Any = journal.storage
    real = store._append
    calls: list[int] = []

    def append(stored: Any, blobs: Any = (), wakes: Any = ()) -> Any:
        calls.append(len(stored))
        if len(calls) == at:
            raise RuntimeError("injected store failure")
        return real(stored, blobs, wakes)

    monkeypatch.setattr(store, "_append", append)
    return calls


def test_an_unexpected_commit_error_stops_the_run_and_loses_nothing(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "effects.txt"
    # appends: [ExecutionStarted + ExecutionClaimed + StepStarted(first)],
    # [StepCompleted(first) + StepStarted(second)]
    calls = fail_append(journal, monkeypatch, at=2)
    with build(journal, path, None) as runner:
        with pytest.raises(RuntimeError, match="injected"):
            runner.run("outage")
        assert calls == [3, 2]  # the held completion rode with the commit that failed
        assert effects(path) == ["first"]
        [eid] = [e.execution_id for _, e in journal.notifications() if e.position == 1]
        state = journal.state(eid)
        # not failed over the lost completion: still running, so recover() finishes it
        assert state.status == "running" and state.steps[1].status == "running"
        [run] = runner.recover(stale_after=timedelta(0))
    assert run.status == "completed" and run.output == ["one", "second", "third"]
    assert effects(path) == ["first", "first", "second", "third"]


def test_the_background_flusher_reports_a_failed_commit(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Runner(journal)
    after: list[str] = []

    @runner.workflow()
    def idler(ctx: Context) -> None:
        ctx.step("quick", str, "x")
        ctx.log("idling")
        time.sleep(1.0)  # the flusher commits the held completion meanwhile, and fails
        after.append("woke")
        ctx.step("next", str, "y")

    # appends: [ExecutionStarted + ExecutionClaimed + StepStarted(quick)], then the
    # flusher's [StepCompleted(quick) + LogRecorded(idling)], which fails
    fail_append(journal, monkeypatch, at=2)
    with (runner, caplog.at_level(logging.ERROR, logger="runner"),
          pytest.raises(RuntimeError, match="injected")):
        runner.run(idler)
    assert after == ["woke"]
    [record] = [r for r in caplog.records if "held records" in r.getMessage()]
    assert record.levelno == logging.ERROR and "injected" in record.getMessage()
    [eid] = [e.execution_id for _, e in journal.notifications() if e.position == 1]
    assert journal.state(eid).status == "running"


def test_an_interrupt_flushes_held_records_and_buffered_log_lines(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow()
    def interrupted(ctx: Context) -> None:
        ctx.log("starting")  # nothing held: buffered by the journal's handle
        raise KeyboardInterrupt

    with runner, pytest.raises(KeyboardInterrupt):
        runner.run(interrupted)
    # read at once from another connection: before the journal's own flusher would run
    with Journal.open(journal.url) as other:
        [eid] = [e.execution_id for _, e in other.notifications() if e.position == 1]
        kinds = [type(e).__name__ for e in other.events(eid)]
    assert kinds == ["ExecutionStarted", "ExecutionClaimed", "LogRecorded"]


def test_an_interrupt_whose_flush_fails_says_so(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Runner(journal)

    @runner.workflow()
    def interrupted(ctx: Context) -> None:
        ctx.step("quick", str, "x")
        raise KeyboardInterrupt

    fail_append(journal, monkeypatch, at=2)  # the held StepCompleted's commit
    with (runner, caplog.at_level(logging.ERROR, logger="runner"),
          pytest.raises(KeyboardInterrupt) as caught):
        runner.run(interrupted)
    [eid] = [e.execution_id for _, e in journal.notifications() if e.position == 1]
    notes = getattr(caught.value, "__notes__", [])
    assert any(str(eid) in n and "injected" in n and "recover()" in n for n in notes)
    [record] = [r for r in caplog.records if "could not flush" in r.getMessage()]
    assert record.levelno == logging.ERROR
