"""An event-sourced execution journal: every workflow transition as an immutable event.

``Journal.open(url)`` gives a journal on SQLite (default), PostgreSQL or memory;
``journal.start(workflow, input)`` gives a handle that records a run's lifecycle;
``journal.state(id)`` rebuilds what the log says about it.
"""

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
    StepCompleted,
    StepFailed,
    StepStarted,
    Truncated,
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
    "apply",
    "fold",
]
