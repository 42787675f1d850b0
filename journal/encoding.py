"""The one decode path of stored events, and their encoding.

Two storage formats, both read forever, one written:

* **v1/v2 (legacy, read only)**: topic ``module:qualname`` (``journal.events:StepStarted``),
  body the whole event as a msgpack array, execution id and position included.
* **v3 (compact, written since)**: topic a short code per event type (:data:`CODES`, e.g.
  ``S``), body the event *without* its first two fields: the execution id and position are
  the row's stream id and position, and :func:`decode_event` puts them back from there
  (``execution_id=`` and ``position=`` are required for such rows). Every other field keeps
  its place and encoding, timestamps included (msgpack timestamp extension, 10 bytes).

A topic without ``:`` is a code: the topic alone says which format the body is in, so one
stream may hold both (an execution begun before an upgrade and continued after). The code
of a type never changes once released; a new type gets a new code, and :data:`CODES` only
grows. Filters on stored topics must match both spellings: use :func:`topics_of`.

Each topic is decoded with its own event type (exact, and several times cheaper than an
untyped dict). Two readings of the same bytes:

* **whole** (:func:`decode_event`): user values (inputs, outputs, payloads, log fields) come
  back with their types through :mod:`journal.values`; a dataclass or Struct whose class
  this process cannot import comes back as a :class:`journal.values.Unresolved` stand-in,
  never as an error (an on-call shell has none of the writer's code);
* **lean** (``lean=True``): user values are left as undecoded ``msgspec.Raw`` bytes. This is
  what projections read: they never use those fields, so they never import a user class,
  and skipping the values is most of the decode time.
"""

from __future__ import annotations

from operator import index
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from msgspec.structs import astuple

from journal.errors import DecodingError
from journal.events import (
    EVENT_TYPES,
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
)
from journal.state import register_variant
from journal.storage.base import StoredEvent
from journal.values import WIRE_SAFE, ext_hook, is_native, to_wire

__all__ = [
    "CODES",
    "as_uuid",
    "decode_event",
    "encode_event",
    "event_type",
    "lean_type",
    "legacy_topic_of",
    "topic_of",
    "topics_of",
]

#: The stored topic of each event type since v3. Part of the storage format: a code is
#: never changed nor reused, a new event type gets a new one (no ``:`` in it).
CODES: dict[type[Event], str] = {
    ExecutionStarted: "B",  # begun
    StepStarted: "S",
    StepCompleted: "C",
    StepFailed: "F",
    LogRecorded: "L",
    ExecutionPaused: "P",
    ExecutionResumed: "R",
    ExecutionCompleted: "D",  # done
    ExecutionFailed: "E",  # error
    ExecutionCancelled: "X",
    ExecutionClaimed: "H",  # held
    WaitStarted: "W",
    WaitEnded: "N",  # next
    SignalReceived: "G",
    ValueRecorded: "V",
    ReplayDiverged: "Y",  # (why it stopped)
}

#: The topic of v1/v2 rows (``module:qualname``): read forever, never written again.
_LEGACY: dict[type[Event], str] = {
    cls: f"{cls.__module__}:{cls.__qualname__}" for cls in EVENT_TYPES
}

if (set(CODES) != set(EVENT_TYPES) or len(set(CODES.values())) != len(CODES)
        or any(":" in c for c in CODES.values())):  # pragma: no cover - a release mistake
    raise RuntimeError("journal.encoding.CODES needs exactly one new, unique code per event type")

_TYPES: dict[str, type[Event]] = {
    **{t: cls for cls, t in _LEGACY.items()}, **{c: cls for cls, c in CODES.items()}
}
_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode


