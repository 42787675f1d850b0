"""Every error the journal raises, under one root.

::

    JournalError
     ├── JournalUnavailable        the database cannot be reached or failed a write
     │    ├── JournalNotFound      no journal there (opened with create=False, or a typo)
     │    ├── StorageFull          the disk (or the database's quota) is full
     │    ├── StorageReadOnly      the file system, file or database refuses writes
     │    ├── StoragePermissionDenied  the OS or the database role refuses access
     │    └── NotAJournal          a directory, a corrupt file, not a database at all
     ├── ExecutionNotFound         no stream for that execution id
     ├── InvalidTransition         the event is impossible in the execution's state
     ├── ConcurrencyConflict       another writer appended at that position first
     ├── UnsupportedValue          a value the encoding cannot round-trip (also a TypeError)
     └── DecodingError             a stored event could not be decoded

Errors carry their facts as attributes (``execution_id``, ``status``, ``event`` ...) so
callers can branch on them, and a message that says what happened and what to do.
Nothing that raises one of these has written anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

__all__ = [
    "ConcurrencyConflict",
    "DecodingError",
    "ExecutionNotFound",
    "InvalidTransition",
    "JournalError",
    "JournalNotFound",
    "JournalUnavailable",
    "NotAJournal",
    "StorageFull",
    "StoragePermissionDenied",
    "StorageReadOnly",
    "UnsupportedValue",
    "mask_url",
]


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` so it can be shown or logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


class JournalError(Exception):
    """Root of every error raised by the journal, projections and runner."""


class JournalUnavailable(JournalError):
    """The database could not be reached, or a write to it failed; nothing was recorded.

    Its subclasses name local trouble precisely (a full disk is not a server that is down);
    ``where`` is the file or database concerned, ``cause`` the driver's own reason.
    """

    def __init__(self, url: str, cause: BaseException | str, *, where: str | None = None) -> None:
        self.url = mask_url(url)
        self.cause = cause
        self.where = where or self.url
        super().__init__(self._message())

    def _message(self) -> str:
        return (
            f"journal database {self.where} is unavailable: {self.cause}. "
            "Nothing was recorded; check that the database is running and reachable, then retry."
        )


class JournalNotFound(JournalUnavailable):
    """There is no journal at that place, and this open was not allowed to create one."""

    def _message(self) -> str:
        return (
            f"no journal at {self.where} ({self.cause}); check the URL "
            "(sqlite:///relative.db, sqlite:////absolute.db, postgresql://user@host/db?schema=), "
            "or write to it once to create it"
        )


class StorageFull(JournalUnavailable):
    """The disk holding the journal (or the database's space) is full."""

    def _message(self) -> str:
        return (
            f"journal {self.where}: no space left ({self.cause}); nothing was recorded. "
            "Free disk space (or prune old executions), then retry."
        )


class StorageReadOnly(JournalUnavailable):
    """The journal can be read but not written here (read-only file system, file or server)."""

    def _message(self) -> str:
        return (
            f"journal {self.where} is read-only here ({self.cause}); nothing was recorded. "
            "Write from a process that can write to it; read commands still work."
        )


class StoragePermissionDenied(JournalUnavailable):
    """The operating system or the database role does not allow this access."""

    def _message(self) -> str:
        return (
            f"permission denied on journal {self.where} ({self.cause}); nothing was recorded. "
            "Grant this user (or database role) access, or use one that has it."
        )


class NotAJournal(JournalUnavailable):
    """The path is a directory, a corrupt file, or not a database at all."""

    def _message(self) -> str:
        return (
            f"{self.where} is not a journal database ({self.cause}); point the URL at the "
            "journal's file (or restore it from a backup if it was damaged)"
        )


class ExecutionNotFound(JournalError, LookupError):
    """No execution with that id has been recorded."""

    def __init__(self, execution_id: UUID | str) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id} not found in the journal")


class InvalidTransition(JournalError):
    """The event cannot happen in the execution's current state; nothing was written."""

    def __init__(
        self, execution_id: UUID | str, status: str, event: str, reason: str, **facts: Any
    ) -> None:
        self.execution_id = execution_id
        self.status = status
        self.event = event
        self.reason = reason
        self.facts = facts
        super().__init__(
            f"cannot record {event} for execution {execution_id} (status {status}): {reason}"
        )


class ConcurrencyConflict(JournalError):
    """Another writer appended at this position first; nothing was written.

    Reload the execution (``journal.execution(id)``) to see what the other writer recorded.
    """

    def __init__(self, execution_id: UUID | str, position: int) -> None:
        self.execution_id = execution_id
        self.position = position
        super().__init__(
            f"execution {execution_id}: another writer already recorded position {position}; "
            "nothing was written. Reload the execution to continue from what it recorded."
        )


class UnsupportedValue(JournalError, TypeError):
    """A value cannot be stored so that it reads back equal and of the same type."""

    def __init__(self, path: str, value: Any) -> None:
        self.path = path
        self.value_type = type(value)
        super().__init__(
            f"cannot record {path}: values of type {type(value).__module__}."
            f"{type(value).__qualname__} are not supported (use str, int, float, bool, None, "
            "list, tuple, dict, Decimal, datetime, date, UUID, bytes, a msgspec Struct or a "
            "dataclass); nothing was written"
        )


class DecodingError(JournalError):
    """A stored event could not be decoded (unknown topic or corrupt bytes)."""

    def __init__(self, execution_id: UUID | str, position: int, topic: str, cause: object) -> None:
        self.execution_id = execution_id
        self.position = position
        self.topic = topic
        super().__init__(
            f"execution {execution_id} position {position}: cannot decode {topic}: {cause}"
        )
