"""What ``journal check``, ``fork``, ``retry`` and ``diff`` need beyond the runner's own calls.

The runner does the work (``Runner.check``, ``fork``, ``retry``; ``runner.diff.diff_runs``);
this module turns a person's arguments into what those take (a step's name into its seq,
``--status failed --error-type X --since 1h`` into the executions to retry, through the
views) and their results into lines and documents: one line per execution that would not
replay, the counts and versions seen, the plan of a bulk retry, a diff call by call.
Nothing here imports Typer or Rich.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from journal import ExecutionState
from projections import ExecutionSummary, Projections
from runner.cli.jsonout import preview
from runner.cli.timeparse import format_seconds
from runner.diff import CallDiff, RunDiff

if TYPE_CHECKING:
    from runner.check import CheckResult

__all__ = [
    "CANCELLABLE",
    "CHECK_OUTCOMES",
    "KINDS",
    "RETRYABLE",
    "RetryPlan",
    "cancel_candidates",
    "change_text",
    "check_counts",
    "check_document",
    "check_line",
    "diff_document",
    "diverged_text",
    "driver_note",
    "failure_text",
    "plan_retries",
    "resume_candidates",
    "run_changes",
    "select_executions",
    "step_seq",
    "versions_line",
    "versions_seen",
]

#: What ``check`` says of an execution, in the order the summary counts them.
CHECK_OUTCOMES = ("ok", "diverged", "undecodable", "missing")
#: The statuses ``retry`` takes (what ``Runner.retry`` accepts).
RETRYABLE = ("failed", "cancelled")


# -- check -----------------------------------------------------------------------------------


def check_line(r: CheckResult) -> str:
    """One line for an execution that would not replay: id, workflow, what, where, the fix."""
    head = f"{r.execution_id} {r.workflow} ({r.status}): {r.outcome}"
    if r.outcome == "diverged":
        now = r.called if r.called is not None else "nothing more (it returns)"
        text = (f"{head} at seq {r.seq}: recorded {r.recorded or 'nothing'} -> now calls "
                f"{now}")
        return text + (f"; hint: {r.hint}" if r.hint else "")
    return f"{head}: {_one_line(r.message)}"


def check_counts(results: Iterable[CheckResult]) -> dict[str, int]:
    """How many executions replay cleanly, diverge, cannot be decoded, have no workflow."""
    counts = dict.fromkeys(CHECK_OUTCOMES, 0)
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return counts


def versions_seen(results: Iterable[CheckResult]) -> dict[str, dict[str, Any]]:
    """Per workflow: the code versions the checked executions started with (and how many
    started with each), and the version registered now ("" where none is)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = seen.setdefault(r.workflow, {"recorded": Counter(), "current": ""})
        entry["recorded"][r.recorded_version or "(not recorded)"] += 1
        entry["current"] = entry["current"] or r.current_version
    return {wf: {"recorded": dict(e["recorded"].most_common()), "current": e["current"]}
            for wf, e in sorted(seen.items())}


def versions_line(workflow: str, seen: dict[str, Any]) -> str:
    """``review: recorded 1a2b… (3), 0f0f… (2); now 9e8d…``."""
    recorded = ", ".join(f"{v} ({n})" for v, n in seen["recorded"].items())
    now = seen["current"] or "not registered in the app"
    return f"  {workflow}: recorded {recorded}; now {now}"


def check_document(results: list[CheckResult]) -> dict[str, Any]:
    """``journal check --json``: whether every execution replays, the counts, the versions
    seen and every result."""
    return {
        "ok": all(r.ok for r in results),
        "counts": check_counts(results),
        "versions": versions_seen(results),
        "results": [
            {**{f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "error"},
             "ok": r.ok}
            for r in results
        ],
    }


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


# -- fork ------------------------------------------------------------------------------------


def step_seq(state: ExecutionState, step: str) -> int:
    """The seq ``--from-step`` names: a seq the execution has a call at (or the one right
    after its last), or the name of a step (its first call of that name).

    Raises ValueError saying what the execution has, when it has no such call."""
    text = step.strip()
    if text.isdigit():
        seq = int(text)
        if 1 <= seq <= state.max_seq + 1:
            return seq
        calls = (f"calls at seq 1..{state.max_seq}" if state.max_seq else "no calls")
        raise ValueError(f"execution {state.execution_id} has {calls}: --from-step takes "
                         f"one of them, one right after the last ({state.max_seq + 1}), or "
                         f"a step's name, not {step!r}; nothing was written")
    named = sorted(s.seq for s in state.steps.values() if s.name == text)
    if named:
        return named[0]
    steps = ", ".join(f"{s.name} #{s.seq}" for s in sorted(state.steps.values(),
                                                            key=lambda s: s.seq))
    raise ValueError(f"execution {state.execution_id} has no step named {step!r} (its steps: "
                     f"{steps or 'none'}): give a step's name or a seq; nothing was written")


