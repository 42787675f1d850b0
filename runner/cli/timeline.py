"""What ``journal show`` says about one execution, as data (rendering lives in ``render``).

Built from the execution's own stream (the truth) rather than the views: every event with
its offset from the start, what it means in a few words, step durations and attempts,
errors, log lines, the pause and its payload, what a waiting execution waits for, the calls
that are not steps (sleeps, waits for signals and how they ended, drawn values, children),
the signals received, the cost of each step and in total, and for an execution still in
flight how long it has been quiet. Only a parent's children still running come from the
views (their own streams say where they are; the parent's says only how each ended).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from journal.events import (
    CHILD_SIGNAL,
    WAIT_CHILD,
    Cost,
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
from journal.readable import format_utc
from journal.state import CALL_DONE, CallRecord, ExecutionState, fold
from journal.storage.leases import driver_name
from runner.cli.jsonout import preview

if TYPE_CHECKING:
    from projections import ExecutionSummary

__all__ = [
    "CallLine",
    "ChildLine",
    "Entry",
    "SignalLine",
    "StepLine",
    "Timeline",
    "build_timeline",
    "call_lines",
    "child_end",
    "child_lines",
    "event_label",
    "format_utc",
    "has_children",
    "signal_lines",
    "summarize",
    "waits_for",
]

PREVIEW_WIDTH = 80


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the timeline."""

    position: int
    at: datetime
    #: Seconds since ExecutionStarted.
    offset: float
    event: str
    seq: int | None = None
    step: str | None = None
    attempt: int | None = None
    duration: float | None = None
    cost_usd: Decimal | None = None
    level: str | None = None
    detail: str = ""


class StepLine(msgspec.Struct, frozen=True, kw_only=True):
    """One step, across its attempts."""

    seq: int
    name: str
    status: str
    attempts: int
    duration: float | None
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    error: str | None
    #: The traceback of its error (a failed step's, or a retrying one's last), if recorded.
    traceback: str | None = None


class CallLine(msgspec.Struct, frozen=True, kw_only=True):
    """A call of the workflow that is not a step: a wait (``kind`` timer or signal), a
    drawn value (``kind`` value, ``name`` now, random or uuid4) or a child execution
    (``kind`` child, ``name`` its workflow)."""

    seq: int
    kind: str
    #: What the workflow called: sleep, wait_for, now, random, uuid4 (or the wait's kind).
    call: str
    name: str
    #: waiting (still open) or done.
    status: str
    at: datetime
    until: datetime | None
    ended_at: datetime | None
    #: waiting, fired (a timer), signal consumed, timed out, drawn (a value), or how its
    #: child ended: completed, failed or cancelled.
    outcome: str
    #: The value drawn, or that of the signal consumed.
    value: Any
    #: The position of the signal consumed (None: none).
    signal: int | None
    #: The child execution a child call started (None: another call, or a child the views
    #: have not seen yet), and its status (how it ended, or where it is now).
    child: UUID | None = None
    child_status: str | None = None


class SignalLine(msgspec.Struct, frozen=True, kw_only=True):
    """A signal received, and the call that consumed it (None: not consumed yet)."""

    position: int
    name: str
    at: datetime
    value: Any
    consumed_by: int | None
    #: The child execution whose end this signal reports (None: a signal from outside).
    child: UUID | None = None


class ChildLine(msgspec.Struct, frozen=True, kw_only=True):
    """A child execution the workflow started at call ``seq`` (``ctx.child``)."""

    seq: int
    #: None while the views have not seen the child yet (they are behind the log).
    execution_id: UUID | None
    workflow: str
    #: How it ended (from the end its parent received), or its status in the views.
    status: str | None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``journal show`` prints."""

    summary: dict[str, Any]
    steps: list[StepLine]
    entries: list[Entry]
    calls: list[CallLine] = []
    signals: list[SignalLine] = []
    children: list[ChildLine] = []


def _usd(costs: tuple[Cost, ...]) -> Decimal:
    return sum((c.usd for c in costs), Decimal(0))


#: What the workflow called, by the kind of a wait or the name of a drawn value.
_CALLS = {"timer": "sleep", "signal": "wait_for"}


def _call_name(kind: str, name: str) -> str:
    """``sleep``, ``wait_for 'paid'``, ``now``: the call as the workflow made it."""
    if kind == "value":
        return name
    call = _CALLS.get(kind, kind)
    return f"{call} {name!r}" if name else call


def child_end(name: str, value: Any) -> tuple[UUID, str | None] | None:
    """(child id, how it ended) if signal ``name`` with ``value`` is a child's end (sent to
    its parent by the runner), else None."""
    return _ended(value) if name.startswith(CHILD_SIGNAL) else None


def _ended(value: Any) -> tuple[UUID, str | None] | None:
    """(child id, status) from the value of a child's end signal (None: not of that form)."""
    if not isinstance(value, dict):
        return None
    try:
        child = UUID(str(value["execution_id"]))
    except (KeyError, ValueError):
        return None
    status = value.get("status")
    return child, status if isinstance(status, str) else None


