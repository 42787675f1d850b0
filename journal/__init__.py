"""An event-sourced execution journal: every workflow transition as an immutable event.

``Journal.open(url)`` gives a journal on SQLite (default), PostgreSQL or memory;
``journal.start(workflow, input)`` gives a handle that records a run's lifecycle;
``journal.state(id)`` rebuilds what the log says about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from journal.capture import Capture
    from journal.errors import (
        ConcurrencyConflict,
        DecodingError,
        ExecutionNotFound,
        InvalidTransition,
        JournalError,
        JournalNotFound,
        JournalUnavailable,
        NotAJournal,
        StorageFull,
        StoragePermissionDenied,
        StorageReadOnly,
        UnsupportedValue,
    )
    from journal.events import (
            Cost,
        ErrorInfo,
        Event,
        ExecutionCancelled,
        ExecutionClaimed,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionPaused,
        ExecutionResumed,
        ExecutionStarted,
        LogRecorded,
        OutOfLine,
        SignalReceived,
        StepCompleted,
        StepFailed,
        StepStarted,
        Truncated,
        ValueRecorded,
        WaitEnded,
        WaitStarted,
    )
    from journal.journal import ExecutionHandle, Journal
    from journal.state import ExecutionState, StepMarker, StepState, apply, fold
    from journal.values import Unresolved

__all__ = [
    "Capture",
    "ConcurrencyConflict",
    "Cost",
    "DecodingError",
    "ErrorInfo",
    "Event",
    "ExecutionCancelled",
    "ExecutionClaimed",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionHandle",
    "ExecutionNotFound",
    "ExecutionPaused",
    "ExecutionResumed",
    "ExecutionStarted",
    "ExecutionState",
    "InvalidTransition",
    "Journal",
    "JournalError",
    "JournalNotFound",
    "JournalUnavailable",
    "LogRecorded",
    "NotAJournal",
    "OutOfLine",
    "SignalReceived",
    "StepCompleted",
    "StepFailed",
    "StepMarker",
    "StepStarted",
    "StepState",
    "StorageFull",
    "StoragePermissionDenied",
    "StorageReadOnly",
    "Truncated",
    "Unresolved",
    "UnsupportedValue",
    "ValueRecorded",
    "WaitEnded",
    "WaitStarted",
    "apply",
    "fold",
]

# Each name is loaded from its module on first use: ``import journal.errors`` (or a command
# that needs only the events) does not pay for the whole package.
_HOMES = {
    "Capture": "journal.capture",
    "ExecutionHandle": "journal.journal",
    "Journal": "journal.journal",
    "Unresolved": "journal.values",
    **dict.fromkeys(("ExecutionState", "StepMarker", "StepState", "apply", "fold"),
                    "journal.state"),
    **dict.fromkeys(("ConcurrencyConflict", "DecodingError", "ExecutionNotFound",
                     "InvalidTransition", "JournalError", "JournalNotFound",
                     "JournalUnavailable", "NotAJournal", "StorageFull",
                     "StoragePermissionDenied", "StorageReadOnly", "UnsupportedValue"),
                    "journal.errors"),
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES.get(name, "journal.events")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
