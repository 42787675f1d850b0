"""The view tables, each declared once: the storage layer derives their DDL, upserts, select
lists and row conversion from these declarations (``journal.storage.schema``).

Column order is row order everywhere: ``execution_row`` builds rows in it, ``ViewStore.select``
returns them in it. Money is ``decimal`` (TEXT on SQLite, NUMERIC on PostgreSQL), never a float.

A table whose columns in the database differ from its declaration here (made by an older
release) is dropped and its view rebuilt from the log when projections open: new columns go
at the end, and no migration is ever written for derived data.
"""

from __future__ import annotations

from journal.storage import Column, Index, Table

__all__ = ["COSTS", "COST_ENTRIES", "EXECUTIONS", "STEPS", "TABLES", "TRACKING", "VIEW_TABLES"]


def _c(name: str, type: str, nullable: bool = True) -> Column:
    return Column(name, type, nullable)


EXECUTIONS = Table(
    "proj_executions",
    (
        _c("execution_id", "uuid", False), _c("workflow", "text", False),
        _c("status", "text", False), _c("started_at", "ts", False),
        _c("updated_at", "ts", False), _c("ended_at", "ts"), _c("duration", "float"),
        _c("last_started_name", "text"), _c("last_started_seq", "int"),
        _c("last_started_at", "ts"), _c("last_completed_name", "text"),
        _c("last_completed_seq", "int"), _c("last_completed_at", "ts"),
        _c("finalization_path", "text"), _c("error_type", "text"), _c("error_message", "text"),
        _c("error_step", "text"), _c("error_step_seq", "int"), _c("pause_reason", "text"),
        _c("paused_at", "ts"), _c("steps_completed", "int", False),
        _c("steps_failed", "int", False), _c("retries", "int", False),
        _c("event_count", "int", False), _c("log_count", "int", False),
        _c("cost_usd", "decimal", False), _c("input_tokens", "bigint", False),
        _c("output_tokens", "bigint", False),
        # What a waiting or paused execution waits for (added last: a table made by an older
        # release lacks them, and is rebuilt at first open, see Projector.create_tables).
        _c("wait_kind", "text"), _c("wait_name", "text"), _c("wait_until", "ts"),
        _c("waiting_since", "ts"),
        # The execution that started this one as its child, and at which of its calls
        # (NULL for an execution no other started).
        _c("parent_id", "uuid"), _c("parent_seq", "int"),
        # The version of the code it started with (NULL: not recorded, an older release),
        # and the execution it was forked from, at which seq (NULL: not a fork).
        _c("code_version", "text"), _c("forked_from", "uuid"), _c("forked_seq", "int"),
        # The last replay that diverged (ReplayDiverged) and no claim has cleared since: at
        # which seq, under which code version, when, and what it said.
        _c("diverged_seq", "int"), _c("diverged_version", "text"), _c("diverged_at", "ts"),
        _c("diverged_message", "text"),
    ),
    key=("execution_id",),
    indexes=(
        # Keyset pagination newest first, with or without each filter.
        Index("proj_executions_started", ("started_at", "execution_id")),
        Index("proj_executions_status", ("status", "started_at", "execution_id")),
        Index("proj_executions_workflow", ("workflow", "status", "started_at", "execution_id")),
        Index("proj_executions_workflow_started", ("workflow", "started_at", "execution_id")),
        # stuck(): running executions by time of their last event.
        Index("proj_executions_updated", ("status", "updated_at")),
        # children(): an execution's children in the order of its calls.
        Index("proj_executions_parent", ("parent_id", "parent_seq")),
        # forks(): the forks and retries of an execution (``journal retry`` skips a failure
        # retried already).
        Index("proj_executions_forked", ("forked_from", "started_at")),
    ),
)

STEPS = Table(
    "proj_steps",
    (
        _c("execution_id", "uuid", False), _c("seq", "int", False), _c("name", "text", False),
        _c("status", "text", False), _c("attempts", "int", False), _c("started_at", "ts"),
        _c("ended_at", "ts"), _c("duration", "float"), _c("cost_usd", "decimal", False),
        _c("input_tokens", "bigint", False), _c("output_tokens", "bigint", False),
        _c("error_type", "text"), _c("error_message", "text"),
        # A retrying step's next attempt, and the attempts its policy allows in all (0: not
        # recorded). Added last: an older table lacks them and is rebuilt at first open.
        _c("retry_at", "ts"), _c("max_attempts", "int", False),
    ),
    key=("execution_id", "seq"),
    indexes=(Index("proj_steps_name", ("name", "status")),),
)

COSTS = Table(
    "proj_costs",
    (
        _c("dimension", "text", False), _c("key", "text", False), _c("usd", "decimal", False),
        _c("input_tokens", "bigint", False), _c("output_tokens", "bigint", False),
        _c("calls", "bigint", False),
    ),
    key=("dimension", "key"),
)

#: What each event with costs (a step's completion or failed attempt) cost, one row per
#: model: when (``at``, and its UTC ``day``), under which workflow and step, so that the
#: costs within a window (``journal costs --since``) are summed from the view, not the log.
#: Part of the costs view (a journal whose views predate it builds the costs view again).
COST_ENTRIES = Table(
    "proj_cost_entries",
    (
        _c("execution_id", "uuid", False), _c("position", "int", False),
        _c("model", "text", False), _c("at", "ts", False), _c("day", "text", False),
        _c("workflow", "text", False), _c("step", "text", False),
        _c("usd", "decimal", False), _c("input_tokens", "bigint", False),
        _c("output_tokens", "bigint", False), _c("calls", "bigint", False),
    ),
    key=("execution_id", "position", "model"),
    indexes=(Index("proj_cost_entries_at", ("at",)),),
)

#: One row per view: the notification id its rows are committed up to.
TRACKING = Table(
    "proj_tracking",
    (_c("name", "text", False), _c("position", "bigint", False)),
    key=("name",),
)

#: The tables of each view (every listed table belongs to that view only).
VIEW_TABLES: dict[str, tuple[Table, ...]] = {
    "executions": (EXECUTIONS,),
    "steps": (STEPS,),
    "costs": (COSTS, COST_ENTRIES),
}

TABLES: tuple[Table, ...] = (TRACKING, EXECUTIONS, STEPS, COSTS, COST_ENTRIES)
