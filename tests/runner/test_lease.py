"""recover() never takes over a run whose process is alive, however long its step takes."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from journal import Journal
from tests.runner.test_crash import child
from tests.runner.workflows import STEPS, effects, make_runner


def test_a_slow_step_of_a_live_process_is_not_recovered(journal_url: str, tmp_path: Path) -> None:
    path = tmp_path / "effects.txt"
    proc = child("run", journal_url, str(path), env={"STEP_SLEEP": "30"})
    try:
        deadline = time.monotonic() + 30
        while effects(path) != ["s0"]:
            assert time.monotonic() < deadline and proc.poll() is None, "the child did not start"
            time.sleep(0.01)
        time.sleep(0.5)  # its last event is now older than stale_after below
        with Journal.open(journal_url) as journal, make_runner(journal) as runner:
            assert runner.stale_executions(timedelta(seconds=0.2))  # it looks stale...
            assert runner.recover(stale_after=timedelta(seconds=0.2)) == []  # ...but lives
            assert effects(path) == ["s0"]

            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
            deadline = time.monotonic() + 10
            recovered = runner.recover(stale_after=timedelta(seconds=0.2))
            while not recovered and time.monotonic() < deadline:  # PostgreSQL sees the death
                time.sleep(0.05)
                recovered = runner.recover(stale_after=timedelta(seconds=0.2))
        assert [r.status for r in recovered] == ["completed"]
        # the in-flight step ran again (at least once); every other step exactly once
        assert effects(path) == ["s0", "s0", *[f"s{i}" for i in range(1, STEPS)]]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
