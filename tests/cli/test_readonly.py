"""Reading a journal one cannot (or must not) write to, and naming what is wrong with a path.

* PostgreSQL, a SELECT-only role: every read command works from what the views hold; when
  the log is ahead of the views, they say so on stderr (how far behind) and still list.
* SQLite, a file that does not exist: read commands say "no journal at <path>" and create
  nothing; a malformed ``sqlite:/x`` shows the right form.
* SQLite, local file trouble (a directory, a corrupt file, a database that is not a journal):
  a named error that says what is wrong with the path, never "check that the database is
  running" (that is for a server that is not there).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import projections
from journal import Journal, JournalUnavailable
from journal.errors import JournalNotFound, NotAJournal
from projections import Projections
from projections.errors import ViewsBehind
from tests.cli.conftest import Filled, Invoke
from tests.conftest import select_only_role

SERVER_DOWN = "check that the database is running"


# -- (a) PostgreSQL, a SELECT-only role --------------------------------------------------------


@pytest.fixture
def readonly_url(filled: Filled) -> Iterator[str]:
    """The filled journal's URL for a new role that may only SELECT (views caught up first)."""
    with Journal.open(filled.url) as journal, Projections(journal) as views:
        views.catch_up()  # the owner creates and fills the views' tables
    with select_only_role(filled.url) as url:
        yield url


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
def test_read_commands_with_a_select_only_role(
    cli: Invoke, filled: Filled, readonly_url: str, tmp_path: Path
) -> None:
    def read(*args: str) -> tuple[str, str]:
        r = cli(*args, "--url", readonly_url)
        assert r.exit_code == 0, (args, r.output)
        return r.stdout, r.stderr

    out, err = read("ls")
    for eid in filled.all:
        assert str(eid)[:8] in out
    assert "behind" not in err  # the views are up to date: nothing to say
    rows = json.loads(read("ls", "--json")[0])
    assert {row["execution_id"] for row in rows} == {str(e) for e in filled.all}

    out, _ = read("show", str(filled.completed)[:8])
    assert str(filled.completed) in out and "publish" in out and "$0.0135" in out
    out, _ = read("tail", str(filled.completed))
    assert "execution started" in out and "execution completed" in out.splitlines()[-1]
    out, _ = read("stuck", "--older-than", "0s")
    assert str(filled.stalled)[:8] in out and "orphaned in step work" in out
    out, _ = read("costs")
    assert "review" in out and "total" in out
    costs = json.loads(read("costs", "--json", "--by", "model")[0])
    assert {row["key"] for row in costs} == {"sim-1", "sim-2"}
    out, _ = read("stats")
    assert "explode" in out and "100.0%" in out
    exported = tmp_path / "exported"
    out, _ = read("export", "--all", "--out", str(exported))
    assert "exported 6 execution(s)" in out
    assert sorted(p.name for p in exported.iterdir()) == sorted(f"{e}.json" for e in filled.all)

    # The library: no DDL from Projections on existing tables, nothing to apply is fine, and
    # something to apply that cannot be written is ViewsBehind.
    with Journal.open(readonly_url, create=False) as ro, Projections(ro) as views:
        assert views.catch_up() == 0
        with Journal.open(filled.url) as owner:  # the owner writes on: 3 events
            late = owner.start("late", {"n": 1})
            seq = late.step_started("x")
            late.step_completed(seq, 1)
        with pytest.raises(ViewsBehind) as info:
            views.catch_up()
        behind = info.value
        assert behind.behind == 3 and behind.head - behind.position == 3, vars(behind)
        summary = views.execution(filled.completed)  # still reads what the views hold
        assert summary is not None and summary.status == "completed"

    r = cli("ls", "--url", readonly_url)
    assert r.exit_code == 0, r.output
    for eid in filled.all:
        assert str(eid)[:8] in r.stdout
    warning = r.stderr.lower()
    assert "behind" in warning and "event" in warning, r.stderr
    assert re.search(r"\b3\b", warning), f"how far behind (3 events)? {r.stderr}"
    assert "traceback" not in warning
    for args in (("stuck", "--older-than", "0s"), ("costs",), ("stats",)):
        r = cli(*args, "--url", readonly_url)
        assert r.exit_code == 0, (args, r.output)
        assert "behind" in r.stderr.lower(), (args, r.stderr)


def test_views_behind_is_exported_with_the_other_projection_errors() -> None:
    assert getattr(projections, "ViewsBehind", None) is ViewsBehind
    assert issubclass(ViewsBehind, projections.ProjectionError)


