"""``journal logs``: the last log lines of one execution or of all, oldest first, filtered by
text, level, workflow and time, on SQLite and PostgreSQL (and through a SELECT-only role)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from journal import Journal, LogRecorded
from projections import Projections
from runner import Context, Runner
from runner.cli import queries
from runner.cli.queries import level_rank, log_lines
from tests.cli.conftest import Invoke
from tests.conftest import select_only_role


def noisy(ctx: Context, n: int) -> int:
    """Three lines a run (one inside its step), an error every third run."""
    ctx.log("starting", n=n)

    def work() -> int:
        ctx.log("inside the step", level="debug")
        return n

    out: int = ctx.step("work", work)
    ctx.log("slow answer", level="warning", n=n)
    if n % 3 == 0:
        ctx.log("Timeout talking to the model", level="error", doc=f"doc-{n}")
    return out


def quiet(ctx: Context) -> str:
    """Logs nothing: never read for logs."""
    return "ok"


def chatty(ctx: Context) -> str:
    ctx.log("a level of its own", level="notice")
    ctx.log("debugging", level="debug")
    return "ok"


@pytest.fixture
def logged(journal_url: str) -> dict[str, Any]:
    """Seven ``noisy`` runs (0..6), one ``quiet``, one ``chatty``, in this order."""
    with Journal.open(journal_url) as journal, Runner(journal) as runner:
        for wf in (noisy, quiet, chatty):
            runner.register(wf)
        ids = [runner.run(noisy, n).id for n in range(7)]
        other = runner.run(chatty).id
        runner.run(quiet)
    return {"url": journal_url, "noisy": ids, "chatty": other}


def _every_line(url: str) -> list[tuple[datetime, UUID, int, str, str]]:
    """Every log line of the journal from the streams themselves, oldest first."""
    with Journal.open(url) as journal, Projections(journal) as views:
        views.catch_up()
        ids = [e.execution_id for e in views.executions(limit=1000)]
        lines = [(e.timestamp, e.execution_id, e.position, e.level, e.message)
                 for eid in ids for e in journal.events(eid) if isinstance(e, LogRecorded)]
    return sorted(lines, key=lambda ln: (ln[0], str(ln[1]), ln[2]))


def test_logs_of_all_executions_newest_last(cli: Invoke, logged: dict[str, Any]) -> None:
    url = logged["url"]
    every = _every_line(url)
    assert len(every) == 7 * 3 + 3 + 2

    r = cli("logs", "--limit", "5", url=url)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    # The last five, oldest first: chatty's two after the last noisy run's tail.
    assert [ln.split()[5] for ln in lines[-2:]] == ["a", "debugging"]
    assert lines[-1].split()[2:5] == [str(logged["chatty"])[:8], "chatty", "debug"]
    for line in lines:
        day, time, short = line.split()[:3]
        datetime.fromisoformat(f"{day}T{time}")
        assert len(short) == 8

    doc = json.loads(cli("logs", "--json", "--limit", "1000", url=url).stdout)
    assert [(d["execution_id"], d["position"]) for d in doc] == [
        (str(eid), position) for _, eid, position, _, _ in every]
    assert doc[0]["fields"] == {"n": 0} and doc[0]["workflow"] == "noisy"
    inside = next(d for d in doc if d["message"] == "inside the step")
    assert inside["seq"] == 1 and inside["level"] == "debug"


def test_logs_filter_by_level_text_workflow_and_time(cli: Invoke, logged: dict[str, Any]
                                                     ) -> None:
    url = logged["url"]

    def logs(*args: str) -> list[dict[str, Any]]:
        r = cli("logs", "--json", "--limit", "1000", *args, url=url)
        assert r.exit_code == 0, r.output
        rows: list[dict[str, Any]] = json.loads(r.stdout)
        return rows

    errors = logs("--level", "error")
    assert [d["fields"]["doc"] for d in errors] == ["doc-0", "doc-3", "doc-6"]
    # warning and above; a level of its own ("notice") counts as info: not kept.
    assert {d["level"] for d in logs("--level", "warning")} == {"warning", "error"}
    assert "a level of its own" in {d["message"] for d in logs("--level", "info")}
    assert len(logs("--level", "debug")) == len(logs())
    # Case ignored, in the message or in the fields.
    assert [d["message"] for d in logs("--grep", "TIMEOUT")] == ["Timeout talking to the "
                                                                 "model"] * 3
    assert [d["fields"] for d in logs("--grep", "doc-3")] == [{"doc": "doc-3"}]
    assert {d["workflow"] for d in logs("--workflow", "chatty")} == {"chatty"}
    assert logs("--since", "2999-01-01") == []
    assert len(logs("--since", "1h")) == len(logs())

    text = cli("logs", "--level", "error", "--grep", "nothing like it", url=url)
    assert text.exit_code == 0 and text.stdout == "no log lines match\n"


def test_logs_of_one_execution(cli: Invoke, logged: dict[str, Any]) -> None:
    url, eid = logged["url"], logged["noisy"][3]
    r = cli("logs", str(eid)[:8], url=url)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split(maxsplit=5)[4:] for ln in lines] == [
        ["info", 'starting  {"n": 3}'], ["debug", "inside the step"],
        ["warning", 'slow answer  {"n": 3}'], ["error", 'Timeout talking to the model  '
                                                        '{"doc": "doc-3"}']]
    assert all(ln.split()[2] == str(eid)[:8] and ln.split()[3] == "noisy" for ln in lines)
    last = json.loads(cli("logs", str(eid), "--json", "--limit", "1", url=url).stdout)
    assert [d["message"] for d in last] == ["Timeout talking to the model"]

    usage = cli("logs", str(eid), "--workflow", "noisy", url=url)
    assert usage.exit_code == 2 and "without an ID" in usage.stderr
    bad = cli("logs", "--level", "loud", url=url)
    assert bad.exit_code == 2 and "loud" in bad.stderr
    since = cli("logs", "--since", "yesterday-ish", url=url)
    assert since.exit_code == 1 and since.stderr.count("\n") == 1 and "--since" in since.stderr
    unknown = cli("logs", "ffffffff", url=url)
    assert unknown.exit_code == 1 and "no execution matches 'ffffffff'" in unknown.stderr


def test_the_merge_across_pages_keeps_the_last_lines(
    logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executions are read a page at a time, latest event first, and reading stops early;
    past ``_SCAN_AFTER`` streams one pass over the log takes over: with pages of two, every
    limit and filter gives the lines the streams hold, whichever way they were read."""
    monkeypatch.setattr(queries, "_LOG_PAGE", 2)
    monkeypatch.setattr(queries, "_SCAN_PAGE", 5)
    every = _every_line(logged["url"])
    for scan_after in (1000, 3, 0):
        monkeypatch.setattr(queries, "_SCAN_AFTER", scan_after)
        _check_merge(logged["url"], every)


