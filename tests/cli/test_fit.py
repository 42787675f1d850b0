"""Output that fits: at 80 columns (``COLUMNS=80``) ids keep 8 characters or more, statuses,
amounts (to the cent), workflow and step names are whole, no line is wider than 80; ``show``
of a failed run is compact. And ``ls --sort/--offset/--before``, ``stats --workflow
--limit``, help without placeholders or words cut, the catch-up progress line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from journal import Event, Journal
from runner import Context, Retry, Runner, add_cost
from runner.cli import app
from runner.cli.render import cents, compact_traceback

WORKFLOW = "summarise_contract"
STEPS = ("extract_clauses", "score_obligations")
STATUSES = ("completed", "failed", "paused", "running")


def _extract(doc: str) -> list[str]:
    add_cost(usd=Decimal("12.345678"), input_tokens=123_456, output_tokens=7_890, model="m-1")
    return [doc]


def _score(clauses: list[str], fail: bool) -> int:
    add_cost(usd=Decimal("0.001008"), input_tokens=10, model="m-2")
    if fail:
        raise TimeoutError("the model did not answer within 30s")
    return len(clauses)


def summarise_contract(ctx: Context, doc: str, fail: bool = False) -> int:
    """Two steps with long names and costs; pauses for a person unless it fails."""
    clauses = ctx.step(STEPS[0], _extract, doc)
    out: int = ctx.step(STEPS[1], _score, clauses, fail, retry=Retry(attempts=2))
    ctx.pause("legal_review", payload={"doc": doc})
    return out


@pytest.fixture
def fitted(journal_url: str) -> dict[str, Any]:
    """A paused, a failed (after a retry), a completed and a running (stalled) execution."""
    with Journal.open(journal_url) as journal, Runner(journal) as runner:
        runner.register(summarise_contract)
        paused = runner.run(summarise_contract, "doc-1").id
        failed = runner.run(summarise_contract, "doc-2", True).id
        completed = runner.run(summarise_contract, "doc-3").id
        runner.resume(completed, "ok")
        handle = journal.start(WORKFLOW, {"doc": "doc-4"})
        handle.step_started(STEPS[0])  # as a runner killed in its first step leaves it
    return {"url": journal_url, "paused": paused, "failed": failed, "completed": completed,
            "running": handle.id}


def _cli(columns: int, *args: str, url: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"JOURNAL_URL": url,
                                                      "COLUMNS": str(columns)})
    assert result.exit_code == 0, (args, result.output)
    return result


def _fits(out: str, columns: int = 80) -> list[str]:
    lines = out.splitlines()
    wide = [ln for ln in lines if len(ln.rstrip()) > columns]
    assert not wide, wide
    return lines


_CUT = re.compile(r"\w…")  # a word Rich cut short


@pytest.mark.parametrize("command", [("ls",), ("stuck", "--older-than", "0s"), ("errors",),
                                     ("costs",), ("costs", "--by", "step"), ("stats",)])
def test_tables_at_80_columns_keep_ids_statuses_names_and_amounts_whole(
    fitted: dict[str, Any], command: tuple[str, ...]
) -> None:
    url = fitted["url"]
    out = _cli(80, *command, url=url).stdout
    lines = _fits(out)
    text = " ".join(lines)
    assert not _CUT.search(out.replace("s…", "s")), out  # (an open run's duration ends in …)
    ids = [str(fitted[k]) for k in ("paused", "failed", "completed", "running")]
    if command[0] == "ls":
        for eid in ids:
            assert re.search(rf"\b{eid[:8]}", text), (eid, out)
        for status in STATUSES:
            assert re.search(rf"\b{status}\b", text), (status, out)
        assert WORKFLOW in text and f"{STEPS[1]} #2" in text
        assert text.count("$12.35") == 3 and "0.0010" not in text  # 12.345678 + 0.001008...
    elif command[0] == "stuck":
        assert re.search(rf"\b{ids[3][:8]}\b", text) and re.search(rf"\b{ids[0][:8]}\b", text)
        assert re.search(r"\brunning\b", text) and re.search(r"\bpaused\b", text)
        assert WORKFLOW in text
    elif command[0] == "errors":
        assert re.search(rf"\b{ids[1][:8]}\b", text) and "TimeoutError" in text
    elif command[0] == "costs":
        if "step" in command:
            assert STEPS[0] in text and STEPS[1] in text and "$37.04" in text
            assert "<$0.01" in text  # 4 x 0.001008 = 0.004032: under a cent, not cut
        else:
            assert WORKFLOW in text and "$37.04" in text and "0.001008" not in text
    else:
        assert STEPS[0] in text and STEPS[1] in text and "33.3%" in text


def test_amounts_stay_exact_in_json(fitted: dict[str, Any]) -> None:
    rows = json.loads(_cli(80, "costs", "--json", "--by", "model", url=fitted["url"]).stdout)
    assert {r["key"]: r["usd"] for r in rows} == {"m-1": "37.037034", "m-2": "0.004032"}
    ls = json.loads(_cli(80, "ls", "--json", url=fitted["url"]).stdout)
    assert {r["cost_usd"] for r in ls} == {"12.347694", "12.346686", "0"}


def test_cents() -> None:
    assert [cents(Decimal(x)) for x in ("0", "0.001008", "0.005", "0.0135", "1234.565",
                                        "-2.5")] == [
        "$0", "<$0.01", "$0.01", "$0.01", "$1,234.57", "-$2.50"]
    assert cents(None) == ""


def test_show_of_a_failed_run_is_compact_at_80_columns(fitted: dict[str, Any]) -> None:
    url, eid = fitted["url"], fitted["failed"]
    out = _cli(80, "show", str(eid)[:8], url=url).stdout
    lines = _fits(out)
    with Journal.open(url) as journal:
        events = journal.state(eid).position
    assert events == 9
    assert len(lines) <= 40, out
    assert str(eid) in out and "failed" in out and WORKFLOW in out
    assert f"{STEPS[1]} #2 try 2" in out  # the second attempt, in the step column
    # Each event on one line: its number first.
    numbered = [ln.split()[0] for ln in lines if re.match(r"^\s*\d+\s+\+", ln)]
    assert numbered == [str(n) for n in range(1, events + 1)], out
    assert "Traceback (most recent call last)" in out and "runner frame(s) hidden" in out
    assert "_score" in out and "^^^^" not in out and "_engine.py" not in out
    wide = _cli(200, "show", str(eid), url=url).stdout
    assert "+0." in wide and "took" in wide and "$12.35" in wide  # room for every column


def test_compact_traceback_leaves_out_the_runners_frames() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/srv/venv/lib/python3.11/site-packages/runner/_engine.py", line 848, in run\n'
        "    output = fn(*args, **kwargs)\n"
        "             ^^^^^^^^^^^^^^^^^^^\n"
        '  File "/srv/app/jobs.py", line 3, in score\n'
        '    raise TimeoutError("late")\n'
        "TimeoutError: late\n"
    )
    compact, hidden = compact_traceback(text)
    assert hidden == 1
    assert compact.splitlines() == [
        "Traceback (most recent call last):", '  File "/srv/app/jobs.py", line 3, in score',
        '    raise TimeoutError("late")', "TimeoutError: late"]


def _ids(url: str, *args: str) -> list[UUID]:
    rows = json.loads(_cli(250, "ls", "--json", *args, url=url).stdout)
    return [UUID(r["execution_id"]) for r in rows]


def test_ls_sorts_and_pages(fitted: dict[str, Any]) -> None:
    url = fitted["url"]
    rows = json.loads(_cli(250, "ls", "--json", url=url).stdout)
    newest = [UUID(r["execution_id"]) for r in rows]
    assert newest == [fitted[k] for k in ("running", "completed", "failed", "paused")]

    by_cost = json.loads(_cli(250, "ls", "--json", "--sort", "cost", url=url).stdout)
    costs = [Decimal(r["cost_usd"]) for r in by_cost]
    assert costs == sorted(costs, reverse=True) and UUID(by_cost[0]["execution_id"]) == (
        fitted["failed"])
    by_time = json.loads(_cli(250, "ls", "--json", "--sort", "duration", url=url).stdout)
    ended = [r for r in by_time if r["duration"] is not None]
    assert [r["duration"] for r in ended] == sorted((r["duration"] for r in ended),
                                                    reverse=True)
    # The open ones after the ended ones, the longest running (the oldest start) first.
    assert [UUID(r["execution_id"]) for r in by_time[len(ended):]] == [
        fitted["paused"], fitted["running"]]

    for sort in ("started", "duration", "cost"):
        whole = _ids(url, "--sort", sort)
        pages = [_ids(url, "--sort", sort, "--limit", "2", "--offset", str(n))
                 for n in (0, 2, 4)]
        assert pages[0] + pages[1] == whole and pages[2] == [], sort
    second = rows[1]["started_at"]
    assert _ids(url, "--before", second) == newest[2:]
    assert _ids(url, "--before", second, "--status", "paused") == [fitted["paused"]]
    assert _ids(url, "--before", "1h") == []
    table = _cli(250, "ls", url=url).stdout
    assert table.splitlines()[0].split()[:5] == ["id", "workflow", "status", "started", "ended"]

    bad = CliRunner().invoke(app, ["ls", "--sort", "size"], env={"JOURNAL_URL": url})
    assert bad.exit_code == 2 and "size" in bad.stderr
    bad = CliRunner().invoke(app, ["ls", "--before", "later"], env={"JOURNAL_URL": url})
    assert bad.exit_code == 1 and bad.stderr.startswith("error: invalid --before 'later'")


def test_ls_options_on_the_fast_path_are_the_typer_ones(fitted: dict[str, Any]) -> None:
    from typing import get_args

    from runner.cli import commands, fast, reads

    assert get_args(commands.LsSort) == fast.SORTS
    url = fitted["url"]
    args = ["ls", "--sort", "cost", "--offset=1", "--before", "2999-01-01", "--limit", "2"]
    call = fast.parse(args, {"JOURNAL_URL": url})
    assert call == (reads.ls, {"url": url, "sort": "cost", "offset": 1,
                               "before": "2999-01-01", "limit": 2})
    assert fast.parse(["ls", "--offset", "0"], {})[1]["offset"] == 0  # type: ignore[index]
    for odd in (["ls", "--sort", "Cost"], ["ls", "--offset", "-1"], ["ls", "--offset", "01"]):
        assert fast.parse(odd, {}) is None, odd
    from tests.cli.test_fast import _fast

    def still(out: str) -> str:
        # An open run's duration moves on between the two reads, and its cell is right
        # aligned: "99ms…" then "101ms…" differ in the padding before them too.
        return re.sub(r" *\S+…", " _", out)

    for case in (args, [*args, "--json"], ["ls", "--sort", "duration", "--before", "soon"]):
        typed = CliRunner().invoke(app, case, env={"JOURNAL_URL": url, "COLUMNS": "250"})
        code, out, err = _fast(*case, url=url)
        assert (code, still(out), err) == (typed.exit_code, still(typed.stdout),
                                           typed.stderr), case


def test_stats_of_one_workflow_and_the_worst_steps_first(fitted: dict[str, Any]) -> None:
    url = fitted["url"]
    with Journal.open(url) as journal:
        other = journal.start("other", {})
        seq = other.step_started("elsewhere")
        other.step_completed(seq, 1)
    names = [r["name"] for r in json.loads(_cli(250, "stats", "--json", url=url).stdout)]
    assert names == [STEPS[1], STEPS[0], "elsewhere"]  # 1 failure, then 3 runs, then 1 run
    only = json.loads(_cli(250, "stats", "--json", "--workflow", WORKFLOW, url=url).stdout)
    assert [r["name"] for r in only] == [STEPS[1], STEPS[0]]
    assert only[1]["runs"] == 3 and only[1]["running"] == 1
    top = json.loads(_cli(250, "stats", "--json", "--limit", "1", url=url).stdout)
    assert [r["name"] for r in top] == [STEPS[1]]
    none = _cli(80, "stats", "--workflow", "nope", url=url).stdout
    assert none == "no steps recorded for workflow nope\n"


@pytest.mark.parametrize("columns", [80, 120])
def test_help_has_no_placeholders_no_cut_words_and_an_example(columns: int) -> None:
    import typer.main

    from runner.cli.commands import EXAMPLES

    group = typer.main.get_command(app)
    assert set(EXAMPLES) == set(group.commands)  # an example for every command
    placeholder = re.compile(r"<(bool|str|int|float|path|text|int range)>|<[a-z]+\|")
    for name, command in group.commands.items():
        out = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": str(columns)}).stdout
        assert not placeholder.search(out), (name, out)
        assert f"Example: {EXAMPLES[name]}"[:40] in " ".join(out.split()), (name, out)
        # Every word of the help is printed whole: none is folded or cut at the border.
        printed = "\n".join(ln.strip(" │╭╮╰╯─") for ln in _fits(out, columns))
        words = {w for text in (command.help, *(p.help for p in command.params)) if text
                 for w in text.split()}
        assert not sorted(w for w in words if w not in printed), (name, out)
    root = CliRunner().invoke(app, ["--help"], env={"COLUMNS": str(columns)}).stdout
    _fits(root, columns)
    assert "<bool>" not in root


def test_every_read_command_says_it_catches_the_views_up_first(
    fitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind by more than ``LARGE_BACKLOG`` events (lowered here), a read command says so
    on stderr before and after (a progress bar on a terminal), instead of a silent wait."""
    import projections.api

    monkeypatch.setattr(projections.api, "LARGE_BACKLOG", 3)
    url, eid = fitted["url"], str(fitted["completed"])
    with Journal.open(url) as journal, projections.Projections(journal) as views:
        views.catch_up()
    commands = [("ls",), ("show", eid[:8]), ("logs",), ("stuck",), ("errors",), ("costs",),
                ("costs", "--since", "1h"), ("stats",), ("diff", eid[:8], eid[:9]),
                ("tail", eid[:8]), ("export", "--status", "paused", "--out", "/dev/null/x")]
    for command in commands:
        with Journal.open(url) as journal:  # five events the views have not seen
            handle = journal.start("late", {})
            for _ in range(2):
                handle.step_completed(handle.step_started("x"), 1)
        r = CliRunner().invoke(app, list(command), env={"JOURNAL_URL": url, "COLUMNS": "80"})
        assert "bringing the views up to the log: 5 events behind ..." in r.stderr, (
            command, r.output)
        assert "views up to the log in " in r.stderr, command


