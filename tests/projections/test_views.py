"""The views' API on SQLite and PostgreSQL: queries, follow(), stuck(), rebuild, fencing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from journal import Cost, ErrorInfo, Journal
from projections import ProjectionError, Projections
from tests.projections.helpers import assert_costs_add_up, assert_matches_state


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as j:
        yield j


@pytest.fixture
def views(journal: Journal) -> Iterator[Projections]:
    with Projections(journal, page_size=7) as v:
        yield v


def _run(journal: Journal, workflow: str = "etl", *, end: str = "completed") -> object:
    run = journal.start(workflow, {"k": 1})
    s1 = run.step_started("fetch")
    run.step_failed(s1, ErrorInfo(type="TimeoutError", message="slow"), will_retry=True,
                    costs=[Cost(usd=Decimal("0.001"), input_tokens=10, model="small")])
    run.step_started("fetch", attempt=2)
    run.step_completed(s1, [1, 2], costs=[Cost(usd=Decimal("0.25"), output_tokens=7, model="big")])
    s2 = run.step_started("write")
    if end == "completed":
        run.step_completed(s2, None)
        run.completed("ok")
    elif end == "failed":
        err = ErrorInfo(type="ValueError", message="bad row")
        run.step_failed(s2, err)
        run.failed(err)
    elif end == "paused":
        run.step_completed(s2, None)
        run.paused("human_review", {"draft": "..."})
    return run


def test_execution_view_holds_how_it_ended(journal: Journal, views: Projections) -> None:
    ok, bad, paused = _run(journal), _run(journal, end="failed"), _run(journal, end="paused")
    assert views.catch_up() == journal.storage.head()
    for run in (ok, bad, paused):
        assert_matches_state(views, journal.state(run.id))  # type: ignore[attr-defined]
    e = views.execution(bad.id)  # type: ignore[attr-defined]
    assert e is not None
    assert (e.status, e.finalization_path) == ("failed", "failed")
    assert (e.error_type, e.error_message, e.error_step, e.error_step_seq) == (
        "ValueError", "bad row", "write", 2
    )
    assert e.retries == 1 and e.steps_completed == 1 and e.steps_failed == 1
    assert e.cost_usd == Decimal("0.251") and e.duration is not None and e.duration >= 0
    p = views.execution(paused.id)  # type: ignore[attr-defined]
    assert p is not None
    assert (p.status, p.finalization_path, p.pause_reason) == ("paused", "paused", "human_review")
    assert p.last_started_step is not None and p.last_started_step.name == "write"
    assert views.execution("00000000-0000-0000-0000-000000000000") is None
    assert_costs_add_up(views, journal, [ok.id, bad.id, paused.id])  # type: ignore[attr-defined]
    assert {c.key for c in views.costs(by="model")} == {"small", "big"}
    assert [c.key for c in views.costs(by="day")] == [datetime.now(UTC).date().isoformat()]
    with pytest.raises(ValueError, match="workflow, step, model, day"):
        views.costs(by="color")


def test_step_stats(journal: Journal, views: Projections) -> None:
    for i in range(5):
        run = journal.start("etl")
        s = run.step_started("load")
        if i == 4:
            run.step_failed(s, ValueError("x"), duration=float(i))
        else:
            run.step_completed(s, i, duration=float(i))
    views.catch_up()
    (stats,) = views.step_stats()
    assert (stats.name, stats.runs, stats.completed, stats.failures) == ("load", 5, 4, 1)
    assert stats.failure_rate == pytest.approx(0.2)
    assert stats.mean_duration == pytest.approx(2.0)
    assert stats.p50_duration == pytest.approx(2.0)
    assert stats.p95_duration == pytest.approx(3.8)


def test_executions_filters_and_keyset_pagination(journal: Journal, views: Projections) -> None:
    runs = [journal.start("a" if i % 2 else "b") for i in range(9)]
    runs[0].completed()
    views.catch_up()
    page1 = views.executions(limit=4)
    page2 = views.executions(limit=4, before=page1[-1])
    page3 = views.executions(limit=4, before=page2[-1])
    seen = [e.execution_id for e in page1 + page2 + page3]
    assert sorted(seen) == sorted(r.id for r in runs) and len(set(seen)) == 9
    starts = [e.started_at for e in page1 + page2 + page3]
    assert starts == sorted(starts, reverse=True)
    assert {e.workflow for e in views.executions(workflow="a", limit=100)} == {"a"}
    assert len(views.executions(workflow="a", status="running", limit=100)) == 4
    assert [e.execution_id for e in views.executions(status="completed")] == [runs[0].id]
    assert len(views.executions(since=page1[1].started_at)) == 2
    with pytest.raises(ValueError, match="unknown status"):
        views.executions(status="done")


def test_stuck_lists_running_executions_by_last_event(journal: Journal, views: Projections) -> None:
    hung = journal.start("etl")
    hung.step_started("call_llm")
    done = journal.start("etl")
    done.completed()
    waiting = journal.start("etl")
    waiting.paused("human_review")
    views.catch_up()
    later = datetime.now(UTC) + timedelta(minutes=10)
    stuck = views.stuck(older_than=timedelta(minutes=5), now=later)
    assert [e.execution_id for e in stuck] == [hung.id]
    assert stuck[0].last_started_step is not None
    assert stuck[0].last_started_step.name == "call_llm"
    assert views.stuck(older_than=timedelta(minutes=5)) == []


def test_follow_applies_appends_until_stopped(journal: Journal, views: Projections) -> None:
    updates: list[int] = []
    applied: list[int] = []
    t = threading.Thread(
        target=lambda: applied.append(
            views.follow(poll_interval=0.01, on_update=lambda n, p: updates.append(p))
        )
    )
    t.start()
    try:
        run = journal.start("etl")
        seq = run.step_started("fetch")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            e = views.execution(run.id)
            if e is not None and e.last_started_step is not None:
                break
            time.sleep(0.01)
        else:
            pytest.fail("follow() did not apply the appended events within 10 s")
        run.step_completed(seq, "x")
        run.completed()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            e = views.execution(run.id)
            if e is not None and e.status == "completed":
                break
            time.sleep(0.01)
        else:
            pytest.fail("follow() stopped applying")
    finally:
        views.stop()
        t.join(timeout=5)
    assert not t.is_alive(), "stop() did not end follow()"
    assert applied == [4] and updates[-1] == journal.storage.head()


def test_restart_resumes_from_tracked_position(journal: Journal) -> None:
    run = _run(journal, end="paused")
    with Projections(journal, page_size=3) as v:
        v.catch_up()
    run.resumed("yes")  # type: ignore[attr-defined]
    run.completed()  # type: ignore[attr-defined]
    with Projections(journal, page_size=3) as v:
        assert v.catch_up() == 2  # only the new events: nothing applied twice
        assert_matches_state(v, journal.state(run.id))  # type: ignore[attr-defined]
        assert_costs_add_up(v, journal, [run.id])  # type: ignore[attr-defined]


def test_two_projectors_never_double_count(journal: Journal) -> None:
    runs = [_run(journal) for _ in range(6)]
    with Projections(journal, page_size=2) as a, Projections(journal, page_size=3) as b:
        errors: list[BaseException] = []

        def work(v: Projections) -> None:
            try:
                v.catch_up()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(v,)) for v in (a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        a.catch_up()
        assert_costs_add_up(a, journal, [r.id for r in runs])  # type: ignore[attr-defined]
        for r in runs:
            assert_matches_state(b, journal.state(r.id))  # type: ignore[attr-defined]


def test_rebuild_only_one_view_keeps_the_others(journal: Journal, views: Projections) -> None:
    runs = [_run(journal) for _ in range(3)]
    views.catch_up()
    before = {by: views.costs(by=by) for by in ("workflow", "model")}
    executions = views.executions()
    assert views.rebuild(only=["costs"]) == journal.storage.head()
    assert {by: views.costs(by=by) for by in ("workflow", "model")} == before
    assert views.executions() == executions
    assert_costs_add_up(views, journal, [r.id for r in runs])  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown view"):
        views.rebuild(only=["nope"])


def test_rebuild_while_writers_append_ends_caught_up(journal: Journal) -> None:
    for _ in range(20):
        _run(journal)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            _run(journal)

    t = threading.Thread(target=writer)
    t.start()
    try:
        with Projections(journal, page_size=5) as v:
            v.rebuild(page_size=5)
    finally:
        stop.set()
        t.join()
    with Projections(journal, page_size=50) as v:
        v.catch_up()
        ids = [e.execution_id for e in v.executions(limit=10_000)]
        assert len(ids) == len(set(ids))
        assert_costs_add_up(v, journal, ids)
        for eid in ids:
            assert_matches_state(v, journal.state(eid))


def test_memory_journal_has_in_memory_views() -> None:
    with Journal.open("memory:") as journal, Projections(journal) as views:
        run = _run(journal, end="failed")
        views.catch_up()
        assert_matches_state(views, journal.state(run.id))  # type: ignore[attr-defined]


def test_impossible_event_in_log_is_a_projection_error(journal: Journal) -> None:
    from journal.encoding import encode_event
    from journal.events import StepCompleted

    run = journal.start("etl")
    bogus = StepCompleted(execution_id=run.id, position=2, timestamp=datetime.now(UTC), seq=9)
    journal.storage.append([encode_event(bogus)])
    with Projections(journal) as views, pytest.raises(ProjectionError, match="never started"):
        views.catch_up()


def test_nul_in_error_message_is_stored(journal: Journal, views: Projections) -> None:
    run = journal.start("etl")
    run.failed(ErrorInfo(type="ValueError", message="a\x00b"))
    views.catch_up()
    e = views.execution(run.id)
    assert e is not None and e.error_message in ("a\x00b", "a\ufffdb")


def test_cached_states_hold_no_user_values(journal: Journal) -> None:
    big = "x" * 100_000
    run = journal.start("etl", {"doc": big})
    s = run.step_started("fetch", {"doc": big})
    run.step_completed(s, big)
    run.paused("human_review", {"draft": big})
    with Projections(journal) as views:
        views.catch_up()
        cached = list(views.projector.cache.values())
        assert cached, "a paused execution stays cached"
        for state in cached:
            assert state.input is None and state.output is None
            assert state.pause is None or state.pause.payload is None
            assert all(st.input is None and st.output is None for st in state.steps.values())
        assert views.execution(run.id).status == "paused"  # type: ignore[union-attr]
