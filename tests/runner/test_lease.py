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
        if proc.returncode is None or (proc.stdout and not proc.stdout.closed):
            proc.communicate()


def test_a_resumed_drive_holds_its_lease_while_a_second_resume_fails(journal_url: str) -> None:
    """While a resumed run is inside a step, its lease is held (no other journal, nor a
    second resume's failure in the same process, frees it), so nothing can recover it."""
    import threading

    from runner import Context, Runner

    with Journal.open(journal_url) as journal:
        runner = Runner(journal)
        entered, proceed = threading.Event(), threading.Event()

        def slow() -> str:
            entered.set()
            assert proceed.wait(10)
            return "done"

        @runner.workflow()
        def review(ctx: Context) -> str:
            ctx.pause("go")
            return ctx.step("slow", slow)

        run = runner.run(review)
        results: list[object] = []
        winner = threading.Thread(target=lambda: results.append(runner.resume(run.id, 1)))
        winner.start()
        assert entered.wait(10)  # the winner holds the lease and is inside its step
        try:
            runner.resume(run.id, 2)
        except Exception as e:  # the loser: already resumed
            results.append(e)
        try:
            with Journal.open(journal_url) as elsewhere:
                assert elsewhere.lease(run.id) is None  # still held by the winner
        finally:
            proceed.set()
            winner.join(10)
        runner.close()
        assert any(getattr(r, "status", None) == "completed" for r in results)
