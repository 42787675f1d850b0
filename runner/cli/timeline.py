"""What ``journal show`` says about one execution, as data (rendering lives in ``render``).

Built from the execution's own stream (the truth) rather than the views: every event with
its offset from the start, what it means in a few words, step durations and attempts,
errors, log lines, the pause and its payload, the cost of each step and in total, and for
an execution still in flight how long it has been quiet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from journal.events import (
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
    StepCompleted,
    StepFailed,
    StepStarted,
)
from journal.state import ExecutionState, fold
from runner.cli.jsonout import preview

__all__ = ["Entry", "StepLine", "Timeline", "build_timeline", "event_label", "summarize"]

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


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``journal show`` prints."""

    summary: dict[str, Any]
    steps: list[StepLine]
    entries: list[Entry]


def _usd(costs: tuple[Cost, ...]) -> Decimal:
    return sum((c.usd for c in costs), Decimal(0))


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
        return Entry(**common, detail=f"{event.workflow} input={preview(event.input, 60)}")
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
        return Entry(**common, detail=f"{event.reason} payload="
                     f"{preview(event.payload, PREVIEW_WIDTH)}")
    if isinstance(event, ExecutionResumed):
        return Entry(**common, detail=f"value={preview(event.value, PREVIEW_WIDTH)}")
    if isinstance(event, ExecutionCompleted):
        return Entry(**common, detail=f"output={preview(event.output, PREVIEW_WIDTH)}")
    if isinstance(event, ExecutionFailed):
        return Entry(**common, detail=f"{event.error.type}: {event.error.message}")
    if isinstance(event, ExecutionCancelled):
        return Entry(**common, detail=event.reason)
    if isinstance(event, ExecutionClaimed):
        return Entry(**common, detail=claim_text(event))
    return Entry(**common)


_CLAIM_VERBS = {"start": "started", "resume": "resumed", "recover": "recovered",
                "continue": "continued (same idempotency key)"}


def claim_text(event: ExecutionClaimed) -> str:
    """``recovered by host:pid after 226 s quiet (runner 1a2b3c4d)``: who took it over."""
    verb = _CLAIM_VERBS.get(event.reason, event.reason)
    quiet = f" after {event.quiet_for:.0f} s quiet" if event.quiet_for is not None else ""
    return f"{verb} by {event.host}:{event.pid}{quiet} (runner {event.runner[:8]})"


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
    pause = state.pause
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
        "input": state.input,
        "output": state.output,
        "error": state.error,
        "pause": None if pause is None else {
            "reason": pause.reason, "payload": pause.payload, "at": pause.at,
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
        ))
    return lines


def build_timeline(
    execution_id: UUID, events: list[Event], *, now: datetime | None = None
) -> Timeline:
    """The whole ``show`` picture of one execution from its events."""
    state = fold(execution_id, events)
    start = events[0].timestamp if events else None
    names: dict[int, str] = {}
    entries = []
    for event in events:
        if isinstance(event, StepStarted):
            names[event.seq] = event.name
        entry = describe(event, names)
        offset = (event.timestamp - start).total_seconds() if start else 0.0
        entries.append(msgspec.structs.replace(entry, offset=offset))
    return Timeline(
        summary=summarize(state, now=now), steps=step_lines(state),
        entries=entries,
    )
