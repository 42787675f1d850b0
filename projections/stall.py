"""Why an open execution is not moving: one reason, from its view rows and its lease.

The views say what the log says (the pause, the wait, the step in flight, the retry's next
attempt); the lease says whether a live process is driving it (a ten-minute step leaves no
event for ten minutes, a killed process none ever again). :func:`stall_reason` puts the two
together for one execution, as a machine-readable ``kind`` and a sentence for people:

=========  ===============================================================================
kind       text
=========  ===============================================================================
human      ``waiting for human REASON since T`` (``, until T``: the pause's deadline)
sleeping   ``sleeping until T``
signal     ``waiting for signal NAME since T`` (``, until T``)
child      ``waiting for child WORKFLOW since T``
running    ``in step NAME for D, driver alive (host:pid)``
retrying   ``retrying NAME k/n, next attempt at T, last error E`` (k: the next attempt)
orphaned   ``orphaned in step NAME (driver gone since T)``: running, and no live process
           holds its lease (T: its last event, the last sign of life)
queued     ``queued since T`` (``Runner.enqueue``): no ``serve()`` process has taken it yet
diverged   ``diverged at seq k under code version V: ...``: a process tried to replay it
           and its code no longer matches the log (``ReplayDiverged``)
stranded   ``stranded: code version V not deployed (...)``: it diverged under every code
           version live processes run; or ``stranded: workflow W is not served by any live
           process``: processes serve the journal, none runs its workflow
=========  ===============================================================================

Who serves the journal comes from ``journal_workers`` (each ``serve()`` process says every
few seconds which workflows and code versions it runs). With nobody serving at all, an
orphan and a queued run say so (``no serve() process is alive``): nothing will take them.

A wait whose deadline has passed says ``, overdue`` (nothing woke it: is ``journal serve``
running?). Times are UTC, durations as ``3m05s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final
from uuid import UUID

import msgspec

from journal.readable import format_seconds, format_utc
from journal.state import PAUSED, QUEUED, RUNNING, STEP_RETRYING, STEP_RUNNING, WAITING
from journal.storage.base import WORKER_ALIVE_FOR, WorkerRow
from journal.storage.leases import driver_name
from projections.tables import EXECUTIONS, STEPS
from projections.views import ExecutionSummary, StepSummary

if TYPE_CHECKING:
    from projections.api import Projections

__all__ = [
    "CHILD",
    "DIVERGED",
    "HUMAN",
    "KINDS",
    "ORPHANED",
    "QUEUED_RUN",
    "RETRYING",
    "RUNNING_STEP",
    "SIGNAL",
    "SLEEPING",
    "STRANDED",
    "Stall",
    "StallReason",
    "driver_name",
    "find_stalled",
    "stall_reason",
]

HUMAN: Final = "human"
SLEEPING: Final = "sleeping"
SIGNAL: Final = "signal"
CHILD: Final = "child"
#: A step (or the workflow's code between steps) in flight, its driver alive.
RUNNING_STEP: Final = "running"
ORPHANED: Final = "orphaned"
RETRYING: Final = "retrying"
QUEUED_RUN: Final = "queued"
DIVERGED: Final = "diverged"
STRANDED: Final = "stranded"
#: Every kind :func:`stall_reason` gives.
KINDS: tuple[str, ...] = (HUMAN, SLEEPING, SIGNAL, CHILD, RUNNING_STEP, ORPHANED, RETRYING,
                          QUEUED_RUN, DIVERGED, STRANDED)

#: The open statuses, the ones a reason is given for.
OPEN: tuple[str, ...] = (QUEUED, RUNNING, PAUSED, WAITING)

_NOBODY = "no serve() process is alive"


class StallReason(msgspec.Struct, frozen=True, kw_only=True):
    """Why one open execution is where it is."""

    #: One of :data:`KINDS`.
    kind: str
    #: The reason in words (see the module's table).
    text: str
    #: Since when it has been so: the pause or wait began, or its last event (running).
    since: datetime
    #: Its deadline: the timer, the wait's or the pause's timeout, a retry's next attempt.
    until: datetime | None = None
    #: The step in flight or retrying (None: none is).
    step: str | None = None
    #: Who holds its lease, as the journal names them (None: nobody, or not running).
    holder: str | None = None


class Stall(msgspec.Struct, frozen=True, kw_only=True):
    """An execution ``journal stuck`` lists, and why."""

    execution: ExecutionSummary
    reason: StallReason


def _short(message: str, width: int = 120) -> str:
    """A message on one line, cut at ``width`` characters (``journal show`` has it whole)."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 1] + "…"




