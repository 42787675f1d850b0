"""The one decode path of stored events, and their encoding.

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

from typing import Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent

from journal.errors import DecodingError
from journal.events import EVENT_TYPES, Event
from journal.state import register_variant
from journal.values import ext_hook, to_wire

__all__ = ["as_uuid", "decode_event", "encode_event", "lean_type", "topic_of"]

_TOPICS: dict[type[Event], str] = {
    cls: f"{cls.__module__}:{cls.__qualname__}" for cls in EVENT_TYPES
}
_encoder = msgspec.msgpack.Encoder()


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
        namespace[f] = msgspec.Raw(_encoder.encode(default))
    lean: type[Event] = type(  # type: ignore[assignment]
        f"Lean{cls.__name__}", (cls,), namespace,
        frozen=True, kw_only=True, array_like=True,
    )
    register_variant(lean, cls)
    return lean


_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    topic: msgspec.msgpack.Decoder(cls, ext_hook=ext_hook) for cls, topic in _TOPICS.items()
}
_LEAN_TYPES: dict[type[Event], type[Event]] = {cls: _lean_type(cls) for cls in EVENT_TYPES}
_LEAN_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    topic: msgspec.msgpack.Decoder(_LEAN_TYPES[cls]) for cls, topic in _TOPICS.items()
}


def lean_type(cls: type[Event]) -> type[Event]:
    """The type a ``lean=True`` decode gives for events of ``cls``."""
    return _LEAN_TYPES[cls]


def topic_of(cls: type[Event]) -> str:
    """The stored topic of an event class (``module:qualname``)."""
    return _TOPICS[cls]


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
        if value is not None:
            changes[name] = to_wire(value, f"{cls.__name__}.{name}")
    return msgspec.structs.replace(event, **changes) if changes else event


def encode_event(event: Event) -> StoredEvent:
    """Encode an event as a StoredEvent (stream id, position, topic, msgpack bytes)."""
    return StoredEvent(
        originator_id=event.execution_id,
        originator_version=event.position,
        topic=_TOPICS[type(event)],
        state=_encoder.encode(wire_event(event)),
    )


def decode_event(
    topic: str,
    data: bytes | memoryview,
    *,
    lean: bool = False,
    execution_id: UUID | str = "?",
    position: int = 0,
) -> Event:
    """Decode an event's stored bytes with its topic's own decoder.

    ``lean=True`` leaves user values undecoded (``msgspec.Raw``). Raises
    :class:`DecodingError` for an unknown topic or bytes that are not that event; a user
    class that cannot be imported is never an error (see :mod:`journal.values`).
    """
    decoders = _LEAN_DECODERS if lean else _DECODERS
    try:
        event: Event = decoders[topic].decode(data)
    except KeyError as e:
        raise DecodingError(
            execution_id, position, topic,
            "unknown event type (written by a newer release of the journal?)",
        ) from e
    except (msgspec.DecodeError, ValueError, TypeError) as e:
        raise DecodingError(execution_id, position, topic, e) from e
    return event


def as_uuid(value: UUID | str) -> UUID:
    """Parse an execution id given as a UUID or its string form."""
    return value if isinstance(value, UUID) else UUID(str(value))
