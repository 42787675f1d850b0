"""Bytes written by an earlier version keep decoding to the same events (schema evolution).

tests/journal/golden/vN_stream.msgpack were each written once by make_golden.py: v1 and v2
in the legacy format (topic ``module:qualname``, whole event in the body), v3 in the compact
one (topic codes, bodies without execution id and position, a stream that began in v2). If
this fails, an event or value type changed incompatibly (a field renamed, reordered or
retyped, a class moved, a topic code changed): make the change compatible (new fields last,
with defaults; new types get new codes) instead of regenerating.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from journal import Truncated, fold
from journal.encoding import (
    CODES,
    decode_event,
    event_type,
    legacy_topic_of,
    topic_of,
    topics_of,
)
from journal.events import EVENT_TYPES, OutOfLine
from journal.values import Unresolved
from tests.journal.golden.make_golden import (
    EVERY_VALUE,
    GONE,
    PATH,
    PATH_V2,
    PATH_V3,
    PATH_V4,
    PATH_V5,
    V3_LEGACY_ROWS,
    golden_streams,
    golden_streams_v2,
    golden_streams_v3,
    golden_streams_v4,
    golden_streams_v5,
)

Row = tuple[str, int, str, bytes]


def _load(path: Any = PATH) -> dict[str, list[tuple[str, bytes]]]:
    return msgspec.msgpack.decode(path.read_bytes(), type=dict[str, list[tuple[str, bytes]]])


def _load_rows(path: Any = PATH_V3) -> dict[str, list[Row]]:
    return msgspec.msgpack.decode(path.read_bytes(), type=dict[str, list[Row]])


def _assert_same(a: Any, b: Any, path: str) -> None:
    """Equal and of the same type at every level, through Structs and dataclasses."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, msgspec.Struct):
        for f in a.__struct_fields__:
            _assert_same(getattr(a, f), getattr(b, f), f"{path}.{f}")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_golden_streams_still_decode() -> None:
    stored = _load()
    expected = golden_streams()
    assert list(stored) == list(expected)
    for name, records in stored.items():
        events = expected[name]
        assert len(records) == len(events), name
        for (topic, state), want in zip(records, events, strict=True):
            assert topic == legacy_topic_of(type(want))  # topics are part of the format
            assert topic in topics_of(type(want)) and event_type(topic) is type(want)
            got = decode_event(topic, state)  # a legacy body holds its id and position
            _assert_same(got, want, f"{name}@{want.position}")
            # A reader passes the row's id and position: the same event.
            _assert_same(decode_event(topic, state, execution_id=want.execution_id,
                                      position=want.position), want, f"{name}@{want.position}")


def test_v2_streams_still_decode_and_fold() -> None:
    stored = _load(PATH_V2)
    expected = golden_streams_v2()
    assert list(stored) == list(expected)
    for name, records in stored.items():
        events = [decode_event(topic, state) for topic, state in records]
        for (topic, _), got, want in zip(records, events, expected[name], strict=True):
            assert topic == legacy_topic_of(type(want))
            _assert_same(got, want, f"{name}@{want.position}")
        state = fold(events[0].execution_id, events)
        assert state.status == "completed" and state.claims == 3
        assert state.driver is not None and state.driver.reason == "resume"
        assert state.driver.host == "host-c" and state.driver.pid == 303
        assert state.output == GONE and isinstance(state.output, Unresolved)
        assert state.output.type_name == "Gone"


def _decode_rows(rows: list[Row], *, lean: bool = False) -> list[Any]:
    return [decode_event(topic, body, lean=lean, execution_id=UUID(eid), position=position)
            for eid, position, topic, body in rows]


