"""The CLI on waiting executions, ``journal signal`` and ``journal serve`` (SQLite, PostgreSQL).

``ls`` lists and filters status ``waiting``; ``show`` says what a waiting or paused
execution waits for, since and until when, and lists the calls that are not steps (sleeps,
waits and how they ended, drawn values) and the signals received. ``journal signal`` and
``journal serve`` run as real processes from another directory than the project's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from runner import Runner
from runner.cli import fast
from runner.cli.timeline import format_utc
from tests.cli import waiting
from tests.cli.conftest import Invoke
from tests.cli.test_fast import _NOW, _fast

PROJECT = Path(__file__).resolve().parents[2]
#: How long an execution in flight has been going (``ls``) moves on.
_RUNNING = re.compile(r"[0-9][0-9a-z.]*…")


@contextmanager
def serving(runner: Runner) -> Iterator[None]:
    """``runner.serve()`` in a thread for the block (a fast poll, for SQLite)."""
    stop = threading.Event()
    thread = threading.Thread(target=runner.serve, kwargs={
        "stop": stop, "handle_signals": False, "poll_interval": 0.05, "grace": 5.0})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "serve() did not stop"


def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _status(journal: Journal, eid: UUID) -> str:
    return journal.state(eid).status


def _journal_cli(
    args: list[str], *, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``journal ARGS`` as its own process, run from ``cwd`` (not the project's directory)."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_URL"}
    return subprocess.run([sys.executable, "-m", "journal", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


# -- ls and show -------------------------------------------------------------------------------


@pytest.fixture
def waits(journal_url: str) -> dict[str, Any]:
    """Executions waiting every way, and two whose waits ended (a signal, a timeout)."""
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        ids = {
            "timer": runner.run(waiting.nap, 3600).id,
            "signal": runner.run(waiting.pay, 600).id,
            "forever": runner.run(waiting.pay, None).id,
            "human": runner.run(waiting.approve, 86400).id,
            "paid": runner.run(waiting.pay, None).id,
            "late": runner.run(waiting.pay, 0.2).id,
        }
        runner.signal(ids["paid"], "paid", {"amount": 5})
        with serving(runner):
            until(lambda: all(_status(journal, ids[k]) == "completed" for k in ("paid", "late")),
                  what="the signalled and the timed-out waits to end")
        states = {k: journal.state(v) for k, v in ids.items()}
    return {"url": journal_url, "ids": ids, "states": states}


def test_ls_shows_and_filters_waiting(cli: Invoke, waits: dict[str, Any]) -> None:
    ids, url = waits["ids"], waits["url"]
    rows = json.loads(cli("ls", "--json", "--status", "waiting", url=url).stdout)
    assert {r["execution_id"] for r in rows} == {
        str(ids[k]) for k in ("timer", "signal", "forever")}
    by_id = {r["execution_id"]: r for r in rows}
    timer = by_id[str(ids["timer"])]
    wait = waits["states"]["timer"].wait
    assert (timer["wait_kind"], timer["wait_name"], timer["finalization_path"]) == (
        "timer", "", "waiting")
    assert timer["wait_until"] == wait.until.isoformat()
    assert timer["waiting_since"] == wait.since.isoformat()
    human = json.loads(cli("ls", "--json", "--status", "paused", url=url).stdout)
    assert [(r["wait_kind"], r["wait_name"]) for r in human] == [("human", "review")]
    table = cli("ls", url=url).stdout
    assert "waiting" in table and "⏳ timer" in table and "⏳ signal paid" in table
    for args in (("ls", "--status", "waiting"), ("ls", "--status=waiting", "--json")):
        typed = cli(*args, url=url)
        assert typed.exit_code == 0, typed.output
        assert fast.parse(list(args), {"JOURNAL_URL": url}) is not None, "went to Typer"
        code, out, err = _fast(*args, url=url)
        assert (code, _RUNNING.sub("_", out), err) == (
            typed.exit_code, _RUNNING.sub("_", typed.stdout), typed.stderr), args


def test_show_says_what_a_waiting_or_paused_execution_waits_for(
    cli: Invoke, waits: dict[str, Any]
) -> None:
    ids, url, states = waits["ids"], waits["url"], waits["states"]

    def show(key: str) -> str:
        r = cli("show", str(ids[key])[:8], url=url)
        assert r.exit_code == 0, r.output
        code, out, err = _fast("show", str(ids[key])[:8], url=url)  # the fast path agrees
        assert (code, _NOW.sub("_", out), err) == (0, _NOW.sub("_", r.stdout), r.stderr)
        return r.stdout

    w = states["timer"].wait
    out = show("timer")
    assert (f"waiting for timer until {format_utc(w.until)} "
            f"(since {format_utc(w.since)}, ") in out, out
    assert "sleep" in out and "calls" in out  # the sleep is a call, still waiting
    w = states["signal"].wait
    assert (f"waiting for signal 'paid' until {format_utc(w.until)} "
            f"(since {format_utc(w.since)}, ") in show("signal")
    assert "waiting for signal 'paid', no deadline (since " in show("forever")
    p = states["human"].pause
    out = show("human")
    assert (f"paused for human 'review' until {format_utc(p.until)} "
            f"(since {format_utc(p.at)}, ") in out, out
    assert '"doc": "contract-7"' in out

    out = show("paid")
    lines = [line.rstrip() for line in out.splitlines()]
    calls = lines[lines.index("calls") + 1:]
    signal_at = states["paid"].signals[0].position
    assert [c.split()[1] for c in calls[1:4]] == ["now", "wait_for", "uuid4"], out
    assert f"signal consumed (#{signal_at})" in calls[2] and '{"amount": 5}' in calls[2]
    sigs = lines[lines.index("signals") + 1:]
    assert sigs[1].split()[:2] == [str(signal_at), "paid"] and "call #2" in sigs[1], out
    assert "consumed the signal at #" in out and "signal received" in out  # the timeline
    assert "timed out" in show("late")


def test_show_json_has_wait_calls_and_signals(cli: Invoke, waits: dict[str, Any]) -> None:
    ids, url, states = waits["ids"], waits["url"], waits["states"]
    doc = json.loads(cli("show", "--json", str(ids["signal"]), url=url).stdout)
    w = states["signal"].wait
    assert doc["summary"]["wait"] == {"kind": "signal", "name": "paid", "seq": w.seq,
                                      "since": w.since.isoformat(), "until": w.until.isoformat()}
    assert [c["call"] for c in doc["calls"]] == ["now", "wait_for"]
    assert doc["calls"][1]["outcome"] == "waiting" and doc["signals"] == []
    human = json.loads(cli("show", "--json", str(ids["human"]), url=url).stdout)
    assert human["summary"]["pause"]["until"] == states["human"].pause.until.isoformat()
    assert human["summary"]["wait"] is None
    paid = json.loads(cli("show", "--json", str(ids["paid"]), url=url).stdout)
    assert [(c["call"], c["outcome"]) for c in paid["calls"]] == [
        ("now", "drawn"), ("wait_for", "signal consumed"), ("uuid4", "drawn")]
    assert paid["calls"][1]["value"] == {"amount": 5}
    (sig,) = paid["signals"]
    assert (sig["name"], sig["value"], sig["consumed_by"]) == ("paid", {"amount": 5}, 2)
    assert paid["calls"][1]["signal"] == sig["position"]
    late = json.loads(cli("show", "--json", str(ids["late"]), url=url).stdout)
    assert late["calls"][1]["outcome"] == "timed out" and late["summary"]["output"] == "timed out"


# -- journal signal ------------------------------------------------------------------------------


def test_journal_signal_records_what_a_waiting_execution_consumes(
    journal_url: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        eid = runner.run(waiting.pay, None).id
        done = _journal_cli(["signal", str(eid)[:8], "paid", "--value", '{"amount": 12.5}',
                             "--url", journal_url], cwd=elsewhere)
        assert done.returncode == 0, done.stderr
        position = journal.state(eid).signals[0].position
        assert done.stdout == (f"signal 'paid' recorded for execution {eid} at position "
                               f"{position}\n")
        with serving(runner):
            until(lambda: _status(journal, eid) == "completed", what="the signal's effect")
        state = journal.state(eid)
        assert state.output == {"amount": 12.5}
        assert state.signals[0].consumed_by == 2
        again = _journal_cli(["signal", str(eid), "paid", "--json", "--url", journal_url],
                             cwd=elsewhere)
        assert again.returncode == 1
    assert list(elsewhere.iterdir()) == []


def test_journal_signal_refuses_writing_nothing(journal_url: str, tmp_path: Path) -> None:
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        live = runner.run(waiting.pay, None).id
        ended = runner.run(waiting.approve, 60).id
        runner.cancel(ended)
        head = journal.storage.head()
        cases = {
            "unknown": ([str(uuid.uuid4()), "paid"], "no execution matches"),
            "ended": ([str(ended), "paid"], f"execution {ended} has already ended (cancelled)"),
            "bad json": ([str(live), "paid", "--value", "{paid"], "invalid --value: not JSON"),
            "no name": ([str(live), ""], "a signal needs a name"),
        }
        for case, (args, message) in cases.items():
            done = _journal_cli(["signal", *args, "--url", journal_url], cwd=tmp_path)
            assert done.returncode == 1, (case, done.stdout, done.stderr)
            assert done.stderr.startswith("error: ") and message in done.stderr, (case, done.stderr)
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, case
            assert done.stdout == "", case
        assert journal.storage.head() == head  # nothing was written
        assert journal.state(live).signals == []
    if journal_url.startswith("sqlite"):
        missing = tmp_path / "typo.db"
        done = _journal_cli(["signal", str(live), "paid", "--url", f"sqlite:///{missing}"],
                            cwd=tmp_path)
        assert done.returncode == 1 and "no journal at" in done.stderr
        assert not missing.exists()


# -- journal serve -------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_journal_serve_wakes_a_sleeping_execution_and_stops_on_sigterm(
    journal_url: str, tmp_path: Path, stop: signal.Signals
) -> None:
    with Journal.open(journal_url) as journal, waiting.make_runner(journal) as runner:
        eid = runner.run(waiting.nap, 1.0).id
        wake_at = journal.state(eid).wakes_at
        assert wake_at is not None and _status(journal, eid) == "waiting"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("JOURNAL_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "journal", "serve", "--app", "tests.cli.waiting:runner",
         "--url", journal_url, "--workers", "2", "--poll-interval", "0.1", "--grace", "10"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with Journal.open(journal_url) as journal:
            until(lambda: proc.poll() is not None or _status(journal, eid) == "completed",
                  timeout=30, what="serve to wake the sleeping execution")
            assert proc.poll() is None, proc.communicate()
            state = journal.state(eid)
            assert state.output == {"before": "before", "after": "after"}
            woken = state.calls[2].ended_at
            assert woken is not None and woken >= wake_at  # not before its time
            assert state.steps[1].attempts == 1  # the step before the sleep ran once
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("serving ") and "worker(s)" in lines[0], out
    assert lines[-1].startswith("stopped serving "), out
    assert "Traceback" not in err


def test_journal_serve_refuses_a_bad_app_or_option(journal_url: str, tmp_path: Path) -> None:
    Journal.open(journal_url).close()
    bad_app = _journal_cli(["serve", "--app", "nowhere.at.all:runner", "--url", journal_url],
                           cwd=tmp_path)
    assert bad_app.returncode == 1 and "cannot import --app module" in bad_app.stderr
    bad_poll = _journal_cli(["serve", "--app", "tests.cli.waiting:runner", "--poll-interval",
                             "0", "--url", journal_url], cwd=tmp_path)
    assert bad_poll.returncode == 1 and "--poll-interval" in bad_poll.stderr
    assert "serving" not in bad_app.stdout + bad_poll.stdout  # both failed before serving
