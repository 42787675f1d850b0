"""Shared helpers: fresh journal URLs per example, and comparing views with journal.state()."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from journal import ExecutionState, Journal
from journal.storage import Table
from projections import Projections


def fresh_url(journal_url: str, tmp: Path) -> str:
    """Another empty journal on the same backend as ``journal_url`` (a new file or schema)."""
    if journal_url.startswith("sqlite:"):
        return f"sqlite:///{tmp / f'{uuid.uuid4().hex}.db'}"
    parts = urlsplit(journal_url)
    return urlunsplit(parts._replace(query=f"schema=s_{uuid.uuid4().hex[:12]}"))


def dump(views: Projections, ids: list[uuid.UUID]) -> dict[str, Any]:
    """Everything the views hold, for comparing two sets of views."""
    return {
        "executions": views.executions(limit=100_000),
        "steps": {i: views.steps(i) for i in ids},
        "costs": {by: views.costs(by=by) for by in ("workflow", "step", "model", "day")},
        "step_stats": views.step_stats(),
        "children": {i: views.children(i) for i in ids},
        "forks": {i: views.forks(i) for i in ids},
    }


def without(table: Table, names: tuple[str, ...]) -> Table:
    """``table`` as a release before ``names`` were added declared it."""
    return Table(table.name, tuple(c for c in table.columns if c.name not in names),
                 key=table.key,
                 indexes=tuple(i for i in table.indexes if not set(i.columns) & set(names)))


def make_old(views: Projections, table: Table, names: tuple[str, ...], how: str) -> None:
    """Turn ``table`` into the one a release before ``names`` made (rows and position kept):
    by dropping those columns, or with that release's DDL and rows."""
    old = without(table, names)
    v = views.views
    with v.transaction():
        if how == "dropped columns":
            for index in table.indexes:
                if set(index.columns) & set(names):  # SQLite drops no indexed column
                    v.execute(f"DROP INDEX {index.name}")
            for column in names:
                v.execute(f"ALTER TABLE {table.name} DROP COLUMN {column}")
        else:  # the old DDL, with the rows the old release would have written
            kept = [k for k, name in enumerate(table.names) if name not in names]
            rows = [tuple(r[k] for k in kept) for r in v.select(table)]
            v.drop([table])
            v.create([old])
            v.upsert(old, rows)


def assert_matches_state(views: Projections, state: ExecutionState) -> None:
    """The views say what the journal's fold says about one execution."""
    e = views.execution(state.execution_id)
    assert e is not None, f"execution {state.execution_id} missing from the view"
    assert e.workflow == state.workflow
    assert e.status == state.status
    assert e.started_at == state.started_at
    assert e.updated_at == state.updated_at
    assert e.ended_at == state.ended_at
    assert e.last_started_step == state.last_started_step
    assert e.last_completed_step == state.last_completed_step
    assert e.event_count == state.position
    assert e.log_count == state.log_count
    assert e.cost_usd == state.cost.usd
    assert e.input_tokens == state.cost.input_tokens
    assert e.output_tokens == state.cost.output_tokens
    assert e.pause_reason == (state.pause.reason if state.pause else None)
    if state.status == "failed":
        assert state.error is not None
        assert (e.error_type, e.error_message) == (state.error.type, state.error.message)
    else:
        assert e.error_type is None
    assert e.finalization_path == (
        state.status if state.is_terminal or state.status in ("paused", "waiting") else None
    )
    assert (e.wait_kind, e.wait_name, e.wait_until, e.waiting_since) == expected_wait(state)
    assert (e.parent_id, e.parent_seq) == (
        (state.parent, state.parent_seq) if state.parent is not None else (None, None))
    assert e.code_version == (state.version or None)
    assert (e.forked_from, e.forked_seq) == (
        (state.forked_from, state.forked_seq) if state.forked_from is not None else (None, None))
    assert e.steps_completed == sum(1 for s in state.steps.values() if s.status == "completed")
    assert e.steps_failed == sum(1 for s in state.steps.values() if s.status == "failed")
    assert e.retries == sum(s.attempts - 1 for s in state.steps.values())
    steps = views.steps(state.execution_id)
    assert [s.seq for s in steps] == sorted(state.steps)
    for s in steps:
        st = state.steps[s.seq]
        assert (s.name, s.status, s.attempts) == (st.name, st.status, st.attempts)
        assert (s.started_at, s.ended_at, s.duration) == (st.started_at, st.ended_at, st.duration)
        assert s.cost_usd == sum((c.usd for c in st.costs), Decimal(0))
        assert s.input_tokens == sum(c.input_tokens for c in st.costs)
        assert s.output_tokens == sum(c.output_tokens for c in st.costs)
        assert (s.error_type, s.error_message) == (
            (st.error.type, st.error.message) if st.error else (None, None)
        )


def expected_wait(state: ExecutionState) -> tuple[Any, ...]:
    """(wait_kind, wait_name, wait_until, waiting_since) as the views must show them."""
    if state.status == "waiting":
        assert state.wait is not None
        w = state.wait
        return (w.kind, w.name, w.until, w.since)
    if state.status == "paused":
        assert state.pause is not None
        p = state.pause
        return ("human", p.reason, p.until, p.at)
    return (None, None, None, None)


def assert_costs_add_up(views: Projections, journal: Journal, ids: list[uuid.UUID]) -> None:
    """Every grouping of costs sums to the same exact total, and to the journal's."""
    states = [journal.state(i) for i in ids]
    total = sum((s.cost.usd for s in states), Decimal(0))
    tin = sum(s.cost.input_tokens for s in states)
    tout = sum(s.cost.output_tokens for s in states)
    for by in ("workflow", "step", "model", "day"):
        rows = views.costs(by=by)
        assert sum((r.usd for r in rows), Decimal(0)) == total, by
        assert sum(r.input_tokens for r in rows) == tin, by
        assert sum(r.output_tokens for r in rows) == tout, by
    by_workflow: dict[str, Decimal] = {}
    for s in states:
        if s.cost.usd or any(st.costs for st in s.steps.values()):
            by_workflow[s.workflow] = by_workflow.get(s.workflow, Decimal(0)) + s.cost.usd
    assert {r.key: r.usd for r in views.costs(by="workflow")} == by_workflow
    by_model: dict[str, Decimal] = {}
    for s in states:
        for st in s.steps.values():
            for c in st.costs:
                by_model[c.model] = by_model.get(c.model, Decimal(0)) + c.usd
    assert {r.key: r.usd for r in views.costs(by="model")} == by_model
