"""``ls``, ``show``, ``tail``, ``stuck``, ``costs``, ``stats``: content and ``--json``."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

from journal import Journal
from tests.cli import app as service
from tests.cli.conftest import Filled, Invoke


def test_ls_lists_every_execution_with_its_facts(cli: Invoke, filled: Filled) -> None:
    r = cli("ls", url=filled.url)
    assert r.exit_code == 0, r.output
    for eid in filled.all:
        assert str(eid)[:8] in r.stdout
    assert "human_review" in r.stdout and "explode #1" in r.stdout
    # fetch 0.0125 + publish 0.001 of the completed review: to the cent in the table.
    assert "$0.01\n" in r.stdout and "$0.0135" not in r.stdout

    rows = json.loads(cli("ls", "--json", url=filled.url).stdout)
    by_id = {row["execution_id"]: row for row in rows}
    assert set(by_id) == {str(e) for e in filled.all}
    done = by_id[str(filled.completed)]
    assert done["status"] == "completed" and done["cost_usd"] == "0.0135"
    assert done["last_started_step"]["name"] == "publish"
    assert by_id[str(filled.failed)]["error_step"] == "explode"
    assert by_id[str(filled.stalled)]["status"] == "running"

    paused = json.loads(cli("ls", "--json", "--status", "paused", url=filled.url).stdout)
    assert {row["execution_id"] for row in paused} == {str(filled.paused), str(filled.paused2)}
    only = json.loads(cli("ls", "--json", "--workflow", "broken", url=filled.url).stdout)
    assert [row["execution_id"] for row in only] == [str(filled.failed)]
    assert len(json.loads(cli("ls", "--json", "--limit", "2", url=filled.url).stdout)) == 2
    recent = json.loads(cli("ls", "--json", "--since", "1h", url=filled.url).stdout)
    assert len(recent) == 6
    future = cli("ls", "--since", "2999-01-01T00:00:00Z", url=filled.url)
    assert future.exit_code == 0 and "no executions" in future.stdout


def test_show_prints_the_timeline_of_a_prefix(cli: Invoke, filled: Filled) -> None:
    r = cli("show", str(filled.paused)[:6], url=filled.url)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert str(filled.paused) in out and "paused" in out
    assert "paused for human 'human_review', no deadline (since " in out
    assert '"doc": "doc-a"' in out  # pause payload preview
    assert "last event" in out  # how long an unfinished execution has been quiet
    assert "step started" in out and "fetch #1" in out and "+0." in out  # offsets
    assert "$0.0125" in out and "log info" in out and "fetched" in out

    failed = cli("show", str(filled.failed), url=filled.url).stdout
    assert "ValueError: cannot parse doc-d" in failed and "gave up" in failed
    assert "traceback of step explode #1 (ValueError: cannot parse doc-d):" in failed
    assert "Traceback (most recent call last)" in failed

    retried = cli("show", str(filled.retried), url=filled.url).stdout
    assert "ConnectionError: rate limited" in retried and "will retry" in retried

    doc = json.loads(cli("show", "--json", str(filled.retried), url=filled.url).stdout)
    assert doc["summary"]["status"] == "completed" and doc["summary"]["output"] == "ok"
    assert doc["summary"]["cost"]["usd"] == "0.004"
    assert [e["position"] for e in doc["timeline"]] == list(range(1, len(doc["timeline"]) + 1))
    assert doc["steps"] == [{
        "seq": 1, "name": "flaky", "status": "completed", "attempts": 2,
        "duration": doc["steps"][0]["duration"], "cost_usd": "0.004", "input_tokens": 0,
        "output_tokens": 0, "error": None, "traceback": None,
    }]
    attempts = [e["attempt"] for e in doc["timeline"] if e["step"] == "flaky"]
    assert attempts == [1, 1, 2, 2]


def test_tail_follows_new_events_and_one_execution_to_its_end(
    cli: Invoke, filled: Filled
) -> None:
    # One finished execution: its history, then it stops by itself at the terminal event.
    r = cli("tail", str(filled.completed)[:8], url=filled.url)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "execution started" in lines[0] and "execution completed" in lines[-1]
    assert "execution resumed" in r.stdout

    def later() -> None:
        time.sleep(0.5)
        with Journal.open(filled.url) as journal, service.make_runner(journal) as runner:
            runner.run(service.retried, f"tail-{filled.url}")

    thread = threading.Thread(target=later)
    thread.start()
    try:
        r = cli("tail", "--json", "--max-events", "7", "--timeout", "20", url=filled.url)
    finally:
        thread.join()
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "ExecutionStarted", "ExecutionClaimed", "StepStarted", "StepFailed", "StepStarted",
        "StepCompleted", "ExecutionCompleted",
    ]
    assert events[1]["reason"] == "start" and events[1]["pid"] > 0
    assert events[3]["error"]["type"] == "ConnectionError"
    assert all(e["notification_id"] > 0 for e in events)


def test_stuck_says_why_each_open_execution_is_stuck(cli: Invoke, filled: Filled) -> None:
    r = cli("stuck", "--older-than", "0s", url=filled.url)
    assert r.exit_code == 0, r.output
    assert str(filled.stalled)[:8] in r.stdout and "orphaned in step work" in r.stdout
    # Paused for a person: listed too, with whom it waits for.
    assert str(filled.paused)[:8] in r.stdout and "waiting for human human_review" in r.stdout
    rows = json.loads(cli("stuck", "--json", "--older-than", "0s", url=filled.url).stdout)
    kinds = {row["execution_id"]: row["kind"] for row in rows}
    assert kinds == {str(filled.stalled): "orphaned", str(filled.paused): "human",
                     str(filled.paused2): "human"}
    stalled = next(row for row in rows if row["execution_id"] == str(filled.stalled))
    assert stalled["last_started_step"]["name"] == "work" and stalled["step"] == "work"
    assert stalled["reason"].startswith("orphaned in step work (driver gone since ")
    # An orphan is listed whatever the threshold; the pauses only once that old.
    quiet = cli("stuck", "--older-than", "1h", "--json", url=filled.url)
    assert quiet.exit_code == 0
    assert [row["execution_id"] for row in json.loads(quiet.stdout)] == [str(filled.stalled)]


def test_costs_by_each_dimension_and_window(cli: Invoke, filled: Filled) -> None:
    r = cli("costs", url=filled.url)
    assert r.exit_code == 0, r.output
    assert "review" in r.stdout and "retried" in r.stdout and "total" in r.stdout
    # Reviews: 3 fetches (0.0125) + 1 publish (0.001); retried: 2 tries of 0.002.
    total = Decimal("0.0375") + Decimal("0.001") + Decimal("0.004")
    for by in ("workflow", "step", "model", "day"):
        rows = json.loads(cli("costs", "--json", "--by", by, url=filled.url).stdout)
        assert sum(Decimal(row["usd"]) for row in rows) == total, by
    models = {row["key"]: row for row in
              json.loads(cli("costs", "--json", "--by", "model", url=filled.url).stdout)}
    assert models["sim-2"] == {"key": "sim-2", "usd": "0.001", "input_tokens": 10,
                               "output_tokens": 5, "calls": 1}
    assert models["sim-1"]["calls"] == 5
    windowed = json.loads(
        cli("costs", "--json", "--by", "step", "--since", "1h", url=filled.url).stdout
    )
    whole = json.loads(cli("costs", "--json", "--by", "step", url=filled.url).stdout)
    assert windowed == whole
    none = cli("costs", "--since", "2999-01-01", url=filled.url)
    assert none.exit_code == 0 and "no costs" in none.stdout


def test_stats_per_step(cli: Invoke, filled: Filled) -> None:
    r = cli("stats", url=filled.url)
    assert r.exit_code == 0, r.output
    assert "explode" in r.stdout and "100.0%" in r.stdout
    stats = {row["name"]: row for row in json.loads(cli("stats", "--json", url=filled.url).stdout)}
    assert stats["explode"]["failures"] == 1 and stats["explode"]["failure_rate"] == 1.0
    assert stats["fetch"]["runs"] == 3 and stats["fetch"]["failures"] == 0
    assert stats["flaky"]["retries"] == 1 and stats["work"]["running"] == 1
    assert stats["fetch"]["p95_duration"] is not None
