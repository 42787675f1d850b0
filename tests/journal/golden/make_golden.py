"""Write vN_stream.msgpack: streams covering every event type, as the code encodes them.

v1 holds the first release's event types; v2 adds ``ExecutionClaimed`` and a stored value
whose class no longer exists anywhere (it must decode as a ``journal.Unresolved``). v3 is the
compact format (short topic codes, bodies without execution id and position, which come from
the row): every v1 and v2 stream again, and an execution begun before the upgrade (v2 rows)
and continued after it (v3 rows) past positions that take 1, 2 and 3 bytes. Its file holds
whole rows (``[execution id, position, topic, body]``), as storage hands them to a reader.
v4 (rows as v3) adds durable time and outside events: WaitStarted/WaitEnded (timers, signal
waits that consumed a signal or timed out), SignalReceived (before and during a wait, and one
never consumed), ValueRecorded, a pause with a deadline that timed out, a stream that
sleeps after being resumed, a parent whose child's end came as its signal, and a fork with a
code version, a retry's back-off and a patch marker. v5 (rows as v3) adds the queue and
replay divergence: an enqueued ExecutionStarted (``queued``) claimed by a server,
ReplayDiverged recorded twice (a paused run whose resume diverged, and an orphan whose
divergence a later claim cleared), and a cancellation that names the live driver it
stopped (``ExecutionCancelled.holder``). (Rows of
the old types written before their new fields existed are the v3 file's: today's code reads
them with those fields at their defaults.)

Run ONCE per storage-format version (``python -m tests.journal.golden.make_golden``) and
commit the output. Never regenerate an existing file: test_golden.py checks that the bytes
an old version wrote still decode to :func:`golden_streams`, and regenerating would hide
exactly the incompatibility it is there to catch. For a new format, write v6_stream.msgpack.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import msgspec

from journal.encoding import _encode_legacy, encode_event
from journal.events import (
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
    OutOfLine,
    ReplayDiverged,
    SignalReceived,
    StepCompleted,
    StepFailed,
    StepStarted,
    Truncated,
    ValueRecorded,
    WaitEnded,
    WaitStarted,
)
from journal.values import Unresolved
from tests.journal.golden.values import GoldenPoint, GoldenTag

PATH = Path(__file__).with_name("v1_stream.msgpack")
PATH_V2 = Path(__file__).with_name("v2_stream.msgpack")
PATH_V3 = Path(__file__).with_name("v3_stream.msgpack")
PATH_V4 = Path(__file__).with_name("v4_stream.msgpack")
PATH_V5 = Path(__file__).with_name("v5_stream.msgpack")
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

EVERY_VALUE = {
    "str": "héllo",
    "int": -7,
    "big": 2**70,
    "float": 1.5,
    "bool": True,
    "none": None,
    "list": [1, "two"],
    "tuple": (1, (2, 3)),
    "dict": {"k": {"n": 1}, 3: "int key"},
    "decimal": Decimal("12.3400"),
    "datetime": datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-5))),
    "date": date(2024, 2, 29),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\x01\xfe",
    "struct": GoldenTag(name="tag", value=[Decimal("1.0")]),
    "dataclass": GoldenPoint(x=1, y=2),
}


def _stream(eid: UUID, *events: tuple[type[Event], dict[str, object]]) -> list[Event]:
    return [
        cls(execution_id=eid, position=i, timestamp=T0 + timedelta(seconds=i), **fields)
        for i, (cls, fields) in enumerate(events, start=1)
    ]


def golden_streams() -> dict[str, list[Event]]:
    """The events the golden file holds, built with today's constructors."""
    error = ErrorInfo(type="ValueError", message="bad input", traceback="Traceback ...")
    costs = (
        Cost(usd=Decimal("0.0123"), input_tokens=100, output_tokens=20, model="small"),
        Cost(usd=Decimal("1"), input_tokens=1, output_tokens=2, model="large"),
    )
    return {
        "completed": _stream(
            UUID("00000000-0000-4000-8000-000000000001"),
            (ExecutionStarted, {"workflow": "golden", "input": EVERY_VALUE,
                                "idempotency_key": "golden-1"}),
            (StepStarted, {"name": "fetch", "seq": 1, "attempt": 1, "input": {"url": "x"}}),
            (LogRecorded, {"level": "info", "message": "fetching", "seq": 1,
                           "fields": {"n": 1, "when": date(2025, 1, 1)}}),
            (StepFailed, {"seq": 1, "attempt": 1, "error": error, "will_retry": True,
                          "costs": costs[:1], "duration": 0.25}),
            (StepStarted, {"name": "fetch", "seq": 1, "attempt": 2,
                           "input": Truncated(size=70000, sha256="ab" * 32, preview="{'url")}),
            (StepCompleted, {"seq": 1, "attempt": 2, "output": EVERY_VALUE, "costs": costs,
                             "duration": 1.5}),
            (StepStarted, {"name": "render", "seq": 2}),
            (StepCompleted, {"seq": 2, "output": OutOfLine(size=300000, sha256="cd" * 32)}),
            (LogRecorded, {"level": "warning", "message": "no seq"}),
            (ExecutionPaused, {"reason": "human_review", "payload": {"draft": "text"}}),
            (ExecutionResumed, {"value": {"approved": True}}),
            (ExecutionCompleted, {"output": ("done", Decimal("1.5"))}),
        ),
        "failed": _stream(
            UUID("00000000-0000-4000-8000-000000000002"),
            (ExecutionStarted, {"workflow": "golden"}),
            (StepStarted, {"name": "only", "seq": 1}),
            (StepFailed, {"seq": 1, "attempt": 1, "error": error}),
            (ExecutionFailed, {"error": error}),
        ),
        "cancelled": _stream(
            UUID("00000000-0000-4000-8000-000000000003"),
            (ExecutionStarted, {"workflow": "golden", "input": None}),
            (ExecutionPaused, {"reason": "approval"}),
            (ExecutionCancelled, {"reason": "operator said no"}),
        ),
    }


