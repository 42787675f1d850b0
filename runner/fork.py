"""Forks: a new execution that starts with another one's recorded outcomes before a seq, and
runs live from there with the code deployed now (``runner.fork``, ``journal fork``/``retry``).

The fork's stream is a prefix of the source's history, copied: every event before the first
one of a call at ``from_seq`` or later (steps, waits, drawn values), without the source's
claims and log lines, under the fork's id and positions, stamped now. A prefix of a valid
history is a valid history (the journal's invariant 4), so the fork is an execution like any
other: replay returns the copied outcomes without running them, and the first call at
``from_seq`` runs live (under the fork's id, so a step's idempotency key is new).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from journal import Event, ExecutionClaimed, ExecutionStarted, ExecutionState, LogRecorded
from journal.events import (
    TERMINAL_EVENTS,
    ReplayDiverged,
    StepCompleted,
    StepFailed,
    StepStarted,
    ValueRecorded,
    WaitEnded,
    WaitStarted,
)
from journal.state import CALL_DONE, STEP_COMPLETED, STEP_FAILED

__all__ = ["UNCHANGED", "forked_history", "retry_seq"]


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: ``fork(..., input=UNCHANGED)``: the fork starts with the source's recorded input.
UNCHANGED: Any = _Unchanged()

_CALLS = (StepStarted, StepCompleted, StepFailed, WaitStarted, WaitEnded, ValueRecorded)


def forked_history(
    source: list[Event], fork_id: UUID, from_seq: int, *, input: Any, version: str
) -> list[Event]:
    """The fork's first events: ExecutionStarted (``forked_from``) and the source's
    history before ``from_seq``."""
    if not source or not isinstance(source[0], ExecutionStarted):
        raise ValueError("a fork needs the source's history from its ExecutionStarted")
    if from_seq < 1:
        raise ValueError(f"a fork starts at seq 1 or later, not {from_seq}")
    started = source[0]
    now = datetime.now(UTC)
    events: list[Event] = [ExecutionStarted(
        execution_id=fork_id, position=1, timestamp=now, workflow=started.workflow,
        input=started.input if input is UNCHANGED else input, version=version,
        forked_from=started.execution_id, forked_seq=from_seq,
    )]
    moved: dict[int, int] = {}  # source position -> fork position
    for event in source[1:]:
        if isinstance(event, TERMINAL_EVENTS):
            break
        if isinstance(event, _CALLS) and event.seq >= from_seq:  # type: ignore[attr-defined]
            break
        if isinstance(event, ExecutionClaimed | LogRecorded | ReplayDiverged):
            continue  # who drove the source, what it said, whose code failed to replay it
        moved[event.position] = len(events) + 1
        changes: dict[str, Any] = {}
        if isinstance(event, WaitEnded) and event.signal:  # names the signal by position
            changes["signal"] = moved[event.signal]
        events.append(msgspec.structs.replace(
            event, execution_id=fork_id, position=len(events) + 1, timestamp=now, **changes))
    return events


def retry_seq(state: ExecutionState) -> int:
    """Where a retry of a failed or cancelled execution starts: its failed step (the one its
    error came from, else the last that failed), else its first unfinished call, else right
    after its last call."""
    failed = [s for s in state.steps.values() if s.status == STEP_FAILED]
    if failed:
        error = state.error
        same = [s for s in failed if error is not None and s.error is not None
                and (s.error.type, s.error.message) == (error.type, error.message)]
        return max(same or failed, key=lambda s: s.seq).seq
    unfinished = [s.seq for s in state.steps.values() if s.status != STEP_COMPLETED]
    unfinished += [c.seq for c in state.calls.values() if c.status != CALL_DONE]
    return min(unfinished) if unfinished else state.max_seq + 1
