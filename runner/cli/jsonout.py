"""Values as plain JSON for ``--json`` output, exports and archives.

Scripts read what the CLI prints, so every value is made machine-readable the same way:
Decimal as a string (exact), datetimes and dates as ISO 8601, UUIDs as strings, bytes as
base64, tuples as lists, and msgspec Structs and dataclasses (journal events are msgpack
*arrays* on disk) as objects keyed by field name. Nothing here is lossy for the journal's
own types; user classes become their fields (with a ``"$type"`` naming the class when this
process cannot import it).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import msgspec

from journal.values import Unresolved

__all__ = ["dumps", "preview", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to JSON-native types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, Unresolved):
        # A class this process cannot import: its fields, as the class itself would print,
        # after a "$type" naming it (so a reader sees what it is, and why replay needs it).
        return {"$type": value.topic, **{_key(k): to_jsonable(v) for k, v in value.fields.items()}}
    if isinstance(value, msgspec.Struct):
        return {f: to_jsonable(getattr(value, f)) for f in value.__struct_fields__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return repr(value)


def _key(key: Any) -> str:
    converted = to_jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON text (keys in insertion order, so output is stable across runs)."""
    return json.dumps(to_jsonable(value), indent=indent, ensure_ascii=False)


def preview(value: Any, width: int = 80) -> str:
    """A one-line, at most ``width`` characters, JSON rendering of ``value`` for tables."""
    text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
