"""When things become durable: log lines within a second, atomic blocks all or none.

Durability is checked from a second Journal on the same URL (its own connections), so what
it reads is what another process would read.
"""

from __future__ import annotations

import gc
import time
from uuid import UUID

import pytest

from journal import (
    ConcurrencyConflict,
    ExecutionHandle,
    Journal,
    LogRecorded,
    StepCompleted,
    StepStarted,
)

FLUSH_WINDOW = 1.0  # the documented promise
SLACK = 2.0  # a busy CI machine


def _kinds(journal: Journal, eid: UUID) -> list[str]:
    return [type(e).__name__ for e in journal.events(eid)]


def _wait_for(reader: Journal, eid: UUID, count: int, timeout: float) -> float:
    """Seconds until ``reader`` sees ``count`` events of ``eid``; fails after ``timeout``."""
    begun = time.monotonic()
    while len(reader.events(eid)) < count:
        elapsed = time.monotonic() - begun
        assert elapsed < timeout, f"only {len(reader.events(eid))} of {count} events durable"
        time.sleep(0.05)
    return time.monotonic() - begun


def test_a_lone_log_line_is_durable_within_a_second(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as reader:
        run = journal.start("logs")
        run.log("first line", step="a")
        elapsed = _wait_for(reader, run.id, 2, FLUSH_WINDOW + SLACK)
        assert elapsed < FLUSH_WINDOW + SLACK
        line = reader.events(run.id)[1]
        assert isinstance(line, LogRecorded)
        assert (line.message, line.fields) == ("first line", {"step": "a"})


def test_log_lines_ride_with_the_next_lifecycle_event(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as reader:
        run = journal.start("logs")
        run.log("one")
        run.log("two", level="warning")
        run.step_started("s")  # durable on return, and the lines before it with it
        assert _kinds(reader, run.id) == [
            "ExecutionStarted", "LogRecorded", "LogRecorded", "StepStarted"
        ]
        assert [e.position for e in reader.events(run.id)] == [1, 2, 3, 4]


def test_a_pause_right_after_a_log_line_loses_nothing(journal_url: str) -> None:
    """seeds/000: a run paused 580 ms after it began, its logs still in a buffer."""
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as reader:
        run = journal.start("interrupt")
        run.log("about to ask a human")
        run.paused("human_review", {"q": "ok?"})
        assert _kinds(reader, run.id)[-2:] == ["LogRecorded", "ExecutionPaused"]


def test_close_flushes_log_lines(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    run = journal.start("logs")
    run.log("last words")
    journal.close()
    with Journal.open(journal_url) as reader:
        assert _kinds(reader, run.id) == ["ExecutionStarted", "LogRecorded"]


def test_log_lines_of_a_dropped_handle_are_still_flushed(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        eid = journal.start("logs").id
        journal.execution(eid).log("from a handle nobody keeps")
        gc.collect()
        with Journal.open(journal_url) as reader:
            _wait_for(reader, eid, 2, FLUSH_WINDOW + SLACK)
            assert _kinds(reader, eid) == ["ExecutionStarted", "LogRecorded"]


def test_atomic_writes_all_in_one_append(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as reader:
        run = journal.start("atomic")
        seq = run.step_started("a")
        with run.atomic():
            run.step_completed(seq, "A")
            run.log("between")
            nxt = run.step_started("b")
            assert len(reader.events(run.id)) == 2  # nothing before the block ends
        assert nxt == seq + 1
        assert _kinds(reader, run.id) == [
            "ExecutionStarted", "StepStarted", "StepCompleted", "LogRecorded", "StepStarted"
        ]


def test_atomic_writes_nothing_when_the_block_raises(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("atomic")
        seq = run.step_started("a")
        run.log("before the block")  # buffered, not part of the block
        with pytest.raises(RuntimeError, match="user code"), run.atomic():
            run.step_completed(seq, "A")
            run.step_started("b")
            raise RuntimeError("user code failed")
        assert _kinds(journal, run.id) == ["ExecutionStarted", "StepStarted", "LogRecorded"]
        # The handle believes the log again: step a is still running, and it carries on.
        assert run.state.steps[seq].status == "running"
        assert run.position == 3
        run.step_completed(seq, "A2")
        completed = journal.events(run.id)[-1]
        assert isinstance(completed, StepCompleted) and completed.output == "A2"


def test_atomic_writes_nothing_when_a_call_inside_is_invalid(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("atomic")
        seq = run.step_started("a")
        with pytest.raises(Exception, match="never started"), run.atomic():
            run.step_completed(seq, "A")
            run.step_completed(seq + 5, "no such step")
        assert _kinds(journal, run.id) == ["ExecutionStarted", "StepStarted"]
        with run.atomic():
            run.step_completed(seq, "A")
            run.step_started("b")
        assert isinstance(journal.events(run.id)[-1], StepStarted)


def test_atomic_conflict_writes_nothing(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("atomic")
        rival: ExecutionHandle = journal.execution(run.id)
        rival.step_started("rival")
        with pytest.raises(ConcurrencyConflict), run.atomic():
            run.step_started("mine")
            run.log("mine too")
        assert _kinds(journal, run.id) == ["ExecutionStarted", "StepStarted"]
        assert run.state.steps[1].name == "rival"  # reloaded from the log


def test_recording_after_close_is_refused_not_lost(journal_url: str) -> None:
    from journal import JournalError

    journal = Journal.open(journal_url)
    run = journal.start("w")
    journal.close()
    with pytest.raises(JournalError, match="is closed"):
        run.log("after close")
    with pytest.raises(JournalError, match="is closed"):
        run.step_started("late")
    with Journal.open(journal_url) as again:
        assert [type(e).__name__ for e in again.events(run.id)] == ["ExecutionStarted"]
