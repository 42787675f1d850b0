"""``journal demo`` runs the runner's demo against the journal it is given."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from runner.cli import commands
from tests.cli.conftest import Invoke


def test_demo_runs_and_its_execution_is_listed(cli: Invoke, journal_url: str) -> None:
    r = cli("demo", url=journal_url)
    assert r.exit_code == 0, r.output
    assert "completed" in r.stdout
    rows = json.loads(cli("ls", "--json", url=journal_url).stdout)
    assert [(row["workflow"], row["status"]) for row in rows] == [
        ("document_review", "completed")
    ]
    shown = cli("show", rows[0]["execution_id"][:8], url=journal_url)
    assert "execution resumed" in shown.stdout and "human_review" in shown.stdout


def test_demo_gets_the_url_by_environment_not_argv(
    cli: Invoke, journal_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = journal_url
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def spy(args: list[str], **kwargs: Any) -> Any:
        seen.append((list(args), dict(kwargs.get("env") or {})))
        return real(args, **kwargs)

    monkeypatch.setattr(commands.subprocess, "run", spy)
    r = cli("demo", url=url)
    assert r.exit_code == 0, r.output
    [(argv, env)] = seen
    assert not any(url in a for a in argv) and "--url" not in argv
    assert env["JOURNAL_URL"] == url
