"""Export, archive, prune and re-import executions: the library behind ``journal export``,
``journal prune`` and ``journal import``.

An export (and an archive: the same format) is one JSON file per execution holding its
summary and every event twice: readable fields for people and ``jq``, and the event exactly
as the journal encodes it (topic + base64 msgpack), so reading an archive back gives events
equal to the ones deleted, and ``import_archive`` can put the stream back.

Files are written atomically (temporary file in the same directory, fsync, rename): a crash
leaves the old file or the new one, never half of one. Content is deterministic, so a
re-export of an unchanged execution is recognised and skipped.

Pruning deletes only executions the log says *ended* before the cutoff: never a running or
paused one. Candidates come from the ``executions`` view (an indexed query), each is then
re-checked against its own stream. For each: archive (and read the archive back to verify),
delete its stream, delete its rows from the ``executions`` and ``steps`` views. The
``costs`` view holds sums, so it is rebuilt from the log when a pruned execution carried
costs: the views stay exactly what a rebuild from the log gives, and the cost totals drop by
what the pruned executions cost (``PruneResult.usd_removed``; ``journal prune`` says so).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from journal import Journal
from journal.encoding import decode_event, encode_event
from journal.errors import ExecutionNotFound, InvalidTransition, JournalError
from journal.events import Event, StepCompleted, StepFailed
from journal.state import TERMINAL_STATUSES, ExecutionState, fold
from projections import ExecutionSummary, Projections
from runner.cli.jsonout import to_jsonable
from runner.cli.timeline import summarize

__all__ = [
    "FORMAT",
    "ArchiveError",
    "ExportOutcome",
    "ImportOutcome",
    "PruneResult",
    "Pruned",
    "export_document",
    "export_execution",
    "import_archive",
    "iter_executions",
    "prune",
    "read_archive",
    "without_output",
    "write_atomic",
]

FORMAT = "execution-journal/export-v1"


class ArchiveError(JournalError):
    """A file is not an export/archive this version can read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: not a readable journal export ({reason})")


class ExportOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What exporting one execution did: ``written``, ``unchanged`` or ``replaced``."""

    execution_id: UUID
    path: Path
    action: str
    status: str
    has_output: bool


class Pruned(msgspec.Struct, frozen=True, kw_only=True):
    """One execution removed (or, in a dry run, that would be)."""

    execution_id: UUID
    workflow: str
    status: str
    ended_at: datetime | None
    events: int
    archive: Path | None = None


class PruneResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``prune`` removed, or would remove in a dry run."""

    cutoff: datetime
    dry_run: bool
    pruned: list[Pruned]
    events_removed: int
    #: The ``costs`` view was rebuilt because pruned executions carried costs.
    costs_rebuilt: bool
    #: What the pruned executions cost (their costs leave the totals of ``journal costs``
    #: with them; in a dry run, what would leave).
    usd_removed: Decimal = Decimal(0)


class ImportOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What importing one archive did: ``imported`` or ``exists`` (left alone)."""

    execution_id: UUID
    path: Path
    action: str
    events: int


# -- files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def export_document(execution_id: UUID, events: list[Event]) -> bytes:
    """The export of one execution as bytes: deterministic for the same events."""
    state = fold(execution_id, events)
    doc = {
        "format": FORMAT,
        "execution_id": str(execution_id),
        "summary": summarize(state, live=False),
        "events": [_event_record(e) for e in events],
    }
    return (json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n").encode()


def _event_record(event: Event) -> dict[str, Any]:
    stored = encode_event(event)
    return {
        "type": type(event).__name__,
        **to_jsonable(event),
        "stored": {
            "topic": stored.topic,
            "state": base64.b64encode(stored.state).decode("ascii"),
        },
    }


def read_archive(path: Path) -> tuple[dict[str, Any], list[Event]]:
    """Read an export/archive back: its summary and its events, exactly as recorded."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ArchiveError(path, str(e)) from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchiveError(path, f"format is not {FORMAT}")
    try:
        eid = UUID(doc["execution_id"])
        events = [
            decode_event(
                rec["stored"]["topic"], base64.b64decode(rec["stored"]["state"]),
                execution_id=eid, position=int(rec["position"]),
            )
            for rec in doc["events"]
        ]
    except (KeyError, TypeError, ValueError, JournalError) as e:
        raise ArchiveError(path, f"malformed: {e!r}") from e
    for event in events:
        if event.execution_id != eid:
            raise ArchiveError(path, f"event {event.position} belongs to {event.execution_id}")
    summary: dict[str, Any] = doc.get("summary") or {}
    return summary, events


# -- export ----------------------------------------------------------------------------------------