def _lean_type(cls: type[Event]) -> type[Event]:
    """``cls`` with its user-value fields typed ``msgspec.Raw`` (left undecoded).

    A subclass, so ``isinstance`` and the fold treat it as ``cls``; same field order, so the
    same stored array decodes into it.
    """
    if not cls.payload_fields:
        return cls
    defaults = {f: cls.__struct_defaults__[cls.__struct_fields__.index(f)
                                           - (len(cls.__struct_fields__)
                                              - len(cls.__struct_defaults__))]
                for f in cls.payload_fields}
    namespace: dict[str, Any] = {
        "__annotations__": {f: msgspec.Raw for f in cls.payload_fields},
        "__module__": __name__,
        "__qualname__": f"Lean{cls.__qualname__}",
        "payload_fields": cls.payload_fields,
    }
    namespace["__annotations__"]["payload_fields"] = ClassVar[tuple[str, ...]]
    for f, default in defaults.items():
        if isinstance(default, msgspec._core.Factory):
            default = default.factory()
        namespace[f] = msgspec.Raw(_encode(default))
    lean: type[Event] = type(  # type: ignore[assignment]
        f"Lean{cls.__name__}", (cls,), namespace,
        frozen=True, kw_only=True, array_like=True,
    )
    register_variant(lean, cls)
    return lean


_LEAN_TYPES: dict[type[Event], type[Event]] = {cls: _lean_type(cls) for cls in EVENT_TYPES}
_WHOLE: dict[type[Event], Any] = {
    cls: msgspec.msgpack.Decoder(cls, ext_hook=ext_hook).decode for cls in EVENT_TYPES
}
_LEAN: dict[type[Event], Any] = {
    cls: msgspec.msgpack.Decoder(_LEAN_TYPES[cls]).decode for cls in EVENT_TYPES
}
# Decoders by stored topic: compact ones take a body without execution id and position.
_LEGACY_WHOLE = {t: _WHOLE[cls] for cls, t in _LEGACY.items()}
_LEGACY_LEAN = {t: _LEAN[cls] for cls, t in _LEGACY.items()}
_COMPACT_WHOLE = {c: _WHOLE[cls] for cls, c in CODES.items()}
_COMPACT_LEAN = {c: _LEAN[cls] for cls, c in CODES.items()}


def lean_type(cls: type[Event]) -> type[Event]:
    """The type a ``lean=True`` decode gives for events of ``cls``."""
    return _LEAN_TYPES[cls]


def topic_of(cls: type[Event]) -> str:
    """The topic new rows of an event class are stored with (its code, e.g. ``S``).

    To *match* stored rows, use :func:`topics_of`: older rows carry the legacy topic."""
    return CODES[cls]


def legacy_topic_of(cls: type[Event]) -> str:
    """The topic v1/v2 rows of an event class carry (``module:qualname``)."""
    return _LEGACY[cls]


def topics_of(*classes: type[Event]) -> tuple[str, ...]:
    """Every topic rows of ``classes`` may be stored with (code and legacy topic of each):
    what a filter on stored topics (``read_log(topics=...)``) must match."""
    return tuple(t for cls in classes for t in (CODES[cls], _LEGACY[cls]))


def event_type(topic: str) -> type[Event]:
    """The event class of a stored topic, either spelling. Raises ``KeyError`` if unknown."""
    return _TYPES[topic]


def wire_event(event: Event) -> Event:
    """Return ``event`` with its user values converted to self-describing wire form.

    Raises ``UnsupportedValue`` naming the field for a value that cannot round-trip.
    """
    cls = type(event)
    if not cls.payload_fields:
        return event
    changes = {}
    for name in cls.payload_fields:
        value = getattr(event, name)
        if type(value) not in WIRE_SAFE:
            wired = to_wire(value, f"{cls.__name__}.{name}")
            if wired is not value:
                changes[name] = wired
    return msgspec.structs.replace(event, **changes) if changes else event


#: Per event type: its code, and the index (in its fields) and path name of each user value.
_PLAN: dict[type[Event], tuple[str, tuple[tuple[int, str], ...]]] = {
    cls: (CODES[cls], tuple((cls.__struct_fields__.index(f), f"{cls.__name__}.{f}")
                            for f in cls.payload_fields))
    for cls in EVENT_TYPES
}
def encode_event(event: Event) -> StoredEvent:
    """Encode an event as a StoredEvent: stream id, position, compact topic, and a body of
    every field but the execution id and position (msgpack array).

    Raises ``UnsupportedValue`` naming the field for a user value that cannot round-trip.
    """
    code, payload = _PLAN[type(event)]
    fields = astuple(event)
    body: Any = fields[2:]  # a tuple, a list once a value is converted
    for i, path in payload:
        value = fields[i]
        if is_native(value):
            continue
        wired = to_wire(value, path)
        if wired is not value:
            if type(body) is tuple:
                body = list(body)
            body[i - 2] = wired
    return StoredEvent(fields[0], fields[1], code, _encode(body))


