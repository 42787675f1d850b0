"""recover() makes what it skips visible, and does not hide errors of the views."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from journal import Journal, JournalUnavailable
from runner import NonDeterministicWorkflow, Runner, RunnerError, WorkflowNotFound
from tests.runner.workflows import make_runner


def test_recover_reports_executions_it_cannot_replay(journal: Journal) -> None:
    handle = journal.start("steps_then_pause", {})
    handle.step_started("renamed")  # the workflow now calls "a" first
    gone = journal.start("retired", {}).id
    skipped: list[tuple[UUID, RunnerError]] = []
    with make_runner(journal) as runner:
        runs = runner.recover(stale_after=timedelta(0),
                              on_error=lambda eid, e: skipped.append((eid, e)))
    assert runs == []
    assert sorted((eid, type(e)) for eid, e in skipped) == sorted(
        [(handle.id, NonDeterministicWorkflow), (gone, WorkflowNotFound)])
    assert journal.state(handle.id).status == "running"


def test_stale_executions_raises_what_is_not_an_outage(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections

    stalled = journal.start("steps_then_pause", {}).id
    runner = Runner(journal)

    def broken(self: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the views")

    monkeypatch.setattr(projections.Projections, "stuck", broken)
    with pytest.raises(RuntimeError, match="a bug in the views"):
        runner.stale_executions(timedelta(0))

    def down(self: Any, **kwargs: Any) -> None:
        raise JournalUnavailable(journal.url, OSError("gone"))

    monkeypatch.setattr(projections.Projections, "stuck", down)
    assert runner.stale_executions(timedelta(0)) == [stalled]


def test_catch_up_goes_on_past_a_short_page(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a page stops short before a gap an in-flight writer may still fill:
    catching up (and so recover()) must not take that for the end of the log."""
    from projections import Projections

    stalled = [journal.start("steps_then_pause", {}).id for _ in range(12)]
    with Projections(journal, page_size=5) as views:
        real = journal.storage.read_log
        calls: list[int] = []

        def short_first(start: int, limit: int, **kw: Any) -> Any:
            calls.append(start)
            rows = real(start, limit, **kw)
            return rows[:2] if len(calls) == 1 else rows  # as if a gap followed row 2

        monkeypatch.setattr(journal.storage, "read_log", short_first)
        assert views.catch_up() == 12
        assert sorted(s.execution_id for s in views.stuck(older_than=timedelta(0))) == sorted(
            stalled)
