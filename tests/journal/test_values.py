"""User values read back equal and of the same type on every backend; others are refused."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journal import (
    Capture,
    ExecutionNotFound,
    ExecutionStarted,
    Journal,
    StepCompleted,
    StepStarted,
    UnsupportedValue,
)


class Tag(msgspec.Struct, frozen=True):
    """A msgspec Struct holding any nested value."""

    name: str
    value: Any = None


@dataclasses.dataclass(frozen=True)
class Point:
    """A dataclass holding any nested value."""

    x: int
    label: Any = None


def _assert_same(a: Any, b: Any, path: str = "value") -> None:
    """Equal, and of the same type at every level (so 1 != 1.0 != True, tuple != list)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, Tag):
        _assert_same(a.name, b.name, f"{path}.name")
        _assert_same(a.value, b.value, f"{path}.value")
    elif isinstance(a, Point):
        _assert_same(a.x, b.x, f"{path}.x")
        _assert_same(a.label, b.label, f"{path}.label")
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), path
    elif isinstance(a, datetime):
        assert a == b and a.utcoffset() == b.utcoffset(), path
    else:
        assert a == b, path


fixed_offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
scalars = st.one_of(
    st.text(max_size=20),
    st.integers(),  # beyond 64 bits too
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=fixed_offsets),
    st.dates(),
    st.uuids(),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=4),
        st.builds(Tag, name=st.text(max_size=5), value=children),
        st.builds(Point, x=st.integers(-9, 9), label=children),
    ),
    max_leaves=12,
)

NO_REDACTION = Capture(secret_keys=frozenset())


def test_values_round_trip(journal_url: str) -> None:
    with (
        Journal.open(journal_url, capture=NO_REDACTION) as journal,
        Journal.open(journal_url) as reader,
    ):

        @given(value=values)
        def round_trip(value: Any) -> None:
            run = journal.start("values", value)
            seq = run.step_started("echo", value)
            run.step_completed(seq, value)
            run.paused("review", value)
            run.resumed(value)
            run.log("fields", item=value)
            run.completed(value)
            for j in (journal, reader):  # the writer's database, and a second connection
                state = j.state(run.id)
                for got in (
                    state.input, state.steps[seq].input, state.steps[seq].output, state.output
                ):
                    _assert_same(value, got)
                events = j.events(run.id)
                _assert_same(value, events[3].payload)  # type: ignore[attr-defined]
                _assert_same(value, events[4].value)  # type: ignore[attr-defined]
                _assert_same(value, events[5].fields["item"])  # type: ignore[attr-defined]

        round_trip()


def _local_class() -> object:
    @dataclasses.dataclass
    class Local:
        x: int

    return Local(1)


UNSUPPORTED = [
    pytest.param({1, 2}, "set", id="set"),
    pytest.param(object(), "object", id="object"),
    pytest.param(lambda: 1, "function", id="lambda"),
    pytest.param(_local_class(), "Local", id="class-local-to-a-function"),
    pytest.param(frozenset({1}), "frozenset", id="frozenset"),
]


@pytest.mark.parametrize(("bad", "type_name"), UNSUPPORTED)
def test_unsupported_values_are_refused_and_nothing_written(
    journal_url: str, bad: Any, type_name: str
) -> None:
    with Journal.open(journal_url) as journal:
        eid = uuid4()
        with pytest.raises(UnsupportedValue, match=type_name) as info:
            journal.start("bad", {"config": [1, bad]}, execution_id=eid)
        assert isinstance(info.value, TypeError)
        assert "input" in str(info.value) and "['config'][1]" in str(info.value)
        with pytest.raises(ExecutionNotFound):
            journal.events(eid)

        run = journal.start("bad")
        seq = run.step_started("s")
        with pytest.raises(TypeError, match=type_name) as out:
            run.step_completed(seq, {"result": bad})
        assert "output" in str(out.value) and "['result']" in str(out.value)
        with pytest.raises(UnsupportedValue, match=f"{type_name}.*") as log:
            run.log("line", detail=bad)
        assert "detail" in str(log.value)
        with pytest.raises(UnsupportedValue, match="step input"):
            run.step_started("t", [bad])
        with pytest.raises(UnsupportedValue, match="pause payload"):
            run.paused("review", bad)
        run.flush()
        # Started and the one step: nothing of the refused calls.
        assert [type(e) for e in journal.events(run.id)] == [ExecutionStarted, StepStarted]
        run.step_completed(seq, "fine")  # the handle is still usable
        assert isinstance(journal.events(run.id)[-1], StepCompleted)


def test_dict_keys_must_be_str_or_int(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("keys")
        seq = run.step_started("s")
        with pytest.raises(UnsupportedValue, match="key"):
            run.step_completed(seq, {(1, 2): "tuple key"})
        with pytest.raises(UnsupportedValue, match="key"):
            run.step_completed(seq, {2**70: "too big a key"})
        assert journal.state(run.id).steps[seq].status == "running"


def test_specific_values_keep_their_type(journal_url: str) -> None:
    """The cases an untyped decoder gets wrong, spelled out."""
    value = {
        "uuid": UUID(int=7),
        "usd": Decimal("0.10"),
        "when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC_PLUS_2),
        "day": date(2024, 5, 1),
        "pair": (1, "a"),
        "blob": b"\x00\xff",
        "big": -(2**80),
        "one": 1,
        "one_f": 1.0,
        "yes": True,
        "nested": [Tag("t", (Point(1, None),))],
    }
    with Journal.open(journal_url) as journal:
        run = journal.start("typed")
        seq = run.step_started("s")
        run.step_completed(seq, value)
        _assert_same(value, journal.state(run.id).steps[seq].output)


UTC_PLUS_2 = timezone(timedelta(hours=2))