def _check_merge(url: str, every: list[tuple[datetime, UUID, int, str, str]]) -> None:
    with Journal.open(url) as journal, Projections(journal) as views:
        for limit in (1, 2, 3, 4, 5, 8, 13, 1000, None):
            got = log_lines(journal, views, limit=limit)
            want = every if limit is None else every[-limit:]
            assert [(ln.execution_id, ln.position) for ln in got] == [
                (eid, position) for _, eid, position, _, _ in want], limit
        warned = log_lines(journal, views, level="warning", limit=4)
        want = [ln for ln in every if level_rank(ln[3]) >= 30][-4:]
        assert [(ln.execution_id, ln.position) for ln in warned] == [
            (eid, position) for _, eid, position, _, _ in want]
        cutoff = every[10][0]
        recent = log_lines(journal, views, since=cutoff, limit=None)
        assert len(recent) == sum(ln[0] >= cutoff for ln in every)
        chatty = log_lines(journal, views, workflow="chatty", limit=None)
        assert [(ln.workflow, ln.message) for ln in chatty] == [
            ("chatty", "a level of its own"), ("chatty", "debugging")]
        found = log_lines(journal, views, grep="DOC-3", limit=None)
        assert [ln.fields for ln in found] == [{"doc": "doc-3"}]
        assert log_lines(journal, views, since=datetime.now(UTC) + timedelta(1)) == []


def test_level_ranks() -> None:
    assert [level_rank(x) for x in ("debug", "info", "WARNING", "warn", "error", "critical")
            ] == [10, 20, 30, 30, 40, 50]
    assert level_rank("notice") == level_rank("info")


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
def test_logs_through_a_select_only_role(cli: Invoke, logged: dict[str, Any]) -> None:
    with Journal.open(logged["url"]) as journal, Projections(journal) as views:
        views.catch_up()
    with select_only_role(logged["url"]) as url:
        r = cli("logs", "--level", "error", "--url", url)
        assert r.exit_code == 0, r.output
        assert len(r.stdout.splitlines()) == 3 and "behind" not in r.stderr