def test_v3_rows_are_compact_and_decode_with_the_rows_id_and_position() -> None:
    stored = _load_rows()
    expected = golden_streams_v3()
    assert list(stored) == list(expected)
    for name, rows in stored.items():
        events = expected[name]
        legacy = V3_LEGACY_ROWS.get(name, 0)
        assert len(rows) == len(events), name
        for i, ((eid, position, topic, body), want) in enumerate(zip(rows, events, strict=True)):
            where = f"{name}@{want.position}"
            assert (UUID(eid), position) == (want.execution_id, want.position), where
            if i < legacy:
                assert topic == legacy_topic_of(type(want)), where
                continue
            assert topic == topic_of(type(want)) == CODES[type(want)], where
            # No execution id in any spelling, and the body starts with the timestamp.
            uid = want.execution_id
            assert str(uid).encode() not in body and uid.bytes not in body, where
            assert uid.hex.encode() not in body, where
            assert body[1] == 0xD7 and body[2] == 0xFF, f"{where}: not a timestamp first"
        for got, want in zip(_decode_rows(rows), events, strict=True):
            _assert_same(got, want, f"{name}@{want.position}")
        for got, want in zip(_decode_rows(rows, lean=True), events, strict=True):
            assert isinstance(got, type(want)) and got.position == want.position
            assert got.execution_id == want.execution_id and got.timestamp == want.timestamp


def test_v3_streams_fold_to_their_outcome() -> None:
    outcomes = {}
    for name, rows in _load_rows().items():
        for lean in (False, True):
            state = fold(UUID(rows[0][0]), _decode_rows(rows, lean=lean))
            outcomes[name] = state.status
        if name == "upgraded":
            # Begun by the old release (v2 rows), finished by the new one (v3 rows).
            assert state.claims == 2 and state.driver is not None
            assert state.driver.host == "new-host" and state.driver.reason == "resume"
            assert state.position == len(rows) > 256  # positions of 1, 2 and 3 bytes
            assert state.steps[2].attempts == 2 and state.steps[2].status == "completed"
    assert outcomes == {"completed": "completed", "failed": "failed", "cancelled": "cancelled",
                        "claimed": "completed", "upgraded": "completed"}
    whole = fold(UUID(_load_rows()["upgraded"][0][0]), _decode_rows(_load_rows()["upgraded"]))
    assert whole.steps[1].output == GONE and isinstance(whole.steps[1].output, Unresolved)
    _assert_same(whole.steps[2].output, EVERY_VALUE, "output")
    assert whole.steps[1].input == (1, Decimal("2.5"))


#: The event types released before the compact format (the only ones with legacy rows).
LEGACY_TYPES = EVENT_TYPES[:11]


def test_golden_streams_cover_every_event_type_and_value_type() -> None:
    topics = {topic for path in (PATH, PATH_V2)
              for records in _load(path).values() for topic, _ in records}
    assert topics == {legacy_topic_of(cls) for cls in LEGACY_TYPES}
    compact = {row[2] for path in (PATH_V3, PATH_V4, PATH_V5)
               for rows in _load_rows(path).values() for row in rows} - topics
    assert compact == {topic_of(cls) for cls in EVENT_TYPES}
    completed = golden_streams()["completed"]
    payloads = [getattr(e, f) for e in completed for f in type(e).payload_fields]
    assert any(isinstance(p, Truncated) for p in payloads)
    assert any(isinstance(p, OutOfLine) for p in payloads)
    assert {type(v) for v in EVERY_VALUE.values()} >= {
        str, int, float, bool, type(None), list, tuple, dict, bytes,
    }


def test_golden_streams_fold_to_their_outcome() -> None:
    outcomes = {}
    for name, records in _load().items():
        events = [
            decode_event(topic, state)
            for (topic, state), e in zip(records, golden_streams()[name], strict=True)
        ]
        state = fold(events[0].execution_id, events)
        outcomes[name] = state.status
        if name == "completed":
            assert state.steps[1].attempts == 2
            _assert_same(state.steps[1].output, EVERY_VALUE, "output")
            assert state.cost.usd == sum(c.usd for c in events[3].costs + events[5].costs)  # type: ignore[attr-defined]
            assert state.last_completed_step is not None
            assert state.last_completed_step.seq == 2
    assert outcomes == {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}


def test_topic_codes_never_change() -> None:
    """The codes are the stored topics of every row since v3: frozen once released."""
    assert {cls.__name__: code for cls, code in CODES.items()} == {
        "ExecutionStarted": "B",
        "StepStarted": "S",
        "StepCompleted": "C",
        "StepFailed": "F",
        "LogRecorded": "L",
        "ExecutionPaused": "P",
        "ExecutionResumed": "R",
        "ExecutionCompleted": "D",
        "ExecutionFailed": "E",
        "ExecutionCancelled": "X",
        "ExecutionClaimed": "H",
        "WaitStarted": "W",
        "WaitEnded": "N",
        "SignalReceived": "G",
        "ValueRecorded": "V",
        "ReplayDiverged": "Y",
    }


