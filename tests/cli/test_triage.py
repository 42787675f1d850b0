"""Failure triage on SQLite and PostgreSQL: ``journal errors`` groups failures by root
cause, ``ls --error-type/--error-contains`` filter them, ``show`` prints tracebacks; the
commands run as real processes (``ls`` through its fast path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from runner.cli.triage import normalise
from tests.cli import failing
from tests.cli.conftest import Invoke

ROOT = Path(__file__).resolve().parents[2]
UNPARSEABLE = "tests.cli.failing.Unparseable"


def _journal(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOURNAL_URL": url, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "journal", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def failures(journal_url: str) -> dict[str, Any]:
    """Three timeouts (31 s, 29 s, 30 s), two KeyErrors, one Unparseable, one success."""
    ids: dict[str, list[UUID]] = {"timeout": [], "key": [], "parse": []}
    with Journal.open(journal_url) as journal, failing.make_runner(journal) as runner:
        for kind, n in (("timeout", 31), ("key", 7), ("timeout", 29), ("parse", 2),
                        ("key", 12), ("timeout", 30)):
            run = runner.run(failing.fetch, kind, n)
            assert run.status == "failed"
            ids[kind].append(run.id)
    return {"url": journal_url, "ids": ids}


def test_normalise_leaves_out_what_varies() -> None:
    assert normalise("upstream timeout after 31s") == normalise("upstream timeout after 29s")
    assert normalise("upstream timeout after 31s") == "upstream timeout after <n>s"
    assert normalise("row 3f2a9c1e7b0d not found in 8c1d2e3f-0000-4000-8000-00000000000a") == (
        "row <id> not found in <id>")
    assert normalise("  two\n lines ") == "two lines"
    assert normalise("deadbeef cafe") == "deadbeef cafe"  # words of hex letters are words


def test_errors_groups_failures_by_root_cause(failures: dict[str, Any]) -> None:
    ids = failures["ids"]
    out = _journal("errors", "--json", url=failures["url"])
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)
    assert [(g["error_type"], g["message"], g["count"]) for g in groups] == [
        ("TimeoutError", "upstream timeout after <n>s", 3),
        ("KeyError", "'doc-<n>'", 2),
        (UNPARSEABLE, "cannot parse page <n> of <id>", 1),
    ]
    # The example is the latest of each cause, with its message as it was.
    assert groups[0]["example_id"] == str(ids["timeout"][-1])
    assert groups[0]["example_message"] == "upstream timeout after 30s"
    assert groups[1]["workflows"] == ["fetch"]

    table = _journal("errors", "--since", "1h", url=failures["url"])
    assert table.returncode == 0, table.stderr
    assert str(ids["timeout"][-1])[:8] in table.stdout
    assert "TimeoutError: upstream timeout after <n>s" in table.stdout
    assert "6 failed execution(s), 3 cause(s)" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    later = _journal("errors", "--since", "2999-01-01", url=failures["url"])
    assert later.returncode == 0 and "no failed executions" in later.stdout


def test_ls_filters_by_error_type_and_text(failures: dict[str, Any], cli: Invoke) -> None:
    ids, url = failures["ids"], failures["url"]

    def listed(*args: str) -> set[str]:
        out = _journal("ls", "--json", *args, url=url)
        assert out.returncode == 0, out.stderr
        return {r["execution_id"] for r in json.loads(out.stdout)}

    def each(kind: str) -> set[str]:
        return {str(e) for e in ids[kind]}

    assert listed("--error-type", "TimeoutError") == each("timeout")
    assert listed("--error-type", UNPARSEABLE) == each("parse")
    assert listed("--error-type", "Unparseable") == each("parse")
    assert listed("--error-type", "failing.Unparseable") == each("parse")
    assert listed("--error-type", "parseable") == set()  # a last dotted part, whole
    assert listed("--error-contains", "AFTER 31") == {str(ids["timeout"][0])}
    assert listed("--error-contains", "doc-") == each("key")
    assert listed("--error-contains", "%") == set()  # LIKE's wildcards are plain text
    assert listed("--error-type", "KeyError", "--error-contains", "timeout") == set()
    # The Typer command takes the same options.
    r = cli("ls", "--error-type", "KeyError", "--error-contains", "doc-12", "--json", url=url)
    assert r.exit_code == 0, r.output
    assert [row["execution_id"] for row in json.loads(r.stdout)] == [str(ids["key"][1])]


def test_show_prints_the_failed_steps_traceback(failures: dict[str, Any]) -> None:
    eid = failures["ids"]["parse"][0]
    out = _journal("show", str(eid)[:8], url=failures["url"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"traceback of step call #1 ({UNPARSEABLE}: cannot parse page 2" in text
    assert "Traceback (most recent call last)" in text
    assert 'in call\n' in text and "raise Unparseable(" in text
    # The workflow's traceback beside it, without the step's again (its cause).
    assert "the step's traceback above is its cause" in text
    assert text.count("raise Unparseable(") == 1 and "in fetch\n" in text
