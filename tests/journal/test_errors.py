"""What the journal says when something is wrong: unreachable database, unknown id, bad moves."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from journal import (
    ExecutionNotFound,
    ExecutionStarted,
    InvalidTransition,
    Journal,
    JournalError,
    JournalNotFound,
    JournalUnavailable,
)
from journal.errors import mask_url


def test_unreachable_postgres_masks_the_password() -> None:
    url = "postgresql://postgres:secretpw@127.0.0.1:1/x?connect_timeout=1"
    with pytest.raises(JournalUnavailable) as info:
        Journal.open(url)
    message = str(info.value)
    assert "secretpw" not in message
    assert "postgresql://postgres:***@127.0.0.1:1/x" in message
    assert info.value.url == "postgresql://postgres:***@127.0.0.1:1/x?connect_timeout=1"
    assert isinstance(info.value, JournalError)
    assert info.value.__cause__ is not None  # the driver's error is kept, not swallowed


def test_sqlite_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "j.db"
    with pytest.raises(JournalNotFound, match="does not exist") as info:
        Journal.open(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert "check that the database is running" not in str(info.value)
    assert not (tmp_path / "no").exists()


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported journal URL"):
        Journal.open("mysql://localhost/db")


def test_unknown_execution(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        missing = uuid4()
        for call in (journal.events, journal.state, journal.execution):
            with pytest.raises(ExecutionNotFound) as info:
                call(missing)
            assert info.value.execution_id == missing
            assert str(missing) in str(info.value)
        with pytest.raises(ExecutionNotFound):
            journal.state(str(missing))  # ids as strings too


def test_idempotent_start_returns_the_first_execution(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as other:
        first = journal.start("order", {"n": 1}, idempotency_key="order-42")
        first.step_started("charge")
        again = journal.start("order", {"n": 1}, idempotency_key="order-42")
        from_elsewhere = other.start("order", {"n": 2}, idempotency_key="order-42")
        assert again.id == first.id == from_elsewhere.id
        assert again.position == from_elsewhere.position == 2  # positioned at the end
        events = journal.events(first.id)
        assert [type(e).__name__ for e in events] == ["ExecutionStarted", "StepStarted"]
        assert isinstance(events[0], ExecutionStarted)
        assert events[0].idempotency_key == "order-42"
        assert events[0].input == {"n": 1}
        other_key = journal.start("order", idempotency_key="order-43")
        assert other_key.id != first.id


def test_starting_an_existing_id_again_is_invalid(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("wf")
        with pytest.raises(InvalidTransition) as info:
            journal.start("wf", execution_id=run.id)
        assert info.value.event == "ExecutionStarted"
        assert str(run.id) in str(info.value)
        assert len(journal.events(run.id)) == 1


def test_invalid_transition_messages_name_execution_status_and_event(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("wf")
        cases = []
        with pytest.raises(InvalidTransition) as info:
            run.resumed("x")
        cases.append((info.value, "running", "ExecutionResumed"))
        with pytest.raises(InvalidTransition) as info:
            run.step_completed(7, "never started")
        cases.append((info.value, "running", "StepCompleted"))
        run.paused("human_review")
        with pytest.raises(InvalidTransition) as info:
            run.step_started("while paused")
        cases.append((info.value, "paused", "StepStarted"))
        run.resumed()
        seq = run.step_started("s")
        with pytest.raises(InvalidTransition, match="still running") as info:
            run.completed()
        cases.append((info.value, "running", "ExecutionCompleted"))
        run.step_completed(seq)
        with pytest.raises(InvalidTransition, match="not running") as info:
            run.step_completed(seq)
        cases.append((info.value, "running", "StepCompleted"))
        run.completed("done")
        with pytest.raises(InvalidTransition, match="nothing can follow") as info:
            run.log("late")
        cases.append((info.value, "completed", "LogRecorded"))
        with pytest.raises(InvalidTransition, match="nothing can follow") as info:
            run.cancelled("late")
        cases.append((info.value, "completed", "ExecutionCancelled"))
        for error, status, event in cases:
            assert (error.execution_id, error.status, error.event) == (run.id, status, event)
            message = str(error)
            assert str(run.id) in message and f"status {status}" in message and event in message
        assert [type(e).__name__ for e in journal.events(run.id)] == [
            "ExecutionStarted", "ExecutionPaused", "ExecutionResumed", "StepStarted",
            "StepCompleted", "ExecutionCompleted",
        ]


def test_only_the_first_start_with_an_idempotency_key_created_the_execution(
    journal_url: str,
) -> None:
    with Journal.open(journal_url) as first, Journal.open(journal_url) as second:
        a = first.start("w", idempotency_key="order-42")
        b = second.start("w", idempotency_key="order-42")
        assert a.id == b.id
        assert (a.created, b.created) == (True, False)
        assert len(first.events(a.id)) == 1