#: A value of a class that exists nowhere: readers get it as a stand-in, never an error.
GONE = Unresolved(topic="tests.journal.golden.gone:Gone", fields={"a": 1, "b": [Decimal("2")]})


def golden_streams_v2() -> dict[str, list[Event]]:
    """The events of v2_stream.msgpack: claims (start, resume, recovery) and a lost class."""
    return {
        "claimed": _stream(
            UUID("00000000-0000-4000-8000-000000000004"),
            (ExecutionStarted, {"workflow": "golden", "input": {"gone": GONE}}),
            (ExecutionClaimed, {"host": "host-a", "pid": 101, "runner": "a" * 32}),
            (StepStarted, {"name": "slow", "seq": 1}),
            (ExecutionClaimed, {"host": "host-b", "pid": 202, "runner": "b" * 32,
                                "reason": "recover", "process_started": T0,
                                "quiet_for": 226.5}),
            (StepStarted, {"name": "slow", "seq": 1, "attempt": 2}),
            (StepCompleted, {"seq": 1, "attempt": 2, "output": GONE}),
            (ExecutionPaused, {"reason": "human_review", "payload": GONE}),
            (ExecutionClaimed, {"host": "host-c", "pid": 303, "runner": "c" * 32,
                                "reason": "resume"}),
            (ExecutionResumed, {"value": True}),
            (ExecutionCompleted, {"output": GONE}),
        ),
    }


def golden_streams_v3() -> dict[str, list[Event]]:
    """The events of v3_stream.msgpack: the v1 and v2 streams, and ``upgraded``, whose first
    :data:`V3_LEGACY_ROWS` events were written before the upgrade."""
    logs = [(LogRecorded, {"level": "info", "message": f"line {i}", "seq": 2, "fields": {"i": i}})
            for i in range(260)]
    upgraded = _stream(
        UUID("00000000-0000-4000-8000-000000000005"),
        (ExecutionStarted, {"workflow": "golden", "input": {"n": 1}, "idempotency_key": "up"}),
        (ExecutionClaimed, {"host": "old-host", "pid": 1, "runner": "o" * 32}),
        (StepStarted, {"name": "before", "seq": 1, "input": (1, Decimal("2.5"))}),
        (StepCompleted, {"seq": 1, "output": GONE, "duration": 0.5}),
        (ExecutionPaused, {"reason": "upgrade"}),
        # the new release from here
        (ExecutionClaimed, {"host": "new-host", "pid": 2, "runner": "n" * 32,
                            "reason": "resume", "process_started": T0, "quiet_for": 60.0}),
        (ExecutionResumed, {"value": {"go": True}}),
        (StepStarted, {"name": "after", "seq": 2, "attempt": 1, "input": EVERY_VALUE}),
        *logs,
        (StepFailed, {"seq": 2, "attempt": 1, "will_retry": True, "duration": 2.0,
                      "error": ErrorInfo(type="TimeoutError", message="slow")}),
        (StepStarted, {"name": "after", "seq": 2, "attempt": 2}),
        (StepCompleted, {"seq": 2, "attempt": 2, "output": EVERY_VALUE, "duration": 0.25,
                         "costs": (Cost(usd=Decimal("0.5"), input_tokens=3, model="m"),)}),
        (ExecutionCompleted, {"output": [GONE, "done"]}),
    )
    return {**golden_streams(), **golden_streams_v2(), "upgraded": upgraded}


