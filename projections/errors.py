"""Errors of the projections, under the journal's root ``JournalError``.

::

    JournalError
     ├── JournalUnavailable     the database cannot be reached (from journal.errors)
     └── ProjectionError        the log cannot be projected (undecodable or impossible event)
          └── ViewsBehind        behind the log, and this role or file cannot update them
"""

from __future__ import annotations

from journal.errors import JournalError

__all__ = ["ProjectionError", "ViewsBehind"]


class ProjectionError(JournalError):
    """The views cannot advance past notification ``position``; nothing of that page was written."""

    def __init__(self, message: str, *, position: int) -> None:
        self.position = position
        super().__init__(message)


class ViewsBehind(ProjectionError):
    """The views are behind the log and this process may not update them (a read-only role,
    a read-only file); what they hold can still be read."""

    def __init__(self, *, position: int, head: int, where: str, cause: object) -> None:
        self.head = head
        self.behind = max(0, head - position)
        self.cause = cause
        super().__init__(
            f"the views of {where} are {self.behind:,} events behind the log (at notification "
            f"{position:,} of {head:,}) and this connection cannot update them ({cause}); "
            "they show the state as of then. Bring them up to date with `journal rebuild` "
            "(or any process that runs the projections) as a user that can write.",
            position=position,
        )
