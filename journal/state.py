"""What an execution's events mean: the state machine and the fold ``apply(state, event)``.

This is the single source of truth for the lifecycle. ``journal.state()``, the recording
handle's validation, the runner's replay, the projections and the tests' model all use it.

Lifecycle: ``running -> paused -> running -> ... -> completed | failed | cancelled``.

``apply`` checks the event first and raises :class:`InvalidTransition` before changing
anything, then updates ``state`` in place and returns it: replay stays O(1) per event
(a 10,000-event stream folds in milliseconds). Callers that need the old state copy it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from journal.errors import InvalidTransition
from journal.events import (
    WAIT_CHILD,
    WAIT_TIMER,
    Cost,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionClaimed,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionStarted,
    LogRecorded,
    ReplayDiverged,
    SignalReceived,
    StepCompleted,
    StepFailed,
    StepStarted,
    ValueRecorded,
    WaitEnded,
    WaitStarted,
    child_signal,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "PAUSED",
    "QUEUED",
    "RUNNING",
    "TERMINAL_STATUSES",
    "WAITING",
    "CallRecord",
    "CostTotals",
    "DivergedRecord",
    "DriverInfo",
    "ExecutionState",
    "PauseRecord",
    "PauseState",
    "SignalRecord",
    "StepMarker",
    "StepState",
    "WaitState",
    "apply",
    "fold",
]

NEW = "new"
#: Enqueued (``ExecutionStarted.queued``): recorded, and no process has claimed it yet.
QUEUED = "queued"
RUNNING = "running"
PAUSED = "paused"
#: Sleeping, or waiting for a signal: resumed by ``serve()`` when due, holding nothing.
WAITING = "waiting"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

STEP_RUNNING = "running"
STEP_RETRYING = "retrying"
STEP_COMPLETED = "completed"
STEP_FAILED = "failed"

#: How long after a parent began to wait for its child ``serve()`` first looks at it.
CHILD_RECHECK = timedelta(minutes=1)

#: A call that is not a step (``CallRecord.status``): a wait still open, or over.
CALL_WAITING = "waiting"
CALL_DONE = "done"


class CostTotals(msgspec.Struct, kw_only=True):
    """Sums of costs; usd stays an exact Decimal."""

    usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, costs: tuple[Cost, ...]) -> None:
        """Add each cost to the totals."""
        for c in costs:
            self.usd += c.usd
            self.input_tokens += c.input_tokens
            self.output_tokens += c.output_tokens


class StepMarker(msgspec.Struct, frozen=True, kw_only=True):
    """Which step, and when: the answer to "where did it get to"."""

    name: str
    seq: int
    at: datetime


class StepState(msgspec.Struct, kw_only=True, array_like=True):
    """One step of an execution, across its attempts. (An array in a snapshot: a long
    history's snapshot is mostly steps, and field names would be 60% of it.)"""

    seq: int
    name: str
    status: str
    attempts: int
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    costs: tuple[Cost, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration: float | None = None
    attempt_started_at: datetime | None = None
    #: Failed attempts so far (StepFailed events), for a retry policy resumed by replay.
    failures: int = 0
    #: While retrying: when the next attempt starts, and the attempts allowed in all.
    retry_at: datetime | None = None
    max_attempts: int = 0


class PauseRecord(msgspec.Struct, kw_only=True):
    """One pause of the execution's history, as replay needs it: after which steps it
    came, and its answer once one was recorded."""

    reason: str
    #: The highest step seq started before the pause.
    steps_before: int
    position: int
    #: The position of the ExecutionResumed that answered it (0: not answered).
    answered_at: int = 0
    value: Any = None
    #: Answered by its deadline, not by a value.
    timed_out: bool = False
    #: Its deadline, if it had one.
    until: datetime | None = None


class PauseState(msgspec.Struct, frozen=True, kw_only=True):
    """The open pause: why, with what payload, since when, and until when (its deadline)."""

    reason: str
    payload: Any
    position: int
    at: datetime
    until: datetime | None = None


class CallRecord(msgspec.Struct, kw_only=True, array_like=True):
    """A workflow call at ``seq`` that is not a step: a wait (``timer``, ``signal``) or a
    drawn value (``value``: ``name`` is now, random or uuid4). Replay answers it from here."""

    seq: int
    kind: str
    name: str
    status: str
    at: datetime
    until: datetime | None = None
    ended_at: datetime | None = None
    #: The value drawn, or the signal's value a wait consumed.
    value: Any = None
    #: The position of the signal a wait consumed (0: none).
    signal: int = 0
    timed_out: bool = False


class WaitState(msgspec.Struct, frozen=True, kw_only=True):
    """The open wait: what for (``kind`` timer, signal or child, ``name``), at which call,
    since when and until when."""

    seq: int
    kind: str
    name: str
    since: datetime
    until: datetime | None = None

    @property
    def signal(self) -> str:
        """The signal that ends this wait (a child's end comes as one)."""
        return child_signal(self.seq) if self.kind == WAIT_CHILD else self.name


class SignalRecord(msgspec.Struct, kw_only=True, array_like=True):
    """A signal that arrived (at ``position``), and the call that consumed it (0: none yet)."""

    position: int
    name: str
    at: datetime
    value: Any = None
    consumed_by: int = 0


class DriverInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The process that last claimed the execution (``ExecutionClaimed``)."""

    host: str
    pid: int
    runner: str
    reason: str
    at: datetime
    quiet_for: float | None = None


class DivergedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The last replay that failed (``ReplayDiverged``), until code that replays it claims
    the execution."""

    seq: int
    version: str
    message: str
    at: datetime
    host: str = ""
    pid: int = 0
    #: The call the journal holds at ``seq``, and the one the code made ("": none).
    recorded: str = ""
    called: str = ""


class ExecutionState(msgspec.Struct, kw_only=True):
    """Everything the log says about one execution, rebuilt by folding its events."""

    execution_id: UUID
    status: str = NEW
    workflow: str = ""
    input: Any = None
    idempotency_key: str | None = None
    #: The execution that started this one as its child (at its call ``parent_seq``).
    parent: UUID | None = None
    parent_seq: int = 0
    #: The version of the workflow code it started with ("" if not recorded).
    version: str = ""
    #: The execution it was forked from, and from which seq it ran live.
    forked_from: UUID | None = None
    forked_seq: int = 0
    position: int = 0
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    steps: dict[int, StepState] = {}
    pause: PauseState | None = None
    output: Any = None
    error: ErrorInfo | None = None
    cost: CostTotals = msgspec.field(default_factory=CostTotals)
    last_started_step: StepMarker | None = None
    last_completed_step: StepMarker | None = None
    log_count: int = 0
    max_seq: int = 0
    driver: DriverInfo | None = None
    claims: int = 0
    #: Every pause so far, in order (replay answers them from here).
    pauses: list[PauseRecord] = []
    #: Log lines recorded outside any step (replay does not write them again).
    workflow_logs: int = 0
    #: Calls that are not steps, by seq (waits, drawn values).
    calls: dict[int, CallRecord] = {}
    #: The open wait of a ``waiting`` execution.
    wait: WaitState | None = None
    #: Every signal received, in stream order.
    signals: list[SignalRecord] = []
    #: Whether a wake-up may be kept for it: it waited, got a signal, or paused with a
    #: deadline at some point (a run of steps and plain pauses never has one, so its commits
    #: write none). Set by the fold, so a commit asks in O(1).
    may_have_woken: bool = False
    #: The last replay that diverged, if no process has claimed the execution since.
    diverged: DivergedRecord | None = None

    @property
    def is_terminal(self) -> bool:
        """True once completed, failed or cancelled: nothing can follow."""
        return self.status in TERMINAL_STATUSES

    @property
    def next_seq(self) -> int:
        """The seq a newly started step gets."""
        return self.max_seq + 1

    @property
    def wakes_at(self) -> datetime | None:
        """When this execution must be looked at again by itself: its timer or timeout, or
        now if a signal it waits for is there already; None if only the outside wakes it."""
        wait = self.wait
        if self.status == QUEUED:
            return self.started_at  # due at once: the first serve() to look takes it
        if self.status == WAITING and wait is not None:
            if wait.kind != WAIT_TIMER and self.unconsumed(wait.signal) is not None:
                return self.updated_at
            if wait.kind == WAIT_CHILD:
                # Its child's end wakes it; a look now and then finds a child that ended
                # without saying so (its process killed in between).
                return wait.since + CHILD_RECHECK
            return wait.until
        if self.status == PAUSED and self.pause is not None:
            return self.pause.until
        return None

    def unconsumed(self, name: str) -> SignalRecord | None:
        """The first signal ``name`` that no wait has consumed yet (stream order)."""
        for signal in self.signals:
            if signal.name == name and not signal.consumed_by:
                return signal
        return None

    @property
    def running_steps(self) -> list[StepState]:
        """Steps with an attempt in flight."""
        return [s for s in self.steps.values() if s.status == STEP_RUNNING]

    def copy(self) -> ExecutionState:
        """A deep copy, for callers that must keep a state while folding further."""
        return copy.deepcopy(self)


def _reject(state: ExecutionState, event: Event, reason: str) -> InvalidTransition:
    return InvalidTransition(state.execution_id, state.status, type(event).__name__, reason)


def check(state: ExecutionState, event: Event) -> None:
    """Raise InvalidTransition if ``event`` cannot follow ``state``; change nothing."""
    eid = event.execution_id
    if eid is not state.execution_id and eid.int != state.execution_id.int:
        raise _reject(state, event, f"event belongs to execution {eid}")
    if event.position != state.position + 1:
        raise _reject(
            state, event, f"position {event.position} does not follow {state.position}"
        )
    _CHECKS[type(event)](state, event)


def _check_start(state: ExecutionState, event: Event) -> None:
    if state.status != NEW:
        raise _reject(state, event, "the execution has already started")


def _check_live(state: ExecutionState, event: Event) -> None:
    status = state.status
    if status == NEW:
        raise _reject(state, event, "the execution has not started")
    if status in TERMINAL_STATUSES:
        raise _reject(state, event, f"the execution already {status}; nothing can follow")


def _check_paused(state: ExecutionState, event: Event) -> None:
    _check_live(state, event)
    if state.status != RUNNING:
        raise _reject(state, event, "only a running execution can pause")


def _check_resumed(state: ExecutionState, event: ExecutionResumed) -> None:
    _check_live(state, event)
    if state.status != PAUSED:
        raise _reject(state, event, "only a paused execution can resume")
    if event.timed_out and (state.pause is None or state.pause.until is None):
        raise _reject(state, event, "the pause has no timeout")


def _check_completed(state: ExecutionState, event: Event) -> None:
    _check_live(state, event)
    if state.status != RUNNING:
        raise _reject(state, event, "only a running execution can complete")
    open_steps = [f"{s.name} (seq {s.seq})" for s in state.running_steps]
    if open_steps:
        raise _reject(state, event, f"steps still running: {', '.join(open_steps)}")


def _check_free_seq(state: ExecutionState, event: WaitStarted | ValueRecorded) -> None:
    _check_live(state, event)
    if state.status != RUNNING:
        raise _reject(state, event, f"only a running execution can make a call at seq "
                      f"{event.seq} ({state.status})")
    if event.seq < 1 or event.seq in state.steps or event.seq in state.calls:
        raise _reject(state, event, f"seq {event.seq} is taken or invalid")


def _check_wait_ended(state: ExecutionState, event: WaitEnded) -> None:
    _check_live(state, event)
    wait = state.wait
    if state.status != WAITING or wait is None or wait.seq != event.seq:
        raise _reject(state, event, f"no wait is open at seq {event.seq}")
    if event.signal:
        signal = next((s for s in state.signals if s.position == event.signal), None)
        if signal is None or signal.name != wait.signal or signal.consumed_by:
            raise _reject(state, event, f"position {event.signal} is no unconsumed signal "
                          f"{wait.name!r}")
    elif event.timed_out and wait.until is None:
        raise _reject(state, event, f"the wait at seq {event.seq} has no timeout")


def _check_step_started(state: ExecutionState, event: StepStarted) -> None:
    _check_live(state, event)
    if state.status != RUNNING:
        raise _reject(state, event, f"cannot start step {event.name!r} while {state.status}")
    if event.seq in state.calls:
        raise _reject(state, event, f"seq {event.seq} is taken by a "
                      f"{state.calls[event.seq].kind} call")
    if event.attempt < 1:
        raise _reject(state, event, f"attempt must be at least 1, not {event.attempt}")
    step = state.steps.get(event.seq)
    if step is None:
        if event.seq < 1:
            raise _reject(state, event, f"seq must be at least 1, not {event.seq}")
        if event.attempt != 1:
            raise _reject(
                state, event, f"step {event.name!r} seq {event.seq} has no attempt before "
                f"{event.attempt}"
            )
        return
    if step.name != event.name:
        raise _reject(
            state, event, f"seq {event.seq} is step {step.name!r}, not {event.name!r}"
        )
    if step.status in (STEP_COMPLETED, STEP_FAILED):
        raise _reject(state, event, f"step {step.name!r} seq {step.seq} already {step.status}")
    # A retry after a failure, or a new attempt replacing one abandoned by a crash.
    if event.attempt != step.attempts + 1:
        raise _reject(
            state, event,
            f"step {step.name!r} seq {step.seq} is at attempt {step.attempts}; "
            f"the next attempt is {step.attempts + 1}, not {event.attempt}",
        )


def _check_step_finished(state: ExecutionState, event: StepCompleted | StepFailed) -> None:
    _check_live(state, event)
    if state.status != RUNNING:
        raise _reject(state, event, f"cannot finish step seq {event.seq} while {state.status}")
    step = state.steps.get(event.seq)
    if step is None:
        raise _reject(state, event, f"step seq {event.seq} was never started")
    if step.status != STEP_RUNNING:
        raise _reject(
            state, event, f"step {step.name!r} seq {step.seq} is not running ({step.status})"
        )
    if event.attempt != step.attempts:
        raise _reject(
            state, event,
            f"step {step.name!r} seq {step.seq} is at attempt {step.attempts}, "
            f"not {event.attempt}",
        )


_CHECKS: dict[type[Event], Callable[[ExecutionState, Any], None]] = {
    ExecutionStarted: _check_start,
    StepStarted: _check_step_started,
    StepCompleted: _check_step_finished,
    StepFailed: _check_step_finished,
    LogRecorded: _check_live,
    ExecutionPaused: _check_paused,
    ExecutionResumed: _check_resumed,
    ExecutionCompleted: _check_completed,
    ExecutionFailed: _check_live,
    ExecutionCancelled: _check_live,
    ExecutionClaimed: _check_live,
    WaitStarted: _check_free_seq,
    WaitEnded: _check_wait_ended,
    SignalReceived: _check_live,
    ValueRecorded: _check_free_seq,
    ReplayDiverged: _check_live,
}


def apply(state: ExecutionState, event: Event) -> ExecutionState:
    """Check ``event`` against ``state``, then fold it in (in place) and return the state."""
    check(state, event)
    state.position = event.position
    state.updated_at = event.timestamp
    if state.diverged is not None and type(event) not in _KEEP_DIVERGED:
        state.diverged = None  # someone's code went on with it
    _FOLDS[type(event)](state, event)
    return state


def _fold_log(state: ExecutionState, event: LogRecorded) -> None:
    state.log_count += 1
    if event.seq is None:
        state.workflow_logs += 1


def _fold_step_started(state: ExecutionState, event: StepStarted) -> None:
    at = event.timestamp
    step = state.steps.get(event.seq)
    if step is None:
        if event.seq > state.max_seq:
            state.max_seq = event.seq
        state.steps[event.seq] = StepState(
            seq=event.seq, name=event.name, status=STEP_RUNNING, attempts=1,
            input=event.input, started_at=at, attempt_started_at=at,
        )
    else:
        step.status = STEP_RUNNING
        step.attempts = event.attempt
        step.error = None
        step.retry_at = None
        step.attempt_started_at = at
    last = state.last_started_step
    if last is None or event.seq >= last.seq:
        state.last_started_step = StepMarker(name=event.name, seq=event.seq, at=at)


def _fold_step_completed(state: ExecutionState, event: StepCompleted) -> None:
    step = state.steps[event.seq]
    step.status = STEP_COMPLETED
    step.output = event.output
    step.ended_at = event.timestamp
    step.duration = event.duration
    if event.costs:
        step.costs = step.costs + event.costs
        state.cost.add(event.costs)
    last = state.last_completed_step
    if last is None or event.seq >= last.seq:
        state.last_completed_step = StepMarker(name=step.name, seq=event.seq, at=event.timestamp)


def _fold_step_failed(state: ExecutionState, event: StepFailed) -> None:
    step = state.steps[event.seq]
    step.status = STEP_RETRYING if event.will_retry else STEP_FAILED
    step.failures += 1
    step.retry_at = event.retry_at if event.will_retry else None
    step.max_attempts = event.max_attempts or step.max_attempts
    step.error = event.error
    step.ended_at = event.timestamp
    step.duration = event.duration
    if event.costs:
        step.costs = step.costs + event.costs
        state.cost.add(event.costs)


def _fold_started(state: ExecutionState, event: ExecutionStarted) -> None:
    state.status = QUEUED if event.queued else RUNNING
    state.may_have_woken = event.queued
    state.workflow = event.workflow
    state.input = event.input
    state.idempotency_key = event.idempotency_key
    state.parent = event.parent
    state.parent_seq = event.parent_seq
    state.version = event.version
    state.forked_from = event.forked_from
    state.forked_seq = event.forked_seq
    state.started_at = event.timestamp


def _fold_paused(state: ExecutionState, event: ExecutionPaused) -> None:
    state.status = PAUSED
    if event.until is not None:
        state.may_have_woken = True
    state.pause = PauseState(
        reason=event.reason, payload=event.payload, position=event.position,
        at=event.timestamp, until=event.until,
    )
    state.pauses.append(PauseRecord(
        reason=event.reason, steps_before=state.max_seq, position=event.position,
        until=event.until,
    ))


def _fold_resumed(state: ExecutionState, event: ExecutionResumed) -> None:
    state.status = RUNNING
    state.pause = None
    last = state.pauses[-1]
    last.answered_at = event.position
    last.value = event.value
    last.timed_out = event.timed_out


def _fold_wait_started(state: ExecutionState, event: WaitStarted) -> None:
    state.status = WAITING
    state.may_have_woken = True
    if event.seq > state.max_seq:
        state.max_seq = event.seq
    state.calls[event.seq] = CallRecord(
        seq=event.seq, kind=event.kind, name=event.name, status=CALL_WAITING,
        at=event.timestamp, until=event.until,
    )
    state.wait = WaitState(seq=event.seq, kind=event.kind, name=event.name,
                           since=event.timestamp, until=event.until)


def _fold_wait_ended(state: ExecutionState, event: WaitEnded) -> None:
    state.status = RUNNING
    state.wait = None
    call = state.calls[event.seq]
    call.status = CALL_DONE
    call.ended_at = event.timestamp
    call.timed_out = event.timed_out
    if event.signal:
        for signal in state.signals:
            if signal.position == event.signal:
                signal.consumed_by = event.seq
                call.signal = event.signal
                call.value = signal.value
                break


def _fold_signal(state: ExecutionState, event: SignalReceived) -> None:
    state.may_have_woken = True
    state.signals.append(SignalRecord(
        position=event.position, name=event.name, at=event.timestamp, value=event.value,
    ))


def _fold_value(state: ExecutionState, event: ValueRecorded) -> None:
    if event.seq > state.max_seq:
        state.max_seq = event.seq
    state.calls[event.seq] = CallRecord(
        seq=event.seq, kind="value", name=event.kind, status=CALL_DONE, at=event.timestamp,
        ended_at=event.timestamp, value=event.value,
    )


def _fold_completed(state: ExecutionState, event: ExecutionCompleted) -> None:
    state.status = COMPLETED
    state.output = event.output
    state.ended_at = event.timestamp


def _fold_failed(state: ExecutionState, event: ExecutionFailed) -> None:
    state.status = FAILED
    state.error = event.error
    state.pause = None
    state.wait = None
    state.ended_at = event.timestamp


def _fold_claimed(state: ExecutionState, event: ExecutionClaimed) -> None:
    if state.status == QUEUED:
        state.status = RUNNING
    state.claims += 1
    state.driver = DriverInfo(
        host=event.host, pid=event.pid, runner=event.runner, reason=event.reason,
        at=event.timestamp, quiet_for=event.quiet_for,
    )


def _fold_diverged(state: ExecutionState, event: ReplayDiverged) -> None:
    state.diverged = DivergedRecord(seq=event.seq, version=event.version,
                                    message=event.message, at=event.timestamp,
                                    host=event.host, pid=event.pid,
                                    recorded=event.recorded, called=event.called)


def _fold_cancelled(state: ExecutionState, event: ExecutionCancelled) -> None:
    state.status = CANCELLED
    state.pause = None
    state.wait = None
    state.ended_at = event.timestamp


_FOLDS: dict[type[Event], Callable[[ExecutionState, Any], None]] = {
    ExecutionStarted: _fold_started,
    StepStarted: _fold_step_started,
    StepCompleted: _fold_step_completed,
    StepFailed: _fold_step_failed,
    LogRecorded: _fold_log,
    ExecutionPaused: _fold_paused,
    ExecutionResumed: _fold_resumed,
    ExecutionCompleted: _fold_completed,
    ExecutionFailed: _fold_failed,
    ExecutionCancelled: _fold_cancelled,
    ExecutionClaimed: _fold_claimed,
    WaitStarted: _fold_wait_started,
    WaitEnded: _fold_wait_ended,
    SignalReceived: _fold_signal,
    ValueRecorded: _fold_value,
    ReplayDiverged: _fold_diverged,
}

#: Events that say nothing of whether code replays the execution: a divergence recorded
#: before them still stands.
_KEEP_DIVERGED: set[type[Event]] = {ReplayDiverged, LogRecorded, SignalReceived}


def register_variant(variant: type[Event], base: type[Event]) -> None:
    """Fold ``variant`` (a subclass read differently, e.g. with raw payloads) as ``base``."""
    _CHECKS[variant] = _CHECKS[base]
    _FOLDS[variant] = _FOLDS[base]
    if base in _KEEP_DIVERGED:
        _KEEP_DIVERGED.add(variant)


def fold(execution_id: UUID, events: list[Event]) -> ExecutionState:
    """Replay ``events`` from the beginning into a fresh state."""
    state = ExecutionState(execution_id=execution_id)
    for event in events:
        apply(state, event)
    return state