def _deadline(until: datetime | None, now: datetime) -> str:
    if until is None:
        return ""
    return f", until {format_utc(until)}" + (", overdue" if until <= now else "")


def _open_step(steps: Sequence[StepSummary]) -> StepSummary | None:
    """The step in flight or between attempts (the latest, if several are)."""
    live = [s for s in steps if s.status in (STEP_RUNNING, STEP_RETRYING)]
    return max(live, key=lambda s: s.seq) if live else None


def _served_by(workers: Sequence[WorkerRow], workflow: str) -> list[WorkerRow]:
    return [w for w in workers if workflow in w.workflows]


def _stranded(e: ExecutionSummary, workers: Sequence[WorkerRow] | None,
              needs_driver: bool) -> StallReason | None:
    """Stranded: processes serve the journal, and none can drive ``e`` (its workflow is
    nowhere, or it diverged and its own code version runs nowhere)."""
    if not workers or not (needs_driver or e.diverged_seq is not None):
        return None
    serving = _served_by(workers, e.workflow)
    since = e.diverged_at or e.updated_at
    if not serving:
        who = ", ".join(f"{w.host}:{w.pid}" for w in workers)
        return StallReason(kind=STRANDED, since=since,
                           text=f"stranded: workflow {e.workflow} is not served by any live "
                           f"process (serving: {who})")
    if e.diverged_seq is None:
        return None
    live = sorted({w.workflows[e.workflow] for w in serving})
    if e.code_version is not None and e.code_version in live:
        return None  # its own code runs somewhere: a divergence there is a real one
    started = e.code_version or "unknown"
    return StallReason(kind=STRANDED, since=since,
                       text=f"stranded: code version {started} not deployed (live: "
                       f"{', '.join(live)}; diverged at seq {e.diverged_seq})")


def stall_reason(
    execution: ExecutionSummary, steps: Sequence[StepSummary] = (), *,
    holder: str | None = None, now: datetime | None = None,
    workers: Sequence[WorkerRow] | None = None,
) -> StallReason | None:
    """Why ``execution`` (queued, running, paused or waiting) is not moving, from its view
    row, its ``steps`` rows (only the running and retrying ones matter), who holds its
    lease (``journal.lease_holder``), the live ``serve()`` processes (``workers``; None:
    not known) and ``now``; None for an execution that has ended."""
    now = now or datetime.now(UTC)
    e = execution
    if e.status not in OPEN:
        return None
    since = e.waiting_since or e.updated_at
    overdue = e.wait_until is not None and e.wait_until <= now
    needs_driver = e.status == QUEUED or overdue or (e.status == RUNNING and holder is None)
    stranded = _stranded(e, workers, needs_driver)
    if stranded is not None:
        return stranded
    if e.diverged_seq is not None:
        under = f" under code version {e.diverged_version}" if e.diverged_version else ""
        return StallReason(kind=DIVERGED, since=e.diverged_at or e.updated_at,
                           text=f"diverged at seq {e.diverged_seq}{under} (started with "
                           f"{e.code_version or 'unknown'}): "
                           f"{_short(e.diverged_message or '')}")
    nobody = f"; {_NOBODY}" if workers is not None and not workers else ""
    if e.status == QUEUED:
        return StallReason(kind=QUEUED_RUN, since=e.started_at,
                           text=f"queued since {format_utc(e.started_at)}{nobody}")
    if e.status == PAUSED:
        reason = e.pause_reason if e.pause_reason is not None else (e.wait_name or "")
        until = e.wait_until
        return StallReason(kind=HUMAN, since=e.paused_at or since, until=until,
                           text=f"waiting for human {reason} since "
                           f"{format_utc(e.paused_at or since)}{_deadline(until, now)}")
    if e.status == WAITING:
        kind, name, until = e.wait_kind, e.wait_name or "", e.wait_until
        if kind == "timer":
            text = f"sleeping until {format_utc(until)}" if until is not None else "sleeping"
            if until is not None and until <= now:
                text += ", overdue"
            return StallReason(kind=SLEEPING, since=since, until=until, text=text)
        if kind == "child":
            return StallReason(kind=CHILD, since=since,
                               text=f"waiting for child {name} since {format_utc(since)}")
        return StallReason(kind=SIGNAL, since=since, until=until,
                           text=f"waiting for signal {name} since {format_utc(since)}"
                           f"{_deadline(until, now)}")
    step = _open_step(steps)
    last = e.last_started_step
    if step is not None:
        where = f"in step {step.name}"
    elif last is not None:
        where = f"after step {last.name}"
    else:
        where = "before its first step"
    if holder is None:
        return StallReason(kind=ORPHANED, since=e.updated_at,
                           step=step.name if step else None,
                           text=f"orphaned {where} (driver gone since {format_utc(e.updated_at)})"
                           f"{nobody}")
    who = driver_name(holder)
    if step is not None and step.status == STEP_RETRYING:
        total = f"/{step.max_attempts}" if step.max_attempts else ""
        error = f"{step.error_type}: {_short(step.error_message or '')}" if (
            step.error_type) else "unknown"
        at = f"at {format_utc(step.retry_at)}" if step.retry_at is not None else "soon"
        return StallReason(kind=RETRYING, since=e.updated_at, until=step.retry_at,
                           step=step.name, holder=holder,
                           text=f"retrying {step.name} {step.attempts + 1}{total}, next "
                           f"attempt {at}, last error {error}")
    # How long the attempt in flight has run: its StepStarted is the last started step's.
    began = e.updated_at
    if step is not None:
        began = last.at if last is not None and last.seq == step.seq else (
            step.started_at or e.updated_at)
    # A PostgreSQL lease whose session dropped is held for a grace period: its holder may
    # be back in a moment, or dead (an orphan once the grace is over).
    alive = "driver not answering" if "session is down" in holder else "driver alive"
    return StallReason(kind=RUNNING_STEP, since=began, step=step.name if step else None,
                       holder=holder,
                       text=f"{where} for {format_seconds((now - began).total_seconds())}, "
                       f"{alive} ({who})")


