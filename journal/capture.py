"""What the journal keeps of user values: secrets redacted, oversized captures truncated.

Captured values (execution and step inputs, pause payloads, log fields) are evidence: they
are redacted by key name and cut to a :class:`Truncated` marker (size, sha256, preview) above
``max_capture_bytes``. Values that resume needs (step outputs, resume values, the workflow's
output) are never cut: above ``max_inline_bytes`` they are stored whole out of line, in the
same database, and read back transparently.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgspec

from journal.events import Truncated
from journal.values import encode_value

__all__ = ["DEFAULT_SECRET_KEYS", "REDACTED", "Capture"]

REDACTED = "[REDACTED]"
DEFAULT_SECRET_KEYS = frozenset({"password", "secret", "token", "api_key", "authorization"})


def _normalise(key: str) -> str:
    return key.lower().replace("-", "_")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Capture:
    """The payload policy of a journal (``Journal.open(url, capture=Capture(...))``).

    A key is secret when, lower-cased with ``-`` read as ``_``, it equals one of
    ``secret_keys`` or ends with ``_`` plus one (so ``X-Api-Key`` and ``access_token``
    are redacted, ``input_tokens`` is not).
    """

    secret_keys: frozenset[str] = DEFAULT_SECRET_KEYS
    max_capture_bytes: int = 64 * 1024
    max_inline_bytes: int = 256 * 1024
    preview_chars: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "secret_keys", frozenset(_normalise(k) for k in self.secret_keys)
        )

    def is_secret(self, key: object) -> bool:
        """Whether a mapping key or field name names a secret."""
        if not isinstance(key, str):
            return False
        k = _normalise(key)
        return k in self.secret_keys or any(k.endswith("_" + s) for s in self.secret_keys)

    def redact(self, value: Any) -> Any:
        """Return ``value`` with every secret-named key's value replaced, at any depth.

        What holds no secret is returned as the same object, so callers can tell by
        identity whether anything was redacted.
        """
        cls = type(value)
        if cls is dict:
            out = {
                k: REDACTED if self.is_secret(k) else self.redact(v) for k, v in value.items()
            }
            return value if all(out[k] is v for k, v in value.items()) else out
        if cls is list or cls is tuple:
            items = [self.redact(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items if cls is list else tuple(items)
        if isinstance(value, msgspec.Struct):
            changes = {
                f: REDACTED if self.is_secret(f) else self.redact(getattr(value, f))
                for f in value.__struct_fields__
            }
            return _rebuild_struct(value, changes)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = [f.name for f in dataclasses.fields(value) if f.init]
            fields = {n: getattr(value, n) for n in names}
            redacted = {
                n: REDACTED if self.is_secret(n) else self.redact(v) for n, v in fields.items()
            }
            if all(redacted[n] is fields[n] for n in names):
                return value
            # A dataclass cannot be trusted to hold a marker string: keep its data as a dict.
            return redacted
        return value

    def captured(self, value: Any, path: str) -> Any:
        """Redact, then truncate above the capture limit. Raises for unsupported values."""
        if value is None or type(value) in (int, float, bool):
            return value
        value = self.redact(value)
        data = encode_value(value, path)
        if len(data) <= self.max_capture_bytes:
            return value
        return Truncated(
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            preview=repr(value)[: self.preview_chars],
        )


def _rebuild_struct(value: msgspec.Struct, changes: dict[str, Any]) -> Any:
    differs = any(changes[f] is not getattr(value, f) for f in changes)
    if not differs:
        return value
    try:
        return msgspec.structs.replace(value, **changes)
    except (TypeError, msgspec.ValidationError):
        # A Struct whose field types cannot hold the marker string: keep its data as a dict.
        return changes
