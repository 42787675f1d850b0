"""``resume``, ``recover``, ``cancel`` through the CLI, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest

from journal import Journal
from tests.cli import app as service
from tests.cli.conftest import Filled, Invoke

APP = "tests.cli.app:runner"


def _state(url: str, eid: UUID) -> str:
    with Journal.open(url) as journal:
        return journal.state(eid).status


def test_resume_continues_a_paused_execution_through_the_app(
    cli: Invoke, filled: Filled
) -> None:
    r = cli("resume", str(filled.paused)[:8], "--app", APP, "--value", '{"approved": true}',
            url=filled.url)
    assert r.exit_code == 0, r.output
    assert "completed" in r.stdout and "doc-a:approved" in r.stdout
    assert _state(filled.url, filled.paused) == "completed"

    doc = json.loads(cli("resume", str(filled.paused2), "--app", APP, "--json",
                         "--value", '{"approved": false}', url=filled.url).stdout)
    assert doc["status"] == "completed" and doc["output"] == {"published": "doc-b:rejected"}

    again = cli("resume", str(filled.paused), "--app", APP, url=filled.url)
    assert again.exit_code == 1
    assert again.stderr.count("\n") == 1 and "already completed" in again.stderr


def test_recover_finishes_what_a_dead_runner_left(cli: Invoke, filled: Filled) -> None:
    r = cli("recover", "--app", APP, "--stale-after", "0s", url=filled.url)
    assert r.exit_code == 0, r.output
    assert str(filled.stalled) in r.stdout and "recovered 1 execution(s)" in r.stdout
    assert _state(filled.url, filled.stalled) == "completed"
    assert _state(filled.url, filled.paused) == "paused"  # paused ones wait for a person
    again = json.loads(cli("recover", "--app", APP, "--stale-after", "0s", "--json",
                           url=filled.url).stdout)
    assert again == []
    stuck = json.loads(cli("stuck", "--older-than", "0s", "--json", url=filled.url).stdout)
    assert {row["kind"] for row in stuck} == {"human"}  # no orphan left: only the pauses


def test_cancel_records_the_reason(cli: Invoke, filled: Filled) -> None:
    r = cli("cancel", str(filled.paused2)[:7], "--reason", "customer withdrew", url=filled.url)
    assert r.exit_code == 0, r.output
    assert "cancelled" in r.stdout and "customer withdrew" in r.stdout
    shown = cli("show", str(filled.paused2), url=filled.url).stdout
    assert "execution cancelled" in shown and "customer withdrew" in shown
    again = cli("cancel", str(filled.paused2), url=filled.url)
    assert again.exit_code == 1 and "already cancelled" in again.stderr


def _one_line_error(r: object, *needles: str, code: int = 1) -> str:
    exit_code = getattr(r, "exit_code")  # noqa: B009
    stderr: str = getattr(r, "stderr")  # noqa: B009
    assert exit_code == code, (exit_code, stderr, getattr(r, "stdout"))  # noqa: B009
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)
    return stderr


def test_bad_input_gives_one_line_and_non_zero_exit(cli: Invoke, journal_url: str) -> None:
    twins = [UUID("abcdef01-0000-4000-8000-000000000001"),
             UUID("abcdef01-0000-4000-8000-000000000002")]
    with Journal.open(journal_url) as journal:
        for eid in twins:
            journal.start("manual", {"n": 1}, execution_id=eid).completed("done")

    _one_line_error(cli("show", "0123", url=journal_url), "no execution matches '0123'")
    _one_line_error(cli("show", str(UUID(int=7)), url=journal_url), "no execution matches")
    _one_line_error(cli("show", "not-an-id!", url=journal_url), "no execution matches")
    _one_line_error(cli("show", "abcdef01", url=journal_url), "ambiguous", str(twins[0]),
                    str(twins[1]))
    assert cli("show", "abcdef01-0000-4000-8000-0000000000", url=journal_url).exit_code == 1
    ok = cli("show", "abcdef01000040008000000000000002", url=journal_url)  # no dashes
    assert ok.exit_code == 0 and str(twins[1]) in ok.stdout

    _one_line_error(cli("ls", "--since", "yesterday", url=journal_url), "invalid --since",
                    "2h")
    _one_line_error(cli("stuck", "--older-than", "5 minutes", url=journal_url),
                    "invalid --older-than")
    _one_line_error(cli("prune", "--older-than", "soon", url=journal_url),
                    "invalid --older-than")
    _one_line_error(cli("ls", "--status", "lost", url=journal_url), "--status", code=2)
    _one_line_error(cli("costs", "--by", "colour", url=journal_url), "--by", code=2)
    _one_line_error(cli("export", "--out", "x", url=journal_url), "exactly one", code=2)
    _one_line_error(cli("show", url=journal_url), "Missing argument", code=2)
    _one_line_error(cli("resume", str(twins[0]), "--app", APP, "--value", "{nope",
                        url=journal_url), "invalid --value")
    _one_line_error(cli("recover", "--app", "tests.cli.nowhere:runner", url=journal_url),
                    "cannot import")
    _one_line_error(cli("recover", "--app", "tests.cli.app", url=journal_url), "module:attr")
    _one_line_error(cli("recover", "--app", "tests.cli.app:WORKFLOWS", url=journal_url),
                    "not a runner.Runner")
    _one_line_error(cli("rebuild", "--only", "bogus", url=journal_url), "unknown view bogus")


@pytest.mark.parametrize("command", [
    ["ls", "--json"], ["show", "abc"], ["cancel", "abc"], ["prune", "--older-than", "30d"],
])
def test_unreachable_database_masks_the_password(cli: Invoke, command: list[str]) -> None:
    url = "postgresql://u:secret@127.0.0.1:1/x?connect_timeout=1"
    r = cli(*command, url=url)
    err = _one_line_error(r, "unavailable", "u:***@127.0.0.1:1")
    assert "secret" not in err and "secret" not in r.stdout


def test_recover_names_what_it_cannot_replay_and_fails(cli: Invoke, journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        ok = service.stall(journal)
        handle = journal.start("slow", {})
        handle.step_started("renamed")  # the code now calls "work" here
        diverged = handle.id
        gone = journal.start("retired", {}).id  # no workflow of that name any more
    r = cli("recover", "--app", APP, "--stale-after", "0s", url=journal_url)
    assert r.exit_code == 1, r.output
    assert str(ok) in r.stdout and "recovered 1 execution(s)" in r.stdout
    lines = r.stderr.splitlines()
    assert any(f"execution {diverged} not recovered" in ln and "'renamed'" in ln for ln in lines)
    assert any(f"execution {gone} not recovered" in ln and "'retired'" in ln for ln in lines)
    assert lines[-1] == "error: 2 execution(s) could not be recovered and are still running"
    assert _state(journal_url, diverged) == "running" and _state(journal_url, gone) == "running"

    again = cli("recover", "--app", APP, "--stale-after", "0s", "--json", url=journal_url)
    assert again.exit_code == 1 and json.loads(again.stdout) == []
    assert "nothing to recover" not in again.stdout


@pytest.mark.parametrize("command", [["resume", "0123abcd"], ["recover"]])
def test_an_app_on_another_journal_is_refused(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("OTHER_JOURNAL_URL", other)
    url = "postgresql://u:hunter2@127.0.0.1:1/x"
    r = cli(*command, "--app", "tests.cli.app:elsewhere", url=url)
    err = _one_line_error(r, other, "postgresql://u:***@127.0.0.1:1/x")
    assert "hunter2" not in err and "hunter2" not in r.stdout
