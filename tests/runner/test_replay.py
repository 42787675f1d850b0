"""Resume = replay: recorded outcomes come back, equal and of the same type, without running."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import (
    ExecutionCancelled,
    ExecutionPaused,
    InvalidTransition,
    Journal,
    LogRecorded,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from journal.encoding import decode_event
from runner import (
    AlreadyResumed,
    Context,
    NonDeterministicWorkflow,
    OutsideStep,
    Runner,
    add_cost,
    current_step,
)
from tests.runner import workflows
from tests.runner.workflows import effects, make_runner, noop


def reopen(journal: Journal) -> tuple[Journal, Runner]:
    """A second journal and runner on the same database: what a new process would have."""
    j = Journal.open(journal.url)
    return j, make_runner(j)


def test_typed_outputs_replay_equal_and_same_type(runner: Runner, journal: Journal,
                                                 counter: Path) -> None:
    first = runner.run(workflows.typed, "doc-1")
    assert first.status == "paused"
    assert first.pause is not None and first.pause.reason == "human_review"
    ran = effects(counter)
    assert ran == ["fetch", "findings", "summarise", "summaries", "pair"]

    j2, r2 = reopen(journal)
    with j2, r2:
        done = r2.resume(first.id, {"approved": True})
    assert done.status == "completed"
    assert done.output["answer"] == {"approved": True}
    assert done.output["types"] == [
        "Doc", "list", "Finding", "Summary", "Decimal", "Summary", "tuple"
    ]
    assert all(done.output["equal"])
    assert effects(counter) == ran  # nothing ran again

    state = journal.state(first.id)
    assert state.cost.usd == Decimal("0.0021")
    assert state.steps[2].costs[0].model == "sim-1"
    logs = [e.message for e in journal.events(first.id) if isinstance(e, LogRecorded)]
    assert logs == ["analysed", "answered"]  # replay does not write "analysed" again


def spy_appends(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the event types of every store append (one append is one commit)."""
    store: Any = journal.storage
    real = store._append
    appends: list[list[str]] = []

    def append(stored: Any, blobs: Any = (), wakes: Any = ()) -> Any:
        appends.append([type(decode_event(
            s.topic, s.state, execution_id=s.originator_id, position=s.originator_version,
        )).__name__ for s in stored])
        return real(stored, blobs, wakes)

    monkeypatch.setattr(store, "_append", append)
    return appends


