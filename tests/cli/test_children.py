"""``journal show`` and ``journal ls`` on parents and their children (SQLite, PostgreSQL).

``show`` of a child names its parent and the parent's call; ``show`` of a parent lists its
children in the calls table (id, workflow, how each ended or where it is now), and the
signals that carried their ends as "end of child ID"; ``--json`` has the same (``parent``,
``parent_seq``, ``children``). ``ls`` marks children. The commands run as real processes,
from another directory than the project's; the fast path and Typer print the same.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from rich.console import Console

from journal import Journal
from runner._engine import child_id
from runner.cli import render
from runner.cli.timeline import build_timeline
from tests.cli import waiting
from tests.cli.conftest import Invoke
from tests.cli.test_fast import _NOW, _fast
from tests.cli.test_waits import _RUNNING, _journal_cli, serving, until


@pytest.fixture
def family(journal_url: str) -> dict[str, Any]:
    """Two family runs: one waiting for its third child (which waits for a signal), one
    whose third child was cancelled (the parent went on: ChildFailed)."""
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        parent = runner.run(waiting.family).id
        other = runner.run(waiting.family).id
        runner.cancel(child_id(other, 3))
        with serving(runner):
            until(lambda: journal.state(other).status == "completed",
                  what="the parent of a cancelled child to go on")
        states = {eid: journal.state(eid) for eid in (parent, other)}
    kids = [child_id(parent, seq) for seq in (1, 2, 3)]
    return {"url": journal_url, "parent": parent, "kids": kids, "other": other,
            "cancelled": child_id(other, 3), "states": states}


def _show(family: dict[str, Any], tmp_path: Path, eid: UUID, *args: str) -> str:
    done = _journal_cli(["show", str(eid), *args, "--url", family["url"]], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _section(out: str, title: str) -> list[str]:
    """The rows of one table of ``show`` (after its title and header, up to a blank line)."""
    lines = [line.rstrip() for line in out.splitlines()]
    rows = lines[lines.index(title) + 2:]
    return rows[:rows.index("")] if "" in rows else rows


def test_show_a_child_names_its_parent(family: dict[str, Any], tmp_path: Path) -> None:
    parent, kids = family["parent"], family["kids"]
    for seq, kid in enumerate(kids, start=1):
        out = _show(family, tmp_path, kid)
        assert out.splitlines()[1] == f"child of {parent} (call seq {seq})", out
    summary = json.loads(_show(family, tmp_path, kids[0], "--json"))["summary"]
    assert (summary["parent"], summary["parent_seq"]) == (str(parent), 1)
    top = json.loads(_show(family, tmp_path, parent, "--json"))["summary"]
    assert (top["parent"], top["parent_seq"]) == (None, None)
    assert "child of" not in _show(family, tmp_path, parent)


def test_show_a_parent_lists_its_children(family: dict[str, Any], tmp_path: Path) -> None:
    parent, (done, broken, open_) = family["parent"], family["kids"]
    state = family["states"][parent]
    out = _show(family, tmp_path, parent)
    ends = {s.consumed_by: s.position for s in state.signals}
    calls = _section(out, "calls")
    assert [c.split()[:3] for c in calls] == [
        ["1", "child", "'kid'"], ["2", "child", "'kid'"], ["3", "child", "'kid'"]], out
    assert f"child {done} completed (#{ends[1]})" in calls[0] and '"kid-1"' in calls[0]
    assert f"child {broken} failed (#{ends[2]})" in calls[1], out
    assert "ValueError: kid -1 broke" in calls[1]
    assert " waiting " in calls[2] and calls[2].endswith(f"child {open_} waiting"), out
    assert (f"waiting for child 'kid' {open_}, now waiting (since ") in out
    # The signals that carried the children's ends, by whose end each is.
    signals = _section(out, "signals")
    assert [s.split()[:5] for s in signals] == [
        [str(ends[1]), "end", "of", "child", str(done)],
        [str(ends[2]), "end", "of", "child", str(broken)]], out
    assert "journal.child:" not in out
    assert f"end of child {done}: completed" in out  # the timeline

    doc = json.loads(_show(family, tmp_path, parent, "--json"))
    assert doc["children"] == [
        {"seq": 1, "execution_id": str(done), "workflow": "kid", "status": "completed"},
        {"seq": 2, "execution_id": str(broken), "workflow": "kid", "status": "failed"},
        {"seq": 3, "execution_id": str(open_), "workflow": "kid", "status": "waiting"},
    ]
    assert [(c["kind"], c["outcome"], c["child"], c["child_status"]) for c in doc["calls"]] == [
        ("child", "completed", str(done), "completed"), ("child", "failed", str(broken), "failed"),
        ("child", "waiting", str(open_), "waiting")]
    assert [(s["name"], s["child"]) for s in doc["signals"]] == [
        ("journal.child:1", str(done)), ("journal.child:2", str(broken))]
    assert doc["summary"]["wait"]["kind"] == "child"


def test_show_a_parent_whose_child_was_cancelled(
    family: dict[str, Any], tmp_path: Path
) -> None:
    other, cancelled = family["other"], family["cancelled"]
    out = _show(family, tmp_path, other)
    calls = _section(out, "calls")
    assert f"child {cancelled} cancelled (#" in calls[2], out
    assert family["states"][other].output == [
        "kid-1", "failed: ValueError", "cancelled: None"]
    doc = json.loads(_show(family, tmp_path, other, "--json"))
    assert doc["children"][2] == {"seq": 3, "execution_id": str(cancelled), "workflow": "kid",
                                  "status": "cancelled"}
    kid = _show(family, tmp_path, cancelled)
    assert f"child of {other} (call seq 3)" in kid and "cancelled" in kid.splitlines()[0]


def test_show_a_child_whose_end_its_parent_has_not_taken_yet(
    journal_url: str, tmp_path: Path
) -> None:
    """The child ended, its end is in the parent's stream, the parent not woken yet."""
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        parent = runner.run(waiting.family).id
        kid = child_id(parent, 3)
        runner.cancel(kid)  # tells the parent; no serve() wakes it
        assert journal.state(parent).status == "waiting"
    done = _journal_cli(["show", str(parent), "--json", "--url", journal_url], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["children"][2]["status"] == "cancelled"
    assert (doc["calls"][2]["outcome"], doc["calls"][2]["child"]) == ("waiting", str(kid))
    assert doc["signals"][-1]["consumed_by"] is None
    out = _journal_cli(["show", str(parent), "--url", journal_url], cwd=tmp_path).stdout
    assert f"waiting for child 'kid' {kid}, now cancelled (since " in out
    assert _section(out, "calls")[2].endswith(f"child {kid} cancelled"), out


def test_a_child_the_views_have_not_seen_is_shown_as_such(journal_url: str) -> None:
    """Views behind the log (a read-only role): a running child's id is not known yet; how
    ended children ended still is (from the parent's own stream)."""
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        parent = runner.run(waiting.family).id
        events = journal.events(parent)
    timeline = build_timeline(parent, events, children=[])
    assert [(c.seq, c.execution_id, c.status) for c in timeline.children] == [
        (1, child_id(parent, 1), "completed"), (2, child_id(parent, 2), "failed"),
        (3, None, None)]
    out = io.StringIO()
    render.timeline_view(Console(file=out, width=250), timeline)
    assert _section(out.getvalue(), "calls")[2].endswith("child (not in the views yet)")


def test_ls_marks_children(family: dict[str, Any], tmp_path: Path) -> None:
    url, parent, kids = family["url"], family["parent"], family["kids"]
    done = _journal_cli(["ls", "--json", "--url", url], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {r["execution_id"]: r for r in json.loads(done.stdout)}
    assert (rows[str(parent)]["parent_id"], rows[str(parent)]["parent_seq"]) == (None, None)
    assert [(rows[str(k)]["parent_id"], rows[str(k)]["parent_seq"]) for k in kids] == [
        (str(parent), 1), (str(parent), 2), (str(parent), 3)]
    table = _journal_cli(["ls", "--url", url], cwd=tmp_path).stdout.splitlines()
    by_id = {line.split()[0]: line for line in table[1:]}
    assert by_id[str(parent)[:8]].split()[1] == "family"
    for kid in kids:
        assert by_id[str(kid)[:8]].split()[1:3] == ["↳", "kid"], table


def test_the_fast_path_and_typer_agree_on_parents_and_children(
    cli: Invoke, family: dict[str, Any]
) -> None:
    url = family["url"]
    for eid in (family["parent"], family["kids"][2], family["other"]):
        for args in (("show", str(eid)), ("show", str(eid)[:8], "--json"), ("ls",)):
            typed = cli(*args, url=url)
            assert typed.exit_code == 0, typed.output
            code, out, err = _fast(*args, url=url)
            assert (code, _still(out), err) == (0, _still(typed.stdout), typed.stderr), args


def _still(out: str) -> Any:
    """What ``show`` or ``ls`` printed, less what moves on with the clock."""
    if not out.startswith("{"):
        return _NOW.sub("_", _RUNNING.sub("_", out))
    doc = json.loads(out)
    for key in ("running_for", "since_last_event"):
        doc["summary"].pop(key, None)
    return doc