# -- retry -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPlan:
    """One execution a bulk ``journal retry`` chose, and what it will do with it."""

    execution_id: UUID
    workflow: str
    status: str
    error_type: str | None
    error_message: str | None
    ended_at: datetime | None
    #: Executions forked from it already (a retry before this one, or ``journal fork``):
    #: when there is one, it is skipped (retry the newest of them, or this one by its id).
    retried_as: list[UUID] = dataclasses.field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return bool(self.retried_as)


def plan_retries(
    views: Projections, *, status: str, error_type: str | None = None,
    since: datetime | None = None, limit: int | None = None, page: int = 1000,
) -> list[RetryPlan]:
    """The executions of ``status`` (failed or cancelled) that failed with ``error_type``
    and ended at or after ``since``, oldest end first, as the views have them; each says
    which forks of it exist already. ``limit``: at most this many to retry (the ones
    skipped come on top)."""
    if status not in RETRYABLE:
        raise ValueError(f"only failed or cancelled executions are retried, not {status!r}")
    rows = sorted(_all(views, status=status, error_type=error_type, since=since, page=page),
                  key=lambda r: (r.ended_at or r.updated_at, str(r.execution_id)))
    plans: list[RetryPlan] = []
    chosen = 0
    for r in rows:
        if limit is not None and chosen >= limit:
            break
        forks = [f.execution_id for f in views.forks(r.execution_id, limit=None)]
        plans.append(RetryPlan(
            execution_id=r.execution_id, workflow=r.workflow, status=r.status,
            error_type=r.error_type, error_message=r.error_message, ended_at=r.ended_at,
            retried_as=forks))
        chosen += not forks
    return plans


def failure_text(state: ExecutionState) -> str:
    """How a failed or cancelled execution ended, by its cause: ``failed in step 's4' #4:
    myapp.errors.RateLimited`` (the step's own error, not the runner's StepFailedError)."""
    if state.status != "failed" or state.error is None:
        return state.status
    error = state.error
    failed = [s for s in state.steps.values() if s.status == "failed" and s.error is not None]
    if failed:
        same = [s for s in failed if s.error is not None
                and (s.error.type, s.error.message) == (error.type, error.message)]
        step = max(same or failed, key=lambda s: s.seq)
        assert step.error is not None
        return f"failed in step {step.name!r} #{step.seq}: {step.error.type}"
    return f"failed: {error.type}"


def _all(views: Projections, *, status: str, error_type: str | None, since: datetime | None,
         page: int) -> Iterator[ExecutionSummary]:
    return select_executions(views, status=status, error_type=error_type, ended_since=since,
                             page=page)


def select_executions(
    views: Projections, *, status: str | None = None, workflow: str | None = None,
    since: datetime | None = None, error_type: str | None = None,
    ended_since: datetime | None = None, pause_reason: str | None = None, page: int = 1000,
) -> Iterator[ExecutionSummary]:
    """Every execution the views have that matches (``Projections.executions``' filters:
    ``since`` by start, ``ended_since`` by end), newest start first, page after page."""
    before = None
    while True:
        rows = views.executions(status=status, workflow=workflow, since=since,
                                error_type=error_type, ended_since=ended_since,
                                pause_reason=pause_reason, before=before, limit=page)
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1]


#: The statuses a bulk ``journal cancel`` takes (an execution that has not ended).
CANCELLABLE = ("queued", "running", "paused", "waiting")


def cancel_candidates(
    views: Projections, *, status: str | None = None, workflow: str | None = None,
    since: datetime | None = None, error_type: str | None = None,
) -> list[ExecutionSummary]:
    """The open executions (queued, running, paused or waiting; or only ``status``) that match,
    oldest start first: what ``journal cancel --status ... --workflow ...`` cancels."""
    if status is not None and status not in CANCELLABLE:
        raise ValueError(f"only open executions are cancelled ({', '.join(CANCELLABLE)}), "
                         f"not {status!r}")
    rows = [r for s in ((status,) if status else CANCELLABLE)
            for r in select_executions(views, status=s, workflow=workflow, since=since,
                                       error_type=error_type)]
    return sorted(rows, key=lambda r: (r.started_at, str(r.execution_id)))


def resume_candidates(
    views: Projections, *, workflow: str | None = None, since: datetime | None = None,
    reason: str | None = None,
) -> list[ExecutionSummary]:
    """The paused executions (of ``workflow``, started at or after ``since``, paused for
    ``reason``) that match, the longest waiting first: what ``journal resume --status
    paused ...`` answers."""
    rows = list(select_executions(views, status="paused", workflow=workflow, since=since,
                                  pause_reason=reason))
    return sorted(rows, key=lambda r: (r.paused_at or r.updated_at, str(r.execution_id)))


