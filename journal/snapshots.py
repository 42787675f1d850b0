"""Snapshots of an execution's folded state: loading a long execution without its history.

A snapshot is a cache, never a source of truth. It is the :class:`ExecutionState` the fold
gave at some position, stored whole (user values in the same self-describing form events
use), so that ``state at p`` + ``fold(events after p)`` equals ``fold(all events)``. The
state also carries what replay needs (each step's outcome and failures, every pause and its
answer), so the runner resumes from a snapshot and the events after it alone.

Why it is safe: positions are immutable and contiguous, so the state at ``p`` never changes;
a snapshot is only replaced by one at a later position; retention deletes it with its
stream. Anything that does not read back (another format, a decode error) is ignored and
the stream is folded from the start, as if there were no snapshot.
"""

from __future__ import annotations

from typing import Any

import msgspec

from journal.state import ExecutionState, PauseRecord, StepState
from journal.values import ext_hook, to_wire

__all__ = ["FORMAT", "decode_snapshot", "encode_snapshot"]

#: Bumped whenever ExecutionState changes in a way an older snapshot would misread
#: (2: steps stored as arrays).
FORMAT = 2


class _Snapshot(msgspec.Struct, array_like=True):
    format: int
    state: msgspec.Raw


_encoder = msgspec.msgpack.Encoder()
_head = msgspec.msgpack.Decoder(_Snapshot)
_state = msgspec.msgpack.Decoder(ExecutionState, ext_hook=ext_hook)


def _wire(value: Any, path: str) -> Any:
    return value if value is None else to_wire(value, path)


def encode_snapshot(state: ExecutionState) -> bytes:
    """The state's bytes, user values in wire form (``UnsupportedValue`` cannot happen: the
    values were accepted when their events were written)."""
    steps: dict[int, StepState] = {}
    for seq, step in state.steps.items():
        i, o = _wire(step.input, "step input"), _wire(step.output, "step output")
        if i is not step.input or o is not step.output:
            step = msgspec.structs.replace(step, input=i, output=o)
        steps[seq] = step
    pause = state.pause
    if pause is not None:
        payload = _wire(pause.payload, "pause payload")
        if payload is not pause.payload:
            pause = msgspec.structs.replace(pause, payload=payload)
    pauses: list[PauseRecord] = []
    for p in state.pauses:
        value = _wire(p.value, "resume value")
        pauses.append(p if value is p.value else msgspec.structs.replace(p, value=value))
    wired = msgspec.structs.replace(
        state, input=_wire(state.input, "input"), output=_wire(state.output, "output"),
        steps=steps, pause=pause, pauses=pauses,
    )
    return _encoder.encode(_Snapshot(FORMAT, msgspec.Raw(_encoder.encode(wired))))


def decode_snapshot(data: bytes) -> ExecutionState | None:
    """The state a snapshot holds, or None if it cannot be read here (another format)."""
    try:
        head = _head.decode(data)
        if head.format != FORMAT:
            return None
        state: ExecutionState = _state.decode(head.state)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None
    return state

