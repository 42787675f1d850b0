"""Self-describing encoding of user values (inputs, outputs, payloads, log fields).

Event fields typed ``Any`` carry whatever the workflow passed. msgspec encodes UUID, Decimal
and datetime natively as strings, so an untyped decode would hand back ``str``: a resumed
step would then return a different type than the first time. Here every value that msgpack
cannot describe by itself is wrapped in a msgpack extension with a type code, so it decodes
back equal and of the same type. Anything else is refused at the call, naming the field.
"""

from __future__ import annotations

import dataclasses
import importlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from journal.errors import UnsupportedValue

__all__ = [
    "IMMUTABLE", "Unresolved", "aware_utc", "decode_value", "encode_value", "ext_hook",
    "is_immutable", "is_native", "own_copy", "plain", "to_wire",
]

EXT_UUID = 1
EXT_DECIMAL = 2
EXT_DATETIME = 3
EXT_DATE = 4
EXT_TUPLE = 5
EXT_OBJECT = 6
EXT_BIGINT = 7

# msgpack's native integer range; Python ints beyond it travel as decimal text.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

_encoder = msgspec.msgpack.Encoder()


class Unresolved(msgspec.Struct, frozen=True, kw_only=True):
    """A stored dataclass or Struct whose class this process cannot import.

    Readers without the writer's code (an on-call shell, another service, a later release)
    get this instead of an error: the class's ``topic`` (``module:qualname``) and its fields
    as plain data. Equal across processes, printable, and written back exactly as it was
    read (so re-recording or importing it changes nothing).
    """

    topic: str
    fields: dict[str, Any]

    @property
    def type_name(self) -> str:
        """The class's name (its qualname), e.g. ``Report``."""
        return self.topic.partition(":")[2] or self.topic

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.type_name}({args})"


def _topic(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_resolved: dict[str, type] = {}


def _build(topic: str, fields: dict[str, Any]) -> Any:
    """The stored object rebuilt with its own class, or an :class:`Unresolved` stand-in."""
    cls = _resolved.get(topic)
    if cls is None:
        try:
            cls = _resolve(topic)
        except (ImportError, AttributeError, TypeError, ValueError):
            return Unresolved(topic=topic, fields=fields)
        _resolved[topic] = cls  # only successes: a module may become importable later
    try:
        return cls(**fields)
    except (TypeError, ValueError, msgspec.ValidationError):
        # The class changed since the value was stored (a field renamed or removed).
        return Unresolved(topic=topic, fields=fields)


def plain(value: Any) -> Any:
    """``value`` with every :class:`Unresolved` replaced by its fields (a dict), at any depth:
    the shape ``msgspec.convert`` turns into the real class through a type annotation."""
    cls = type(value)
    if cls is Unresolved:
        return {k: plain(v) for k, v in value.fields.items()}
    if cls is dict:
        return {k: plain(v) for k, v in value.items()}
    if cls is list:
        return [plain(v) for v in value]
    if cls is tuple:
        return tuple(plain(v) for v in value)
    return value


def find_unresolved(value: Any) -> Unresolved | None:
    """The first :class:`Unresolved` inside ``value`` (depth first), if any."""
    cls = type(value)
    if cls is Unresolved:
        return value  # type: ignore[no-any-return]
    if cls is dict:
        items: Any = value.values()
    elif cls is list or cls is tuple:
        items = value
    else:
        return None
    for v in items:
        found = find_unresolved(v)
        if found is not None:
            return found
    return None


def _resolve(topic: str) -> type:
    module_name, _, qualname = topic.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    # Stored data names the class to build: only value types may be built from it, never an
    # arbitrary importable callable (a forged topic of subprocess:Popen must not run).
    if not isinstance(obj, type) or not (
        issubclass(obj, msgspec.Struct) or dataclasses.is_dataclass(obj)
    ):
        raise TypeError(f"{topic} is not a msgspec Struct or dataclass")
    return obj


_importable_cache: dict[type, bool] = {}


def _importable(cls: type) -> bool:
    """Whether ``cls`` can be found again by its topic (not local to a function, say)."""
    known = _importable_cache.get(cls)
    if known is None:
        try:
            known = _resolve(_topic(cls)) is cls
        except (ImportError, AttributeError, TypeError):
            known = False
        _importable_cache[cls] = known
    return known


#: Types msgpack stores and reads back as themselves (``int`` only inside msgpack's range).
WIRE_SAFE: frozenset[type] = frozenset({str, float, bool, bytes, type(None)})


def to_wire(value: Any, path: str = "value") -> Any:
    """Turn ``value`` into msgpack-native data, wrapping typed values in extensions.

    What is already msgpack-native (scalars, and lists and dicts of them) comes back as the
    same object, uncopied. Raises :class:`UnsupportedValue` (a ``TypeError``) naming
    ``path`` for anything that would not read back equal and of the same type.
    """
    if is_native(value):
        return value
    return _wire(value, path)


# A path is only spelled out for an error: (parent path, format, key) until then.
_Path = Any


def _spell(path: _Path) -> str:
    parts = []
    while type(path) is tuple:
        path, fmt, key = path
        parts.append(fmt % (key,))
    parts.append(path)
    return "".join(reversed(parts))


def is_native(value: Any) -> bool:
    """Whether ``value`` is msgpack-native all through (scalars, 64-bit ints; dicts with str
    keys and lists of such): then it is its own wire form. One tight walk, building nothing."""
    tv = type(value)
    if tv in WIRE_SAFE:
        return True
    if tv is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if tv is dict or tv is list:
        return _plain(value)
    return False


def _plain(value: Any) -> bool:
    """:func:`is_native` of a dict or list (scalars checked inline: this is on every append
    of a dict payload)."""
    items = value.items() if type(value) is dict else enumerate(value)
    keyed = type(value) is dict
    for k, v in items:
        if keyed and type(k) is not str:
            return False
        tv = type(v)
        if tv in WIRE_SAFE or (tv is int and _INT_MIN <= v <= _INT_MAX):
            continue
        if (tv is dict or tv is list) and _plain(v):
            continue
        return False
    return True


def _wire(value: Any, path: _Path) -> Any:
    cls = type(value)
    if cls in WIRE_SAFE:
        return value
    if cls is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        return msgspec.msgpack.Ext(EXT_BIGINT, str(value).encode())
    if cls is dict:
        if _plain(value):
            return value
        out = {}
        for k, v in value.items():
            tk = type(k)
            if tk is not str and not (tk is int and _INT_MIN <= k <= _INT_MAX):
                raise UnsupportedValue(f"{_spell(path)} key {k!r}", k)
            out[k] = v if type(v) in WIRE_SAFE else _wire(v, (path, "[%r]", k))
        return out
    if cls is list:
        if _plain(value):
            return value
        return [v if type(v) in WIRE_SAFE else _wire(v, (path, "[%d]", i))
                for i, v in enumerate(value)]
    if cls is tuple:
        wired = [_wire(v, (path, "[%d]", i)) for i, v in enumerate(value)]
        return msgspec.msgpack.Ext(EXT_TUPLE, _encoder.encode(wired))
    if cls is Unresolved:
        # Written back as it was read: the same topic and fields, so the same bytes.
        fields = {k: _wire(v, (path, ".%s", k)) for k, v in value.fields.items()}
        return msgspec.msgpack.Ext(EXT_OBJECT, _encoder.encode([value.topic, fields]))
    if cls is UUID:
        return msgspec.msgpack.Ext(EXT_UUID, value.bytes)
    if cls is Decimal:
        return msgspec.msgpack.Ext(EXT_DECIMAL, str(value).encode())
    if cls is datetime:
        return msgspec.msgpack.Ext(EXT_DATETIME, value.isoformat().encode())
    if cls is date:
        return msgspec.msgpack.Ext(EXT_DATE, value.isoformat().encode())
    if (isinstance(value, msgspec.Struct) or dataclasses.is_dataclass(value)) and not (
        isinstance(value, type) or _importable(cls)
    ):
        # It would be written, then fail to decode: refuse it now.
        raise UnsupportedValue(_spell(path), value)
    if isinstance(value, msgspec.Struct):
        fields = {
            f: _wire(getattr(value, f), (path, ".%s", f)) for f in value.__struct_fields__
        }
        return msgspec.msgpack.Ext(EXT_OBJECT, _encoder.encode([_topic(cls), fields]))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _wire(getattr(value, f.name), (path, ".%s", f.name))
            for f in dataclasses.fields(value)
            if f.init
        }
        return msgspec.msgpack.Ext(EXT_OBJECT, _encoder.encode([_topic(cls), fields]))
    raise UnsupportedValue(_spell(path), value)