def _encode_legacy(event: Event) -> StoredEvent:
    """The v1/v2 encoding, which this release reads and never writes: for golden files,
    benchmarks and tests of streams written before the upgrade."""
    return StoredEvent(
        originator_id=event.execution_id,
        originator_version=event.position,
        topic=_LEGACY[type(event)],
        state=_encode(wire_event(event)),
    )


#: What goes before a compact body of n elements (n < 14) to make it a whole event's bytes:
#: the array header of n + 2, a placeholder execution id (16 zero bytes as msgpack bin) and
#: ``0xcc`` (uint 8), which makes the body's own one-byte array header the position's value.
#: Both are then set from the row: one concatenation, nothing parsed or encoded.
_PREFIXES = [bytes((0x90 | (n + 2),)) + b"\xc4\x10" + bytes(16) + b"\xcc" for n in range(14)]
_set = msgspec.structs.force_setattr


def _long_body(data: bytes | memoryview, execution_id: UUID, position: int) -> bytes:
    """The whole event's bytes of a compact body of 14 or more fields (array 16/32 header:
    no event type has that many yet), the row's execution id and position put back."""
    first = data[0]
    if 0x9E <= first <= 0x9F:
        n, skip = first - 0x90, 1
    elif first == 0xDC:
        n, skip = int.from_bytes(data[1:3], "big"), 3
    elif first == 0xDD:
        n, skip = int.from_bytes(data[1:5], "big"), 5
    else:
        raise ValueError(f"a compact event body is a msgpack array, not 0x{first:02x}...")
    head = (b"\xdc" + (n + 2).to_bytes(2, "big") if n + 2 < 1 << 16
            else b"\xdd" + (n + 2).to_bytes(4, "big"))
    return b"".join((head, _encode(execution_id), _encode(position), data[skip:]))


def decode_event(
    topic: str,
    data: bytes | memoryview,
    *,
    lean: bool = False,
    execution_id: UUID | str | None = None,
    position: int | None = None,
) -> Event:
    """Decode an event's stored bytes with its topic's own decoder.

    ``execution_id`` and ``position`` are the row's (its stream id and position): a compact
    row's body does not hold them, so they are required for one (``TypeError`` without).
    ``lean=True`` leaves user values undecoded (``msgspec.Raw``). Raises
    :class:`DecodingError` for an unknown topic or bytes that are not that event; a user
    class that cannot be imported is never an error (see :mod:`journal.values`).
    """
    decode = (_COMPACT_LEAN if lean else _COMPACT_WHOLE).get(topic)
    if decode is not None:
        if execution_id is None or position is None:
            raise TypeError(
                f"decode_event({topic!r}, ...) of a compact row needs the row's execution_id "
                "and position"
            )
        try:
            if type(execution_id) is not UUID:
                execution_id = as_uuid(execution_id)
            if type(position) is not int:
                position = index(position)
            first = data[0]
            if 0x90 <= first <= 0x9D:
                event: Event = decode(_PREFIXES[first - 0x90] + data)
                _set(event, "execution_id", execution_id)
                _set(event, "position", position)
            else:
                event = decode(_long_body(data, execution_id, position))
        except (msgspec.DecodeError, ValueError, TypeError, IndexError) as e:
            raise DecodingError(execution_id, position, topic, e) from e
        return event
    decode = (_LEGACY_LEAN if lean else _LEGACY_WHOLE).get(topic)
    eid = "?" if execution_id is None else execution_id
    pos = 0 if position is None else position
    if decode is None:
        raise DecodingError(
            eid, pos, topic, "unknown event type (written by a newer release of the journal?)"
        )
    try:
        event = decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as e:
        raise DecodingError(eid, pos, topic, e) from e
    return event


def as_uuid(value: UUID | str) -> UUID:
    """Parse an execution id given as a UUID or its string form."""
    return value if isinstance(value, UUID) else UUID(str(value))