def export_execution(journal: Journal, execution_id: UUID, out_dir: Path) -> ExportOutcome:
    """Write ``<out_dir>/<id>.json`` unless it already holds exactly this content."""
    events = journal.events(execution_id)
    state = fold(execution_id, events)
    data = export_document(execution_id, events)
    path = Path(out_dir) / f"{execution_id}.json"
    try:
        old: bytes | None = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old == data:
        action = "unchanged"
    else:
        write_atomic(path, data)
        action = "written" if old is None else "replaced"
    return ExportOutcome(
        execution_id=execution_id, path=path, action=action, status=state.status,
        has_output=state.output is not None,
    )


def iter_executions(
    views: Projections, *, status: str | None = None, page: int = 500
) -> Iterator[ExecutionSummary]:
    """Every execution the views know (caught up first where this connection may write
    them), newest first, page by page."""
    views.refresh()
    before: ExecutionSummary | None = None
    while True:
        rows = views.executions(status=status, before=before, limit=page)
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1]


# -- prune -----------------------------------------------------------------------------------------


def _costs(events: list[Event]) -> tuple[bool, Decimal]:
    """Whether the events carry costs, and what they add up to."""
    costed = [c for e in events if isinstance(e, StepCompleted | StepFailed) for c in e.costs]
    return bool(costed), sum((c.usd for c in costed), Decimal(0))


def without_output(outcomes: list[ExportOutcome]) -> str | None:
    """One line for the exported executions that have no output (they had not completed:
    failed, paused, still running), by status, instead of one warning each."""
    counts: dict[str, int] = {}
    for o in outcomes:
        if not o.has_output:
            counts[o.status] = counts.get(o.status, 0) + 1
    if not counts:
        return None
    n = sum(counts.values())
    by_status = ", ".join(f"{c:,} {s}" for s, c in sorted(counts.items(),
                                                            key=lambda i: (-i[1], i[0])))
    return (f"{n:,} of the {len(outcomes):,} exported execution(s) have no output "
            f"({by_status}): they had not completed")


def _ended_before(state: ExecutionState, cutoff: datetime) -> bool:
    return (
        state.status in TERMINAL_STATUSES
        and state.ended_at is not None
        and state.ended_at < cutoff
    )


def prune(
    journal: Journal,
    views: Projections,
    *,
    before: datetime,
    archive_dir: Path | None = None,
    dry_run: bool = False,
    on_pruned: Callable[[Pruned], None] | None = None,
) -> PruneResult:
    """Delete executions that ended before ``before`` (archiving each first if asked).

    Running and paused executions are never touched, whatever the views say: each
    candidate's own stream is folded and checked before anything is deleted. An archive is
    read back and compared with the stream before the stream is deleted.
    """
    if before.tzinfo is None:
        raise ValueError("prune cutoff must be an aware datetime (UTC)")
    cutoff = before.astimezone(UTC)
    views.catch_up()  # the views are past every event of the streams about to go
    pruned: list[Pruned] = []
    removed = 0
    costs_changed = False
    usd = Decimal(0)
    for eid in views.ended_before(cutoff):
        try:
            events = journal.events(eid)
        except ExecutionNotFound:
            if not dry_run:  # view rows left by an interrupted prune: the stream is gone
                views.forget([eid])
            continue
        state = fold(eid, events)
        if not _ended_before(state, cutoff):
            continue
        archive: Path | None = None
        if archive_dir is not None and not dry_run:
            archive = Path(archive_dir) / f"{eid}.json"
            write_atomic(archive, export_document(eid, events))
            if read_archive(archive)[1] != events:
                raise ArchiveError(archive, "reading it back does not give the stream; "
                                   "nothing was deleted")
        item = Pruned(
            execution_id=eid, workflow=state.workflow, status=state.status,
            ended_at=state.ended_at, events=len(events), archive=archive,
        )
        costed, spent = _costs(events)
        usd += spent
        if not dry_run:
            removed += journal.storage.delete_streams([eid])
            views.forget([eid])
            costs_changed = costs_changed or costed
        pruned.append(item)
        if on_pruned is not None:
            on_pruned(item)
    if costs_changed:
        views.rebuild(only=["costs"])
    return PruneResult(
        cutoff=cutoff, dry_run=dry_run, pruned=pruned, events_removed=removed,
        costs_rebuilt=costs_changed, usd_removed=usd,
    )


# -- import ----------------------------------------------------------------------------------------


def import_archive(journal: Journal, path: Path) -> ImportOutcome:
    """Append an archived stream back to the journal, unless the execution is there already."""
    _, events = read_archive(path)
    if not events:
        raise ArchiveError(path, "it holds no events")
    eid = events[0].execution_id
    try:
        restored = journal.restore(events)
    except InvalidTransition as e:
        raise ArchiveError(path, f"it is not a valid history: {e}") from e
    if not restored:
        return ImportOutcome(execution_id=eid, path=Path(path), action="exists", events=0)
    return ImportOutcome(
        execution_id=eid, path=Path(path), action="imported", events=len(events)
    )
