"""``Projections(journal)``: read models of the journal, kept up to date and queried here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any
from uuid import UUID

from journal import Journal
from journal.encoding import as_uuid
from journal.errors import JournalUnavailable
from journal.state import StepMarker
from journal.storage import Listener, ViewStore, forks
from projections.bulk import BULK_PAGE, bulk_rebuild
from projections.errors import ViewsBehind
from projections.projector import READ_ONLY_ERRORS, Projector
from projections.stall import Stall, find_stalled
from projections.tables import COST_ENTRIES, COSTS, EXECUTIONS, STEPS
from projections.views import (
    COST_DIMENSIONS,
    VIEWS,
    CostSummary,
    ExecutionSummary,
    StepStats,
    StepSummary,
)

__all__ = [
    "BULK_FROM",
    "CATCH_UP_PAGE",
    "EXECUTION_SORTS",
    "LARGE_BACKLOG",
    "STATUSES",
    "Projections",
]

STATUSES = ("queued", "running", "paused", "waiting", "completed", "failed", "cancelled")
#: Events per page when catching up a backlog (each execution is written once per page, so
#: the larger the page the fewer writes; a follower keeps its own, small, page size).
CATCH_UP_PAGE = 20_000
#: Behind by more than this many events, catching up uses ``CATCH_UP_PAGE``-sized pages.
LARGE_BACKLOG = 10_000
#: Catching up views at position 0 from a log of more than this many events builds them in
#: bulk (``rebuild``'s path) instead of page by page.
BULK_FROM = 50_000

#: The orders ``executions(sort=)`` lists in (an id breaks ties, so pages never overlap):
#: ``started`` newest start first; ``updated`` latest event first; ``duration`` longest
#: first, the open executions (no duration yet) after the ended ones, longest running
#: first; ``cost`` most expensive first (as a float for the order: SQLite keeps the exact
#: sum as text, which would sort "9" after "10").
EXECUTION_SORTS: dict[str, str] = {
    "started": "started_at DESC, execution_id DESC",
    "updated": "updated_at DESC, execution_id DESC",
    "duration": "(duration IS NULL), duration DESC, started_at, execution_id DESC",
    "cost": "CAST(cost_usd AS DOUBLE PRECISION) DESC, started_at DESC, execution_id DESC",
}
#: The sorts a keyset (``before=``) pages, by the column it compares.
_KEYSET = {"started": "started_at", "updated": "updated_at"}

class Projections:
    """Read models of ``journal`` (executions, steps, costs) in the journal's own database.

    ``catch_up()`` applies what the log holds beyond the views' positions; ``follow()`` keeps
    doing so until ``stop()``; the query methods read the views as last committed. Views of
    a ``memory:`` journal live in an in-memory SQLite database. Thread-safe: one thread may
    follow while others query. Closing does not close the journal.
    """

    def __init__(
        self, journal: Journal, *, page_size: int = 1000, bulk_from: int = BULK_FROM
    ) -> None:
        self.journal = journal
        #: Views at 0 behind a log of more than this many events are built in bulk.
        self.bulk_from = bulk_from
        self.views: ViewStore = journal.storage.views()
        try:
            self.projector = Projector(journal, self.views, page_size=page_size)
        except BaseException:
            self.views.close()
            raise
        self._behind: ViewsBehind | None = None  # set once catching up was refused
        self._stopping = threading.Event()
        self._following = threading.Lock()  # one page-applier at a time
        self._in_follow = threading.Lock()  # held for the whole of follow()
        forks.register(self)

    def _after_fork(self) -> None:
        """In a forked child: locks a parent thread held (a follow() in progress) would
        never be released here; the child starts with none held and nothing following."""
        self._stopping = threading.Event()
        self._following = threading.Lock()
        self._in_follow = threading.Lock()

    # -- keeping up ----------------------------------------------------------------------------

    def catch_up(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply every event after the views' positions; returns how many were applied.

        Far behind, pages are rebuild-sized (``CATCH_UP_PAGE``); views still at 0 behind a
        log of more than ``bulk_from`` events are built in bulk, as ``rebuild()`` does.
        ``progress(events, position)`` is called after each page (committed, or, in a bulk
        build, folded: the build commits once, at the end).
        """
        with self._following:
            p = self.projector
            head = self.head()
            applied = 0
            at_zero = [v for v, pos in p.positions.items() if pos == 0]
            if at_zero and head > self.bulk_from:
                try:
                    applied = self._bulk(at_zero, progress, CATCH_UP_PAGE, unless_started=True)
                except READ_ONLY_ERRORS as e:
                    raise ViewsBehind(position=0, head=head, where=self.journal.storage.where,
                                      cause=e.cause) from e
                head = self.head()
            behind = head - min(p.positions.values())
            page = CATCH_UP_PAGE if behind > LARGE_BACKLOG else p.page_size
            return applied + self._catch_up(page, progress, target=head)

    def _catch_up(
        self, page_size: int, progress: Callable[[int, int], None] | None,
        target: int | None = None,
    ) -> int:
        """Catch up page by page, with pages of ``page_size`` events (then the usual)."""
        following, self.projector.page_size = self.projector.page_size, page_size
        try:
            return self.projector.catch_up(progress=progress, target=target)
        finally:
            self.projector.page_size = following

    def _bulk(
        self, views: list[str], progress: Callable[[int, int], None] | None, page_size: int,
        *, unless_started: bool = False,
    ) -> int:
        """Build ``views`` from 0 in bulk on a connection of their own; events read."""
        store = self.views.sibling()
        try:
            done = bulk_rebuild(self.journal.storage, store, views, page_size=page_size,
                                progress=progress, unless_started=unless_started)
        finally:
            if store is not self.views:
                store.close()
            self.projector.reset()  # positions, totals and states from the new views
        return done[0] if done is not None else 0

    def backlog(self) -> int:
        """How many notification ids the furthest-behind view is from the log's head (a
        reader may show a progress bar for ``refresh()`` when this is large)."""
        return max(0, self.head() - min(self.positions().values()))

    def refresh(
        self, *, progress: Callable[[int, int], None] | None = None
    ) -> ViewsBehind | None:
        """Catch up where this connection may write the views; where it may not (a
        SELECT-only role, a read-only file), return how far behind they are instead of
        raising, so readers can show what the views hold and say so.

        ``progress(events, position)`` as for :meth:`catch_up` (which this calls: pages are
        rebuild-sized when far behind, and views at 0 are built in bulk)."""
        if self._behind is None:
            try:
                self.catch_up(progress=progress)
                return None
            except ViewsBehind as e:
                self._behind = e
                return e
        head = self.head()
        position = min(self.positions().values())
        if position >= head:
            return None
        return ViewsBehind(position=position, head=head, where=self.journal.storage.where,
                           cause=self._behind.cause)

    def follow(
        self,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
        on_update: Callable[[int, int], None] | None = None,
    ) -> int:
        """Keep applying new events until ``stop()`` is called (or ``stop`` is set).

        On PostgreSQL the wait is a LISTEN on the journal's channel (woken by each append);
        on SQLite the log's last id is polled every ``poll_interval`` seconds. Returns the
        number of events applied. ``on_update(events, position)`` runs after each commit.
        """

        def stopped() -> bool:
            return self._stopping.is_set() or (stop is not None and stop.is_set())

        # Listening starts before the first catch-up, so no append falls in between.
        with self._in_follow, self.journal.storage.listen(poll_interval=poll_interval) as lis:
            return self._follow(stopped, lis, on_update)

    def _follow(
        self,
        stopped: Callable[[], bool],
        listener: Listener,
        on_update: Callable[[int, int], None] | None,
    ) -> int:
        applied = 0
        lost_since: float | None = None
        try:
            while not stopped():
                try:
                    applied += self.catch_up(progress=on_update)
                    lost_since = None
                except JournalUnavailable as e:
                    # The database went away for longer than one call's retries: keep
                    # following (nothing is lost: the views resume from their position)
                    # until it has been gone for twice the reconnect budget.
                    if type(e) is not JournalUnavailable:
                        raise
                    now = time.monotonic()
                    lost_since = lost_since or now
                    if now - lost_since > 2 * self.journal.storage.reconnect_timeout:
                        raise
                if stopped():
                    break
                # Bounded so that stop() is noticed within a quarter second.
                listener.wait(0.25)
        finally:
            self._stopping.clear()
        return applied

    def stop(self) -> None:
        """Ask a running ``follow()`` to return after its current page."""
        self._stopping.set()

    def rebuild(
        self,
        *,
        only: Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        page_size: int = BULK_PAGE,
        bulk: bool = True,
    ) -> int:
        """Rebuild ``only`` these views (default: all) from position 0, then catch up.

        In bulk (the default): the log is folded into fresh tables, each row written once,
        indexed, then swapped in atomically with the new position (see
        :mod:`projections.bulk`), so readers see the old views until the new ones are whole.
        ``bulk=False``: drop the views and apply the log page by page (``page_size`` events
        per transaction). ``progress(events, position)`` runs after each page.

        Safe while writers append: it ends caught up with the log as it was at its last page,
        and every position is committed with its rows, so nothing is counted twice. Views
        not named keep their rows and positions. Returns the events applied.
        """
        views = _views(only)
        with self._following:
            if bulk:
                applied = self._bulk(views, progress, page_size)
            else:
                self.projector.drop_and_create(views)
                applied = self._catch_up(page_size, progress)
            # Another pass takes what writers appended meanwhile.
            return applied + self._catch_up(page_size, progress)

    def positions(self) -> dict[str, int]:
        """Each view's committed position (the notification id of its last event)."""
        return self.projector.load_positions()

    def head(self) -> int:
        """The notification id of the last event in the log."""
        return self.journal.storage.head()

    # -- queries --------------------------------------------------------------------------------

    def execution(self, execution_id: UUID | str) -> ExecutionSummary | None:
        """One execution as the view has it, or None if the view has not seen it."""
        rows = self.views.select(EXECUTIONS, "execution_id = ?", (as_uuid(execution_id),))
        return self.summary_of(rows[0]) if rows else None

    def executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        error_type: str | None = None,
        error_contains: str | None = None,
        ended_since: datetime | None = None,
        started_before: datetime | None = None,
        updated_since: datetime | None = None,
        pause_reason: str | None = None,
        with_logs: bool = False,
        sort: str = "started",
        before: ExecutionSummary | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[ExecutionSummary]:
        """Executions, optionally filtered, in ``sort`` order (see ``EXECUTION_SORTS``):
        newest start first by default; paginated by ``offset``, or by keyset.

        For the next page pass the last execution of this one as ``before=`` (the sorts by
        start and by last event only: a keyset on a float or a sum would repeat or skip
        rows that tie; use ``offset`` for the others).
        ``since`` keeps executions started at or after it, ``started_before`` those started
        before it, ``ended_since`` those that ended at or after it, ``updated_since`` those
        with an event at or after it, ``error_type`` those that failed with that error
        type, or whose failed step (``error_step``) did: the type's qualified name as
        recorded (``myapp.errors.RateLimited``) or its last dotted parts (``RateLimited``);
        ``error_contains`` those whose error message, or their failed step's, holds that
        text (case ignored); ``pause_reason`` those paused with that reason;
        ``with_logs`` those that recorded a log line.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        order = EXECUTION_SORTS.get(sort)
        if order is None:
            raise ValueError(f"cannot sort executions by {sort!r}: use one of "
                             f"{', '.join(EXECUTION_SORTS)}")
        if before is not None and sort not in _KEYSET:
            raise ValueError(f"before= pages the sorts by {' and '.join(_KEYSET)} only; "
                             f"page the sort by {sort} with offset=")
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit cannot be negative ({offset}, {limit})")
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if since is not None:
            where.append("started_at >= ?")
            params.append(_utc(since))
        if error_type is not None:
            # The failed step's error too: a workflow may raise its own error once a step
            # failed, and releases before the root cause recorded the runner's StepFailedError
            # for the execution (the step has what it raised).
            e, st = EXECUTIONS.name, STEPS.name
            where.append(f"({_type_is(f'{e}.error_type')} OR EXISTS (SELECT 1 FROM {st} WHERE "
                         f"{st}.execution_id = {e}.execution_id AND {st}.seq = "
                         f"{e}.error_step_seq AND {_type_is(f'{st}.error_type')}))")
            params += [*_type_params(error_type), *_type_params(error_type)]
        if error_contains is not None:
            e, st = EXECUTIONS.name, STEPS.name
            pattern = "%" + _like_escaped(error_contains.lower()) + "%"
            like = "lower({}) LIKE ? ESCAPE '\\'"
            where.append(f"({like.format(f'{e}.error_message')} OR EXISTS (SELECT 1 FROM {st} "
                         f"WHERE {st}.execution_id = {e}.execution_id AND {st}.seq = "
                         f"{e}.error_step_seq AND {like.format(f'{st}.error_message')}))")
            params += [pattern, pattern]
        if ended_since is not None:
            where.append("ended_at >= ?")
            params.append(_utc(ended_since))
        if started_before is not None:
            where.append("started_at < ?")
            params.append(_utc(started_before))
        if updated_since is not None:
            where.append("updated_at >= ?")
            params.append(_utc(updated_since))
        if pause_reason is not None:
            where.append("status = 'paused' AND pause_reason = ?")
            params.append(pause_reason)
        if with_logs:
            where.append("log_count > 0")
        if before is not None:
            column = _KEYSET[sort]
            where.append(f"({column}, execution_id) < (?, ?)")
            params += [getattr(before, column), before.execution_id]
        v = self.views
        sql = f"SELECT {EXECUTIONS.select_list} FROM {EXECUTIONS.name}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # (ViewStore.select has no OFFSET: the one query that pages by it is spelled here.)
        sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
        load = v.dialect.loader(EXECUTIONS)
        rows = [load(r) for r in v.query(sql, [*params, int(limit), int(offset)])]
        return [self.summary_of(r) for r in rows]

    def children(
        self, execution_id: UUID | str, *, after: int = 0, limit: int | None = 1000
    ) -> list[ExecutionSummary]:
        """The executions ``execution_id`` started as its children (``ctx.child``), in the
        order of its calls; keyset-paginated: for the next page pass the last one's
        ``parent_seq`` as ``after=`` (``limit=None``: all of them)."""
        rows = self.views.select(
            EXECUTIONS, "parent_id = ? AND parent_seq > ?", (as_uuid(execution_id), after),
            # (An id breaks ties, which only executions started by hand can make.)
            order="parent_seq, execution_id", limit=limit,
        )
        return [self.summary_of(r) for r in rows]

    def forks(
        self, execution_id: UUID | str, *, limit: int | None = 1000
    ) -> list[ExecutionSummary]:
        """The executions forked from ``execution_id`` (``runner.fork``, ``retry``), oldest
        first."""
        rows = self.views.select(
            EXECUTIONS, "forked_from = ?", (as_uuid(execution_id),),
            order="started_at, execution_id", limit=limit,
        )
        return [self.summary_of(r) for r in rows]

    def steps(self, execution_id: UUID | str) -> list[StepSummary]:
        """The steps of one execution in seq order (empty if the view has not seen it)."""
        rows = self.views.select(
            STEPS, "execution_id = ?", (as_uuid(execution_id),), order="seq"
        )
        return [StepSummary(**dict(zip(STEPS.names, r, strict=True))) for r in rows]

    def costs(self, by: str = "workflow", *, since: datetime | None = None
              ) -> list[CostSummary]:
        """Cost totals by ``workflow``, ``step`` (name), ``model`` or ``day`` (UTC), by key;
        with ``since``, of the costs recorded at or after it only (a step's completion or
        failed attempt that carried them)."""
        if by not in COST_DIMENSIONS:
            raise ValueError(
                f"cannot group costs by {by!r}: use one of {', '.join(COST_DIMENSIONS)}"
            )
        if since is not None:
            return self._costs_since(by, _utc(since))
        rows = self.views.select(COSTS, "dimension = ?", (by,), order="key")
        return [
            CostSummary(key=k, usd=u, input_tokens=i, output_tokens=o, calls=c)
            for _, k, u, i, o, c in rows
        ]

    def _costs_since(self, by: str, since: datetime) -> list[CostSummary]:
        """Summed from ``proj_cost_entries`` (indexed by time), grouped by key and amount:
        the database adds up the counts and tokens, Python the money, exactly (SQLite's
        sum() of decimal text would be a float), one multiplication per distinct amount."""
        v = self.views
        load = v.dialect.load["decimal"]
        totals: dict[str, list[Any]] = {}
        for key, usd, n, tin, tout, calls in v.query(
            f"SELECT {by}, usd, count(*), sum(input_tokens), sum(output_tokens), sum(calls) "
            f"FROM {COST_ENTRIES.name} WHERE at >= ? GROUP BY {by}, usd", (since,),
        ):
            t = totals.setdefault(key, [Decimal(0), 0, 0, 0])
            t[0] += load(usd) * n
            t[1] += int(tin)
            t[2] += int(tout)
            t[3] += int(calls)
        return [CostSummary(key=k, usd=t[0], input_tokens=t[1], output_tokens=t[2],
                            calls=t[3]) for k, t in sorted(totals.items())]

    def step_stats(
        self, *, workflow: str | None = None, limit: int | None = None
    ) -> list[StepStats]:
        """Per step name: runs, failures, failure rate, retries, mean/p50/p95 duration; of
        the steps of ``workflow``'s executions only, if given. The most failures first
        (where to look), then the most runs, then by name; ``limit``: the first that many."""
        v = self.views
        finished = "status IN ('completed', 'failed')"
        st = STEPS.name
        scope, args = "", []
        if workflow is not None:
            e = EXECUTIONS.name
            scope = (f" WHERE EXISTS (SELECT 1 FROM {e} WHERE {e}.execution_id = "
                     f"{st}.execution_id AND {e}.workflow = ?)")
            args = [workflow]
        if v.dialect.percentiles:
            rows = v.query(
                "SELECT name, "
                f"count(*) FILTER (WHERE {finished}), "
                "count(*) FILTER (WHERE status = 'completed'), "
                "count(*) FILTER (WHERE status = 'failed'), "
                "coalesce(sum(attempts - 1), 0), "
                "count(*) FILTER (WHERE status IN ('running', 'retrying')), "
                # Summed in one order whatever the rows' (floating-point sums depend on it):
                # a rebuilt view gives the very mean the incremental one gave.
                f"avg(duration ORDER BY duration) FILTER (WHERE {finished}), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) "
                f"FILTER (WHERE {finished}), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) "
                f"FILTER (WHERE {finished}) "
                f"FROM {st}{scope} GROUP BY name ORDER BY name", args,
            )
            stats = [
                StepStats(
                    name=n, runs=runs, completed=c, failures=f,
                    failure_rate=f / runs if runs else 0.0, retries=int(r), running=running,
                    mean_duration=_float(m), p50_duration=_float(p50), p95_duration=_float(p95),
                )
                for n, runs, c, f, r, running, m, p50, p95 in rows
            ]
            return _worst_first(stats, limit)
        stats = []
        counts = v.query(
            "SELECT name, "
            f"sum(CASE WHEN {finished} THEN 1 ELSE 0 END), "
            "sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
            "sum(attempts - 1), "
            "sum(CASE WHEN status IN ('running', 'retrying') THEN 1 ELSE 0 END) "
            f"FROM {st}{scope} GROUP BY name ORDER BY name", args,
        )
        where = f"{scope} AND" if scope else " WHERE"
        for n, runs, c, f, r, running in counts:
            durations = [
                d for (d,) in v.query(
                    f"SELECT duration FROM {st}{where} name = ? AND {finished} "
                    "AND duration IS NOT NULL ORDER BY duration",
                    (*args, n),
                )
            ]
            stats.append(
                StepStats(
                    name=n, runs=runs, completed=c, failures=f,
                    failure_rate=f / runs if runs else 0.0, retries=r, running=running,
                    mean_duration=sum(durations) / len(durations) if durations else None,
                    p50_duration=_percentile(durations, 0.5),
                    p95_duration=_percentile(durations, 0.95),
                )
            )
        return _worst_first(stats, limit)

    def stuck(
        self, *, older_than: timedelta, now: datetime | None = None, limit: int = 1000
    ) -> list[ExecutionSummary]:
        """Running executions whose last event is older than ``older_than``, oldest first.

        Each carries ``last_started_step``: where it got to. Paused executions are waiting
        for someone on purpose and are not listed.
        """
        cutoff = _utc(now or datetime.now(UTC)) - older_than
        rows = self.views.select(
            EXECUTIONS, "status = 'running' AND updated_at < ?", (cutoff,),
            order="updated_at", limit=limit,
        )
        return [self.summary_of(r) for r in rows]

    def stalled(
        self, *, older_than: timedelta, now: datetime | None = None, limit: int = 1000
    ) -> list[Stall]:
        """Open executions that are not moving, each with why, longest stalled first
        (:func:`projections.stall.find_stalled`)."""
        return find_stalled(self, older_than=older_than, now=_utc(now or datetime.now(UTC)),
                            limit=limit)

    # -- rows to values -----------------------------------------------------------------------

    def find(self, prefix: str, *, limit: int = 10) -> list[UUID]:
        """Ids of executions whose id starts with ``prefix`` (text form; dashes optional)."""
        raw = prefix.strip().lower()
        pattern = raw if "-" in raw else _dashed(raw)
        rows = self.views.select(
            EXECUTIONS, "CAST(execution_id AS TEXT) LIKE ?", (pattern + "%",),
            order="execution_id", limit=limit,
        )
        return [r[0] for r in rows]

    def ended_before(self, cutoff: datetime) -> list[UUID]:
        """Executions that completed, failed or were cancelled before ``cutoff``, oldest first."""
        rows = self.views.select(
            EXECUTIONS, "status IN ('completed', 'failed', 'cancelled') AND ended_at < ?",
            (cutoff.astimezone(UTC),), order="ended_at, execution_id",
        )
        return [r[0] for r in rows]

    def updated_since(self, since: datetime) -> list[UUID]:
        """Executions with an event at or after ``since``."""
        rows = self.views.select(EXECUTIONS, "updated_at >= ?", (since.astimezone(UTC),))
        return [r[0] for r in rows]

    def forget(self, execution_ids: Iterable[UUID]) -> None:
        """Remove executions' rows from the executions and steps views and their cost
        entries (after retention).

        The costs view's totals are sums: rebuild it (``rebuild(only=["costs"])``) when a
        forgotten execution had costs.
        """
        v = self.views
        with v.transaction():
            for eid in execution_ids:
                v.execute(f"DELETE FROM {STEPS.name} WHERE execution_id = ?", (eid,))
                v.execute(f"DELETE FROM {EXECUTIONS.name} WHERE execution_id = ?", (eid,))
                v.execute(f"DELETE FROM {COST_ENTRIES.name} WHERE execution_id = ?", (eid,))

    def summary_of(self, r: Sequence[Any]) -> ExecutionSummary:
        """The summary an ``executions`` view row holds."""
        return ExecutionSummary(
            execution_id=r[0], workflow=r[1], status=r[2],
            started_at=r[3], updated_at=r[4], ended_at=r[5], duration=r[6],
            last_started_step=_marker(r[7], r[8], r[9]),
            last_completed_step=_marker(r[10], r[11], r[12]),
            finalization_path=r[13], error_type=r[14], error_message=r[15],
            error_step=r[16], error_step_seq=r[17], pause_reason=r[18], paused_at=r[19],
            steps_completed=r[20], steps_failed=r[21], retries=r[22], event_count=r[23],
            log_count=r[24], cost_usd=r[25], input_tokens=r[26], output_tokens=r[27],
            wait_kind=r[28], wait_name=r[29], wait_until=r[30], waiting_since=r[31],
            parent_id=r[32], parent_seq=r[33],
            code_version=r[34], forked_from=r[35], forked_seq=r[36],
            diverged_seq=r[37], diverged_version=r[38], diverged_at=r[39],
            diverged_message=r[40],
        )

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following and release the views' connection (the journal stays open)."""
        self.stop()
        with self._in_follow, self._following:
            self.views.close()

    def __enter__(self) -> Projections:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _views(only: Iterable[str] | None) -> list[str]:
    if only is None:
        return list(VIEWS)
    if isinstance(only, str):
        only = [only]
    names = list(dict.fromkeys(only))
    unknown = [n for n in names if n not in VIEWS]
    if unknown or not names:
        raise ValueError(f"unknown view {', '.join(unknown) or '(none)'}: use {', '.join(VIEWS)}")
    return names


