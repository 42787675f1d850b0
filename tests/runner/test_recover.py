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