#: How many leading events of a v3 stream were written by the release before (v2 rows).
V3_LEGACY_ROWS = {"upgraded": 5}


def golden_streams_v4() -> dict[str, list[Event]]:
    """The events of v4_stream.msgpack (v3 rows): waits, signals, drawn values, deadlines."""
    t = T0 + timedelta(hours=1)
    waited = _stream(
        UUID("00000000-0000-4000-8000-000000000006"),
        (ExecutionStarted, {"workflow": "golden", "input": {"order": 7}}),
        (ExecutionClaimed, {"host": "h", "pid": 1, "runner": "r" * 32}),
        (ValueRecorded, {"seq": 1, "kind": "now", "value": t}),
        (ValueRecorded, {"seq": 2, "kind": "random", "value": 0.625}),
        (ValueRecorded, {"seq": 3, "kind": "uuid4",
                         "value": UUID("87654321-4321-8765-4321-876543218765")}),
        (StepStarted, {"name": "charge", "seq": 4, "input": {"order": 7}}),
        (StepCompleted, {"seq": 4, "output": EVERY_VALUE}),
        (WaitStarted, {"seq": 5, "kind": "timer", "until": t + timedelta(hours=24)}),
        (ExecutionClaimed, {"host": "h2", "pid": 2, "runner": "s" * 32, "reason": "wake"}),
        (WaitEnded, {"seq": 5}),
        (SignalReceived, {"name": "paid", "value": {"amount": Decimal("9.99")}}),
        (WaitStarted, {"seq": 6, "kind": "signal", "name": "paid"}),
        (WaitEnded, {"seq": 6, "signal": 11}),
        (WaitStarted, {"seq": 7, "kind": "signal", "name": "shipped",
                       "until": t + timedelta(minutes=10)}),
        (SignalReceived, {"name": "other", "value": GONE}),
        (ExecutionClaimed, {"host": "h2", "pid": 2, "runner": "s" * 32, "reason": "wake"}),
        (WaitEnded, {"seq": 7, "timed_out": True}),
        (ExecutionPaused, {"reason": "human_review", "payload": {"draft": 1},
                           "until": t + timedelta(hours=72)}),
        (ExecutionResumed, {"value": None, "timed_out": True}),
        (ExecutionCompleted, {"output": {"paid": True}}),
    )
    slept = _stream(
        UUID("00000000-0000-4000-8000-000000000007"),
        (ExecutionStarted, {"workflow": "golden"}),
        (StepStarted, {"name": "before", "seq": 1}),
        (StepCompleted, {"seq": 1, "output": 1}),
        (ExecutionPaused, {"reason": "upgrade"}),
        (ExecutionResumed, {"value": "go"}),
        (WaitStarted, {"seq": 2, "kind": "timer", "until": t}),
    )
    parent_id = UUID("00000000-0000-4000-8000-000000000008")
    child_id = UUID("00000000-0000-4000-8000-000000000009")
    parent = _stream(
        parent_id,
        (ExecutionStarted, {"workflow": "golden"}),
        (WaitStarted, {"seq": 1, "kind": "child", "name": "golden_child"}),
        (SignalReceived, {"name": "journal.child:1", "value": {
            "status": "completed", "execution_id": str(child_id), "output": [1, 2],
            "error": None}}),
        (WaitEnded, {"seq": 1, "signal": 3}),
        (ExecutionCompleted, {"output": [1, 2]}),
    )
    child = _stream(
        child_id,
        (ExecutionStarted, {"workflow": "golden_child", "input": {"n": 2},
                            "idempotency_key": f"child {parent_id} 1", "parent": parent_id,
                            "parent_seq": 1}),
        (ExecutionCompleted, {"output": [1, 2]}),
    )
    retried = _stream(
        UUID("00000000-0000-4000-8000-00000000000a"),
        (ExecutionStarted, {"workflow": "golden", "version": "3f2a9c1e0b7d4455",
                            "forked_from": parent_id, "forked_seq": 2}),
        (StepStarted, {"name": "call", "seq": 1}),
        (StepFailed, {"seq": 1, "attempt": 1, "will_retry": True,
                      "error": ErrorInfo(type="TimeoutError", message="slow"),
                      "retry_at": t + timedelta(seconds=60), "max_attempts": 3}),
        (ValueRecorded, {"seq": 2, "kind": "patch", "value": "add-check"}),
    )
    return {"waited": waited, "slept": slept, "parent": parent, "child": child,
            "retried": retried}