def _costs_from_the_log(events: list[Event], by: str, since: datetime) -> list[dict[str, Any]]:
    """``costs --since`` worked out from the events themselves, as the projector counts."""
    from journal.events import ExecutionStarted, StepCompleted, StepFailed, StepStarted

    workflows: dict[UUID, str] = {}
    names: dict[tuple[UUID, int], str] = {}
    totals: dict[str, list[Any]] = {}
    for event in events:
        eid = event.execution_id
        if isinstance(event, ExecutionStarted):
            workflows[eid] = event.workflow
        elif isinstance(event, StepStarted):
            names[(eid, event.seq)] = event.name
        if not isinstance(event, StepCompleted | StepFailed) or event.timestamp < since:
            continue
        for c in event.costs:
            key = {"workflow": workflows[eid], "step": names[(eid, event.seq)],
                   "model": c.model,
                   "day": event.timestamp.astimezone(UTC).date().isoformat()}[by]
            t = totals.setdefault(key, [Decimal(0), 0, 0, 0])
            t[0] += c.usd
            t[1] += c.input_tokens
            t[2] += c.output_tokens
            t[3] += 1
    return [{"key": k, "usd": t[0], "input_tokens": t[1], "output_tokens": t[2],
             "calls": t[3]} for k, t in sorted(totals.items())]