def _deadline(until: datetime | None) -> str:
    return f" until {format_utc(until)}" if until is not None else ", no deadline"


def waits_for(kind: str, name: str, until: datetime | None) -> str:
    """``timer until 2026-12-01 15:00:49 UTC``, ``signal 'paid', no deadline``, ``human
    'review' until ...``, ``child 'kid'``: what a waiting or paused execution waits for."""
    what = f"{kind} {name!r}" if name else kind
    if kind == "timer":
        return f"{what} until {format_utc(until)}" if until is not None else what
    if kind == WAIT_CHILD:  # its end, whenever that is: a child has no deadline
        return what
    return what + _deadline(until)


def event_label(event: Event) -> str:
    """A short lower-case name for the event kind (``step completed``)."""
    name = type(event).__name__
    words: list[str] = []
    for ch in name:
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.lower())
    return "".join(words)


def describe(event: Event, step_names: dict[int, str]) -> Entry:
    """One event as a timeline entry (``offset`` left at 0: the caller knows the start)."""
    common: dict[str, Any] = {
        "position": event.position, "at": event.timestamp, "offset": 0.0,
        "event": event_label(event),
    }
    if isinstance(event, ExecutionStarted):
        queued = " (queued for a serve() process)" if event.queued else ""
        return Entry(**common, detail=f"{event.workflow} input={preview(event.input, 60)}"
                     f"{queued}")
    if isinstance(event, StepStarted):
        return Entry(**common, seq=event.seq, step=event.name, attempt=event.attempt,
                     detail=f"input={preview(event.input, 60)}" if event.input is not None
                     else "")
    if isinstance(event, StepCompleted):
        return Entry(**common, seq=event.seq, step=step_names.get(event.seq),
                     attempt=event.attempt, duration=event.duration,
                     cost_usd=_usd(event.costs) if event.costs else None,
                     detail=f"output={preview(event.output, 60)}")
    if isinstance(event, StepFailed):
        retry = "will retry" if event.will_retry else "gave up"
        return Entry(**common, seq=event.seq, step=step_names.get(event.seq),
                     attempt=event.attempt, duration=event.duration,
                     cost_usd=_usd(event.costs) if event.costs else None,
                     detail=f"{event.error.type}: {event.error.message} ({retry})")
    if isinstance(event, LogRecorded):
        fields = f" {preview(event.fields, 60)}" if event.fields else ""
        return Entry(**common, seq=event.seq,
                     step=step_names.get(event.seq) if event.seq is not None else None,
                     level=event.level, detail=f"{event.message}{fields}")
    if isinstance(event, ExecutionPaused):
        until = f" until {format_utc(event.until)}" if event.until is not None else ""
        return Entry(**common, detail=f"{event.reason}{until} payload="
                     f"{preview(event.payload, PREVIEW_WIDTH)}")
    if isinstance(event, ExecutionResumed):
        if event.timed_out:
            return Entry(**common, detail="timed out (no answer by the deadline)")
        return Entry(**common, detail=f"value={preview(event.value, PREVIEW_WIDTH)}")
    if isinstance(event, WaitStarted):
        call = _call_name(event.kind, event.name)
        if event.kind == WAIT_CHILD:  # a child has no deadline
            return Entry(**common, seq=event.seq, detail=call)
        if event.kind == "timer" and event.until is not None:
            return Entry(**common, seq=event.seq, detail=f"{call} until {format_utc(event.until)}")
        return Entry(**common, seq=event.seq, detail=call + _deadline(event.until))
    if isinstance(event, WaitEnded):
        if event.signal:
            ended = f"consumed the signal at #{event.signal}"
        elif event.timed_out:
            ended = "timed out"
        else:
            ended = "timer fired"
        return Entry(**common, seq=event.seq, detail=ended)
    if isinstance(event, SignalReceived):
        end = child_end(event.name, event.value)
        if end is not None:
            return Entry(**common, detail=f"end of child {end[0]}: {end[1]}")
        return Entry(**common, detail=f"{event.name!r} value={preview(event.value, 60)}")
    if isinstance(event, ValueRecorded):
        return Entry(**common, seq=event.seq,
                     detail=f"{event.kind}() = {preview(event.value, 60)}")
    if isinstance(event, ExecutionCompleted):
        return Entry(**common, detail=f"output={preview(event.output, PREVIEW_WIDTH)}")
    if isinstance(event, ExecutionFailed):
        return Entry(**common, detail=f"{event.error.type}: {event.error.message}")
    if isinstance(event, ExecutionCancelled):
        held = (f"while {driver_name(event.holder)} drove it (it stops at its next call)"
                if event.holder else "")
        return Entry(**common, detail="; ".join(t for t in (event.reason, held) if t))
    if isinstance(event, ExecutionClaimed):
        return Entry(**common, detail=claim_text(event))
    if isinstance(event, ReplayDiverged):
        where = f" by {event.host}:{event.pid}" if event.host else ""
        version = f" (code version {event.version})" if event.version else ""
        return Entry(**common, seq=event.seq,
                     detail=f"replay{where}{version} does not match: the journal recorded "
                     f"{event.recorded or 'nothing'}, the code calls "
                     f"{event.called or 'nothing more'}; nothing ran")
    return Entry(**common)