def driver_note(holder: str | None) -> str:
    """What a cancel means for a run a live process drives (``""`` when none does)."""
    if holder is None:
        return ""
    return f"; its driver {holder} stops at its next call (a step in flight finishes)"


# -- diff ------------------------------------------------------------------------------------

#: How each field of a call's difference reads, in this order.
_FIELDS = (("status", "status"), ("output", "output"), ("input", "input"),
           ("error", "error"), ("value", "value"), ("timed_out", "timed out"),
           ("attempts", "attempts"), ("duration", "took"), ("cost_usd", "cost"))
#: What each kind of seq of a diff is called in the table (a CallDiff's kind).
KINDS = {"same": "same", "differs": "differs", "only_a": "only in A", "only_b": "only in B",
         "other": "other call"}


def _value(field: str, value: Any, width: int) -> str:
    if value is None and field in ("duration", "error"):
        return "-"
    if field == "error":  # text: as an error prints, not as JSON
        text = str(value)
        return text if len(text) <= width else text[: width - 1] + "…"
    if field == "duration":
        return format_seconds(value)
    if field in ("cost_usd", "cost"):
        return "$0" if not value else f"${value.normalize():f}"
    if field == "timed_out":
        return "yes" if value else "no"
    if field in ("status", "workflow", "version", "attempts"):
        return str(value) if value not in (None, "") else "-"
    return preview(value, width)


def change_text(call: CallDiff, *, width: int = 24) -> str:
    """What differs at one seq: ``same``, ``only in A``, ``other call``, or the changed
    fields (``status completed → failed; output 50 → null``), each value at most
    ``width`` characters."""
    if call.kind != "differs":
        return KINDS.get(call.kind, call.kind)
    order = [f for f, _ in _FIELDS if f in call.changes]
    order += [f for f in call.changes if f not in order]
    labels = dict(_FIELDS)
    changes = dict(call.changes)
    if "error" in changes:
        changes["error"] = _errors(*changes["error"])
    return "; ".join(
        f"{labels.get(f, f)} {_value(f, changes[f][0], width)} → "
        f"{_value(f, changes[f][1], width)}" for f in order)


def _errors(a: str | None, b: str | None) -> tuple[str | None, str | None]:
    """Two steps' errors (``type: message``) by what tells them apart: their types, or
    their messages where the types are the same."""
    ta, tb = (None if e is None else e.partition(": ")[0] for e in (a, b))
    if ta != tb:
        return ta, tb
    return (None if a is None else a.partition(": ")[2],
            None if b is None else b.partition(": ")[2])


def run_changes(a: ExecutionState, b: ExecutionState, diff: RunDiff) -> dict[str, tuple[Any, Any]]:
    """The run-level differences: ``diff.summary`` and the workflow inputs (a fork started
    with other arguments), input first."""
    return dict(diff.summary)  # input first: diff_runs puts it there


def run_change_lines(changes: dict[str, tuple[Any, Any]], *, width: int = 32) -> list[str]:
    """``status: completed → failed``, one per run-level difference."""
    labels = {"cost_usd": "cost", "version": "code version"}
    return [f"{labels.get(k, k)}: {_value(k, x, width)} → {_value(k, y, width)}"
            for k, (x, y) in changes.items()]


def diverged_text(diff: RunDiff) -> str:
    """Where the two runs took different paths, or that they made the same calls."""
    if diff.diverged_at is None:
        return "the same calls throughout"
    at = next((c for c in diff.calls if c.seq == diff.diverged_at), None)
    if at is None:  # pragma: no cover - diff_runs names a seq it listed
        return f"diverged at seq {diff.diverged_at}"
    return (f"diverged at seq {diff.diverged_at}: A {at.a or 'made no call'}, "
            f"B {at.b or 'made no call'}")


def diff_document(a: ExecutionState, b: ExecutionState, diff: RunDiff) -> dict[str, Any]:
    """``journal diff --json``: the two runs, whether they are the same, where they
    diverged, every call and the run-level differences."""
    def side(s: ExecutionState) -> dict[str, Any]:
        return {"execution_id": str(s.execution_id), "workflow": s.workflow,
                "status": s.status, "code_version": s.version or None,
                "forked_from": None if s.forked_from is None else str(s.forked_from),
                "forked_seq": None if s.forked_from is None else s.forked_seq}

    changes = run_changes(a, b, diff)
    return {
        "a": side(a), "b": side(b), "same": diff.same and not changes,
        "diverged_at": diff.diverged_at,
        "calls": [{"seq": c.seq, "a": c.a, "b": c.b, "kind": c.kind,
                   "changes": {k: list(v) for k, v in c.changes.items()}}
                  for c in diff.calls],
        "summary": {k: list(v) for k, v in changes.items()},
    }
