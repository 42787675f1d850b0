"""Errors of the projections, under the journal's root ``JournalError``.

::

    JournalError
     ├── JournalUnavailable     the database cannot be reached (from journal.errors)
     └── ProjectionError        the log cannot be projected (undecodable or impossible event)
"""

from __future__ import annotations

from journal.errors import JournalError

__all__ = ["ProjectionError"]


class ProjectionError(JournalError):
    """The views cannot advance past notification ``position``; nothing of that page was written."""

    def __init__(self, message: str, *, position: int) -> None:
        self.position = position
        super().__init__(message)