_CLAIM_VERBS = {"start": "started", "resume": "resumed", "recover": "recovered",
                "continue": "continued (same idempotency key)",
                "dequeue": "taken from the queue", "wake": "woken"}


def claim_text(event: ExecutionClaimed, previous: ExecutionClaimed | None = None) -> str:
    """``driver box:41 gone; recovered by box:42 after 226 s quiet (runner 1a2b3c4d)``: who
    took it over (and, given the ``previous`` claim, from whom)."""
    verb = _CLAIM_VERBS.get(event.reason, event.reason)
    quiet = f" after {event.quiet_for:.0f} s quiet" if event.quiet_for is not None else ""
    gone = ""
    if previous is not None and event.reason in ("recover", "continue") and (
            previous.host, previous.pid, previous.runner) != (event.host, event.pid,
                                                              event.runner):
        gone = f"driver {previous.host}:{previous.pid} gone; "
    return f"{gone}{verb} by {event.host}:{event.pid}{quiet} (runner {event.runner[:8]})"


def summarize(
    state: ExecutionState, *, now: datetime | None = None, live: bool = True
) -> dict[str, Any]:
    """The execution's state as a summary (also the summary of an export).

    ``live`` adds what depends on the clock (``running_for``, ``since_last_event``) for an
    execution in flight; exports leave it out so the same history exports identically.
    """
    now = now or datetime.now(UTC)
    duration = None
    if state.started_at is not None:
        end = state.ended_at or now
        duration = (end - state.started_at).total_seconds()
    quiet = None
    if not state.is_terminal and state.updated_at is not None:
        quiet = (now - state.updated_at).total_seconds()
    pause, wait = state.pause, state.wait
    summary: dict[str, Any] = {
        "execution_id": str(state.execution_id),
        "workflow": state.workflow,
        "status": state.status,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "ended_at": state.ended_at,
        "duration": duration if state.is_terminal else None,
        "running_for": None if state.is_terminal else duration,
        "since_last_event": quiet,
        "events": state.position,
        "log_lines": state.log_count,
        "driver": None if state.driver is None else {
            "host": state.driver.host, "pid": state.driver.pid, "runner": state.driver.runner,
            "reason": state.driver.reason, "at": state.driver.at,
            "quiet_for": state.driver.quiet_for,
        },
        "claims": state.claims,
        "idempotency_key": state.idempotency_key,
        "parent": None if state.parent is None else str(state.parent),
        "parent_seq": None if state.parent is None else state.parent_seq,
        "code_version": state.version or None,
        "forked_from": None if state.forked_from is None else str(state.forked_from),
        "forked_seq": None if state.forked_from is None else state.forked_seq,
        "diverged": None if state.diverged is None else {
            "seq": state.diverged.seq, "version": state.diverged.version,
            "recorded": state.diverged.recorded, "called": state.diverged.called,
            "at": state.diverged.at, "by": f"{state.diverged.host}:{state.diverged.pid}",
        },
        "input": state.input,
        "output": state.output,
        "error": state.error,
        "pause": None if pause is None else {
            "reason": pause.reason, "payload": pause.payload, "at": pause.at,
            "until": pause.until,
        },
        "wait": None if wait is None else {
            "kind": wait.kind, "name": wait.name, "seq": wait.seq, "since": wait.since,
            "until": wait.until,
        },
        "last_started_step": state.last_started_step,
        "last_completed_step": state.last_completed_step,
        "cost": {
            "usd": state.cost.usd,
            "input_tokens": state.cost.input_tokens,
            "output_tokens": state.cost.output_tokens,
        },
    }
    if not live or state.is_terminal:
        del summary["running_for"], summary["since_last_event"]
    return summary


