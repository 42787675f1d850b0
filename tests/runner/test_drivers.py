"""One driver per execution: the lease is held before anything is written and while step
code runs; an idempotent re-run continues an orphan and leaves a live driver alone; every
claim is in the log with who made it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from journal import ExecutionClaimed, Journal
from runner import ExecutionBusy, Runner
from tests.journal.test_lease import _hold_in_another_process
from tests.runner.test_crash import child, output
from tests.runner.workflows import contested, crashable, effects, make_runner


def claims(journal: Journal, eid: Any) -> list[ExecutionClaimed]:
    return [e for e in journal.events(eid) if isinstance(e, ExecutionClaimed)]


def test_run_holds_the_lease_before_execution_started(
    journal: Journal, runner: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    held_at_start: list[bool] = []
    real = journal.start

    def start(*args: Any, **kwargs: Any) -> Any:
        eid = kwargs["execution_id"]
        held_at_start.append(journal.lease(eid) is None)  # taken: nobody else can drive it
        return real(*args, **kwargs)

    monkeypatch.setattr(journal, "start", start)
    run = runner.run(contested, str(tmp_path / "fx"))
    assert run.status == "paused" and held_at_start == [True]
    first = claims(journal, run.id)
    assert [c.reason for c in first] == ["start"] and first[0].runner == runner.id
    assert first[0].pid > 0 and first[0].host
    assert journal.lease(run.id) is not None  # released when the drive ended


def test_redelivered_run_continues_the_orphan_where_it_stopped(
    journal_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "effects.txt"
    killed = child("run", journal_url, str(path), "task-7", env={"KILL_AT": "3:after"})
    killed.communicate(timeout=60)
    assert killed.returncode != 0 and effects(path) == ["s0", "s1", "s2"]
    with Journal.open(journal_url) as journal, make_runner(journal) as runner:
        run = runner.run(crashable, str(path), idempotency_key="task-7")  # the redelivery
        assert run.status == "completed" and not run.held_elsewhere
        # s0, s1 completed before the kill: not again; s2 was in flight: once more.
        assert effects(path) == ["s0", "s1", "s2", "s2", "s3", "s4"]
        reasons = [(c.reason, c.quiet_for is not None) for c in claims(journal, run.id)]
        assert reasons == [("start", False), ("continue", True)]
        again = runner.run(crashable, str(path), idempotency_key="task-7")
        assert again.status == "completed" and again.id == run.id
        assert len(effects(path)) == 6  # an ended execution is returned as it is


def test_a_live_driver_is_left_alone(journal_url: str, tmp_path: Path) -> None:
    path = tmp_path / "effects.txt"
    live = child("run", journal_url, str(path), "task-8", env={"STEP_SLEEP": "0.6"})
    try:
        deadline = time.monotonic() + 30
        while not effects(path):
            assert time.monotonic() < deadline, "the driver did not start"
            time.sleep(0.01)
        with Journal.open(journal_url) as journal, make_runner(journal) as runner:
            run = runner.run(crashable, str(path), idempotency_key="task-8")
            assert run.status == "running" and run.held_elsewhere
            assert runner.recover(stale_after=timedelta(0)) == []
        assert output(live)["status"] == "completed"
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    assert effects(path) == ["s0", "s1", "s2", "s3", "s4"]  # every step ran exactly once


def test_resume_waits_for_the_lease_then_names_its_holder(
    journal_url: str, tmp_path: Path
) -> None:
    with Journal.open(journal_url) as journal, make_runner(journal) as runner:
        run = runner.run(contested, str(tmp_path / "fx"))
        holder = _hold_in_another_process(journal_url, str(run.id))
        try:
            busy = Runner(journal, claim_timeout=0.3)
            busy.register(contested)
            started = time.monotonic()
            with pytest.raises(ExecutionBusy) as info:
                busy.resume(run.id, "go")
            assert time.monotonic() - started >= 0.3
            assert info.value.holder is not None and str(holder.pid) in info.value.holder
            assert journal.state(run.id).status == "paused"  # nothing was written
        finally:
            holder.kill()
            holder.communicate()
        assert runner.resume(run.id, "go").status == "completed"  # free again: it runs


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
def test_a_dropped_session_mid_step_never_lets_another_process_run_it(
    journal_url: str, tmp_path: Path
) -> None:
    """The PostgreSQL scenario of issue 9: every session of the driving process is killed
    while its (slow) step runs; recover() elsewhere, asked again and again with
    ``stale_after=0``, must not take the execution over, and every step runs exactly once."""
    import psycopg

    from journal.storage.postgres import connect_params
    from tests.conftest import _admin_conninfo

    path = tmp_path / "effects.txt"
    driver = child("run", journal_url, str(path), env={"STEP_SLEEP": "0.8"})
    dbname = connect_params(journal_url)["dbname"]
    try:
        deadline = time.monotonic() + 30
        while len(effects(path)) < 2:
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.01)
        with Journal.open(journal_url) as journal, make_runner(journal) as rival, \
                psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            for _ in range(3):  # drop every session of the database, the driver's included
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,),
                )
                assert rival.recover(stale_after=timedelta(0)) == []
                time.sleep(0.3)
        result = output(driver)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert result["status"] == "completed"
    assert effects(path) == ["s0", "s1", "s2", "s3", "s4"]  # none ran twice, none at once


def test_recover_racing_run_never_runs_a_step_twice(journal_url: str, tmp_path: Path) -> None:
    """``recover(stale_after=0)`` in a loop, in another journal (its own leases), while
    runs start: a run is never taken over between its start and its first step."""
    import threading

    path = tmp_path / "effects.txt"
    stop = threading.Event()
    recovered: list[Any] = []

    def rival() -> None:
        with Journal.open(journal_url) as journal, make_runner(journal) as runner:
            while not stop.is_set():
                recovered.extend(runner.recover(stale_after=timedelta(0)))

    thread = threading.Thread(target=rival, daemon=True)
    thread.start()
    try:
        with Journal.open(journal_url) as journal, make_runner(journal) as runner:
            runs = [runner.run(crashable, f"{path}-{i}") for i in range(4)]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert [r.status for r in runs] == ["completed"] * 4
    assert recovered == []
    for i in range(4):
        assert effects(f"{path}-{i}") == ["s0", "s1", "s2", "s3", "s4"]


def test_a_driver_that_loses_its_lease_writes_nothing_more(
    journal: Journal, runner: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runner import LeaseLost

    path = tmp_path / "fx"
    keeper = journal.storage.leases
    real = type(keeper).confirmed
    lost = {"now": False}

    def confirmed(self: Any, eid: Any) -> bool:
        return not lost["now"] and real(self, eid)

    monkeypatch.setattr(type(keeper), "confirmed", confirmed)

    def lose_it(path: str, name: str) -> str:
        lost["now"] = True  # e.g. the session dropped for longer than the grace period
        return name

    runner.register(lambda ctx, p: [ctx.step("a", lose_it, p, "a"),
                                    ctx.step("b", lose_it, p, "b")], name="losing")
    before = journal.storage.head()
    with pytest.raises(LeaseLost, match="step 'b'"):
        runner.run("losing", str(path))
    eid = journal.storage.read_log(before, 10)[0][1]
    kinds = [type(e).__name__ for e in journal.events(eid)]
    # The step that ran is in the log as started; nothing after the loss was written.
    assert kinds == ["ExecutionStarted", "ExecutionClaimed", "StepStarted"]
    assert journal.state(eid).status == "running"


def test_a_resume_answers_only_the_pause_it_waited_for(journal_url: str) -> None:
    import threading

    from runner import AlreadyResumed
    from tests.runner import workflows

    with Journal.open(journal_url) as ours, Journal.open(journal_url) as theirs:
        with make_runner(ours) as runner:
            run = runner.run(workflows.two_pauses)
        assert run.pause is not None and run.pause.reason == "first"
        lease = theirs.lease(run.id)  # another driver is answering "first" right now
        assert lease is not None
        waiting = make_runner(ours)
        waiting.claim_timeout = 10
        outcome: list[BaseException | str] = []

        def resume() -> None:
            try:
                outcome.append(waiting.resume(run.id, "meant for first").status)
            except BaseException as e:
                outcome.append(e)

        thread = threading.Thread(target=resume)
        thread.start()
        time.sleep(0.3)  # it is waiting for the lease, having seen the pause "first"
        handle = theirs.execution(run.id)
        handle.resumed("the other answer")
        handle.paused("second", {"a": 1})
        lease.release()
        thread.join(timeout=30)
        waiting.close()
        assert len(outcome) == 1 and isinstance(outcome[0], AlreadyResumed), outcome
        state = ours.state(run.id)
        assert state.status == "paused" and state.pause is not None
        assert state.pause.reason == "second"  # not answered with "meant for first"