# -- (b) SQLite, no journal there ----------------------------------------------------------------


READ_COMMANDS: list[tuple[str, ...]] = [
    ("ls",), ("show", "3f2a"), ("tail", "--timeout", "2"), ("stuck",), ("costs",), ("stats",),
    ("export", "--all", "--out"),
]


def _read_args(command: tuple[str, ...], out: Path) -> list[str]:
    return [*command, str(out)] if command[0] == "export" else list(command)


def test_read_commands_on_a_missing_file_create_nothing(
    cli: Invoke, tmp_path: Path
) -> None:
    missing = tmp_path / "jounral.db"  # a typo: the journal is journal.db, elsewhere
    url = f"sqlite:///{missing}"
    for command in READ_COMMANDS:
        r = cli(*_read_args(command, tmp_path / "out"), "--url", url)
        assert r.exit_code != 0, (command, r.output)
        assert "no journal at" in r.stderr and str(missing) in r.stderr, (command, r.stderr)
        assert SERVER_DOWN not in r.output and "Traceback" not in r.output
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("jounral")], command


def test_a_malformed_sqlite_url_shows_the_right_form(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    existed = os.path.exists("/x")
    r = cli("ls", "--url", "sqlite:/x")
    assert r.exit_code != 0, r.output
    assert "sqlite:///" in r.stderr, r.stderr
    with pytest.raises(ValueError, match="sqlite:///") as info:
        Journal.open("sqlite:/x")
    assert "sqlite:///relative.db" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert os.path.exists("/x") == existed


def test_open_without_create_raises_not_found_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "journal.db"
    with pytest.raises(JournalNotFound) as info:
        Journal.open(f"sqlite:///{missing}", create=False)
    message = str(info.value)
    assert "no journal at" in message and str(missing) in message
    assert SERVER_DOWN not in message
    assert isinstance(info.value, JournalUnavailable)
    assert list(tmp_path.iterdir()) == []  # no .db, no -wal, no -shm, no .leases

    monkeypatch.chdir(tmp_path)
    with pytest.raises(JournalNotFound, match=r"rel\.db"):
        Journal.open("sqlite:///rel.db", create=False)
    assert list(tmp_path.iterdir()) == []

    Journal.open(f"sqlite:///{missing}").close()  # created when allowed to
    with Journal.open(f"sqlite:///{missing}", create=False) as journal:
        journal.start("found")  # and then create=False opens it


# -- (c) SQLite, local file trouble gets a name -------------------------------------------------


def _assert_named(error: JournalUnavailable, path: Path) -> None:
    message = str(error)
    assert type(error) is not JournalUnavailable, message
    assert str(path) in message, message
    assert SERVER_DOWN not in message, message


def _assert_cli_names(cli: Invoke, path: Path) -> None:
    r = cli("ls", "--url", f"sqlite:///{path}")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: ") and str(path) in r.stderr, r.stderr
    assert SERVER_DOWN not in r.output and "Traceback" not in r.output


def test_a_directory_is_not_a_journal(cli: Invoke, tmp_path: Path) -> None:
    directory = tmp_path / "journal.db"
    directory.mkdir()
    for create in (True, False):
        with pytest.raises(NotAJournal) as info:
            Journal.open(f"sqlite:///{directory}", create=create)
        _assert_named(info.value, directory)
    _assert_cli_names(cli, directory)
    assert list(tmp_path.iterdir()) == [directory]
    assert list(directory.iterdir()) == []


def test_a_file_of_random_bytes_is_not_a_journal(cli: Invoke, tmp_path: Path) -> None:
    corrupt = tmp_path / "journal.db"
    data = b"not sqlite" + os.urandom(8192)
    corrupt.write_bytes(data)
    for create in (False, True):
        with pytest.raises(NotAJournal) as info:
            Journal.open(f"sqlite:///{corrupt}", create=create)
        _assert_named(info.value, corrupt)
        if not create:
            assert list(tmp_path.iterdir()) == [corrupt]
    _assert_cli_names(cli, corrupt)
    assert corrupt.read_bytes() == data  # never overwritten


def test_a_database_that_is_not_a_journal_is_left_alone(cli: Invoke, tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(JournalUnavailable) as info:
        Journal.open(f"sqlite:///{other}", create=False)
    assert isinstance(info.value, JournalNotFound | NotAJournal), repr(info.value)
    _assert_named(info.value, other)
    _assert_cli_names(cli, other)
    assert other.read_bytes() == before  # no table created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
