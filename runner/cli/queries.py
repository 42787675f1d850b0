"""Read queries the views cannot answer alone: following the log, and its log lines.

(Costs within a time window come from the views: ``Projections.costs(by, since=)``.)

``follow`` yields new events of the notification log as they are committed (all
executions or one), polling; ``journal tail`` renders them.

``log_lines`` is ``journal logs``: the log lines (``LogRecorded`` events) of one execution or
of all, the last N that match, oldest first (as ``journalctl -n``/``kubectl logs --tail``
print them: the newest at the bottom, next to the prompt). Only log rows are decoded (their
topic says which rows they are); across executions, the ``executions`` view names those that
logged anything, latest event first, and streams are read until no older one can hold a
line among the last N. When that takes many streams (a rare ``--grep``), one pass over the
log's log rows takes over: a query per page rather than one per execution.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from journal import Journal
from journal.encoding import decode_event, topics_of
from journal.events import (
    TERMINAL_EVENTS,
    Event,
    ExecutionStarted,
    LogRecorded,
)
from projections import Projections
from runner.cli.jsonout import preview

__all__ = ["LEVELS", "LogLine", "follow", "level_rank", "log_lines"]


def follow(
    journal: Journal,
    *,
    execution_id: UUID | None = None,
    history: bool = False,
    poll_interval: float = 0.2,
    stop: threading.Event | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[int, Event]]:
    """Yield ``(notification id, event)`` for events committed from now on.

    With ``execution_id``, only that execution's, and with ``history`` its events so far
    first (notification id 0); it ends after the execution's terminal event. Otherwise it
    runs until ``stop`` is set or ``timeout`` seconds pass (forever when both are None).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    after = journal.storage.head()
    seen = 0
    if execution_id is not None and history:
        for event in journal.events(execution_id):
            seen = event.position
            yield 0, event
            if _is_terminal(event):
                return
    while not (stop is not None and stop.is_set()):
        page = journal.notifications(after=after, limit=500)
        for nid, event in page:
            after = nid
            if execution_id is not None and event.execution_id != execution_id:
                continue
            if execution_id is not None and event.position <= seen:
                continue  # already shown as history
            yield nid, event
            if execution_id is not None and _is_terminal(event):
                return
        if page:
            continue
        if deadline is not None and time.monotonic() >= deadline:
            return
        wait = poll_interval if deadline is None else min(
            poll_interval, max(deadline - time.monotonic(), 0)
        )
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)


def _is_terminal(event: Event) -> bool:
    return isinstance(event, TERMINAL_EVENTS)


# -- logs ------------------------------------------------------------------------------------

#: The levels ``journal logs --level`` takes, lowest first: each keeps its own and the ones
#: above (``warning``: warnings and errors).
LEVELS = ("debug", "info", "warning", "error")
_RANKS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50,
          "fatal": 50}
_LOG_TOPICS = frozenset(topics_of(LogRecorded))
_STARTED_TOPICS = frozenset(topics_of(ExecutionStarted))
#: Executions read per page of the views when merging the lines of many.
_LOG_PAGE = 200
#: Streams read one by one before a pass over the whole log's log rows takes over.
_SCAN_AFTER = 500
#: Rows per page of that pass.
_SCAN_PAGE = 5000


