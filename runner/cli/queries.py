"""Read queries the views cannot answer alone: costs within a time window, and following.

``Projections.costs(by=)`` keeps running totals since the beginning of the log. For
``journal costs --since`` the window matters, so the costs are summed from the events of
the executions active in the window (the ``executions`` view narrows them down by last
update), with the projector's own rules: per cost entry, keyed by workflow, step name,
model or UTC day.

``follow`` yields new events of the notification log as they are committed (all
executions or one), polling; ``journal tail`` renders them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from journal import Journal
from journal.events import (
    TERMINAL_EVENTS,
    Event,
    ExecutionStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from projections import COST_DIMENSIONS, CostSummary, Projections

__all__ = ["costs_since", "follow"]


def costs_since(
    journal: Journal, views: Projections, *, by: str, since: datetime
) -> list[CostSummary]:
    """Cost totals by ``by`` of cost entries recorded at or after ``since``, by key."""
    if by not in COST_DIMENSIONS:
        raise ValueError(f"cannot group costs by {by!r}: use one of {', '.join(COST_DIMENSIONS)}")
    views.refresh()
    since = since.astimezone(UTC)
    totals: dict[str, list[Decimal | int]] = {}
    for eid in views.updated_since(since):
        names: dict[int, str] = {}
        workflow = ""
        for event in journal.events(eid):
            if isinstance(event, StepStarted):
                names[event.seq] = event.name
            elif isinstance(event, ExecutionStarted):
                workflow = event.workflow
            if not isinstance(event, StepCompleted | StepFailed) or event.timestamp < since:
                continue
            for c in event.costs:
                key = {
                    "workflow": workflow, "step": names.get(event.seq, ""), "model": c.model,
                    "day": event.timestamp.astimezone(UTC).date().isoformat(),
                }[by]
                t = totals.setdefault(key, [Decimal(0), 0, 0, 0])
                t[0] += c.usd
                t[1] += c.input_tokens
                t[2] += c.output_tokens
                t[3] += 1
    return [
        CostSummary(key=k, usd=Decimal(t[0]), input_tokens=int(t[1]), output_tokens=int(t[2]),
                    calls=int(t[3]))
        for k, t in sorted(totals.items())
    ]


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
