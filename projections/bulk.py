"""Rebuild views from position 0 in bulk: fold the log, write each row once, swap it in.

The page-by-page projector writes every execution it touched once per page, as upserts into
indexed tables, because a follower must commit its position with its rows. A rebuild from
zero has no reader to serve until it is done, so it works the way a database loads:

1. fresh tables (the declared ones with a suffix, see ``ViewStore.create_fresh``), with no
   key or index;
2. the log is read in large pages and folded with ``journal.state.apply`` (the one meaning of
   an event); an execution's rows are final once it is terminal, so they are written then
   and its state dropped; what still runs at the end is written at the end. Each row goes
   in once, by ``ViewStore.bulk_insert`` (COPY on PostgreSQL);
3. keys and indexes are built over the full tables;
4. in one transaction the tracking positions are set and the fresh tables take the place of
   the old: a reader sees the old view or the new, never half of one (on PostgreSQL, each
   query sees one or the other; a REPEATABLE READ transaction begun before the swap would
   see the new tables empty, as after a TRUNCATE). A follower that was applying pages
   meanwhile finds its position changed (its compare-and-set fails), so it reloads and
   continues from the rebuilt view.

Memory stays bounded: the states of running executions are kept up to ``max_states``; past
that the oldest are dropped and replayed from their own stream when they show up again (or
at the end), so even then each row is written once.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from journal.encoding import lean_type
from journal.events import StepCompleted, StepFailed
from journal.state import TERMINAL_STATUSES, ExecutionState
from journal.storage import Storage, ViewStore
from projections.projector import (
    CostKey,
    FineKey,
    _add_costs,
    by_dimension,
    cost_entries,
    decode,
    execution_row,
    fold_event,
    replay,
    step_row,
)
from projections.tables import COST_ENTRIES, COSTS, EXECUTIONS, STEPS, TRACKING, VIEW_TABLES
from projections.views import VIEWS

__all__ = ["BULK_PAGE", "MAX_STATES", "bulk_rebuild"]

#: Events read per page of a bulk rebuild.
BULK_PAGE = 20_000
#: States of running executions kept in memory at most (about 3 KiB each; the oldest are
#: replayed from their streams later).
MAX_STATES = 20_000
#: Rows buffered before they are written.
FLUSH_ROWS = 20_000
#: Cost sums kept by (workflow, step, model, day) before they are added up by dimension.
FINE_KEYS = 20_000

_COSTED = frozenset({lean_type(StepCompleted), lean_type(StepFailed)})


def bulk_rebuild(
    storage: Storage,
    store: ViewStore,
    views: Sequence[str],
    *,
    page_size: int = BULK_PAGE,
    max_states: int = MAX_STATES,
    progress: Callable[[int, int], None] | None = None,
    unless_started: bool = False,
) -> tuple[int, int] | None:
    """Rebuild ``views`` from position 0 into fresh tables of ``store`` and swap them in.

    Reads the log up to its head as it is when called (plus the rest of the last page).
    Returns (events read, the position the views are now at); ``progress(events, position)``
    runs after each page is folded. ``unless_started``: return None instead if, once it is
    this build's turn, a view is no longer at 0 (another process built it meanwhile).
    """
    names = [v for v in VIEWS if v in views]
    tables = [t for v in names for t in VIEW_TABLES[v]]
    suffix = store.fresh_suffix()
    try:
        with store.bulk():
            if unless_started and any(_position(store, v) for v in names):
                return None
            # What builds killed before their swap left (SQLite; PostgreSQL leaves none).
            store.drop_fresh(tables)
            store.create_fresh(tables, suffix)
            build = _Build(storage, store, names, suffix, max_states)
            events, position = build.run(page_size, progress)
            store.index_fresh(tables, suffix)
            with store.transaction():
                # Tracking rows first, in VIEWS order like a follower's compare-and-set: a
                # follower mid-page finishes (or waits) before any table changes hands.
                for view in names:
                    n = store.execute(
                        f"UPDATE {TRACKING.name} SET position = ? WHERE name = ?",
                        (position, view),
                    )
                    if n == 0:
                        store.execute(
                            f"INSERT INTO {TRACKING.name} (name, position) VALUES (?, ?)",
                            (view, position),
                        )
                store.swap(tables, suffix)
    except BaseException:
        with contextlib.suppress(Exception):  # SQLite: the fresh tables it had begun
            store.drop_fresh(tables, suffix)
        raise
    store.drop_fresh(tables, suffix)  # SQLite: the tables swapped out
    return events, position


def _position(store: ViewStore, view: str) -> int:
    rows = store.query(f"SELECT position FROM {TRACKING.name} WHERE name = ?", (view,))
    return int(rows[0][0]) if rows else 0


class _Build:
    """One fold of the whole log into rows, written as executions end."""

    def __init__(
        self, storage: Storage, store: ViewStore, views: Sequence[str], suffix: str,
        max_states: int,
    ) -> None:
        self.storage = storage
        self.store = store
        self.suffix = suffix
        self.max_states = max(1, max_states)
        self.want_executions = "executions" in views
        self.want_steps = "steps" in views
        self.want_costs = "costs" in views
        self.states: dict[UUID, ExecutionState] = {}
        #: Executions dropped from memory while running: the position they had reached.
        self.evicted: dict[UUID, int] = {}
        self.execution_rows: list[tuple[Any, ...]] = []
        self.step_rows: list[tuple[Any, ...]] = []
        self.entry_rows: list[tuple[Any, ...]] = []
        self.fine: dict[FineKey, list[Any]] = {}
        self.totals: dict[CostKey, list[Any]] = {}

    def run(self, page_size: int, progress: Callable[[int, int], None] | None) -> tuple[int, int]:
        target = self.storage.head()
        after = events = 0
        while after < target:
            rows = self.storage.read_log(after, page_size)
            if not rows:
                break  # PostgreSQL: a gap an in-flight writer may fill; catch-up goes on
            self._fold(rows)
            after = rows[-1][0]
            events += len(rows)
            if len(self.states) > self.max_states:
                self._evict()
            if len(self.fine) > FINE_KEYS:
                by_dimension(self.fine, self.totals)
                self.fine.clear()
            if len(self.execution_rows) + len(self.step_rows) + len(self.entry_rows) >= (
                    FLUSH_ROWS):
                self._flush()
            if progress is not None:
                progress(len(rows), after)
        self._finish(after)
        return events, after

    def _fold(self, rows: Iterable[tuple[int, UUID, int, str, bytes]]) -> None:
        states = self.states
        fine = self.fine
        want_costs = self.want_costs
        ended = self._ended
        for nid, eid, position, topic, data in rows:
            event = decode(nid, eid, position, topic, data)
            state = states.get(eid)
            if state is None or state.position != position - 1:
                if state is None and position == 1:
                    state = ExecutionState(execution_id=eid)
                else:  # dropped from memory, or a stream that is not what it was
                    state = replay(self.storage, eid, position - 1, nid)
                    self.evicted.pop(eid, None)
                states[eid] = state
            fold_event(state, event, nid)
            cls = type(event)
            if want_costs and cls in _COSTED and event.costs:  # type: ignore[attr-defined]
                _add_costs(fine, state, event)  # type: ignore[arg-type]
                self.entry_rows += cost_entries(state, event)  # type: ignore[arg-type]
            if state.status in TERMINAL_STATUSES:  # nothing can follow: its rows are final
                del states[eid]
                ended(state)

    def _ended(self, state: ExecutionState) -> None:
        if self.want_executions:
            self.execution_rows.append(execution_row(state))
        if self.want_steps:
            self.step_rows.extend(step_row(state, seq) for seq in state.steps)

    def _evict(self) -> None:
        """Drop the oldest running states (down to 3/4 of the bound): they are replayed from
        their streams when their next event comes, or at the end."""
        n = len(self.states) - self.max_states * 3 // 4
        for eid in list(itertools.islice(self.states, n)):
            self.evicted[eid] = self.states.pop(eid).position

    def _flush(self) -> None:
        with self.store.transaction():
            if self.execution_rows:
                self.store.bulk_insert(EXECUTIONS, self.execution_rows, self.suffix)
            if self.step_rows:
                self.store.bulk_insert(STEPS, self.step_rows, self.suffix)
            if self.entry_rows:
                self.store.bulk_insert(COST_ENTRIES, self.entry_rows, self.suffix)
        self.execution_rows.clear()
        self.step_rows.clear()
        self.entry_rows.clear()

    def _finish(self, position: int) -> None:
        """Write what is still running, then the cost totals."""
        for state in self.states.values():
            self._ended(state)
            if len(self.execution_rows) + len(self.step_rows) >= FLUSH_ROWS:
                self._flush()
        self.states.clear()
        for eid, upto in self.evicted.items():
            self._ended(replay(self.storage, eid, upto, position))
            if len(self.execution_rows) + len(self.step_rows) >= FLUSH_ROWS:
                self._flush()
        self.evicted.clear()
        self._flush()
        by_dimension(self.fine, self.totals)
        self.fine.clear()
        if self.want_costs and self.totals:
            rows = [(d, k, *vals) for (d, k), vals in sorted(self.totals.items())]
            with self.store.transaction():
                self.store.bulk_insert(COSTS, rows, self.suffix)
