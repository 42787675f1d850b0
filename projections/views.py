"""What the read models hold: one frozen type per row kind, and the tables behind them.

Each view is a table in the journal's own database with its own tracking position:

- ``executions``: one row per execution (status, markers, error, pause or wait, counts, costs,
  the parent that started it as its child, its code version, the execution it was forked from)
- ``steps``: one row per (execution, seq)
- ``costs``: running totals by workflow, step name, model and UTC day

``step_stats()`` is a query over ``steps``, so it needs no table of its own.
Money is an exact ``Decimal`` everywhere (``TEXT`` on SQLite, ``NUMERIC`` on PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec

from journal.state import StepMarker

__all__ = [
    "COST_DIMENSIONS",
    "VIEWS",
    "CostSummary",
    "ExecutionSummary",
    "StepMarker",
    "StepStats",
    "StepSummary",
]

#: The views, in the order they are created; each has its own tracking position.
VIEWS: tuple[str, ...] = ("executions", "steps", "costs")

#: What ``costs(by=...)`` accepts.
COST_DIMENSIONS: tuple[str, ...] = ("workflow", "step", "model", "day")


class ExecutionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One execution as the ``executions`` view has it: how it ended, or where it is."""

    execution_id: UUID
    workflow: str
    status: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    #: Seconds from start to end; None until the execution ends.
    duration: float | None
    last_started_step: StepMarker | None
    last_completed_step: StepMarker | None
    #: How it ended (completed, failed, cancelled), "paused" while paused, "waiting" while
    #: waiting, None while running.
    finalization_path: str | None
    error_type: str | None
    error_message: str | None
    #: The step the execution's error came from (name, seq), when it came from a step.
    error_step: str | None
    error_step_seq: int | None
    pause_reason: str | None
    paused_at: datetime | None
    steps_completed: int
    steps_failed: int
    retries: int
    event_count: int
    log_count: int
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    #: What a waiting or paused execution waits for: "timer" or "signal" (waiting), "human"
    #: (paused); None otherwise.
    wait_kind: str | None = None
    #: The signal's name, or the pause's reason ("" for a timer).
    wait_name: str | None = None
    #: Its deadline: the timer's time, the wait's or the pause's timeout (None: no deadline).
    wait_until: datetime | None = None
    #: Since when it waits (the wait or the pause began).
    waiting_since: datetime | None = None
    #: The execution that started this one as its child (``ctx.child``), None otherwise.
    parent_id: UUID | None = None
    #: The parent's call that started it (its seq in the parent), None without a parent.
    parent_seq: int | None = None
    #: The version of the workflow code it started with (a fingerprint, or the one given to
    #: ``@runner.workflow(version=)``); None when not recorded (started by an older release).
    code_version: str | None = None
    #: The execution it was forked from (``runner.fork``, ``retry``), None otherwise.
    forked_from: UUID | None = None
    #: The seq from which the fork ran live (the calls before it were copied), None
    #: without ``forked_from``.
    forked_seq: int | None = None
    #: The last replay that diverged and that no claim has cleared since (``ReplayDiverged``):
    #: at which seq, under which code version, when and what it said; None: none did.
    diverged_seq: int | None = None
    diverged_version: str | None = None
    diverged_at: datetime | None = None
    diverged_message: str | None = None


class StepSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One step (all its attempts) of one execution."""

    execution_id: UUID
    seq: int
    name: str
    #: running, retrying, completed or failed (as ``journal.state`` says).
    status: str
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    #: Seconds the last finished attempt took.
    duration: float | None
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    error_type: str | None
    error_message: str | None
    #: While ``retrying``: when the next attempt starts (None otherwise).
    retry_at: datetime | None = None
    #: The attempts its retry policy allows in all (0: not recorded, or no policy).
    max_attempts: int = 0


class CostSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Cost totals for one workflow, step name, model or day (ISO date, UTC)."""

    key: str
    usd: Decimal
    input_tokens: int
    output_tokens: int
    #: How many cost entries were added up.
    calls: int


class StepStats(msgspec.Struct, frozen=True, kw_only=True):
    """How one step name behaves across executions (durations in seconds).

    ``runs`` counts finished steps (completed or failed after its last attempt); durations
    are those of finished steps; percentiles interpolate linearly, like PostgreSQL's
    ``percentile_cont``.
    """

    name: str
    runs: int
    completed: int
    failures: int
    failure_rate: float
    retries: int
    running: int
    mean_duration: float | None
    p50_duration: float | None
    p95_duration: float | None