def find_stalled(
    views: Projections, *, older_than: timedelta, now: datetime, limit: int = 1000
) -> list[Stall]:
    """Open executions that are not moving, each with why, longest stalled first.

    Listed at once whatever their age: a running execution no live process drives (its
    lease is free: an orphan), a wait or pause past its deadline (nothing woke it), one
    whose replay diverged, and a queued one no live ``serve()`` runs the workflow of.
    Past ``older_than``: a running one quiet that long (its driver alive), one waiting or
    paused that long, and one queued that long. One lease look-up for all running ones
    (a round trip on PostgreSQL), one read of the live workers.
    """
    cutoff = now - older_than
    e = EXECUTIONS.name
    rows = views.views.select(
        EXECUTIONS,
        "status IN ('running', 'queued') OR (status IN ('paused', 'waiting') AND "
        "(coalesce(waiting_since, updated_at) < ? OR wait_until <= ? OR "
        "diverged_seq IS NOT NULL))",
        (cutoff, now),
    )
    workers = views.journal.storage.workers(WORKER_ALIVE_FOR)
    summaries = [views.summary_of(r) for r in rows]
    holders = views.journal.lease_holders(
        [x.execution_id for x in summaries if x.status == RUNNING])
    open_steps: dict[UUID, list[StepSummary]] = {}
    for r in views.views.select(
        STEPS, f"status IN ('running', 'retrying') AND execution_id IN (SELECT "
        f"execution_id FROM {e} WHERE {e}.status = 'running')", (), order="seq",
    ):
        step = StepSummary(**dict(zip(STEPS.names, r, strict=True)))
        open_steps.setdefault(step.execution_id, []).append(step)
    found: list[Stall] = []
    for execution in summaries:
        holder = holders.get(execution.execution_id)
        quiet = execution.updated_at < cutoff
        if execution.diverged_seq is None:
            if execution.status == RUNNING and holder is not None and not quiet:
                continue  # driven, and not quiet for long
            if execution.status == QUEUED and execution.started_at >= cutoff and (
                    workers is None or _served_by(workers, execution.workflow)):
                continue  # a live serve() takes it in a moment (or who serves is unknown)
        reason = stall_reason(execution, open_steps.get(execution.execution_id, ()),
                              holder=holder, now=now, workers=workers)
        if reason is not None:
            found.append(Stall(execution=execution, reason=reason))
    found.sort(key=lambda s: (s.reason.since, str(s.execution.execution_id)))
    return found[:limit]