def golden_streams_v5() -> dict[str, list[Event]]:
    """The events of v5_stream.msgpack (v3 rows): a queued start, replay divergences."""
    t = T0 + timedelta(hours=2)
    queued = _stream(
        UUID("00000000-0000-4000-8000-00000000000b"),
        (ExecutionStarted, {"workflow": "golden", "input": {"n": 1}, "version": "v1",
                            "queued": True}),
        (SignalReceived, {"name": "early", "value": 1}),
        (ExecutionClaimed, {"host": "h3", "pid": 3, "runner": "q" * 32, "reason": "dequeue"}),
        (StepStarted, {"name": "work", "seq": 1}),
        (StepCompleted, {"seq": 1, "output": "done"}),
        (ExecutionCompleted, {"output": "done"}),
    )
    paused = _stream(
        UUID("00000000-0000-4000-8000-00000000000c"),
        (ExecutionStarted, {"workflow": "golden", "version": "v1"}),
        (ExecutionPaused, {"reason": "approve", "until": t + timedelta(days=1)}),
        (ReplayDiverged, {"seq": 1, "version": "v2", "recorded": "pause 'approve'",
                          "called": "step 'check'", "message": "diverged at seq 1",
                          "host": "h4", "pid": 4}),
    )
    cleared = _stream(
        UUID("00000000-0000-4000-8000-00000000000d"),
        (ExecutionStarted, {"workflow": "golden", "version": "v1"}),
        (StepStarted, {"name": "a", "seq": 1}),
        (ReplayDiverged, {"seq": 1, "version": "v2", "message": "renamed"}),
        (LogRecorded, {"level": "info", "message": "still diverged"}),
        (ExecutionClaimed, {"host": "h5", "pid": 5, "runner": "c" * 32, "reason": "recover",
                            "quiet_for": 12.5}),
        (StepStarted, {"name": "a", "seq": 1, "attempt": 2}),
    )
    held = _stream(
        UUID("00000000-0000-4000-8000-00000000000e"),
        (ExecutionStarted, {"workflow": "golden"}),
        (StepStarted, {"name": "slow", "seq": 1}),
        (ExecutionCancelled, {"reason": "duplicate",
                              "holder": "h6:6 since 2026-01-01T00:00:00+00:00"}),
    )
    return {"queued": queued, "paused": paused, "cleared": cleared, "held": held}


def encode_streams(streams: dict[str, list[Event]] | None = None) -> bytes:
    """A v1/v2 golden file's bytes: {name: [[topic, state bytes], ...]} as msgpack."""
    encoded = {
        name: [(s.topic, s.state) for s in map(_encode_legacy, events)]
        for name, events in (golden_streams() if streams is None else streams).items()
    }
    return msgspec.msgpack.encode(encoded)


def encode_rows(streams: dict[str, list[Event]], legacy_rows: dict[str, int]) -> bytes:
    """A v3 golden file's bytes: {name: [[execution id, position, topic, body], ...]}, the
    first ``legacy_rows[name]`` rows of a stream in the v2 format."""
    encoded = {
        name: [(str(s.originator_id), s.originator_version, s.topic, s.state)
               for s in (
                   (_encode_legacy if i < legacy_rows.get(name, 0) else encode_event)(e)
                   for i, e in enumerate(events))]
        for name, events in streams.items()
    }
    return msgspec.msgpack.encode(encoded)


if __name__ == "__main__":
    files = (
        (PATH, lambda: encode_streams(golden_streams())),
        (PATH_V2, lambda: encode_streams(golden_streams_v2())),
        (PATH_V3, lambda: encode_rows(golden_streams_v3(), V3_LEGACY_ROWS)),
        (PATH_V4, lambda: encode_rows(golden_streams_v4(), {})),
        (PATH_V5, lambda: encode_rows(golden_streams_v5(), {})),
    )
    for path, encode in files:
        if path.exists():
            print(f"{path} exists: golden files are never regenerated (see docstring)")
            continue
        path.write_bytes(encode())
        print(f"wrote {path}")
