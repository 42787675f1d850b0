"""``journal recover`` that says what it does: each takeover as it starts and how it ended,
what it left alone and why, and (on Ctrl-C) what it had done by then.

The runner recovers one execution at a time (``Runner.stale_executions``, then
``Runner._recover_one`` for each); this module drives that loop so each step can be told as
it happens. Before taking an execution over it asks whether a live process holds its lease
(then it is left to that process) and whether its in-flight step is in a retry back-off that
has not run out (then recovering it now would block the others for that long). Nothing here
imports Typer or Rich.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from journal import ExecutionState
from journal.state import STEP_RETRYING, STEP_RUNNING
from runner.cli.timeline import format_utc, waits_for
from runner.cli.timeparse import format_seconds

if TYPE_CHECKING:
    from projections import Projections
    from runner._runner import Run, Runner
    from runner.errors import RunnerError

__all__ = ["Recovery", "Skipped", "continues_at", "not_stale_yet"]

#: How many running-but-not-stale executions the report names (the rest are counted).
NOT_STALE_SHOWN = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class Skipped:
    """An execution recover left running, and why."""

    execution_id: UUID
    workflow: str
    reason: str
    #: It cannot be replayed here (workflow not registered, code no longer matches): an
    #: error, since nothing else will recover it either.
    error: bool = False


def continues_at(state: ExecutionState) -> str:
    """Where a recovered execution goes on: ``step 'fetch' #2 (attempt 2)`` for the step in
    flight (it runs again as a new attempt), else after the last completed step."""
    open_steps = [s for s in state.steps.values() if s.status in (STEP_RUNNING, STEP_RETRYING)]
    if open_steps:
        step = max(open_steps, key=lambda s: s.seq)
        return f"step {step.name!r} #{step.seq} (attempt {step.attempts + 1})"
    done = state.last_completed_step
    if done is not None:
        return f"after step {done.name!r} #{done.seq}"
    return "its start"


def _backoff_until(state: ExecutionState, now: datetime) -> tuple[str, datetime] | None:
    for step in state.steps.values():
        if step.status == STEP_RETRYING and step.retry_at is not None and step.retry_at > now:
            return step.name, step.retry_at
    return None


def _quiet(state: ExecutionState, now: datetime) -> str:
    if state.updated_at is None:
        return ""
    return f", quiet for {format_seconds((now - state.updated_at).total_seconds())}"


def not_stale_yet(
    views: Projections, *, stale_after: timedelta, exclude: set[UUID], now: datetime,
) -> list[Skipped]:
    """Running executions whose last event is newer than ``stale_after``: their driver may
    well be alive and busy, so recover leaves them (newest first)."""
    cutoff = now - stale_after
    found = []
    for row in views.executions(status="running", limit=1000):
        if row.execution_id in exclude or row.updated_at <= cutoff:
            continue
        age = format_seconds((now - row.updated_at).total_seconds())
        found.append(Skipped(
            execution_id=row.execution_id, workflow=row.workflow,
            reason=f"not stale yet (last event {age} ago; --stale-after "
                   f"{format_seconds(stale_after.total_seconds())})"))
    return found


@dataclasses.dataclass
class Recovery:
    """One ``journal recover`` pass; ``say`` gets each line as it happens. The lists fill as
    it goes, so after a KeyboardInterrupt they hold what was done up to then."""

    runner: Runner
    stale_after: timedelta
    say: Callable[[str], None]
    recovered: list[Run] = dataclasses.field(default_factory=list)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    #: The execution being taken over when the pass was interrupted.
    current: UUID | None = None
    candidates: int = 0

    def run(self) -> None:
        """Take over every stale execution no live process holds, one after another."""
        journal = self.runner.journal
        candidates = self.runner.stale_executions(self.stale_after)
        self.candidates = len(candidates)
        for eid in candidates:
            state = journal.state(eid)
            now = datetime.now(UTC)
            holder = journal.lease_holder(eid)
            if holder is not None:
                self._skip(state, f"driven by a live process {holder}{_quiet(state, now)}")
                continue
            backoff = _backoff_until(state, now)
            if backoff is not None:
                name, until = backoff
                self._skip(state, f"step {name!r} is in a retry back-off until "
                           f"{format_utc(until)}; recover it then (or let `journal serve`)")
                continue
            self.current = eid  # before the line: a Ctrl-C right after it names this one
            self.say(f"taking over {eid} ({state.workflow}) at {continues_at(state)}"
                     f"{_quiet(state, now)}")
            errors: list[RunnerError] = []
            run = self.runner._recover_one(eid, self.stale_after, _collect(errors))
            self.current = None
            if run is not None:
                self.recovered.append(run)
                self.say(f"  -> {run.status}" + _ended(run))
            elif errors:
                self._skip(state, f"cannot be replayed here: {_one_line(str(errors[0]))}",
                           error=True, indent=True)
            else:
                holder = journal.lease_holder(eid)
                self._skip(state, f"taken by {holder} meanwhile" if holder is not None
                           else "ended, moved on or was taken over elsewhere meanwhile",
                           indent=True)

    def report_not_stale(self, views: Projections) -> None:
        """Name the running executions left alone because they are not quiet long enough."""
        seen = {s.execution_id for s in self.skipped} | {r.id for r in self.recovered}
        young = not_stale_yet(views, stale_after=self.stale_after, exclude=seen,
                              now=datetime.now(UTC))
        for s in young[:NOT_STALE_SHOWN]:
            self.say(f"skipped {s.execution_id} ({s.workflow}): {s.reason}")
        if len(young) > NOT_STALE_SHOWN:
            self.say(f"... and {len(young) - NOT_STALE_SHOWN} more running, not stale yet")
        self.skipped.extend(young)
        queued = len(views.executions(status="queued", limit=1000))
        if queued:  # not orphans: nobody has run them yet, and recover leaves them so
            more = "+" if queued == 1000 else ""
            self.say(f"{queued}{more} queued execution(s) wait for a serve() process "
                     "(`journal serve --app ...` runs them)")

    def _skip(self, state: ExecutionState, reason: str, *, error: bool = False,
              indent: bool = False) -> None:
        self.skipped.append(Skipped(execution_id=state.execution_id, workflow=state.workflow,
                                    reason=reason, error=error))
        self.say(("  -> skipped: " if indent
                  else f"skipped {state.execution_id} ({state.workflow}): ") + reason)

    def summary(self, *, interrupted: bool = False) -> str:
        """``recovered 2 execution(s) (1 completed, 1 paused); skipped 3`` and, when
        interrupted, what was under way."""
        counts: dict[str, int] = {}
        for run in self.recovered:
            counts[run.status] = counts.get(run.status, 0) + 1
        line = f"recovered {len(self.recovered)} execution(s)"
        if counts:
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
        if self.skipped:
            line += f"; skipped {len(self.skipped)}"
        if interrupted:
            done = len(self.recovered) + len(self.skipped)
            line = f"interrupted after {done} of {self.candidates} stale execution(s): " + line
            if self.current is not None:
                line += (f"; {self.current} was being recovered and is still running "
                         "(run recover again to continue it)")
        return line


def _collect(errors: list[RunnerError]) -> Callable[[UUID, RunnerError], None]:
    def on_error(_eid: UUID, error: RunnerError) -> None:
        errors.append(error)
    return on_error


def _ended(run: Run) -> str:
    if run.status == "completed":
        return ""
    if run.status == "paused" and run.pause is not None:
        return f", waiting for {run.pause.reason}"
    if run.status == "waiting" and run.wait is not None:
        return f", waiting for {waits_for(run.wait.kind, run.wait.name, run.wait.until)}"
    if run.error is not None:
        return f", {run.error.type}: {_one_line(run.error.message)}"
    return ""


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())
