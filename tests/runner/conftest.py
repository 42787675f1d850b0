"""Fixtures of the runner tests: a journal on SQLite and PostgreSQL, and an effects file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import Journal
from runner import Runner
from tests.runner import workflows


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file in-process step functions append their side effects to."""
    path = tmp_path / "effects.txt"
    monkeypatch.setattr(workflows, "COUNTER", str(path))
    monkeypatch.setattr(workflows, "_flaky_calls", {})
    return path


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    """An empty journal (SQLite file, or a fresh PostgreSQL schema), closed afterwards."""
    with Journal.open(journal_url) as j:
        yield j


@pytest.fixture
def runner(journal: Journal) -> Iterator[Runner]:
    """A runner with every test workflow registered."""
    with workflows.make_runner(journal) as r:
        yield r