def test_v4_rows_decode_and_fold_to_their_waits_signals_and_values() -> None:
    stored = _load_rows(PATH_V4)
    expected = golden_streams_v4()
    assert list(stored) == list(expected)
    for name, rows in stored.items():
        for got, want in zip(_decode_rows(rows), expected[name], strict=True):
            _assert_same(got, want, f"{name}@{want.position}")
    waited = fold(UUID(stored["waited"][0][0]), _decode_rows(stored["waited"]))
    assert waited.status == "completed" and waited.wait is None
    assert [c.kind for c in waited.calls.values()] == [
        "value", "value", "value", "timer", "signal", "signal"]
    assert waited.calls[1].value == expected["waited"][2].value  # type: ignore[attr-defined]
    assert waited.calls[6].signal == 11 and waited.calls[6].value == {"amount": Decimal("9.99")}
    assert waited.calls[7].timed_out and waited.calls[7].signal == 0
    assert [(s.name, s.consumed_by) for s in waited.signals] == [("paid", 6), ("other", 0)]
    assert waited.pauses[0].timed_out and waited.max_seq == 7
    lean = fold(UUID(stored["waited"][0][0]), _decode_rows(stored["waited"], lean=True))
    assert lean.status == "completed" and len(lean.signals) == 2
    slept = fold(UUID(stored["slept"][0][0]), _decode_rows(stored["slept"]))
    assert slept.status == "waiting" and slept.wait is not None
    assert slept.wait.kind == "timer" and slept.wakes_at == slept.wait.until
    parent = fold(UUID(stored["parent"][0][0]), _decode_rows(stored["parent"]))
    child = fold(UUID(stored["child"][0][0]), _decode_rows(stored["child"]))
    assert parent.calls[1].kind == "child" and parent.calls[1].value["output"] == [1, 2]
    assert child.parent == parent.execution_id and child.parent_seq == 1
    retried = fold(UUID(stored["retried"][0][0]), _decode_rows(stored["retried"]))
    assert retried.version == "3f2a9c1e0b7d4455" and retried.forked_seq == 2
    assert retried.steps[1].status == "retrying" and retried.steps[1].max_attempts == 3
    assert retried.steps[1].retry_at is not None and retried.calls[2].value == "add-check"


def test_v5_rows_decode_and_fold_to_a_queue_and_divergences() -> None:
    stored = _load_rows(PATH_V5)
    expected = golden_streams_v5()
    assert list(stored) == list(expected)
    for name, rows in stored.items():
        for got, want in zip(_decode_rows(rows), expected[name], strict=True):
            _assert_same(got, want, f"{name}@{want.position}")
    queued = _decode_rows(stored["queued"])
    assert fold(queued[0].execution_id, queued[:2]).status == "queued"
    done = fold(queued[0].execution_id, queued)
    assert done.status == "completed" and done.driver is not None
    assert done.driver.reason == "dequeue" and done.version == "v1"
    paused = fold(UUID(stored["paused"][0][0]), _decode_rows(stored["paused"]))
    assert paused.status == "paused" and paused.diverged is not None
    assert (paused.diverged.seq, paused.diverged.version, paused.diverged.host) == (1, "v2", "h4")
    cleared = _decode_rows(stored["cleared"])
    before = fold(cleared[0].execution_id, cleared[:4])
    assert before.diverged is not None and before.diverged.message == "renamed"
    after = fold(cleared[0].execution_id, cleared)
    assert after.diverged is None and after.steps[1].attempts == 2
    lean = fold(cleared[0].execution_id, _decode_rows(stored["cleared"][:4], lean=True))
    assert lean.diverged is not None  # a log line (lean, too) keeps it
    held = _decode_rows(stored["held"])
    assert fold(held[0].execution_id, held).status == "cancelled"
    assert held[-1].holder.startswith("h6:6 ")  # type: ignore[attr-defined]
