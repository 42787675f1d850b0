"""The compact storage format (v3): short topic codes, bodies without execution id and
position (the row's own), read back exactly; legacy (v1/v2) rows keep reading, also inside
one stream with compact rows; ``encode_event`` copies nothing it need not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from journal import DecodingError, Journal, fold
from journal.encoding import (
    CODES,
    _encode_legacy,
    decode_event,
    encode_event,
    event_type,
    legacy_topic_of,
    topic_of,
    topics_of,
)
from journal.events import (
    EVENT_TYPES,
    ExecutionStarted,
    LogRecorded,
    StepCompleted,
    StepStarted,
)
from journal.storage.base import StoredEvent
from journal.values import to_wire
from tests.journal.golden.make_golden import golden_streams_v3
from tests.journal.test_golden import _assert_same

PROJECT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _ext(code: int, data: memoryview) -> Any:
    return (code, bytes(data))


def _untyped(data: bytes) -> Any:
    return msgspec.msgpack.decode(data, ext_hook=_ext)


def _events() -> list[Any]:
    return [e for events in golden_streams_v3().values() for e in events]


def test_every_event_round_trips_whole_and_lean() -> None:
    for event in _events():
        row = encode_event(event)
        assert row.topic == CODES[type(event)] and ":" not in row.topic
        assert (row.originator_id, row.originator_version) == (event.execution_id,
                                                                event.position)
        for eid in (event.execution_id, str(event.execution_id)):
            for data in (row.state, memoryview(row.state)):
                got = decode_event(row.topic, data, execution_id=eid, position=event.position)
                _assert_same(got, event, type(event).__name__)
        lean = decode_event(row.topic, row.state, lean=True, execution_id=event.execution_id,
                            position=event.position)
        assert isinstance(lean, type(event))
        for f in type(event).payload_fields:
            assert isinstance(getattr(lean, f), msgspec.Raw)
        rest = [f for f in event.__struct_fields__ if f not in type(event).payload_fields]
        assert [getattr(lean, f) for f in rest] == [getattr(event, f) for f in rest]


def test_a_compact_body_is_the_legacy_body_without_id_and_position() -> None:
    """The same fields, each encoded as before: only the first two are gone."""
    for event in _events():
        compact, legacy = encode_event(event), _encode_legacy(event)
        assert legacy.topic == legacy_topic_of(type(event))
        assert _untyped(compact.state) == _untyped(legacy.state)[2:]
        assert len(compact.state) <= len(legacy.state) - 38


def test_the_row_gives_id_and_position_to_a_compact_row() -> None:
    eid = uuid4()
    for position in (1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**40):
        event = StepStarted(execution_id=eid, position=position, timestamp=NOW, name="s", seq=1)
        row = encode_event(event)
        assert len(row.state) == len(encode_event(msgspec.structs.replace(event, position=1))
                                     .state)  # the position is not in the body
        assert decode_event(row.topic, row.state, execution_id=eid, position=position) == event
        other = uuid4()
        moved = decode_event(row.topic, row.state, execution_id=other, position=position + 1)
        assert (moved.execution_id, moved.position) == (other, position + 1)
    with pytest.raises(TypeError, match="execution_id and position"):
        decode_event(row.topic, row.state)
    with pytest.raises(TypeError, match="execution_id and position"):
        decode_event(row.topic, row.state, execution_id=eid)
    with pytest.raises(TypeError, match="execution_id and position"):
        decode_event(row.topic, row.state, position=3)


def test_legacy_rows_decode_without_the_rows_id() -> None:
    event = StepCompleted(execution_id=uuid4(), position=9, timestamp=NOW, seq=1, output=[1])
    row = _encode_legacy(event)
    assert decode_event(row.topic, row.state) == event
    assert decode_event(row.topic, row.state, execution_id=event.execution_id,
                        position=9) == event


def test_a_long_compact_body_decodes() -> None:
    """A body of 14 or more fields (array 16 header: no event type has that many yet)."""
    event = StepStarted(execution_id=uuid4(), position=300, timestamp=NOW, name="s", seq=1,
                        input={"k": 1})
    row = encode_event(event)
    n = row.state[0] - 0x90
    long = b"\xdc" + n.to_bytes(2, "big") + row.state[1:]
    assert decode_event("S", long, execution_id=event.execution_id, position=300) == event
    assert decode_event("S", b"\x9e" + row.state[1:] + b"\xc0" * (14 - n),
                        execution_id=event.execution_id, position=300) is not None


@pytest.mark.parametrize("body", [b"", b"\xc0", b"\x95\x01", b"\x91", b"\xa3abc", b"\xdc\x00"])
def test_corrupt_compact_rows_are_decoding_errors(body: bytes) -> None:
    eid = uuid4()
    with pytest.raises(DecodingError, match=f"execution {eid} position 4: cannot decode S"):
        decode_event("S", body, execution_id=eid, position=4)


def test_unknown_topics_and_bad_ids_are_decoding_errors() -> None:
    row = encode_event(StepStarted(execution_id=uuid4(), position=1, timestamp=NOW, name="s",
                                   seq=1))
    with pytest.raises(DecodingError, match="newer release"):
        decode_event("Q", row.state, execution_id=uuid4(), position=1)
    with pytest.raises(DecodingError, match="newer release"):
        decode_event("journal.events:Gone", row.state)
    with pytest.raises(DecodingError, match="not-an-id"):
        decode_event(row.topic, row.state, execution_id="not-an-id", position=1)


def test_topics() -> None:
    assert set(CODES) == set(EVENT_TYPES)
    for cls in EVENT_TYPES:
        assert topic_of(cls) == CODES[cls] and len(topic_of(cls)) == 1
        assert legacy_topic_of(cls) == f"journal.events:{cls.__name__}"
        assert set(topics_of(cls)) == {topic_of(cls), legacy_topic_of(cls)}
        assert event_type(topic_of(cls)) is cls and event_type(legacy_topic_of(cls)) is cls
    assert topics_of(StepStarted, StepCompleted) == (
        "S", "journal.events:StepStarted", "C", "journal.events:StepCompleted")
    assert topics_of() == ()
    with pytest.raises(KeyError):
        event_type("journal.events:Nope")


def test_encode_event_is_a_plain_stored_event() -> None:
    event = LogRecorded(execution_id=uuid4(), position=3, timestamp=NOW, level="info",
                        message="m", fields={"a": [1, {"b": 2.5}]})
    row = encode_event(event)
    plain = StoredEvent(originator_id=event.execution_id, originator_version=3, topic="L",
                        state=row.state)
    assert type(row) is StoredEvent and row == plain and hash(row) == hash(plain)
    with pytest.raises(AttributeError):
        row.topic = "x"  # type: ignore[misc]


def test_wire_safe_values_are_not_copied() -> None:
    plain = {"a": 1, "b": [1, "x", None, 2.5, True, b"\x00"], "c": {"d": {"e": []}}}
    assert to_wire(plain) is plain
    assert to_wire(plain["b"]) is plain["b"]
    typed = {"a": 1, "b": [1, Decimal("1.5")], "c": {"d": 1}}
    wired = to_wire(typed)
    assert wired is not typed and wired["c"] is typed["c"]  # only what differs is rebuilt
    assert isinstance(wired["b"][1], msgspec.msgpack.Ext)
    assert to_wire({1: "int key"}) == {1: "int key"}
    assert isinstance(to_wire(2**70), msgspec.msgpack.Ext)
    assert isinstance(to_wire([2**70])[0], msgspec.msgpack.Ext)
    # The values still read back typed through the whole encode and decode.
    event = StepCompleted(execution_id=uuid4(), position=2, timestamp=NOW, seq=1, output=typed)
    row = encode_event(event)
    got = decode_event(row.topic, row.state, execution_id=event.execution_id, position=2)
    _assert_same(got, event, "event")
    assert event.output is typed and typed["b"][1] == Decimal("1.5")  # the event is unchanged


def test_the_journal_writes_compact_rows_and_reads_streams_begun_before(
    journal_url: str,
) -> None:
    """An execution begun by a release that wrote v2 rows goes on in v3 rows: one stream,
    read whole and folded as one."""
    with Journal.open(journal_url) as journal:
        eid = uuid4()
        old = [
            ExecutionStarted(execution_id=eid, position=1, timestamp=NOW, workflow="w",
                             input={"n": Decimal("1")}),
            StepStarted(execution_id=eid, position=2, timestamp=NOW, name="a", seq=1),
            StepCompleted(execution_id=eid, position=3, timestamp=NOW, seq=1, output=(1, 2)),
        ]
        journal.storage.append([_encode_legacy(e) for e in old])
        run = journal.execution(eid)
        seq = run.step_started("b", {"x": 1})
        run.step_completed(seq, "out")
        run.completed({"done": True})
        rows = journal.storage.read_stream(eid)
        assert [topic for _, topic, _ in rows] == [
            legacy_topic_of(ExecutionStarted), legacy_topic_of(StepStarted),
            legacy_topic_of(StepCompleted), "S", "C", "D",
        ]
        for _, _, data in rows[3:]:
            assert str(eid).encode() not in bytes(data) and eid.bytes not in bytes(data)
        events = journal.events(eid)
        assert [e.position for e in events] == [1, 2, 3, 4, 5, 6]
        assert all(e.execution_id == eid for e in events)
        _assert_same(events[:3], old, "old rows")
        state = journal.state(eid)
        assert state.status == "completed" and state.output == {"done": True}
        assert state.steps[1].output == (1, 2) and state.steps[2].input == {"x": 1}
        assert fold(eid, events).position == 6
        # Both spellings of a type, as a topic filter must name them.
        log = journal.storage.read_log(0, 100, topics=topics_of(StepStarted))
        assert [(r[1], r[2]) for r in log] == [(eid, 2), (eid, 4)]


WRITER = """
import json, sys
from dataclasses import dataclass
from journal import Journal