def level_rank(level: str) -> int:
    """How severe a level is: Python's numbers (``warn`` is ``warning``, ``critical`` and
    ``fatal`` above ``error``); a level of its own (``ctx.log(level="notice")``) counts
    as ``info``, so ``--level warning`` leaves it out and ``--level info`` keeps it."""
    return _RANKS.get(level.lower(), _RANKS["info"])


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One log line of an execution (``ctx.log``), as ``journal logs`` prints it."""

    at: datetime
    execution_id: UUID
    workflow: str
    level: str
    message: str
    #: The step it was logged in (its seq), None outside steps.
    seq: int | None
    fields: dict[str, Any]
    #: Its position in the execution's stream (``journal show`` numbers events by it).
    position: int


class _Filter:
    """What ``--since``, ``--grep`` and ``--level`` keep."""

    def __init__(self, since: datetime | None, grep: str | None, level: str | None) -> None:
        self.since = None if since is None else since.astimezone(UTC)
        self.grep = grep.casefold() if grep else None
        self.rank = None if level is None else level_rank(level)

    def __call__(self, line: LogLine) -> bool:
        if self.since is not None and line.at < self.since:
            return False
        if self.rank is not None and level_rank(line.level) < self.rank:
            return False
        if self.grep is None or self.grep in line.message.casefold():
            return True
        return bool(line.fields) and self.grep in _fields_text(line.fields).casefold()


def _fields_text(fields: dict[str, Any]) -> str:
    """A log line's fields as JSON text, for ``--grep`` (msgspec's encoder where it takes
    the values, many times faster than the printed preview; spacing aside, the same text)."""
    try:
        return msgspec.json.encode(fields).decode()
    except (TypeError, ValueError):
        return preview(fields, 1 << 20)


def _workflow_of(execution_id: UUID, position: int, topic: str, data: bytes) -> str:
    """The workflow an ``ExecutionStarted`` row names, read leanly (its input undecoded)."""
    started = decode_event(topic, data, lean=True, execution_id=execution_id,
                           position=position)
    assert isinstance(started, ExecutionStarted)
    return started.workflow


def _line(execution_id: UUID, position: int, topic: str, data: bytes, workflow: str
          ) -> LogLine:
    event = decode_event(topic, data, execution_id=execution_id, position=position)
    assert isinstance(event, LogRecorded)
    return LogLine(
        at=event.timestamp.astimezone(UTC), execution_id=execution_id, workflow=workflow,
        level=event.level, message=event.message, seq=event.seq,
        fields=event.fields if isinstance(event.fields, dict) else {"fields": event.fields},
        position=position)


def _lines_of(journal: Journal, execution_id: UUID, workflow: str | None) -> list[LogLine]:
    """The log lines of one execution, decoding only its log rows (and, when ``workflow`` is
    not known, its first row, leanly)."""
    rows = journal.storage.read_stream(execution_id)
    if workflow is None:
        workflow = ""
        if rows and rows[0][1] in _STARTED_TOPICS:
            workflow = _workflow_of(execution_id, *rows[0])
    return [_line(execution_id, position, topic, data, workflow)
            for position, topic, data in rows if topic in _LOG_TOPICS]


def _scanned(journal: Journal, workflow: str | None) -> Iterator[LogLine]:
    """Every log line of the journal (of ``workflow``), in commit order, from one pass over
    the log's start and log rows: each execution's start comes before its lines and names
    its workflow; a line of another workflow is not decoded."""
    topics = (*_STARTED_TOPICS, *_LOG_TOPICS)
    names: dict[UUID, str] = {}
    after = 0
    while True:
        rows = journal.storage.read_log(after, _SCAN_PAGE, topics=topics)
        if not rows:
            return
        for _, eid, position, topic, data in rows:
            if topic in _STARTED_TOPICS:
                names[eid] = _workflow_of(eid, position, topic, data)
                continue
            name = names.get(eid, "")
            if workflow is None or name == workflow:
                yield _line(eid, position, topic, data, name)
        after = rows[-1][0]


def log_lines(
    journal: Journal, views: Projections, *, execution_id: UUID | None = None,
    workflow: str | None = None, since: datetime | None = None, grep: str | None = None,
    level: str | None = None, limit: int | None = 100,
) -> list[LogLine]:
    """The last ``limit`` log lines (None: all) of ``execution_id``, or of every execution
    (of ``workflow``), logged at or after ``since``, with ``grep`` in their message or
    fields (case ignored), at ``level`` or above; oldest first.

    Across executions the views say which logged anything and when each had its last
    event; those are read latest first, and reading stops once the next one's last event
    is older than every line kept (its lines cannot be among the last ``limit``). The views
    are read as they are (a read command catches them up first)."""
    if level is not None and level.lower() not in _RANKS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, not {limit}")
    keep = _Filter(since, grep, level)
    if execution_id is not None:
        summary = views.execution(execution_id)
        found = [ln for ln in _lines_of(journal, execution_id,
                                        summary.workflow if summary else None) if keep(ln)]
        return found if limit is None else found[-limit:]
    newest = _Newest(limit)
    before = None
    read = 0
    while True:
        page = views.executions(workflow=workflow, updated_since=keep.since, with_logs=True,
                                sort="updated", before=before, limit=_LOG_PAGE)
        for e in page:
            if newest.full and newest.oldest > e.updated_at:
                return newest.lines()
            if read >= _SCAN_AFTER:  # the filter keeps few lines: one pass over the log
                newest = _Newest(limit)
                for ln in _scanned(journal, workflow):
                    if keep(ln):
                        newest.add(ln)
                return newest.lines()
            read += 1
            for ln in _lines_of(journal, e.execution_id, e.workflow):
                if keep(ln):
                    newest.add(ln)
        if len(page) < _LOG_PAGE:
            return newest.lines()
        before = page[-1]


class _Newest:
    """The newest ``limit`` lines added (all of them for None): a min-heap by (time, id,
    position), the oldest kept on top."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.heap: list[tuple[datetime, str, int, LogLine]] = []

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.heap) >= self.limit

    @property
    def oldest(self) -> datetime:
        return self.heap[0][0]

    def add(self, line: LogLine) -> None:
        item = (line.at, str(line.execution_id), line.position, line)
        if not self.full:
            heapq.heappush(self.heap, item)
        elif item[:3] > self.heap[0][:3]:
            heapq.heapreplace(self.heap, item)

    def lines(self) -> list[LogLine]:
        """Oldest first."""
        return [item[3] for item in sorted(self.heap, key=lambda i: i[:3])]
