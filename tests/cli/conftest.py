"""A journal filled by real runs through the Runner, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from journal import Journal
from runner.cli import app
from tests.cli import app as service


@dataclasses.dataclass(frozen=True)
class Filled:
    """The URL of a journal and the executions the fixture recorded in it."""

    url: str
    paused: UUID
    paused2: UUID
    completed: UUID
    failed: UUID
    retried: UUID
    stalled: UUID

    @property
    def all(self) -> list[UUID]:
        return [self.paused, self.paused2, self.completed, self.failed, self.retried,
                self.stalled]


@pytest.fixture
def filled(journal_url: str) -> Filled:
    """Six executions: two paused, one completed (after resume), one failed, one retried
    (completed), one left running mid-step as by a dead runner."""
    with Journal.open(journal_url) as journal, service.make_runner(journal) as runner:
        paused = runner.run(service.review, "doc-a").id
        paused2 = runner.run(service.review, "doc-b").id
        completed = runner.run(service.review, "doc-c").id
        runner.resume(completed, {"approved": True})
        failed = runner.run(service.broken, "doc-d").id
        retried = runner.run(service.retried, f"key-{paused}").id
        stalled = service.stall(journal)
    return Filled(url=journal_url, paused=paused, paused2=paused2, completed=completed,
                  failed=failed, retried=retried, stalled=stalled)


Invoke = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``journal ARGS`` in-process; wide output so table cells are not cut."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("JOURNAL_URL", raising=False)  # restored even if a command sets it
    runner = CliRunner()

    def invoke(*args: str, url: str | None = None) -> Result:
        env = {"JOURNAL_URL": url} if url else {}
        return runner.invoke(app, list(args), env=env)

    return invoke