def ext_hook(code: int, data: memoryview) -> Any:
    """Decode one of :func:`to_wire`'s extensions back to the original type."""
    if code == EXT_UUID:
        return UUID(bytes=bytes(data))
    if code == EXT_DECIMAL:
        return Decimal(bytes(data).decode())
    if code == EXT_DATETIME:
        return datetime.fromisoformat(bytes(data).decode())
    if code == EXT_DATE:
        return date.fromisoformat(bytes(data).decode())
    if code == EXT_TUPLE:
        return tuple(_decoder.decode(data))
    if code == EXT_BIGINT:
        return int(bytes(data).decode())
    if code == EXT_OBJECT:
        topic, fields = _decoder.decode(data)
        return _build(topic, fields)
    raise ValueError(f"unknown value extension code {code}")


_decoder = msgspec.msgpack.Decoder(ext_hook=ext_hook)


def encode_value(value: Any, path: str = "value") -> bytes:
    """Encode one user value to bytes (used for out-of-line storage and size checks)."""
    return _encoder.encode(to_wire(value, path))


def decode_value(data: bytes) -> Any:
    """Decode bytes written by :func:`encode_value`."""
    return _decoder.decode(data)


#: Values no code can change in place: they are their own copy.
IMMUTABLE = frozenset({type(None), bool, int, float, str, Decimal, datetime, date, UUID})


def is_immutable(value: Any) -> bool:
    """Whether ``value`` is a scalar nothing can change in place (a copy would be itself)."""
    return type(value) in IMMUTABLE


def own_copy(value: Any, path: str = "value") -> Any:
    """``value`` as a reader of the log gets it back, sharing nothing with the caller's
    object: what the journal keeps in memory beside what it wrote (a writer's state, a
    value replay hands to workflow code) must not change when user code changes the
    original. ``UnsupportedValue`` naming ``path`` if it cannot be stored."""
    if type(value) in IMMUTABLE:
        return value
    return decode_value(encode_value(value, path))


def aware_utc(at: datetime, what: str) -> datetime:
    """``at`` in UTC, if it is an aware datetime; else a ValueError naming ``what``: a
    deadline without a time zone would mean another instant in every process."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a {what} must be an aware datetime (with a time zone), not {at!r}")
    return at.astimezone(UTC)
