"""Parsing ``--since``/``--older-than`` arguments and formatting times for people.

Durations read like ``90s``, ``30m``, ``2h``, ``7d``, ``2w`` or combined (``1h30m``); a
point in time is that long ago, or an ISO 8601 date/time (UTC unless it says otherwise).
Bad input raises :class:`ValueError` with a message that shows the accepted forms, which
the CLI prints as its one-line reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from journal.readable import format_seconds

__all__ = ["format_age", "format_seconds", "parse_duration", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*[smhdw])+\s*$")
_HELP = "use a duration like 90s, 30m, 2h, 7d, 2w or 1h30m"


def parse_duration(text: str, *, option: str = "duration") -> timedelta:
    """Parse ``30m``, ``2h``, ``1h30m`` ... into a timedelta; ValueError naming ``option``."""
    raw = text.strip().lower()
    if not raw or not _WHOLE.match(raw):
        raise ValueError(f"invalid {option} {text!r}: {_HELP}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw))
    return timedelta(seconds=seconds)


def parse_since(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """A point in time: ``now`` minus a duration, or an ISO date/time (naive means UTC)."""
    now = now or datetime.now(UTC)
    raw = text.strip()
    if raw and _WHOLE.match(raw.lower()):
        return now - parse_duration(raw, option=option)
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"invalid {option} {text!r}: {_HELP}, or an ISO date/time "
                         "like 2024-05-01 or 2024-05-01T12:00:00Z")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def format_age(when: datetime | None, *, now: datetime | None = None) -> str:
    """How long ago ``when`` was, e.g. ``3m05s ago``."""
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    return f"{format_seconds((now - when).total_seconds())} ago"