def step_lines(state: ExecutionState) -> list[StepLine]:
    """The execution's steps in seq order, with their totals."""
    lines = []
    for seq in sorted(state.steps):
        st = state.steps[seq]
        lines.append(StepLine(
            seq=seq, name=st.name, status=st.status, attempts=st.attempts,
            duration=st.duration, cost_usd=_usd(st.costs),
            input_tokens=sum(c.input_tokens for c in st.costs),
            output_tokens=sum(c.output_tokens for c in st.costs),
            error=f"{st.error.type}: {st.error.message}" if st.error else None,
            traceback=st.error.traceback or None if st.error else None,
        ))
    return lines


def _outcome(call: CallRecord) -> str:
    if call.kind == "value":
        return "drawn"
    if call.status != "done":
        return "waiting"
    if call.kind == WAIT_CHILD:
        ended = _ended(call.value)  # the value of the end it consumed
        if ended is not None and ended[1] is not None:
            return ended[1]
    if call.signal:
        return "signal consumed"
    if call.timed_out:
        return "timed out"
    return "fired" if call.kind == "timer" else "done"


def call_lines(
    state: ExecutionState, children: Sequence[ChildLine] = ()
) -> list[CallLine]:
    """The execution's calls that are not steps, in seq order, with how each ended (and
    which child each child call started, from ``children``)."""
    by_seq = {c.seq: c for c in children}
    lines = []
    for seq, c in sorted(state.calls.items()):
        child = by_seq.get(seq) if c.kind == WAIT_CHILD else None
        lines.append(CallLine(
            seq=seq, kind=c.kind, call=_CALLS.get(c.kind, c.kind) if c.kind != "value"
            else c.name, name=c.name if c.kind != "value" else "", status=c.status,
            at=c.at, until=c.until, ended_at=c.ended_at, outcome=_outcome(c),
            value=c.value, signal=c.signal or None,
            child=child.execution_id if child else None,
            child_status=child.status if child else None,
        ))
    return lines


def signal_lines(state: ExecutionState) -> list[SignalLine]:
    """The signals the execution received, in stream order."""
    lines = []
    for s in sorted(state.signals, key=lambda s: s.position):
        ended = child_end(s.name, s.value)
        lines.append(SignalLine(position=s.position, name=s.name, at=s.at, value=s.value,
                                consumed_by=s.consumed_by or None,
                                child=ended[0] if ended else None))
    return lines


def has_children(events: Sequence[Event]) -> bool:
    """Whether the workflow started a child execution (``ctx.child``)."""
    return any(isinstance(e, WaitStarted) and e.kind == WAIT_CHILD for e in events)


def child_lines(
    state: ExecutionState, known: Sequence[ExecutionSummary] = ()
) -> list[ChildLine]:
    """The children the execution started, by call: how each ended, from the end its
    parent received (the truth, in its own stream); one still running as the views
    (``known``: its children there) have it."""
    rows = {r.parent_seq: r for r in known}
    lines = []
    for seq, c in sorted(state.calls.items()):
        if c.kind != WAIT_CHILD:
            continue
        row = rows.get(seq)
        if c.status == CALL_DONE:
            ended = _ended(c.value)  # the end it consumed
        else:  # an end that came, not consumed yet (the parent is woken next)
            signal = state.unconsumed(child_signal(seq))
            ended = _ended(signal.value) if signal is not None else None
        if ended is not None:
            eid: UUID | None = ended[0]
            status = ended[1]
        else:
            eid = row.execution_id if row else None
            status = row.status if row else None
        lines.append(ChildLine(seq=seq, execution_id=eid, workflow=c.name, status=status))
    return lines


def build_timeline(
    execution_id: UUID, events: list[Event], *, now: datetime | None = None,
    children: Sequence[ExecutionSummary] = (),
) -> Timeline:
    """The whole ``show`` picture of one execution from its events (and, for one that
    started children, its ``children`` as the views have them)."""
    state = fold(execution_id, events)
    start = events[0].timestamp if events else None
    names: dict[int, str] = {}
    entries = []
    claim: ExecutionClaimed | None = None
    for event in events:
        if isinstance(event, StepStarted):
            names[event.seq] = event.name
        entry = describe(event, names)
        if isinstance(event, ExecutionClaimed):
            if claim is not None:
                entry = msgspec.structs.replace(entry, detail=claim_text(event, claim))
            claim = event
        offset = (event.timestamp - start).total_seconds() if start else 0.0
        entries.append(msgspec.structs.replace(entry, offset=offset))
    kids = child_lines(state, children)
    return Timeline(
        summary=summarize(state, now=now), steps=step_lines(state),
        entries=entries, calls=call_lines(state, kids), signals=signal_lines(state),
        children=kids,
    )
