"""``journal show`` on takeovers and on cancellations of a run a live process drives, with
the driver killed in a real subprocess and the CLI run as its own process (SQLite and
PostgreSQL): "driver host:pid gone; recovered by host:pid after N s quiet", "cancelled ...
while host:pid drove it"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from tests.polling import until
from tests.projections import stalling

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()



def _show(url: str, eid: object, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_URL"}
    out = subprocess.run([sys.executable, "-m", "journal", "show", str(eid), "--json",
                          "--url", url], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    document: dict[str, Any] = json.loads(out.stdout)
    return document


def test_show_names_the_driver_that_died_and_who_took_over(
    journal_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "in-step"
    killed = subprocess.Popen(
        [sys.executable, "-m", "tests.projections.stalling", "hang", journal_url, str(marker)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(marker.exists, "the driver's step to start")
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.communicate(timeout=30)
    monkeypatch.setattr(stalling, "sleep_forever", lambda marker: "finished here")
    with Journal.open(journal_url) as journal, stalling.make_runner(journal) as runner:
        recovered: list[Any] = []
        until(lambda: bool(recovered.extend(runner.recover(stale_after=timedelta(0)))
                            or recovered), "the killed driver's lease to go")
        [run] = recovered
        assert run.status == "completed" and run.output == "finished here"
    timeline = _show(journal_url, run.id, tmp_path)["timeline"]
    claims = [e["detail"] for e in timeline if e["event"] == "execution claimed"]
    assert claims[0].startswith(f"started by {HOST}:{killed.pid} ")
    assert claims[1].startswith(
        f"driver {HOST}:{killed.pid} gone; recovered by {HOST}:{os.getpid()} after "), claims
    assert " s quiet (runner " in claims[1]


def test_a_cancellation_names_the_live_driver_it_stops(journal_url: str, tmp_path: Path) -> None:
    stalling.GATE.clear()
    with Journal.open(journal_url) as journal, stalling.make_runner(journal) as runner:
        done: list[Any] = []
        thread = threading.Thread(target=lambda: done.append(runner.run(stalling.block)),
                                  daemon=True)
        thread.start()
        try:
            def started() -> bool:
                return any(type(e).__name__ == "StepStarted" for _, e in journal.notifications())

            until(started, "the step to start")
            [eid] = {e.execution_id for _, e in journal.notifications()}
            env = {k: v for k, v in os.environ.items() if k != "JOURNAL_URL"}
            out = subprocess.run(
                [sys.executable, "-m", "journal", "cancel", str(eid), "--reason", "duplicate",
                 "--url", journal_url], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            assert f"{HOST}:{os.getpid()}" in out.stdout, out.stdout  # it says who drives it
        finally:
            stalling.GATE.set()
            thread.join(timeout=30)
        assert done and done[0].status == "cancelled"  # it stopped after its step
    document = _show(journal_url, eid, tmp_path)
    [cancel] = [e for e in document["timeline"] if e["event"] == "execution cancelled"]
    assert cancel["detail"] == (
        f"duplicate; while {HOST}:{os.getpid()} drove it (it stops at its next call)")
    assert document["summary"]["status"] == "cancelled"