def _worst_first(stats: list[StepStats], limit: int | None) -> list[StepStats]:
    ordered = sorted(stats, key=lambda s: (-s.failures, -s.runs, s.name))
    return ordered if limit is None else ordered[:limit]


def _type_is(column: str) -> str:
    """SQL: ``column`` names the error type given (whole, or its last dotted parts: what
    people type is what an error printed, ``RateLimited``, where the journal records
    ``myapp.errors.RateLimited``). substr and length: a suffix test both dialects spell
    alike, case-sensitive (SQLite's LIKE is not)."""
    return f"({column} = ? OR substr({column}, length({column}) - ?) = ?)"


def _type_params(error_type: str) -> list[Any]:
    tail = "." + error_type
    return [error_type, len(tail) - 1, tail]


def _like_escaped(text: str) -> str:
    """``text`` matched as it is by LIKE (its ``%``, ``_`` and backslashes escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: pass an aware datetime (UTC)")
    return value.astimezone(UTC)


def _marker(name: str | None, seq: int | None, at: datetime | None) -> StepMarker | None:
    if name is None or seq is None or at is None:
        return None
    return StepMarker(name=name, seq=seq, at=at)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _dashed(hex_prefix: str) -> str:
    """Insert the dashes of the UUID text form into a dash-less prefix."""
    out = []
    for i, ch in enumerate(hex_prefix[:32]):
        if i in (8, 12, 16, 20):
            out.append("-")
        out.append(ch)
    return "".join(out)
