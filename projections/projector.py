"""The page-batched projector: fold a page of the log, write its view rows and position at once.

Why not eventsourcing's ``ProjectionRunner``: it calls ``process_event`` once per event, so a
view that commits its tracking position with its rows (the exactly-once pattern) pays one
commit per event (about 1,000 events/s on PostgreSQL), and it needs ``subscribe()``, which
the SQLite recorder lacks. Here one transaction carries a whole page (``page_size`` events):
the view rows it changed and the new tracking positions, so a crash anywhere leaves the
views exactly at a committed position and a restart continues from there.

Why our own tracking table (``proj_tracking``: one row per view) rather than
eventsourcing's ``TrackingRecorder``: the position is advanced with a compare-and-set
(``UPDATE ... WHERE position = <the one we read>``) inside the page's transaction. That
fences two projectors on one database (the loser rolls back and reloads) and lets a rebuild
reset a view to 0 under a running follower, which the append-only tracking rows of
``TrackingRecorder`` cannot express; it is one row per view instead of one per page, with
the same SQL on SQLite and PostgreSQL.

What an event means comes from ``journal.state.apply`` only. Each execution's
``ExecutionState`` is kept in a bounded cache while it runs; an execution that is not cached
(after a restart, or evicted) is rebuilt by replaying its own stream up to the event before
the one at hand, from the journal: the log, not the views, is the truth. View rows are whole
snapshots of that state (idempotent); cost totals are sums, kept exact in Decimal.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from journal import Journal
from journal.encoding import decode_event, lean_type
from journal.errors import (
    DecodingError,
    InvalidTransition,
    JournalUnavailable,
    StoragePermissionDenied,
    StorageReadOnly,
)
from journal.events import (
    Event,
    ExecutionCompleted,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionStarted,
    SignalReceived,
    StepCompleted,
    StepFailed,
    StepStarted,
    ValueRecorded,
    WaitEnded,
)
from journal.state import (
    FAILED,
    PAUSED,
    STEP_COMPLETED,
    STEP_FAILED,
    TERMINAL_STATUSES,
    WAITING,
    ExecutionState,
    PauseState,
    WaitState,
    apply,
    fold,
)
from journal.storage import Storage, Table, ViewStore
from projections.errors import ProjectionError, ViewsBehind
from projections.tables import (
    COST_ENTRIES,
    COSTS,
    EXECUTIONS,
    STEPS,
    TABLES,
    TRACKING,
    VIEW_TABLES,
)
from projections.views import VIEWS

__all__ = ["Projector", "cost_entries", "decode", "execution_row", "replay", "step_row"]

CostKey = tuple[str, str]
#: Errors that mean "this connection may read but not write" (a SELECT-only role, a
#: read-only file): the views can still be queried as they are.
READ_ONLY_ERRORS = (StoragePermissionDenied, StorageReadOnly)


class _Conflict(Exception):
    """Another projector (or a rebuild) moved a tracking position under us."""


def decode(nid: int, eid: UUID, position: int, topic: str, data: bytes) -> Event:
    """Decode one notification, leaving user values undecoded (the views never read them,
    so reading never needs the writer's code)."""
    try:
        return decode_event(topic, data, lean=True, execution_id=eid, position=position)
    except DecodingError as e:
        raise ProjectionError(
            f"notification {nid}: {e}; the projections cannot continue past an event they "
            "cannot read (upgrade the journal package?)",
            position=nid,
        ) from e


def execution_row(s: ExecutionState) -> tuple[Any, ...]:
    """The ``proj_executions`` row of a state, in the table's column order."""
    completed = failed = retries = 0
    failed_steps = []
    for st in s.steps.values():
        retries += st.attempts - 1
        if st.status == STEP_COMPLETED:
            completed += 1
        elif st.status == STEP_FAILED:
            failed += 1
            failed_steps.append(st)
    error_type = error_message = error_step = error_seq = None
    if s.status == FAILED and s.error is not None:
        error_type, error_message = s.error.type, s.error.message
        # The step whose error the execution failed with; else its last failed step.
        source = None
        for st in failed_steps:
            if st.error is not None and (st.error.type, st.error.message) == (
                error_type, error_message
            ) and (source is None or st.seq > source.seq):
                source = st
        if source is None and failed_steps:
            source = max(failed_steps, key=lambda st: st.seq)
        if source is not None:
            error_step, error_seq = source.name, source.seq
    ls, lc, pause, wait = s.last_started_step, s.last_completed_step, s.pause, s.wait
    if s.is_terminal:
        path: str | None = s.status
    elif s.status in (PAUSED, WAITING):
        path = s.status
    else:
        path = None
    waits = _waits_for(s.status, pause, wait)
    duration = (
        (s.ended_at - s.started_at).total_seconds()
        if s.ended_at is not None and s.started_at is not None
        else None
    )
    return (
        s.execution_id, s.workflow, s.status, s.started_at, s.updated_at, s.ended_at, duration,
        ls.name if ls else None, ls.seq if ls else None, ls.at if ls else None,
        lc.name if lc else None, lc.seq if lc else None, lc.at if lc else None,
        path, error_type, error_message, error_step, error_seq,
        pause.reason if pause else None, pause.at if pause else None,
        completed, failed, retries, s.position, s.log_count,
        s.cost.usd, s.cost.input_tokens, s.cost.output_tokens, *waits,
        s.parent, s.parent_seq if s.parent is not None else None,
        s.version or None, s.forked_from, s.forked_seq if s.forked_from is not None else None,
        *_diverged(s),
    )


def _diverged(s: ExecutionState) -> tuple[Any, ...]:
    d = s.diverged
    if d is None:
        return (None, None, None, None)
    if d.recorded or d.called:  # in a few words (the whole error is in the event)
        what = (f"the journal recorded {d.recorded or 'nothing'}, the code calls "
                f"{d.called or 'nothing more'}")
    else:
        what = d.message
    return (d.seq, d.version or None, d.at, what)


#: A pause waits for a human: its kind in the ``wait_kind`` column.
HUMAN = "human"


def _waits_for(
    status: str, pause: PauseState | None, wait: WaitState | None
) -> tuple[str | None, str | None, datetime | None, datetime | None]:
    """(wait_kind, wait_name, wait_until, waiting_since): what a waiting execution waits
    for (a timer, a signal), or a paused one (a human, by the pause's reason)."""
    if status == WAITING and wait is not None:
        return wait.kind, wait.name, wait.until, wait.since
    if status == PAUSED and pause is not None:
        return HUMAN, pause.reason, pause.until, pause.at
    return None, None, None, None


def step_row(s: ExecutionState, seq: int) -> tuple[Any, ...]:
    """The ``proj_steps`` row of one step of a state, in the table's column order."""
    st = s.steps[seq]
    usd = Decimal(0)
    tin = tout = 0
    for c in st.costs:
        usd += c.usd
        tin += c.input_tokens
        tout += c.output_tokens
    err = st.error
    return (
        s.execution_id, seq, st.name, st.status, st.attempts, st.started_at,
        st.ended_at, st.duration, usd, tin, tout,
        err.type if err else None, err.message if err else None,
        st.retry_at, st.max_attempts,
    )


class Projector:
    """Applies the journal's log to the views, one page per transaction."""

    def __init__(
        self, journal: Journal, views: ViewStore, *, page_size: int = 1000,
        cache_size: int = 50_000,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.journal = journal
        self.storage = journal.storage
        self.views = views
        self.page_size = page_size
        self.cache_size = cache_size
        self.cache: OrderedDict[UUID, ExecutionState] = OrderedDict()
        self.positions: dict[str, int] = {}
        self.cost_totals: dict[CostKey, list[Any]] | None = None
        self.create_tables()
        self.load_positions()

    # -- schema and tracking ------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create whatever view table is missing, and start again from position 0 each view
        whose table has other columns than declared (made by an older release): it is
        dropped, created as declared and folded from the log by the next catch-up. When
        every table is as declared (the usual case) this is one catalog read, no DDL."""
        missing, changed = self.views.survey(TABLES)
        if not missing and not changed:
            return
        try:
            with self.views.transaction():
                # Our turn (other processes opening the views meanwhile wait here), then
                # the catalog again: what one of them did before us is not done twice.
                self.views.lock_schema()
                missing, changed = self.views.survey(TABLES)
                redo = _views_to_redo(missing, changed)
                tables = [t for v in redo for t in VIEW_TABLES[v]]
                tables += [t for t in (*missing, *changed) if t not in tables]
                self.views.drop([t for t in tables if t not in missing])
                self.views.create(tables)
                self._track_from_zero(VIEWS, reset=False)
                # Unconditional: a follower's next compare-and-set fails, so it reloads.
                self._track_from_zero(redo, reset=True)
        except READ_ONLY_ERRORS as e:
            raise ProjectionError(_cannot_create(self.storage.where, missing, changed, e.cause),
                                  position=0) from e

    def drop_and_create(self, views: Iterable[str]) -> None:
        """Drop ``views`` and create them empty at position 0, in one transaction."""
        views = list(views)
        tables = [t for v in views for t in VIEW_TABLES[v]]
        with self.views.transaction():
            self.views.drop(tables)
            self.views.create(tables)
            # Unconditional: a follower's next compare-and-set fails, so it reloads.
            self._track_from_zero(views, reset=True)
        self.reset()

    def _track_from_zero(self, views: Iterable[str], *, reset: bool) -> None:
        """Tracking rows at position 0 for ``views`` (``reset``: also where they exist)."""
        keep = "DO UPDATE SET position = 0" if reset else "DO NOTHING"
        for view in views:
            self.views.execute(
                f"INSERT INTO {TRACKING.name} (name, position) VALUES (?, 0) "
                f"ON CONFLICT (name) {keep}",
                (view,),
            )

    def load_positions(self) -> dict[str, int]:
        """Read every view's committed position."""
        rows = self.views.select(TRACKING)
        found = {name: int(pos) for name, pos in rows}
        self.positions = {v: found.get(v, 0) for v in VIEWS}
        return dict(self.positions)

    def reset(self) -> None:
        """Forget everything cached; the next page reloads positions and totals."""
        self.cache.clear()
        self.cost_totals = None
        self.load_positions()

    def _load_costs(self) -> dict[CostKey, list[Any]]:
        return {(d, k): [u, i, o, c] for d, k, u, i, o, c in self.views.select(COSTS)}

    # -- applying pages -----------------------------------------------------------------------

    def step(self) -> int:
        """Apply the next page to every view behind it; returns the events read (0: caught up)."""
        try:
            return self._step()
        except _Conflict:
            self.reset()
            return -1
        except BaseException:
            # The cache may be ahead of what was committed: start again from the views.
            self.cache.clear()
            self.cost_totals = None
            raise

    def _step(self) -> int:
        pos = self.positions
        start = min(pos.values())
        rows = self.storage.read_log(start, self.page_size)
        if not rows:
            return 0
        p_exec, p_steps, p_costs = pos["executions"], pos["steps"], pos["costs"]
        if p_costs < rows[-1][0] and self.cost_totals is None:
            self.cost_totals = self._load_costs()
        touched: dict[UUID, ExecutionState] = {}
        steps: dict[tuple[UUID, int], ExecutionState] = {}
        fine: dict[FineKey, list[Any]] = {}
        entries: list[tuple[Any, ...]] = []
        cache = self.cache
        for nid, eid, position, topic, data in rows:
            event = decode(nid, eid, position, topic, data)
            state = cache.get(eid)
            if state is None or state.position != position - 1:
                state = self._replay(eid, position - 1, nid)
                cache[eid] = state
            else:
                cache.move_to_end(eid)
            fold_event(state, event, nid)
            if nid > p_exec:
                touched[eid] = state
            if isinstance(event, StepStarted | StepCompleted | StepFailed):
                if nid > p_steps:
                    steps[(eid, event.seq)] = state
                if nid > p_costs and not isinstance(event, StepStarted) and event.costs:
                    _add_costs(fine, state, event)
                    entries += cost_entries(state, event)
        last = rows[-1][0]
        self._commit(last, touched, steps, by_dimension(fine), entries)
        for eid, state in touched.items():
            if state.status in TERMINAL_STATUSES:
                cache.pop(eid, None)  # nothing can follow a terminal event
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return len(rows)

    def _replay(self, eid: UUID, upto: int, nid: int) -> ExecutionState:
        return replay(self.storage, eid, upto, nid)

    def _commit(
        self,
        last: int,
        touched: dict[UUID, ExecutionState],
        steps: dict[tuple[UUID, int], ExecutionState],
        deltas: dict[CostKey, list[Any]],
        entries: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        v = self.views
        pos = self.positions
        advancing = [view for view in VIEWS if pos[view] < last]
        totals = self.cost_totals
        new_totals: dict[CostKey, list[Any]] = {}
        if deltas:
            assert totals is not None
            for key, (usd, tin, tout, calls) in deltas.items():
                old = totals.get(key) or [Decimal(0), 0, 0, 0]
                new_totals[key] = [old[0] + usd, old[1] + tin, old[2] + tout, old[3] + calls]
        with v.transaction():
            for view in advancing:
                # Compare-and-set first: it takes the row lock, so a rival projector waits
                # here and then fails, before either writes a row.
                n = v.execute(
                    f"UPDATE {TRACKING.name} SET position = ? WHERE name = ? AND position = ?",
                    (last, view, pos[view]),
                )
                if n != 1:
                    raise _Conflict(view)
            if touched and "executions" in advancing:
                v.upsert(EXECUTIONS, [execution_row(s) for s in touched.values()])
            if steps and "steps" in advancing:
                v.upsert(STEPS, [step_row(s, seq) for (_, seq), s in steps.items()])
            if new_totals:
                v.upsert(COSTS, [(d, k, *vals) for (d, k), vals in new_totals.items()])
            if entries and "costs" in advancing:
                v.upsert(COST_ENTRIES, entries)
        for view in advancing:
            pos[view] = last
        if totals is not None:
            totals.update(new_totals)

    def catch_up(
        self, *, progress: Callable[[int, int], None] | None = None, target: int | None = None
    ) -> int:
        """Apply pages until the views reach ``target`` (default: the end of the log as it
        was when called).

        The target is fixed at the start so that catching up ends even while writers append
        faster than pages are applied; ``follow()`` takes it from there. Returns the events
        applied.

        A short page is not the end: on PostgreSQL the reader stops before a gap that an
        in-flight writer may still fill, so only an empty page (or the target) ends it.
        """
        if target is None:
            target = self.storage.head()
        total = 0
        lost_since: float | None = None
        while True:
            try:
                n = self.step()
            except READ_ONLY_ERRORS as e:
                raise ViewsBehind(
                    position=min(self.positions.values()), head=self.storage.head(),
                    where=self.storage.where, cause=e.cause,
                ) from e
            except JournalUnavailable as e:
                # A session lost mid-page: the page rolled back whole; go again on a new one
                # (the storage retries reads itself; a transaction cannot be resumed).
                if type(e) is not JournalUnavailable:
                    raise
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > self.storage.reconnect_timeout:
                    raise
                time.sleep(0.05)
                continue
            lost_since = None
            if n < 0:
                continue  # conflict: positions reloaded, go again
            total += n
            position = min(self.positions.values())
            if progress is not None and n:
                progress(n, position)
            if n == 0 or position >= target:
                return total


def _views_to_redo(missing: Iterable[Table], changed: Iterable[Table]) -> list[str]:
    """The views to build again from 0 when ``missing`` tables are created and ``changed``
    ones rebuilt: each view with such a table (a new table is empty: its view's position
    must be 0), and every view when the tracking table is one (positions are lost, and a
    sum like the costs must not be added to twice)."""
    redone = {t.name for t in (*missing, *changed)}
    if TRACKING.name in redone:
        return list(VIEWS)
    return [v for v in VIEWS if any(t.name in redone for t in VIEW_TABLES[v])]


def _cannot_create(
    where: str, missing: Sequence[Table], changed: Sequence[Table], cause: object
) -> str:
    """Why a read-only connection cannot open the views, and what to do."""
    what = []
    if missing:
        what.append(f"do not exist yet ({', '.join(t.name for t in missing)})")
    if changed:
        what.append(f"were made by another release, with other columns "
                    f"({', '.join(t.name for t in changed)}), and must be rebuilt")
    return (f"the views of {where} {' and '.join(what)}, and this connection cannot "
            f"{'create' if not changed else 'rebuild'} them ({cause}); run `journal rebuild` "
            "once as a user that can write")


def replay(storage: Storage, eid: UUID, upto: int, nid: int) -> ExecutionState:
    """The state of ``eid`` after its first ``upto`` events, replayed from its stream (the
    log, not the views, is the truth); ``nid`` names the notification that needed it."""
    if upto == 0:
        return ExecutionState(execution_id=eid)
    try:
        events = [
            decode_event(topic, data, lean=True, execution_id=eid, position=p)
            for p, topic, data in storage.read_stream(eid)
            if p <= upto
        ]
        state = fold(eid, events)
        _forget_payloads(state)
    except (DecodingError, InvalidTransition) as e:
        raise ProjectionError(
            f"notification {nid}: cannot replay execution {eid}: {e}", position=nid
        ) from e
    if state.position != upto:
        raise ProjectionError(
            f"notification {nid}: execution {eid} has {state.position} events in the log "
            f"before position {upto + 1}; were its events deleted? Rebuild the views.",
            position=nid,
        )
    return state


def fold_event(state: ExecutionState, event: Event, nid: int) -> None:
    """Fold one event of the log into its execution's state as the views keep it: an
    impossible transition is a ProjectionError naming the notification, and the user values
    the views never read are dropped at once."""
    try:
        apply(state, event)
    except InvalidTransition as e:
        raise ProjectionError(
            f"notification {nid}: {e}; the log holds an impossible transition",
            position=nid,
        ) from e
    forget = FORGET.get(type(event))
    if forget is not None:
        forget(state, event)


def _forget_payloads(state: ExecutionState, event: Event | None = None) -> None:
    """Drop the user values ``event`` brought into a cached state (all of them if None).

    The views never read them (they are undecoded bytes here, each holding its row's bytes),
    and outputs may be hundreds of KiB each while tens of thousands of states are cached."""
    if event is None:
        for step in state.steps.values():
            step.input = step.output = None
        state.input = state.output = None
        for pause in state.pauses:
            pause.value = None
        if state.pause is not None and state.pause.payload is not None:
            state.pause = msgspec.structs.replace(state.pause, payload=None)
        for signal in state.signals:
            signal.value = None
        for call in state.calls.values():
            call.value = None
        return
    forget = FORGET.get(type(event))
    if forget is not None:
        forget(state, event)


def _forget_step_values(state: ExecutionState, event: Any) -> None:
    step = state.steps[event.seq]
    step.input = step.output = None


def _forget_execution_values(state: ExecutionState, event: Any) -> None:
    state.input = state.output = None


def _forget_resume_value(state: ExecutionState, event: Any) -> None:
    state.pauses[-1].value = None


def _forget_pause_payload(state: ExecutionState, event: Any) -> None:
    if state.pause is not None and state.pause.payload is not None:
        state.pause = msgspec.structs.replace(state.pause, payload=None)


def _forget_signal_value(state: ExecutionState, event: Any) -> None:
    state.signals[-1].value = None


def _forget_call_value(state: ExecutionState, event: Any) -> None:
    # A drawn value, or (a wait that ended) the value of the signal it consumed.
    state.calls[event.seq].value = None


#: Per event kind (as read lean) that brings user values into a state: what forgets them
#: (log lines are never kept there).
FORGET: dict[type[Event], Callable[[ExecutionState, Any], None]] = {
    lean_type(ExecutionStarted): _forget_execution_values,
    lean_type(StepStarted): _forget_step_values,
    lean_type(StepCompleted): _forget_step_values,
    lean_type(ExecutionPaused): _forget_pause_payload,
    lean_type(ExecutionResumed): _forget_resume_value,
    lean_type(ExecutionCompleted): _forget_execution_values,
    lean_type(SignalReceived): _forget_signal_value,
    lean_type(ValueRecorded): _forget_call_value,
    lean_type(WaitEnded): _forget_call_value,
}


def _key(text: str) -> str:
    # A key as every backend stores it (PostgreSQL text cannot hold NUL), so the totals
    # cached here match the rows they are read back from.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


#: (workflow, step name, model, UTC date) of costs, before they are added up by dimension.
FineKey = tuple[str, str, str, date]


def _add_costs(
    fine: dict[FineKey, list[Any]], state: ExecutionState, event: StepCompleted | StepFailed
) -> None:
    """Add an event's costs under (workflow, step, model, day): one sum per cost here, the
    four dimensions' sums later (``by_dimension``), once per key rather than per event."""
    step = state.steps[event.seq].name
    workflow = state.workflow
    ts = event.timestamp
    day = (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).date()
    for c in event.costs:
        key = (workflow, step, c.model, day)
        d = fine.get(key)
        if d is None:
            fine[key] = [c.usd, c.input_tokens, c.output_tokens, 1]
        else:
            d[0] += c.usd
            d[1] += c.input_tokens
            d[2] += c.output_tokens
            d[3] += 1


def cost_entries(state: ExecutionState, event: StepCompleted | StepFailed
                 ) -> list[tuple[Any, ...]]:
    """The ``proj_cost_entries`` rows of an event's costs: one per model, its costs summed
    (keyed by the event, so a page applied again writes the same rows)."""
    ts = event.timestamp if event.timestamp.tzinfo is UTC else event.timestamp.astimezone(UTC)
    by_model: dict[str, list[Any]] = {}
    for c in event.costs:
        d = by_model.setdefault(_key(c.model), [Decimal(0), 0, 0, 0])
        d[0] += c.usd
        d[1] += c.input_tokens
        d[2] += c.output_tokens
        d[3] += 1
    workflow, step = _key(state.workflow), _key(state.steps[event.seq].name)
    day = ts.date().isoformat()
    return [(state.execution_id, event.position, model, ts, day, workflow, step, *sums)
            for model, sums in by_model.items()]


def by_dimension(
    fine: dict[FineKey, list[Any]], into: dict[CostKey, list[Any]] | None = None
) -> dict[CostKey, list[Any]]:
    """Sums by workflow, step, model and day (``into``, added to, if given)."""
    out: dict[CostKey, list[Any]] = {} if into is None else into
    days: dict[date, str] = {}
    for (workflow, step, model, day), (usd, tin, tout, calls) in fine.items():
        text = days.get(day)
        if text is None:
            text = days[day] = day.isoformat()
        for key in (("workflow", _key(workflow)), ("step", _key(step)),
                    ("model", _key(model)), ("day", text)):
            d = out.get(key)
            if d is None:
                out[key] = [usd, tin, tout, calls]
            else:
                d[0] += usd
                d[1] += tin
                d[2] += tout
                d[3] += calls
    return out