def test_costs_since_from_the_views_equal_the_log(fitted: dict[str, Any]) -> None:
    """Every cut-off at and between costed events, every dimension: what ``costs --since``
    reads from the views is what the log holds; after the costs view is rebuilt (in bulk,
    and page by page) too."""
    from journal.events import StepCompleted, StepFailed
    from projections import Projections

    url = fitted["url"]
    with Journal.open(url) as journal:
        events = [e for _, e in journal.notifications(limit=100_000)]
    stamps = sorted({e.timestamp for e in events
                     if isinstance(e, StepCompleted | StepFailed) and e.costs})
    cutoffs = [stamps[0] - timedelta(seconds=1), *stamps, stamps[-1] + timedelta(seconds=1)]
    dimensions = ("workflow", "step", "model", "day")

    for by in dimensions:  # through the command
        since = stamps[len(stamps) // 2]
        got = json.loads(_cli(250, "costs", "--json", "--by", by, "--since",
                              since.isoformat(), url=url).stdout)
        assert [{**g, "usd": Decimal(g["usd"])} for g in got] == _costs_from_the_log(
            events, by, since), by

    def check(views: Projections) -> None:
        for by in dimensions:
            for since in cutoffs:
                got = [{"key": c.key, "usd": c.usd, "input_tokens": c.input_tokens,
                        "output_tokens": c.output_tokens, "calls": c.calls}
                       for c in views.costs(by, since=since)]
                assert got == _costs_from_the_log(events, by, since), (by, since)
        assert views.costs(since=cutoffs[0]) == views.costs()

    with Journal.open(url) as journal, Projections(journal) as views:
        views.catch_up()
        check(views)
        views.rebuild(only=["costs"])
        check(views)
        views.rebuild(only=["costs"], bulk=False)
        check(views)


def test_views_older_than_the_cost_entries_are_built_again(fitted: dict[str, Any]) -> None:
    """A journal whose costs view predates ``proj_cost_entries`` builds the view again when
    it is opened: the totals stay, and ``--since`` finds the costs."""
    from projections import Projections
    from projections.tables import COST_ENTRIES

    url = fitted["url"]
    whole = _cli(250, "costs", "--json", url=url).stdout
    with (Journal.open(url) as journal, Projections(journal) as views,
          views.views.transaction()):
        views.views.execute(f"DROP TABLE {COST_ENTRIES.name}")
    assert _cli(250, "costs", "--json", url=url).stdout == whole
    assert _cli(250, "costs", "--json", "--since", "1h", url=url).stdout == whole


def test_export_warns_once_and_prune_says_what_the_totals_lose(
    fitted: dict[str, Any], tmp_path: Any
) -> None:
    url = fitted["url"]
    exported = CliRunner().invoke(app, ["export", "--all", "--out", str(tmp_path / "out")],
                                  env={"JOURNAL_URL": url})
    assert exported.exit_code == 0, exported.output
    assert exported.stderr == ("warning: 3 of the 4 exported execution(s) have no output "
                               "(1 failed, 1 paused, 1 running): they had not completed\n")

    def total() -> Decimal:
        rows = json.loads(_cli(250, "costs", "--json", url=url).stdout)
        return sum((Decimal(r["usd"]) for r in rows), Decimal(0))

    before = total()
    dry = _cli(250, "prune", "--older-than", "0s", "--dry-run", url=url).stdout
    assert dry.splitlines()[-1].endswith(
        "; cost totals would drop by $24.69438 with them"), dry
    done = _cli(250, "prune", "--older-than", "0s", url=url).stdout
    assert done.splitlines()[-1].endswith(
        "; cost totals drop by $24.69438 with them (costs view rebuilt)"), done
    assert before - total() == Decimal("24.69438")
    doc = json.loads(_cli(250, "prune", "--older-than", "0s", "--json", url=url).stdout)
    assert doc["usd_removed"] == "0" and doc["pruned"] == []
