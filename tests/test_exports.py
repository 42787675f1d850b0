"""The public surface of ``journal`` is locked: changing it is a deliberate, reviewed act."""

from __future__ import annotations

import journal

EXPECTED = [
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


def test_journal_exports_are_locked() -> None:
    assert journal.__all__ == EXPECTED


def test_every_export_exists_and_is_documented() -> None:
    for name in journal.__all__:
        member = getattr(journal, name)
        assert member.__doc__, f"journal.{name} has no docstring"


def test_errors_share_one_root() -> None:
    errors = [m for n in journal.__all__
              if isinstance(m := getattr(journal, n), type) and issubclass(m, Exception)]
    assert len(errors) == 12
    storage = [journal.JournalNotFound, journal.NotAJournal, journal.StorageFull,
               journal.StoragePermissionDenied, journal.StorageReadOnly]
    assert all(issubclass(e, journal.JournalUnavailable) for e in storage)
    assert all(issubclass(e, journal.JournalError) for e in errors)
    assert issubclass(journal.UnsupportedValue, TypeError)


def test_libraries_do_not_load_the_command_line() -> None:
    """``import journal`` / ``import projections`` pay for neither Typer nor Rich."""
    import subprocess
    import sys

    code = (
        "import sys, journal, projections, journal.storage.sqlite, journal.storage.memory;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
