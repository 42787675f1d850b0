"""The fast path of ``journal ls`` / ``journal show``: same output as Typer, none of its imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from journal import Journal
from journal.storage import DEFAULT_URL
from runner.cli import commands, fast, reads
from tests.cli.conftest import Filled, Invoke

# What ``show`` says about the present (an age, how long it has been running) moves on.
_NOW = re.compile(r"\b[0-9][0-9a-z.]* ago\b|(?<=running for )[^,]+")


def _fast(*args: str, url: str | None = None) -> tuple[int, str, str]:
    """Run ``journal ARGS`` through the fast path, in the Typer test runner's isolation."""
    call = fast.parse(list(args), {"JOURNAL_URL": url} if url else {})
    assert call is not None, f"{args} went to Typer"
    with CliRunner().isolation(env={"JOURNAL_URL": url} if url else {}) as (out, err, _):
        code = fast.run(*call)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def test_status_choices_are_the_typer_commands() -> None:
    assert get_args(commands.StatusName) == fast.STATUSES


def test_prints_what_the_typer_command_prints(cli: Invoke, filled: Filled) -> None:
    ids = {"completed": str(filled.completed), "failed": str(filled.failed)[:7],
           "paused": str(filled.paused)}
    cases: list[tuple[str, ...]] = [
        ("ls", "--json"), ("ls", "--status", "completed"), ("ls", "--status=failed", "--json"),
        ("ls", "--workflow", "review", "--limit", "1", "--json"), ("ls", "--since", "1h", "--json"),
        ("ls", "--since", "2999-01-01T00:00:00Z"), ("ls", "--since", "soon"),
        ("show", ids["completed"], "--json"), ("show", "--json", ids["failed"]),
        ("show", ids["paused"]), ("show", ids["failed"]), ("show", "0000"), ("show", "xyz"),
    ]
    for args in cases:
        typed = cli(*args, url=filled.url)
        code, out, err = _fast(*args, url=filled.url)
        assert (code, _NOW.sub("_", out), err) == (
            typed.exit_code, _NOW.sub("_", typed.stdout), typed.stderr), args


def test_a_missing_journal_fails_the_same_and_creates_nothing(cli: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    typed = cli("ls", "--url", url)
    assert typed.exit_code == 1
    assert _fast("ls", "--url", url) == (1, typed.stdout, typed.stderr)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("args", [
    [], ["ls", "--help"], ["show", "--help"], ["--help"], ["ls", "--jsn"], ["ls", "-h"],
    ["ls", "--status", "Paused"], ["ls", "--limit", "0"], ["ls", "--limit", "05"],
    ["ls", "--limit", "x"], ["ls", "--limit", "-1"], ["ls", "--url"], ["ls", "--url="],
    ["ls", "--since", "-2h"], ["ls", "extra"], ["ls", "--"], ["ls", "--json=1"],
    ["ls", "--no-json"], ["show"], ["show", "a", "b"], ["show", "-x"], ["show", "--", "-x"],
    ["show", "a", "--status", "paused"], ["stats"], ["tail"], ["LS"],
])
def test_anything_else_goes_to_typer(args: list[str]) -> None:
    assert fast.parse(args, {}) is None


def test_understands_what_click_would() -> None:
    env = {"JOURNAL_URL": "sqlite:///env.db"}
    assert fast.parse(["ls"], env) == (reads.ls, {"url": "sqlite:///env.db"})
    assert fast.parse(["ls"], {"JOURNAL_URL": ""}) == (reads.ls, {"url": DEFAULT_URL})
    assert fast.parse(["ls", "--url=sqlite:///a.db", "--limit", "5", "--limit=7", "--json",
                       "--status", "paused", "--since", "2h", "--workflow", "w"], env) == (
        reads.ls, {"url": "sqlite:///a.db", "limit": 7, "as_json": True, "status": "paused",
                   "since": "2h", "workflow": "w"})
    assert fast.parse(["show", "--url", "memory:", "3f2a"], env) == (
        reads.show, {"execution": "3f2a", "url": "memory:"})
    assert fast.parse(["ls"], {"_JOURNAL_COMPLETE": "bash_complete"}) is None


def _modules_after(args: list[str], url: str) -> tuple[str, set[str]]:
    """Run ``journal ARGS`` as its own process; what it printed and the packages it loaded."""
    code = (
        "import sys\n"
        f"sys.argv = ['journal', *{args!r}, '--url', {url!r}]\n"
        "from runner.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('\\nMODULES', ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out, _, modules = done.stdout.rpartition("\nMODULES ")
    return out, set(modules.split())


def _packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_ls_and_show_start_without_typer(tmp_path: Path) -> None:
    """Re-adding an eager import of Typer, Rich, psycopg or the runner breaks this."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        eid = journal.start("wf", {"x": 1}).id
    heavy = {"typer", "click", "pydantic", "rich", "psycopg", "psycopg_pool", "shellingham"}

    out, modules = _modules_after(["ls", "--json"], url)
    rows: list[dict[str, Any]] = json.loads(out)
    assert [r["execution_id"] for r in rows] == [str(eid)]
    assert not _packages(modules) & heavy
    assert not {"runner._runner", "runner._engine", "runner.context"} & modules

    out, modules = _modules_after(["show", str(eid)[:8], "--json"], url)
    assert json.loads(out)["summary"]["execution_id"] == str(eid)
    assert not _packages(modules) & heavy

    out, modules = _modules_after(["ls"], url)  # a table: Rich, still no Typer
    assert str(eid)[:8] in out
    assert "rich" in _packages(modules)
    assert not _packages(modules) & (heavy - {"rich"})
