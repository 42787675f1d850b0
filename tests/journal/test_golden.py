"""Bytes written by an earlier version keep decoding to the same events (schema evolution).

tests/journal/golden/v1_stream.msgpack was written once by make_golden.py. If this fails,
an event or value type changed incompatibly (a field renamed, reordered or retyped, a class
moved): make the change compatible (new fields last, with defaults) instead of regenerating.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from journal import Truncated, fold
from journal.encoding import decode_event, topic_of
from journal.events import EVENT_TYPES, OutOfLine
from journal.values import Unresolved
from tests.journal.golden.make_golden import (
    EVERY_VALUE,
    GONE,
    PATH,
    PATH_V2,
    golden_streams,
    golden_streams_v2,
)


def _load(path: Any = PATH) -> dict[str, list[tuple[str, bytes]]]:
    return msgspec.msgpack.decode(path.read_bytes(), type=dict[str, list[tuple[str, bytes]]])


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
            assert topic == topic_of(type(want))  # topics are part of the format
            got = decode_event(topic, state)
            _assert_same(got, want, f"{name}@{want.position}")


def test_v2_streams_still_decode_and_fold() -> None:
    stored = _load(PATH_V2)
    expected = golden_streams_v2()
    assert list(stored) == list(expected)
    for name, records in stored.items():
        events = [decode_event(topic, state) for topic, state in records]
        for got, want in zip(events, expected[name], strict=True):
            _assert_same(got, want, f"{name}@{want.position}")
        state = fold(events[0].execution_id, events)
        assert state.status == "completed" and state.claims == 3
        assert state.driver is not None and state.driver.reason == "resume"
        assert state.driver.host == "host-c" and state.driver.pid == 303
        assert state.output == GONE and isinstance(state.output, Unresolved)
        assert state.output.type_name == "Gone"


def test_golden_streams_cover_every_event_type_and_value_type() -> None:
    topics = {topic for path in (PATH, PATH_V2)
              for records in _load(path).values() for topic, _ in records}
    assert topics == {topic_of(cls) for cls in EVENT_TYPES}
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
