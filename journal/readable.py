"""Times and durations as every part of the project prints them for people (the views'
stall reasons, ``journal show``, the timeline page), so one run reads the same everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_seconds", "format_utc"]


def format_utc(when: datetime) -> str:
    """``2026-12-01 15:00:49 UTC``: a point in time, to the second."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_seconds(seconds: float | None) -> str:
    """Seconds for people: ``4.2ms``, ``420ms``, ``4.20s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0.0
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