@dataclass
class Secret:  # only this process has it
    code: int

with Journal.open(sys.argv[1]) as journal:
    run = journal.start("cross", {"k": 1})
    seq = run.step_started("s", Secret(7))
    run.step_completed(seq, [Secret(8), "x"])
    run.completed(None)
    print(json.dumps(str(run.id)))
"""

READER = """
import json, sys
from uuid import UUID
from journal import Journal, Unresolved
from journal.encoding import decode_event

eid = UUID(sys.argv[2])
with Journal.open(sys.argv[1]) as journal:
    rows = journal.storage.read_stream(eid)
    events = journal.events(eid)
    state = journal.state(eid)
    lean = [decode_event(t, d, lean=True, execution_id=eid, position=p) for p, t, d in rows]
    out = state.steps[1].output
    print(json.dumps({
        "topics": [t for _, t, _ in rows],
        "positions": [e.position for e in events],
        "ids": sorted({str(e.execution_id) for e in events + lean}),
        "status": state.status,
        "input": [type(state.steps[1].input).__name__, state.steps[1].input.fields],
        "output": [type(out[0]).__name__, out[0].type_name, out[1]],
    }))
"""


def test_compact_rows_written_in_one_process_read_in_another(tmp_path: Path) -> None:
    """The reader has none of the writer's modules: a fresh interpreter started elsewhere."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JOURNAL_URL")}
    env.update(PYTHONPATH=str(PROJECT), PYTHONDONTWRITEBYTECODE="1")

    def run(script: str, *args: str) -> Any:
        where = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
        where.mkdir()
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), url, *args],
                              cwd=where, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    eid = run(WRITER)
    got = run(READER, eid)
    assert got == {
        "topics": ["B", "S", "C", "D"],
        "positions": [1, 2, 3, 4],
        "ids": [eid],
        "status": "completed",
        "input": ["Unresolved", {"code": 7}],
        "output": ["Unresolved", "Secret", "x"],
    }
    assert UUID(eid)
