"""Stall reasons on SQLite and PostgreSQL, each from a real situation, through ``Projections``
and ``journal stuck --json`` run as its own process.

The situations: a driver SIGKILLed inside its step (orphaned), a live slow step (a thread
holding a step open), a retry's back-off (a step failing with ``Retry(attempts=3,
backoff=30)`` in a thread whose back-off is released at the end), a pause with a timeout,
a sleep, a signal wait and a parent waiting for its child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

import runner._engine as engine
from journal import Journal
from journal.events import StepFailed, StepStarted
from journal.storage.base import WorkerRow
from projections import ExecutionSummary, Projections, Stall
from projections.stall import KINDS, driver_name, stall_reason
from runner import NonDeterministicWorkflow
from tests.polling import until
from tests.projections import stalling

ROOT = Path(__file__).resolve().parents[2]



def _journal(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOURNAL_URL": url, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "journal", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


class _Backoff:
    """``time`` as ``runner._engine`` sees it, with back-offs that end when released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self.release.wait(seconds)


@pytest.fixture
def stalled(journal_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[SimpleNamespace]:
    """One journal with an execution stalled in each way; threads released at the end."""
    backoff = _Backoff()
    monkeypatch.setattr(engine, "time", backoff)
    stalling.GATE.clear()
    marker = tmp_path / "in-step"
    killed = subprocess.Popen(
        [sys.executable, "-m", "tests.projections.stalling", "hang", journal_url, str(marker)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads: list[threading.Thread] = []
    try:
        with Journal.open(journal_url) as journal, stalling.make_runner(journal) as runner:
            try:
                ids: dict[str, UUID] = {
                    "human": runner.run(stalling.approve, 3600).id,
                    "sleeping": runner.run(stalling.nap, 3600).id,
                    "signal": runner.run(stalling.pay, 3600).id,
                    "child": runner.run(stalling.parent).id,
                    # Enqueued an hour ago in effect: --older-than 0s lists it; the default
                    # does not while a live serve() runs its workflow.
                    "queued": runner.enqueue(stalling.nap, 60).id,
                    "diverged": runner.run("signing").id,
                    "stranded": runner.run("contract").id,
                }
                with stalling.deployed(journal) as after:
                    for kind in ("diverged", "stranded"):
                        with pytest.raises(NonDeterministicWorkflow):
                            after.resume(ids[kind], "ok")
                    # The processes serving the journal now: the deploy's code for the two
                    # that changed, the same code as before for the rest.
                    serving = {**runner.versions(), **after.versions()}
                journal.storage.put_worker(WorkerRow(
                    runner="f" * 32, host="web-1", pid=4242, started_at=time.time(),
                    seen_at=time.time() + 3600, workflows=serving))
                for wf, args in ((stalling.block, ()), (stalling.backoff, (str(tmp_path),))):
                    t = threading.Thread(target=runner.run, args=(wf, *args), daemon=True)
                    t.start()
                    threads.append(t)
                until(marker.exists, "the killed driver's step to start")
                killed.send_signal(signal.SIGKILL)
                killed.communicate(timeout=30)
                until(lambda: {"block", "hang", "failed"} <= _in_flight(journal).keys(),
                       "the steps in flight and the first failure")
                seen = _in_flight(journal)
                ids.update(running=seen["block"], retrying=seen["failed"],
                           orphaned=seen["hang"])
                yield SimpleNamespace(url=journal_url, journal=journal, ids=ids)
            finally:
                # Let the live step and the back-off end while the journal is open.
                stalling.GATE.set()
                backoff.release.set()
                for t in threads:
                    t.join(timeout=30)
                    assert not t.is_alive()
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.communicate(timeout=30)


def _in_flight(journal: Journal) -> dict[str, UUID]:
    """Executions by the step they started (and ``failed``: the one a step failed in)."""
    found = {}
    for _, e in journal.notifications():
        if isinstance(e, StepStarted):
            found[e.name] = e.execution_id
        elif isinstance(e, StepFailed):
            found["failed"] = e.execution_id
    return found


def _by_kind(rows: list[Stall]) -> dict[str, Stall]:
    return {s.reason.kind: s for s in rows}


def test_each_stall_reason_from_a_real_situation(stalled: SimpleNamespace) -> None:
    ids, journal = stalled.ids, stalled.journal
    with Projections(journal) as views:
        # A killed PostgreSQL session's lease outlives it for the grace period (2 s here).
        def orphaned() -> bool:
            views.catch_up()
            return "orphaned" in _by_kind(views.stalled(older_than=timedelta(0)))

        until(orphaned, "the killed driver's lease to go")
        rows = views.stalled(older_than=timedelta(0))
    by_id = {s.execution.execution_id: s for s in rows}
    # (And the child, waiting for its signal "go".)
    assert len(rows) == len(ids) + 1 and {s.reason.kind for s in rows} == set(KINDS)
    assert {k: by_id[eid].reason.kind for k, eid in ids.items()} == {k: k for k in ids}
    kinds = {k: by_id[eid] for k, eid in ids.items()}
    since = [s.reason.since for s in rows]
    assert since == sorted(since)  # longest stalled first

    text = {k: s.reason.text for k, s in kinds.items()}
    assert text["human"].startswith("waiting for human review since ")
    assert ", until " in text["human"]
    assert text["sleeping"].startswith("sleeping until ")
    assert text["signal"].startswith("waiting for signal paid since ") and "until" in text["signal"]
    assert text["child"].startswith("waiting for child kid")
    assert text["running"].startswith("in step block for ")
    assert f"driver alive ({os.uname().nodename}:{os.getpid()})" in text["running"], text
    assert text["orphaned"].startswith("orphaned in step hang (driver gone since ")
    assert text["queued"].startswith("queued since ")
    assert text["diverged"].startswith("diverged at seq 1 under code version s1 (started "
                                       "with s1): ")
    assert text["diverged"].endswith(
        ": the journal recorded step 'draft', the code calls step 'write'")
    assert text["stranded"] == "stranded: code version v1 not deployed (live: v2; diverged at " \
        "seq 1)"
    assert text["retrying"].startswith("retrying flaky 2/3, next attempt at ")
    assert "last error TimeoutError: upstream timeout after 31s" in text["retrying"]
    retry = kinds["retrying"].reason
    assert retry.until is not None
    assert timedelta(seconds=25) < retry.until - datetime.now(UTC) <= timedelta(seconds=31)

    # The same from another process: its leases are held here, in this one.
    out = _journal("stuck", "--json", "--older-than", "0s", url=stalled.url)
    assert out.returncode == 0, out.stderr
    documents = {r["execution_id"]: r for r in json.loads(out.stdout)}
    assert len(documents) == len(ids) + 1
    listed = {k: documents[str(eid)] for k, eid in ids.items()}
    assert {k: r["kind"] for k, r in listed.items()} == {k: k for k in ids}
    assert {k: r["reason"].split(" since ")[0] for k, r in listed.items()
            if k in ("human", "signal", "orphaned")} == {
        "human": "waiting for human review", "signal": "waiting for signal paid",
        "orphaned": "orphaned in step hang (driver gone"}
    assert f"driver alive ({os.uname().nodename}:{os.getpid()})" in listed["running"]["reason"]
    assert listed["retrying"]["reason"].startswith("retrying flaky 2/3, next attempt at ")
    assert listed["running"]["holder"] and listed["orphaned"]["holder"] is None

    # The default threshold (5m) hides nothing dead: the orphan is listed at once, the live
    # step and the fresh waits are not (yet).
    out = _journal("stuck", url=stalled.url)
    assert out.returncode == 0, out.stderr
    assert str(ids["orphaned"])[:8] in out.stdout and "orphaned in step hang" in out.stdout
    for kind in ("running", "retrying", "human", "sleeping", "signal", "queued"):
        assert str(ids[kind])[:8] not in out.stdout, (kind, out.stdout)
    for kind in ("diverged", "stranded"):  # listed at once too: nothing will move them
        assert str(ids[kind])[:8] in out.stdout, (kind, out.stdout)
    assert all(len(line) <= 80 for line in out.stdout.splitlines()), out.stdout
    table = _journal("stuck", "--older-than", "0s", url=stalled.url).stdout
    assert all(len(line) <= 80 for line in table.splitlines()), table
    for kind, eid in ids.items():
        assert str(eid)[:8] in table, (kind, table)
    for status in ("running", "paused", "waiting", "queued"):
        assert f" {status} " in table, table


def test_reasons_name_deadlines_passed_and_unknown_drivers() -> None:
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert driver_name("box:42 since 2026-12-01T14:00:00+00:00") == "box:42"
    assert driver_name("this process (box:42 since 2026-12-01T14:00:00+00:00)") == "box:42"
    assert driver_name("a session (server pid 7)") == "a session (server pid 7)"
    base = dict(execution_id=UUID(int=1), workflow="w", started_at=now, updated_at=now,
                ended_at=None, duration=None, last_started_step=None,
                last_completed_step=None, finalization_path=None, error_type=None,
                error_message=None, error_step=None, error_step_seq=None, pause_reason=None,
                paused_at=None, steps_completed=0, steps_failed=0, retries=0, event_count=2,
                log_count=0, cost_usd=0, input_tokens=0, output_tokens=0)
    timer = ExecutionSummary(**{**base, "status": "waiting", "wait_kind": "timer",
                                "wait_name": "", "waiting_since": now - timedelta(hours=2),
                                "wait_until": now - timedelta(hours=1)})
    reason = stall_reason(timer, holder=None, now=now)
    assert reason is not None and reason.text == "sleeping until 2026-12-01 14:00:00 UTC, overdue"
    fresh = ExecutionSummary(**{**base, "status": "running"})
    reason = stall_reason(fresh, holder=None, now=now)
    assert reason is not None and reason.kind == "orphaned"
    assert reason.text == (
        "orphaned before its first step (driver gone since 2026-12-01 15:00:00 UTC)")
    done = ExecutionSummary(**{**base, "status": "completed"})
    assert stall_reason(done, now=now) is None
