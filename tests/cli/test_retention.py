"""``export``, ``prune``, ``import``, ``rebuild``: nothing silently overwritten, nothing lost,
and never a running or paused execution removed."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest

from journal import ExecutionNotFound, Journal
from journal.events import Event
from projections import Projections
from runner.cli.retention import read_archive
from tests.cli import app as service
from tests.cli.conftest import Filled, Invoke


def _events(url: str, ids: list[UUID]) -> dict[UUID, list[Event]]:
    with Journal.open(url) as journal:
        return {eid: journal.events(eid) for eid in ids}


def _views(url: str) -> tuple[list[str], list[str], list[str]]:
    """What the views say, caught up: executions, their steps, costs by step."""
    with Journal.open(url) as journal, Projections(journal) as views:
        views.catch_up()
        rows = views.executions(limit=100)
        execs = sorted(str(e) for e in rows)
        steps = sorted(str(s) for e in rows for s in views.steps(e.execution_id))
        costs = [str(c) for c in views.costs("step")]
    return execs, steps, costs


def test_export_writes_atomically_skips_same_and_reports_changed(
    cli: Invoke, filled: Filled, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    r = cli("export", "--all", "--out", str(out), url=filled.url)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{e}.json" for e in filled.all)
    assert "6 written, 0 replaced, 0 unchanged" in r.stdout
    # One line for them all (each is in --json, has_output false).
    assert r.stderr == ("warning: 4 of the 6 exported execution(s) have no output (2 paused, "
                        "1 failed, 1 running): they had not completed\n")

    doc = json.loads((out / f"{filled.completed}.json").read_text())
    assert doc["summary"]["status"] == "completed"
    assert doc["summary"]["output"] == {"published": "doc-c:approved"}
    assert doc["summary"]["cost"]["usd"] == "0.0135"
    assert [e["type"] for e in doc["events"]][:3] == [
        "ExecutionStarted", "ExecutionClaimed", "StepStarted"]
    assert doc["events"][0]["execution_id"] == str(filled.completed)

    again = cli("export", "--all", "--out", str(out), url=filled.url)
    assert "0 written, 0 replaced, 6 unchanged" in again.stdout
    assert len(again.stdout.splitlines()) == 1  # only the summary: nothing was written

    with Journal.open(filled.url) as journal, service.make_runner(journal) as runner:
        runner.resume(filled.paused, {"approved": True})
    changed = cli("export", str(filled.paused)[:8], "--out", str(out), "--json", url=filled.url)
    [outcome] = json.loads(changed.stdout)
    assert outcome["action"] == "replaced" and outcome["status"] == "completed"
    text = cli("export", "--status", "completed", "--out", str(out), url=filled.url)
    assert "0 replaced, 3 unchanged" in text.stdout
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind

    _, events = read_archive(out / f"{filled.paused}.json")
    assert events == _events(filled.url, [filled.paused])[filled.paused]


def test_prune_keeps_running_and_paused_and_archives_losslessly(
    cli: Invoke, filled: Filled, tmp_path: Path
) -> None:
    before = _events(filled.url, filled.all)
    ended = [filled.completed, filled.failed, filled.retried]
    alive = [filled.paused, filled.paused2, filled.stalled]

    nothing = cli("prune", "--older-than", "30d", url=filled.url)
    assert nothing.exit_code == 0 and "pruned 0 execution(s)" in nothing.stdout

    dry = cli("prune", "--older-than", "0s", "--dry-run", "--archive", str(tmp_path / "a"),
              url=filled.url)
    assert dry.exit_code == 0, dry.output
    assert "would prune 3 execution(s)" in dry.stdout
    assert all(str(e) in dry.stdout for e in ended)
    assert not any(str(e) in dry.stdout for e in alive)
    assert not (tmp_path / "a").exists()
    assert _events(filled.url, filled.all) == before

    archive = tmp_path / "archive"
    r = cli("prune", "--older-than", "0s", "--archive", str(archive), "--json", url=filled.url)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert sorted(p["execution_id"] for p in result["pruned"]) == sorted(str(e) for e in ended)
    assert result["events_removed"] == sum(len(before[e]) for e in ended)
    assert result["costs_rebuilt"] is True

    # The live ones are untouched; the ended ones are gone from the log and from the views.
    assert _events(filled.url, alive) == {e: before[e] for e in alive}
    with Journal.open(filled.url) as journal:
        for eid in ended:
            with pytest.raises(ExecutionNotFound):
                journal.events(eid)
    listed = {row["execution_id"] for row in
              json.loads(cli("ls", "--json", url=filled.url).stdout)}
    assert listed == {str(e) for e in alive}
    models = {c["key"]: c for c in json.loads(cli("costs", "--json", "--by", "model",
                                                  url=filled.url).stdout)}
    assert models["sim-1"]["usd"] == "0.0250" and "sim-2" not in models  # the two paused
    assert cli("show", str(filled.completed), url=filled.url).exit_code == 1

    # Views rebuilt from the log say exactly what the pruned views say: nothing resurrected.
    kept = _views(filled.url)
    assert cli("rebuild", url=filled.url).exit_code == 0
    assert _views(filled.url) == kept

    # Reading the archive back loses nothing.
    for eid in ended:
        summary, events = read_archive(archive / f"{eid}.json")
        assert events == before[eid]
        assert summary["execution_id"] == str(eid)

    # And importing it puts the executions back as they were.
    imported = cli("import", *[str(archive / f"{e}.json") for e in ended], url=filled.url)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.count("imported ") == 3
    assert _events(filled.url, filled.all) == before
    total = sum(json.loads(cli("ls", "--json", url=filled.url).stdout)[i]["event_count"]
                for i in range(6))
    assert total == sum(len(v) for v in before.values())
    again = cli("import", str(archive / f"{ended[0]}.json"), url=filled.url)
    assert "already in the journal" in again.stdout


def test_rebuild_with_progress_and_only(cli: Invoke, filled: Filled) -> None:
    r = cli("rebuild", "--only", "costs", url=filled.url)
    assert r.exit_code == 0, r.output
    assert "rebuilt costs" in r.stderr and "events" in r.stderr
    doc = json.loads(cli("rebuild", "--json", url=filled.url).stdout)
    assert doc["views"] == ["executions", "steps", "costs"] and doc["events"] > 0
    assert len(json.loads(cli("ls", "--json", url=filled.url).stdout)) == 6
