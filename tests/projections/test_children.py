"""Parents and their children in the views (SQLite, PostgreSQL).

Executions started by ``ctx.child`` carry their parent and the parent's call in the
``executions`` view (``parent_id``, ``parent_seq``); ``Projections.children(id)`` lists an
execution's children in the order of its calls, page by page, as ``journal.state()`` of each
says, whether the view was caught up page by page or rebuilt. A ``proj_executions`` table
without the parent columns (the previous release made it) is rebuilt when projections open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from projections import Projections
from projections.tables import COSTS, EXECUTIONS, STEPS, TRACKING
from runner import ChildFailed, Context, Runner
from runner._engine import child_id
from tests.projections.helpers import assert_matches_state, dump, make_old

#: The parent links, and what a release without them lacks too (added after them).
PARENT_COLUMNS = ("parent_id", "parent_seq", "code_version", "forked_from", "forked_seq")


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as j:
        yield j


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="leaf")
    def leaf(ctx: Context, n: int) -> Any:
        """Fails for n < 0, waits for signal "go" for n == 0, else one step."""
        if n < 0:
            raise ValueError(f"leaf {n} broke")
        if n == 0:
            return ctx.wait_for("go")
        return ctx.step("leaf step", str, n)

    @runner.workflow(name="middle")
    def middle(ctx: Context) -> Any:
        """A child that has a child of its own (which waits)."""
        return ctx.child(leaf, 0)

    @runner.workflow(name="family")
    def family(ctx: Context) -> list[Any]:
        """A child that completes, one that fails, one whose own child waits."""
        out: list[Any] = [ctx.child(leaf, 1)]
        try:
            ctx.child("leaf", -1)
        except ChildFailed as e:
            out.append(e.status)
        out.append(ctx.child(middle))
        return out

    return runner


@contextmanager
def serving(runner: Runner) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=runner.serve, kwargs={
        "stop": stop, "handle_signals": False, "poll_interval": 0.05, "grace": 5.0})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "serve() did not stop"


def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _links(views: Projections, eid: UUID) -> list[tuple[UUID, str, str, UUID | None, int | None]]:
    return [(c.execution_id, c.workflow, c.status, c.parent_id, c.parent_seq)
            for c in views.children(eid)]


def _family(journal: Journal, runner: Runner) -> dict[str, UUID]:
    """A family run, waiting for its grandchild; the ids of everyone in it."""
    run = runner.run("family")
    assert run.status == "waiting"
    parent = run.id
    middle = child_id(parent, 3)
    ids = {"parent": parent, "done": child_id(parent, 1), "broken": child_id(parent, 2),
           "middle": middle, "grandchild": child_id(middle, 1)}
    assert journal.state(ids["grandchild"]).parent == middle
    return ids


def test_children_are_listed_by_their_parents_call(journal: Journal) -> None:
    with make_runner(journal) as runner:
        ids = _family(journal, runner)
        parent, middle = ids["parent"], ids["middle"]
        with Projections(journal, page_size=3) as views:
            views.catch_up()
            for eid in ids.values():
                assert_matches_state(views, journal.state(eid))
            assert _links(views, parent) == [
                (ids["done"], "leaf", "completed", parent, 1),
                (ids["broken"], "leaf", "failed", parent, 2),
                (middle, "middle", "waiting", parent, 3),
            ]
            assert _links(views, middle) == [(ids["grandchild"], "leaf", "waiting", middle, 1)]
            top = views.execution(parent)
            assert top is not None and (top.parent_id, top.parent_seq) == (None, None)
            assert views.children(ids["grandchild"]) == [] == views.children(ids["done"])
            # Page by page, by the parent's call.
            first = views.children(parent, limit=2)
            assert [c.parent_seq for c in first] == [1, 2]
            rest = views.children(str(parent), after=first[-1].parent_seq or 0)
            assert [c.execution_id for c in rest] == [middle]
            assert views.children(parent, limit=None) == first + rest

            # The grandchild's signal: its end resumes middle, whose end resumes the parent.
            runner.signal(ids["grandchild"], "go", 7)
            with serving(runner):
                until(lambda: journal.state(parent).status == "completed",
                      what="the family to complete")
            assert journal.state(parent).output == ["1", "failed", 7]
            views.catch_up()
            for eid in ids.values():
                assert_matches_state(views, journal.state(eid))
            assert [c[2] for c in _links(views, parent)] == ["completed", "failed", "completed"]
            assert _links(views, middle)[0][2] == "completed"

            incremental = dump(views, list(ids.values()))
            views.rebuild()  # in bulk
            assert dump(views, list(ids.values())) == incremental
            views.rebuild(bulk=False, page_size=2)
            assert dump(views, list(ids.values())) == incremental


def test_cancelled_children_show_cancelled(journal: Journal) -> None:
    with make_runner(journal) as runner:
        ids = _family(journal, runner)
        runner.cancel(ids["parent"])  # its open children go with it
        with Projections(journal) as views:
            views.catch_up()
            for eid in ids.values():
                assert_matches_state(views, journal.state(eid))
            assert [c[2] for c in _links(views, ids["parent"])] == [
                "completed", "failed", "cancelled"]
            assert _links(views, ids["middle"])[0][2] == "cancelled"


@pytest.mark.parametrize("how", ["dropped columns", "old DDL"])
def test_an_executions_table_without_parent_links_is_rebuilt_on_open(
    journal: Journal, how: str
) -> None:
    with make_runner(journal) as runner:
        ids = _family(journal, runner)
    everyone = list(ids.values())
    with Projections(journal) as views:
        views.catch_up()
        want = dump(views, everyone)
        head = views.head()
        make_old(views, EXECUTIONS, PARENT_COLUMNS, how)
        assert views.views.survey([EXECUTIONS]) == ([], [EXECUTIONS])
    with Projections(journal) as views:
        # Only the executions view starts again; the others keep their rows and positions.
        assert views.positions() == {"executions": 0, "steps": head, "costs": head}
        assert views.views.survey([TRACKING, EXECUTIONS, STEPS, COSTS]) == ([], [])
        views.catch_up()
        assert dump(views, everyone) == want
        assert len(views.children(ids["parent"])) == 3
    with Projections(journal) as views:  # as declared now: nothing happens on open
        assert views.positions() == dict.fromkeys(("executions", "steps", "costs"), head)


_CHILDREN = (f"SELECT execution_id FROM {EXECUTIONS.name} WHERE parent_id = ? AND "
             "parent_seq > ? ORDER BY parent_seq, execution_id")


def _plan(views: Projections, parent: UUID) -> str:
    """How the database reads an execution's children (what ``children()`` asks)."""
    v = views.views
    if not v.dialect.percentiles:  # SQLite
        return " ".join(str(r) for r in v.query(f"EXPLAIN QUERY PLAN {_CHILDREN}", (parent, 0)))
    with v.transaction():
        v.execute("SET LOCAL enable_seqscan = off")  # a few rows: it would rather scan them
        return " ".join(str(r) for r in v.query(f"EXPLAIN {_CHILDREN}", (parent, 0)))


def test_children_are_read_through_the_parent_index(journal: Journal) -> None:
    with make_runner(journal) as runner:
        ids = _family(journal, runner)
    with Projections(journal) as views:
        views.catch_up()
        assert "proj_executions_parent" in _plan(views, ids["parent"])
        views.rebuild()  # the bulk path builds its indexes after the rows
        assert "proj_executions_parent" in _plan(views, ids["parent"])