def test_one_commit_per_step_completion_rides_with_next_start(
    runner: Runner, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends = spy_appends(journal, monkeypatch)
    run = runner.run(workflows.steps_then_pause)
    kinds = [type(e).__name__ for e in journal.events(run.id)]
    assert kinds == [
        "ExecutionStarted", "ExecutionClaimed", "StepStarted", "StepCompleted", "StepStarted",
        "StepCompleted", "ExecutionPaused",
    ]
    # one commit per step (the start and the claim ride with the first), one for the end
    # (here a pause)
    assert appends == [
        ["ExecutionStarted", "ExecutionClaimed", "StepStarted"],
        ["StepCompleted", "StepStarted"], ["StepCompleted", "ExecutionPaused"],
    ]
    appends.clear()
    done = runner.resume(run.id)
    assert done.status == "completed" and done.output == "done"
    assert journal.state(run.id).steps[3].name == "c"
    # the answer rides with the next commit, with who resumed it (the lease keeps any
    # other resumer out meanwhile; the log's position check fences anyone else)
    assert appends == [
        ["ExecutionClaimed", "ExecutionResumed", "StepStarted"],
        ["StepCompleted", "ExecutionCompleted"],
    ]


def test_failed_step_replays_as_step_failed_error(runner: Runner, journal: Journal,
                                                 counter: Path) -> None:
    run = runner.run(workflows.failing, True)
    assert run.status == "paused"
    failed = [e for e in journal.events(run.id) if isinstance(e, StepFailed)]
    assert len(failed) == 1 and not failed[0].will_retry
    assert failed[0].error.type == "ValueError" and failed[0].costs[0].usd == Decimal("0.01")

    j2, r2 = reopen(journal)
    with j2, r2:
        done = r2.resume(run.id, "ok")
    assert done.status == "completed"
    assert done.output["caught"] == {"type": "ValueError", "message": "bad input", "seq": 1}
    assert effects(counter) == ["boom"]


def test_uncaught_step_failure_fails_the_execution(runner: Runner, journal: Journal,
                                                   counter: Path) -> None:
    run = runner.run(workflows.failing, False)
    assert run.status == "failed"
    # Recorded as its root cause, the step's own error; the wrapper is in the traceback.
    assert run.error is not None and run.error.type == "ValueError"
    assert run.error.message == "bad input"
    assert "StepFailedError" in run.error.traceback and "ValueError" in run.error.traceback
    kinds = [type(e).__name__ for e in journal.events(run.id)]
    assert kinds[-2:] == ["StepFailed", "ExecutionFailed"]


def test_retries_journal_every_attempt(runner: Runner, journal: Journal,
                                       counter: Path) -> None:
    run = runner.run(workflows.retrying, "k1", 2, 3)
    assert run.status == "completed"
    assert run.output == "flaky:1:3"
    events = journal.events(run.id)
    started = [e.attempt for e in events if isinstance(e, StepStarted)]
    failed = [(e.attempt, e.will_retry) for e in events if isinstance(e, StepFailed)]
    assert started == [1, 2, 3]
    assert failed == [(1, True), (2, True)]
    assert [e.attempt for e in events if isinstance(e, StepCompleted)] == [3]
    assert journal.state(run.id).cost.usd == Decimal("0.003")  # failed calls cost too


def test_exhausted_retries_fail_the_step_and_execution(runner: Runner, journal: Journal,
                                                       counter: Path) -> None:
    run = runner.run(workflows.retrying, "k2", 5, 2)
    assert run.status == "failed"
    events = journal.events(run.id)
    failed = [(e.attempt, e.will_retry) for e in events if isinstance(e, StepFailed)]
    assert failed == [(1, True), (2, False)]
    assert run.error is not None and run.error.type == "ConnectionError"
    assert effects(counter) == ["flaky", "flaky"]


def test_pauses_replay_their_answers(runner: Runner, journal: Journal, counter: Path) -> None:
    run = runner.run(workflows.two_pauses)
    assert run.status == "paused" and run.pause is not None and run.pause.reason == "first"
    run = runner.resume(run.id, 1)
    assert run.status == "paused" and run.pause is not None
    assert run.pause.reason == "second" and run.pause.payload == {"a": 1}
    assert runner.resume(run.id, 2).status == "completed"
    with pytest.raises(InvalidTransition, match="completed"):
        runner.resume(run.id, 3)
    done = journal.state(run.id)
    assert done.status == "completed" and done.output == [1, 2]
    assert effects(counter) == ["fetch"]


def test_cancel_while_paused(runner: Runner, journal: Journal) -> None:
    run = runner.run(workflows.steps_then_pause)
    cancelled = runner.cancel(run.id, reason="reviewer left")
    assert cancelled.status == "cancelled"
    position = journal.state(run.id).position
    with pytest.raises(InvalidTransition, match="cancelled"):
        runner.resume(run.id, "late")
    with pytest.raises(InvalidTransition):
        runner.cancel(run.id)
    events = journal.events(run.id)
    assert isinstance(events[-1], ExecutionCancelled) and events[-1].reason == "reviewer left"
    assert journal.state(run.id).position == position


def test_cancel_while_running_stops_at_next_transition(journal: Journal) -> None:
    runner = Runner(journal)

    def cancel_me() -> str:
        Runner(journal).cancel(current_step().execution_id, reason="from another runner")
        return "ran anyway"

    @runner.workflow()
    def victim(ctx: Context) -> str:
        ctx.step("cancel_me", cancel_me)
        ctx.step("never", noop)
        return "unreachable"

    with runner:
        run = runner.run(victim)
    assert run.status == "cancelled"
    names = [e.name for e in journal.events(run.id) if isinstance(e, StepStarted)]
    assert names == ["cancel_me"]


def test_non_determinism_names_seq_recorded_and_called(journal: Journal) -> None:
    v1 = Runner(journal)

    @v1.workflow(name="evolving")
    def old(ctx: Context) -> str:
        ctx.step("a", noop)
        ctx.step("b", noop)
        ctx.pause("wait")
        return "old"

    run = v1.run(old)
    position = journal.state(run.id).position

    v2 = Runner(journal)

    @v2.workflow(name="evolving")
    def new(ctx: Context) -> str:
        ctx.step("a", noop)
        ctx.step("c", noop)
        ctx.pause("wait")
        return "new"

    with pytest.raises(NonDeterministicWorkflow) as info:
        v2.resume(run.id, "x")
    assert (info.value.seq, info.value.recorded, info.value.called) == (2, "b", "c")
    assert "seq 2" in str(info.value) and "'b'" in str(info.value) and "'c'" in str(info.value)
    # No step ran; only the divergence is recorded (the status stays paused).
    after = journal.state(run.id)
    assert after.position == position + 1 and after.status == "paused"
    assert after.diverged is not None and after.diverged.seq == 2
    assert type(journal.events(run.id)[-1]).__name__ == "ReplayDiverged"

    v3 = Runner(journal)

    @v3.workflow(name="evolving")
    def shorter(ctx: Context) -> str:
        ctx.step("a", noop)
        ctx.pause("wait")
        return "shorter"

    with pytest.raises(NonDeterministicWorkflow) as info:
        v3.resume(run.id, "x")
    assert (info.value.seq, info.value.recorded, info.value.recorded_kind) == (2, "b", "step")
    assert info.value.called_kind == "pause"
    other = journal.state(run.id)  # another code version: its divergence is recorded too
    assert other.position == position + 2 and other.diverged is not None
    assert other.diverged.version != after.diverged.version

    done = v1.resume(run.id, "x")  # the original code still finishes it
    assert done.status == "completed" and done.output == "old"
    assert journal.state(run.id).diverged is None


def test_step_only_calls_outside_a_step() -> None:
    with pytest.raises(OutsideStep, match="add_cost"):
        add_cost(usd=1)
    with pytest.raises(OutsideStep, match="current_step"):
        current_step()


def test_idempotency_key_runs_once(runner: Runner, counter: Path) -> None:
    first = runner.run(workflows.typed, "doc-9", idempotency_key="doc-9")
    again = runner.run(workflows.typed, "doc-9", idempotency_key="doc-9")
    assert again.id == first.id and again.status == "paused"
    assert effects(counter).count("fetch") == 1


def test_pause_is_the_last_event_and_carries_payload(runner: Runner, journal: Journal,
                                                    counter: Path) -> None:
    run = runner.run(workflows.typed, "doc-2")
    last = journal.events(run.id)[-1]
    assert isinstance(last, ExecutionPaused) and last.payload == {"findings": 4}


def test_resume_of_a_pause_answered_elsewhere(runner: Runner, journal: Journal,
                                             counter: Path) -> None:
    run = runner.run(workflows.two_pauses)
    journal.execution(run.id).resumed("answered by someone else")  # its runner then died
    with pytest.raises(AlreadyResumed, match="no longer paused"):
        runner.resume(run.id, "mine")
    never_paused = journal.start("steps_then_pause", {})
    with pytest.raises(InvalidTransition, match="not paused"):
        runner.resume(never_paused.id, "x")


def test_a_held_completion_is_committed_while_the_workflow_idles(journal: Journal) -> None:
    runner = Runner(journal)
    seen: list[list[str]] = []

    def look_from_elsewhere() -> None:  # workflow code between steps, taking its time
        # The engine commits a completion held 0.5 s: another journal sees it within 1.5 s
        # (margin for load), looked for every 20 ms rather than once at the end.
        wanted = ["ExecutionStarted", "ExecutionClaimed", "StepStarted", "StepCompleted",
                  "LogRecorded"]
        deadline = time.monotonic() + 1.5
        with Journal.open(journal.url) as other:
            while True:
                kinds = [type(e).__name__ for e in other.events(current_id[0])]
                if kinds == wanted or time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
        seen.append(kinds)

    current_id: list[object] = []

    @runner.workflow()
    def idler(ctx: Context) -> None:
        current_id.append(ctx.execution_id)
        ctx.step("quick", noop)
        ctx.log("idling")
        look_from_elsewhere()
        ctx.step("next", noop)

    with runner:
        assert runner.run(idler).status == "completed"
    assert seen == [["ExecutionStarted", "ExecutionClaimed", "StepStarted", "StepCompleted",
                     "LogRecorded"]]


@dataclasses.dataclass
class Unhashable:  # eq=True without frozen: instances (and their bound methods) can't be hashed
    value: int

    def get(self) -> int:
        return self.value


def test_steps_may_be_bound_methods_of_unhashable_objects(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow()
    def methodical(ctx: Context) -> int:
        first: int = ctx.step("get", Unhashable(41).get)
        ctx.pause("wait")
        return first + 1

    with runner:
        run = runner.run(methodical)
        assert runner.resume(run.id).output == 42


def test_a_start_held_for_the_first_commit_is_durable_within_a_second(
    journal: Journal,
) -> None:
    """The start rides with the first step's start; a workflow that idles before any step
    still shows up in the log within the promise for held records (another journal sees it)."""
    import threading

    runner = Runner(journal)
    started, looked = threading.Event(), threading.Event()

    @runner.workflow(name="idle_first")
    def idle_first(ctx: Any) -> str:
        started.set()
        looked.wait(1.5)  # idles until the other journal has looked (at most 1.5 s)
        return str(ctx.step("late", str, "x"))

    eid = journal.new_execution_id()
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(runner.run(idle_first, execution_id=eid))
    )
    with Journal.open(journal.url) as other:
        worker.start()
        assert started.wait(10)
        t0 = time.monotonic()
        while not other.storage.read_stream(eid) and time.monotonic() - t0 < 1.2:
            time.sleep(0.02)
        seen = [type(e).__name__ for e in other.events(eid)]
        looked.set()
        assert seen[0] == "ExecutionStarted"
        worker.join(10)
    runner.close()
    assert result and result[0].status == "completed"
