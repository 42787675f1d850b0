"""Durable time and outside events: sleeps whose wake-up is in the log, signals recorded at
once and consumed once in order, timeouts, drawn values that replay, and ``serve()`` waking
what is due in whatever process is alive (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import ExecutionNotFound, InvalidTransition, Journal
from journal.events import SignalReceived, WaitEnded, WaitStarted
from journal.state import fold
from runner import Context, NonDeterministicWorkflow, Runner
from runner._engine import child_id
from runner.serve import Server
from tests.runner.timed import make_runner
from tests.runner.workflows import effects

ROOT = Path(__file__).resolve().parents[2]


def wake_due(runner: Runner, *, rounds: int = 20) -> int:
    """Drive what is due now, as one serve() round would, until nothing is; how many."""
    driven = 0
    for _ in range(rounds):
        due = runner.journal.storage.due(time.time())
        if not due:
            return driven
        for eid, _, position in due:
            if runner._wake(eid, position, stale_after=timedelta(minutes=1)) is not None:
                driven += 1
    return driven


@pytest.fixture
def timed(journal: Journal) -> Iterator[Runner]:
    with make_runner(journal) as r:
        yield r


class Serving:
    """serve() in a thread of this process, stopped at the end."""

    def __init__(self, runner: Runner, **options: Any) -> None:
        self.stop = threading.Event()
        self.runs: list[Any] = []
        self.server = Server(runner, stop=self.stop, on_run=self.runs.append, **options)
        self.thread = threading.Thread(target=self.server.run, kwargs={"handle_signals": False})

    def __enter__(self) -> Serving:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {check}")


# -- timers --------------------------------------------------------------------------------------


def test_a_sleep_commits_its_wake_up_and_holds_nothing(timed: Runner, journal: Journal) -> None:
    run = timed.run("nap", 30)
    assert run.status == "waiting" and run.wait is not None and run.wait.kind == "timer"
    state = journal.state(run.id)
    assert state.status == "waiting" and state.wait == run.wait
    assert run.wait.until is not None
    assert 29 < (run.wait.until - run.wait.since).total_seconds() <= 30.01
    # No lease is held: any process may take it when due.
    lease = journal.lease(run.id)
    assert lease is not None
    lease.release()
    # The wake-up row is there, due at the timer.
    [(eid, due, position)] = journal.storage.due(run.wait.until.timestamp() + 1)
    assert eid == run.id and due == pytest.approx(run.wait.until.timestamp())
    assert position == state.position
    assert journal.storage.due(time.time()) == []  # not due yet
    assert wake_due(timed) == 0


def test_a_timer_fires_once_at_its_time(timed: Runner, journal: Journal) -> None:
    run = timed.run("nap", 0.3)
    assert run.status == "waiting"
    assert wake_due(timed) == 0  # too early: nothing is driven, nothing written
    position = journal.state(run.id).position
    time.sleep(0.35)
    assert wake_due(timed) == 1
    done = journal.state(run.id)
    assert done.status == "completed" and done.output == {"before": "before", "after": "after"}
    events = journal.events(run.id)
    ends = [e for e in events if isinstance(e, WaitEnded)]
    assert len(ends) == 1 and journal.state(run.id).position > position
    started = next(e for e in events if isinstance(e, WaitStarted))
    assert started.until is not None and ends[0].timestamp >= started.until
    assert journal.storage.due(time.time() + 3600) == []  # nothing left to wake
    assert wake_due(timed) == 0


def test_a_killed_sleeper_is_woken_by_serve_in_a_new_process_on_time(
    journal_url: str, tmp_path: Path
) -> None:
    """SIGKILL during a 2 s sleep; serve() in another process resumes it no earlier than its
    time and within a second after; the step before the sleep does not run again."""
    env = {**os.environ, "TIMED_EFFECTS": str(tmp_path / "effects.txt"), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.runner.timed", "start", journal_url, "1", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    [eid] = json.loads(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)  # reaped, its pipes closed
    server = subprocess.run(  # for 4 s, or until it has nothing left to do
        [sys.executable, "-m", "tests.runner.timed", "serve", journal_url, "4", eid],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert server.returncode == 0, server.stderr
    assert json.loads(server.stdout.strip().splitlines()[-1]) == [eid]
    with Journal.open(journal_url) as journal:
        events = journal.events(eid)
        state = fold(events[0].execution_id, events)
    assert state.status == "completed"
    started = next(e for e in events if isinstance(e, WaitStarted))
    ended = next(e for e in events if isinstance(e, WaitEnded))
    assert started.until is not None
    lateness = (ended.timestamp - started.until).total_seconds()
    assert 0 <= lateness < 1.0, lateness
    assert effects(tmp_path / "effects.txt") == ["before", "after"]


def test_async_sleep_and_wait(timed: Runner, journal: Journal) -> None:
    run = timed.run("anap", 0.2)
    assert run.status == "waiting" and run.wait is not None and run.wait.kind == "timer"
    time.sleep(0.25)
    assert wake_due(timed) == 1
    waiting = journal.state(run.id)
    assert waiting.status == "waiting" and waiting.wait is not None
    assert waiting.wait.kind == "signal" and waiting.wait.name == "go"
    timed.signal(run.id, "go", "yes")
    assert wake_due(timed) == 1
    done = journal.state(run.id)
    assert done.status == "completed" and done.output.endswith(":yes")


# -- signals -------------------------------------------------------------------------------------


def test_signals_before_during_twice_and_after_the_timeout(
    timed: Runner, journal: Journal
) -> None:
    run = timed.run("listen", 4, 0.4)  # no signal yet: waits at the first wait_for
    assert run.status == "waiting" and run.wait is not None and run.wait.name == "s"
    timed.signal(run.id, "s", "during")  # while it waits
    assert wake_due(timed) == 1
    # Two before the next waits get to them: consumed one each, in the order they came.
    timed.signal(run.id, "s", "first")
    timed.signal(run.id, "s", "second")
    wake_due(timed)
    state = journal.state(run.id)
    assert state.status == "waiting" and state.wait is not None and state.wait.kind == "signal"
    time.sleep(0.45)  # the fourth wait times out
    wake_due(timed)
    state = journal.state(run.id)
    assert state.status == "completed"
    assert state.output == ["during", "first", "second", "timeout"]
    with pytest.raises(InvalidTransition):  # after the end: a named error, nothing written
        timed.signal(run.id, "s", "late")
    assert journal.state(run.id).position == state.position
    consumed = [s.consumed_by for s in state.signals]
    assert len(consumed) == 3 and len(set(consumed)) == 3 and all(consumed)
    # The same outcomes on replay: a fresh fold, and a fresh process's reading.
    again = fold(run.id, journal.events(run.id))
    assert again.output == state.output and again.calls == state.calls


def test_signals_to_unknown_or_ended_executions_write_nothing(
    timed: Runner, journal: Journal
) -> None:
    with pytest.raises(ExecutionNotFound):
        timed.signal("00000000-0000-4000-8000-00000000dead", "s")
    run = timed.run("listen", 1, None)
    with pytest.raises(ValueError, match="signal needs a name"):
        timed.signal(run.id, "")
    timed.cancel(run.id)
    head = journal.state(run.id).position
    with pytest.raises(InvalidTransition, match="cancelled"):
        timed.signal(run.id, "s", 1)
    assert journal.state(run.id).position == head


def test_a_signal_to_a_running_execution_is_recorded_at_once_and_the_driver_goes_on(
    journal: Journal,
) -> None:
    runner = Runner(journal)
    sent = threading.Event()
    go = threading.Event()

    def slow() -> int:
        sent.wait(10)
        return 1

    @runner.workflow(name="busy")
    def busy(ctx: Context) -> Any:
        ctx.step("slow", slow)
        go.set()
        ctx.step("more", lambda: 2)
        return ctx.wait_for("ping", timeout=10)

    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(runner.run(busy)))
    t.start()
    eid = until(lambda: next(iter(
        e.execution_id for _, e in journal.notifications(after=0, limit=100)), None))
    position = runner.signal(eid, "ping", {"n": 1})  # while a step of it is running
    assert journal.state(eid).signals[0].position == position
    sent.set()
    t.join(timeout=30)
    [run] = result
    assert run.status == "completed" and run.output == {"n": 1}
    events = journal.events(eid)
    assert [type(e).__name__ for e in events].count("SignalReceived") == 1
    assert fold(eid, events).output == {"n": 1}


def test_pause_with_a_timeout_resumes_by_itself(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow(name="review")
    def review(ctx: Context) -> str:
        try:
            answer = ctx.pause("human_review", {"doc": 1}, timeout=0.3)
        except Exception as e:  # WaitTimedOut
            return f"escalated: {type(e).__name__}"
        return f"answered {answer}"

    a, b = runner.run(review), runner.run(review)
    assert a.status == b.status == "paused"
    assert a.pause is not None and a.pause.until is not None
    runner.resume(b.id, "ok")  # answered in time: the deadline no longer matters
    time.sleep(0.35)
    assert wake_due(runner) == 1
    assert journal.state(a.id).output == "escalated: WaitTimedOut"
    assert journal.state(b.id).output == "answered ok"
    assert journal.state(a.id).pauses[0].timed_out


# -- drawn values --------------------------------------------------------------------------------


def test_drawn_values_replay_and_a_reordered_call_is_non_deterministic(
    timed: Runner, journal: Journal
) -> None:
    run = timed.run("draws", "nru")
    calls = journal.state(run.id).calls
    assert [c.name for c in calls.values()] == ["now", "random", "uuid4"]
    done = timed.resume(run.id, None)
    assert done.output == [str(c.value) for c in calls.values()]  # replayed, not drawn again
    # The same workflow name, now drawing in another order.
    other = Runner(journal)

    @other.workflow(name="draws")
    def draws(ctx: Context, order: str) -> list[str]:
        ctx.random()
        ctx.pause("look")
        return []

    again = timed.run("draws", "nr")
    with pytest.raises(NonDeterministicWorkflow, match=r"now\(\).*random\(\)"):
        other.resume(again.id, None)


# -- interleavings -------------------------------------------------------------------------------


ops = st.lists(st.sampled_from(["signal", "wake", "crash", "late"]), min_size=1, max_size=12)
#: Sized for CI; the "long" profile ($HYPOTHESIS_PROFILE=long) explores more.
INTERLEAVINGS = 80 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 8


@settings(max_examples=INTERLEAVINGS, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_interleavings_of_signals_timers_and_crashes(journal_url: str, script: list[str]) -> None:
    """Whatever the order of signals, wake-ups and restarts: each signal is consumed at most
    once, in the order sent; each timer fires once; the result is what the log says."""
    journal = Journal.open(journal_url)
    runner = make_runner(journal)
    try:
        run = runner.run("listen", 3, 0.05)
        sent = 0
        for op in script:
            if op == "signal" and journal.state(run.id).status != "completed":
                runner.signal(run.id, "s", sent)
                sent += 1
            elif op == "wake":
                wake_due(runner)
            elif op == "late":
                time.sleep(0.06)  # a deadline passes
                wake_due(runner)
            elif op == "crash":  # a new process: no kept state, a new runner
                runner.close()
                journal.close()
                journal = Journal.open(journal_url)
                runner = make_runner(journal)
        while journal.state(run.id).status != "completed":
            time.sleep(0.06)
            wake_due(runner)
        state = journal.state(run.id)
        got = [g for g in state.output if g != "timeout"]
        assert got == sorted(got) and len(set(got)) == len(got)  # in order, each once
        assert got == list(range(len(got)))  # the first ones sent, none skipped
        consumers = [s.consumed_by for s in state.signals if s.consumed_by]
        assert len(consumers) == len(set(consumers)) == len(got)
        ends = [e for e in journal.events(run.id) if isinstance(e, WaitEnded)]
        assert len({e.seq for e in ends}) == len(ends) == 6  # 3 waits + 3 timers, once each
        assert state == fold(run.id, journal.events(run.id))
        assert len(state.output) == 3
    finally:
        runner.close()
        journal.close()


# -- many serving processes ----------------------------------------------------------------------


def test_three_serve_processes_wake_each_of_300_sleepers_once(
    pg_database: str, tmp_path: Path
) -> None:
    url = f"{pg_database}?schema=serve3&lease_grace=2"
    effects_file = tmp_path / "effects.txt"
    os.environ["TIMED_EFFECTS"] = str(effects_file)
    try:
        with Journal.open(url) as journal, make_runner(journal) as runner:
            ids = {str(runner.run("nap", 1.5).id) for _ in range(300)}
        assert len(effects(effects_file)) == 300  # the 300 "before" steps
        env = {**os.environ}
        procs = [subprocess.Popen(  # each for 6 s, or until all 300 have completed
            [sys.executable, "-m", "tests.runner.timed", "serve", url, "6", *sorted(ids)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) for _ in range(3)]
        driven: list[str] = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            driven += json.loads(out.strip().splitlines()[-1])
        assert sorted(driven) == sorted(ids)  # each woken by exactly one of them
        after = [e for e in effects(effects_file) if e == "after"]
        assert len(after) == 300
        with Journal.open(url) as journal:
            for eid in ids:
                events = journal.events(eid)
                assert sum(isinstance(e, WaitEnded) for e in events) == 1
                assert fold(events[0].execution_id, events).status == "completed"
    finally:
        os.environ.pop("TIMED_EFFECTS", None)


def test_serve_in_a_thread_wakes_sleepers_and_signalled_waits(
    timed: Runner, journal: Journal
) -> None:
    naps = [timed.run("nap", 0.3).id for _ in range(3)]
    listener = timed.run("listen", 1, None).id
    with Serving(timed, poll_interval=0.1) as serving:
        until(lambda: all(journal.state(i).status == "completed" for i in naps))
        assert journal.state(listener).status == "waiting"
        timed.signal(listener, "s", "hello")
        until(lambda: journal.state(listener).status == "completed")
    assert journal.state(listener).output == ["hello"]
    assert sorted(str(r.id) for r in serving.runs if r.status == "completed") == sorted(
        str(i) for i in [*naps, listener])
    assert sum(isinstance(e, SignalReceived) for e in journal.events(listener)) == 1


# -- children ------------------------------------------------------------------------------------


def test_a_parent_and_its_child_across_a_crash_of_the_parents_process(
    journal_url: str, tmp_path: Path
) -> None:
    """The parent's process is killed while its child sleeps; serve() in another process
    wakes the child, whose end resumes the parent; nothing before the crash runs again."""
    env = {**os.environ, "TIMED_EFFECTS": str(tmp_path / "effects.txt"),
           "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.runner.timed", "family", journal_url, "1", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    [parent] = json.loads(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)  # reaped, its pipes closed
    with Journal.open(journal_url) as journal:
        state = journal.state(parent)
        assert state.status == "waiting" and state.wait is not None
        assert state.wait.kind == "child" and state.wait.name == "kid"
        kid = journal.state(child_id(state.execution_id, state.wait.seq))
        assert kid.status == "waiting" and kid.parent == state.execution_id
    server = subprocess.run(  # for 4 s, or until it has nothing left to do
        [sys.executable, "-m", "tests.runner.timed", "serve", journal_url, "4", parent],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert server.returncode == 0, server.stderr
    with Journal.open(journal_url) as journal:
        done = journal.state(parent)
        assert done.status == "completed", done.status
        assert done.output == ["kid-1", "failed: ValueError"]
        assert kid.execution_id in {child_id(done.execution_id, c.seq)
                                    for c in done.calls.values() if c.kind == "child"}
    assert effects(tmp_path / "effects.txt") == [
        "parent-before", "kid-before", "kid-1", "kid-before"]


def test_cancelling_a_parent_cancels_its_open_children(timed: Runner, journal: Journal) -> None:
    run = timed.run("family", 30)
    state = journal.state(run.id)
    assert run.status == "waiting" and state.wait is not None
    kid = child_id(run.id, state.wait.seq)
    assert journal.state(kid).status == "waiting"
    timed.cancel(run.id)
    assert journal.state(run.id).status == "cancelled"
    assert journal.state(kid).status == "cancelled"
    assert journal.storage.due(time.time() + 10**6) == []  # nothing of them wakes any more


def test_a_child_cancelled_on_its_own_fails_its_parents_call(
    timed: Runner, journal: Journal
) -> None:
    run = timed.run("family", 30)
    state = journal.state(run.id)
    assert state.wait is not None
    timed.cancel(child_id(run.id, state.wait.seq))
    assert wake_due(timed) == 1  # the parent, told by its child's end
    done = journal.state(run.id)
    assert done.status == "failed" and done.error is not None
    assert "ChildFailed" in done.error.type and "cancelled" in done.error.message


# -- found in review -----------------------------------------------------------------------------


def test_a_replayed_child_output_is_the_workflows_own_copy(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow(name="leaf")
    def leaf(ctx: Context) -> list[int]:
        return [1]

    @runner.workflow(name="trunk")
    def trunk(ctx: Context) -> list[Any]:
        out = ctx.child(leaf)
        out.append(len(out))  # the workflow's own business
        ctx.pause("one")
        ctx.pause("two")
        return out

    run = runner.run(trunk)
    runner.resume(run.id, None)
    done = runner.resume(run.id, None)  # replayed twice, the second time from kept state
    assert done.output == [1, 1]
    assert journal.state(run.id) == fold(run.id, journal.events(run.id))


def test_a_signal_during_a_step_with_a_big_output_loses_nothing(journal: Journal) -> None:
    runner = Runner(journal)
    started = threading.Event()
    go = threading.Event()

    def big() -> str:
        started.set()
        go.wait(10)
        return "x" * 3_000_000  # stored out of line

    @runner.workflow(name="bulky")
    def bulky(ctx: Context) -> Any:
        size = len(ctx.step("big", big))
        return [size, ctx.wait_for("ping")]

    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(runner.run(bulky)))
    t.start()
    assert started.wait(10)
    eid = next(e.execution_id for _, e in journal.notifications(after=0, limit=10))
    runner.signal(eid, "ping", "pong")
    go.set()
    t.join(timeout=60)
    assert result[0].status == "completed" and result[0].output == [3_000_000, "pong"]
    assert fold(eid, journal.events(eid)).steps[1].output == "x" * 3_000_000


def test_serve_does_not_spin_on_what_it_cannot_drive(journal: Journal) -> None:
    make_runner(journal).run("nap", 0)  # due at once; this server has no such workflow
    counted = 0
    storage: Any = journal.storage
    real = storage.due

    def due(*a: Any, **k: Any) -> Any:
        nonlocal counted
        counted += 1
        return real(*a, **k)

    storage.due = due
    with Runner(journal) as stranger, Serving(stranger, poll_interval=0.2):
        time.sleep(1.0)
    assert counted <= 12, counted  # about one round per polling interval, not thousands


def test_an_async_workflow_refuses_concurrent_waits(journal: Journal) -> None:
    import asyncio

    from runner import AsyncContext

    runner = Runner(journal)

    @runner.workflow(name="both")
    async def both(ctx: AsyncContext) -> Any:
        return await asyncio.gather(ctx.sleep(0.1), ctx.wait_for("x"))

    run = runner.run(both)
    if run.status == "waiting":  # the sleep got its record in first: it fails at its wake-up
        time.sleep(0.15)
        wake_due(runner)
    state = journal.state(run.id)
    assert state.status == "failed" and state.error is not None
    assert "one at a time" in state.error.message
