"""Waiting and paused executions in the views, and view tables made by an older release.

A waiting execution (a timer, a signal with or without a deadline) and a paused one (a human,
with or without a deadline) must show in the ``executions`` view what ``journal.state()``
says they wait for, since when and until when, whether the view was caught up page by page,
rebuilt in bulk or rebuilt page by page. A ``proj_executions`` table without the wait
columns (an older release made it) is dropped and rebuilt when projections open, giving the
same rows; a connection that may not write says to run ``journal rebuild``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from journal import ExecutionHandle, Journal
from projections import ProjectionError, Projections
from projections.tables import COSTS, EXECUTIONS, STEPS, TRACKING
from runner import Context, Runner
from tests.conftest import select_only_role
from tests.projections.helpers import assert_matches_state, dump, make_old

#: The wait columns, added at the end of proj_executions by this release (before the parent
#: links and the code versions and forks, which a release without the wait columns lacks too).
WAIT_COLUMNS = ("wait_kind", "wait_name", "wait_until", "waiting_since")
ADDED = (*WAIT_COLUMNS, "parent_id", "parent_seq", "code_version", "forked_from", "forked_seq")


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as j:
        yield j


def _at(minutes: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=123456) + timedelta(minutes=minutes)


def _record(journal: Journal) -> dict[str, ExecutionHandle]:
    """Executions in every kind of wait, and some that waited and went on."""
    runs: dict[str, ExecutionHandle] = {}

    timer = runs["timer"] = journal.start("nap", {"s": 3600})
    seq = timer.step_started("before")
    timer.step_completed(seq, "ok")
    timer.wait_started(seq + 1, "timer", until=_at(60))

    signal = runs["signal"] = journal.start("pay")
    signal.wait_started(1, "signal", "paid", until=_at(10))

    forever = runs["forever"] = journal.start("pay")
    forever.value_recorded(1, "now", datetime.now(UTC))
    forever.wait_started(2, "signal", "paid")

    human = runs["human"] = journal.start("review")
    human.paused("review", {"doc": 1}, until=_at(24 * 60))

    plain = runs["plain"] = journal.start("review")
    plain.paused("review")

    # Waited, consumed a signal that came first, drew values, then completed.
    done = runs["done"] = journal.start("pay")
    done.signal_received("paid", {"amount": 5})
    done.wait_started(1, "signal", "paid", until=_at(5))
    done.wait_ended(1, signal=2)
    done.value_recorded(2, "uuid4", uuid.uuid4())
    done.value_recorded(3, "random", 0.25)
    done.completed("paid")

    # A wait that timed out, and a timer after it: waiting again, for the timer.
    again = runs["again"] = journal.start("pay")
    again.wait_started(1, "signal", "paid", until=_at(-1))
    again.wait_ended(1, timed_out=True)
    again.wait_started(2, "timer", until=_at(30))

    # A pause that timed out: running again, waiting for nothing.
    late = runs["late"] = journal.start("review")
    late.paused("review", until=_at(-1))
    late.resumed(timed_out=True)
    late.step_started("escalate")

    journal.flush()
    return runs


def _waits(views: Projections, run: ExecutionHandle) -> tuple[object, ...]:
    e = views.execution(run.id)
    assert e is not None
    return (e.status, e.finalization_path, e.wait_kind, e.wait_name, e.wait_until,
            e.waiting_since)


def test_views_show_what_waiting_and_paused_executions_wait_for(journal: Journal) -> None:
    runs = _record(journal)
    with Projections(journal, page_size=3) as views:
        views.catch_up()
        for run in runs.values():
            assert_matches_state(views, journal.state(run.id))
        state = journal.state(runs["timer"].id)
        assert state.wait is not None
        assert _waits(views, runs["timer"]) == (
            "waiting", "waiting", "timer", "", state.wait.until, state.wait.since)
        assert _waits(views, runs["forever"])[2:5] == ("signal", "paid", None)
        pause = journal.state(runs["human"].id).pause
        assert pause is not None and pause.until is not None
        assert _waits(views, runs["human"]) == (
            "paused", "paused", "human", "review", pause.until, pause.at)
        assert _waits(views, runs["done"]) == ("completed", "completed", None, None, None, None)
        assert _waits(views, runs["late"]) == ("running", None, None, None, None, None)
        assert _waits(views, runs["again"])[:4] == ("waiting", "waiting", "timer", "")

        waiting = {e.execution_id for e in views.executions(status="waiting", limit=100)}
        assert waiting == {runs[k].id for k in ("timer", "signal", "forever", "again")}
        paused = {e.execution_id for e in views.executions(status="paused", limit=100)}
        assert paused == {runs["human"].id, runs["plain"].id}

        # Incremental catch-up: waits end, new ones begin; the rows follow.
        runs["timer"].wait_ended(2)
        runs["timer"].step_started("after")
        runs["signal"].signal_received("paid", 7)
        runs["human"].resumed({"ok": True})
        runs["human"].paused("second look", until=_at(5))
        journal.flush()
        views.catch_up()
        for run in runs.values():
            assert_matches_state(views, journal.state(run.id))
        assert _waits(views, runs["timer"])[:3] == ("running", None, None)
        assert _waits(views, runs["human"])[2:4] == ("human", "second look")
        # A signal that came does not end the wait by itself: serve() does, later.
        assert _waits(views, runs["signal"])[2:4] == ("signal", "paid")

        ids = [r.id for r in runs.values()]
        incremental = dump(views, ids)
        views.rebuild()  # in bulk, from zero
        assert dump(views, ids) == incremental
        views.rebuild(bulk=False, page_size=2)
        assert dump(views, ids) == incremental
    with Projections(journal, bulk_from=1) as fresh:
        fresh.projector.drop_and_create(["executions", "steps", "costs"])
        fresh.catch_up()  # views at 0 behind a long log: built in bulk
        assert dump(fresh, ids) == incremental


def test_runner_sleeps_and_waits_show_as_waiting(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow(name="sleepy")
    def sleepy(ctx: Context) -> str:
        ctx.sleep(timedelta(hours=1))
        return "awake"

    @runner.workflow(name="payment")
    def payment(ctx: Context) -> object:
        ctx.now()
        return ctx.wait_for("paid", timeout=600)

    @runner.workflow(name="approval")
    def approval(ctx: Context) -> object:
        return ctx.pause("review", {"doc": 1}, timeout=timedelta(days=1))

    with runner:
        runs = [runner.run(sleepy), runner.run(payment), runner.run(approval)]
    assert [r.status for r in runs] == ["waiting", "waiting", "paused"]
    with Projections(journal) as views:
        views.catch_up()
        for run in runs:
            assert_matches_state(views, journal.state(run.id))
        kinds = [(e.wait_kind, e.wait_name) for e in (views.execution(r.id) for r in runs)
                 if e is not None]
        assert kinds == [("timer", ""), ("signal", "paid"), ("human", "review")]


# -- view tables of an older release -----------------------------------------------------------


def _make_old(views: Projections, how: str) -> None:
    """Turn proj_executions into the one a release before the wait columns made."""
    make_old(views, EXECUTIONS, ADDED, how)


@pytest.mark.parametrize("how", ["dropped columns", "old DDL"])
def test_an_old_executions_table_is_rebuilt_on_open(journal: Journal, how: str) -> None:
    runs = _record(journal)
    ids = [r.id for r in runs.values()]
    with Projections(journal) as views:
        views.catch_up()
        want = dump(views, ids)
        head = views.head()
        _make_old(views, how)
        assert views.views.survey([EXECUTIONS]) == ([], [EXECUTIONS])
    with Projections(journal) as views:
        # Only the executions view starts again; the others keep their rows and positions.
        assert views.positions() == {"executions": 0, "steps": head, "costs": head}
        assert views.views.survey([TRACKING, EXECUTIONS, STEPS, COSTS]) == ([], [])
        views.catch_up()
        assert dump(views, ids) == want
        for run in runs.values():
            assert_matches_state(views, journal.state(run.id))
    with Projections(journal) as views:  # as declared now: nothing happens on open
        assert views.positions() == {"executions": head, "steps": head, "costs": head}


def test_tables_as_declared_are_never_rebuilt(journal: Journal) -> None:
    _record(journal)
    with Projections(journal) as views:
        views.catch_up()
        views.rebuild()  # tables made by the bulk path (and swapped in) are as declared too
        head = views.head()
        assert views.views.survey([TRACKING, EXECUTIONS, STEPS, COSTS]) == ([], [])
    with Projections(journal) as views:
        assert views.positions() == dict.fromkeys(("executions", "steps", "costs"), head)


def test_a_changed_tracking_table_rebuilds_every_view(journal: Journal) -> None:
    runs = _record(journal)
    ids = [r.id for r in runs.values()]
    with Projections(journal) as views:
        views.catch_up()
        want = dump(views, ids)
        with views.views.transaction():
            views.views.execute(f"ALTER TABLE {TRACKING.name} ADD COLUMN note text")
    with Projections(journal) as views:
        # Positions were lost with the table: no view may keep rows (costs are sums).
        assert views.positions() == dict.fromkeys(("executions", "steps", "costs"), 0)
        assert views.views.select(COSTS) == []
        views.catch_up()
        assert dump(views, ids) == want


def test_two_processes_opening_an_old_table_rebuild_it_once(journal: Journal) -> None:
    _record(journal)
    with Projections(journal) as views:
        views.catch_up()
        _make_old(views, "dropped columns")
    a = Projections(journal)  # rebuilds proj_executions, at 0
    try:
        a.catch_up()
        head = a.head()
        with Projections(journal) as b:  # finds it as declared: leaves a's work alone
            assert b.positions()["executions"] == head
    finally:
        a.close()


@pytest.fixture
def select_only(journal_url: str) -> Iterator[str]:
    """The journal's URL for a new PostgreSQL role that may only SELECT."""
    with select_only_role(journal_url) as url:
        yield url


@pytest.fixture
def old_views(journal: Journal) -> Journal:
    """A journal whose proj_executions an older release made (before the role is made)."""
    _record(journal)
    with Projections(journal) as views:
        views.catch_up()
        _make_old(views, "dropped columns")
    return journal


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
def test_a_select_only_role_is_told_to_rebuild(old_views: Journal, select_only: str) -> None:
    with Journal.open(select_only, create=False) as ro, pytest.raises(ProjectionError) as info:
        Projections(ro)
    message = str(info.value)
    assert EXECUTIONS.name in message and "other columns" in message, message
    assert "journal rebuild" in message and "can write" in message, message
    with Projections(old_views) as views:  # the owner rebuilds it at open
        assert views.positions()["executions"] == 0
