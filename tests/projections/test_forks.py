"""Code versions and forks in the views (SQLite, PostgreSQL).

Every execution carries the version of the code it started with (``code_version``), and a
fork or retry the execution it came from and the seq it ran live from (``forked_from``,
``forked_seq``), as ``journal.state()`` says, whether the view was caught up page by page or
rebuilt; ``Projections.forks(id)`` lists an execution's forks, and ``executions()`` filters
by error type (the execution's, or its failed step's) and by end. A ``proj_executions``
table without these columns (the previous release made it) is rebuilt when projections open.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from projections import Projections
from projections.tables import COSTS, EXECUTIONS, STEPS, TRACKING
from runner import Context, Runner, StepFailedError
from tests.projections.helpers import assert_matches_state, dump, make_old

#: The columns this release added at the end of proj_executions.
FORK_COLUMNS = ("code_version", "forked_from", "forked_seq")


class Throttled(Exception):
    pass


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as j:
        yield j


def make_runner(journal: Journal, *, broken: set[int]) -> Runner:
    runner = Runner(journal)

    def work(i: int) -> int:
        if i in broken:
            raise Throttled(f"step {i}")
        return i

    @runner.workflow(name="three")
    def three(ctx: Context, base: int) -> list[int]:
        return [ctx.step(f"s{i}", work, base + i) for i in range(3)]

    @runner.workflow(name="gave_up")
    def gave_up(ctx: Context) -> int:
        try:
            return ctx.step("s0", work, 11)
        except StepFailedError:
            raise RuntimeError("gave up") from None

    @runner.workflow(name="pinned", version="billing-7")
    def pinned(ctx: Context, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    return runner


def _record(journal: Journal) -> dict[str, Any]:
    """A failure, its retry, a fork of the retry with other input, a run with an explicit
    version, one failing outside any step, one failing with another error than its failed
    step's, and one started by hand (no version)."""
    failed = make_runner(journal, broken={11}).run("three", 10)
    assert failed.status == "failed"
    fixed = make_runner(journal, broken=set())
    retried = fixed.retry(failed.id)
    forked = fixed.fork(retried.id, from_seq=2, input={"base": 20})
    pinned = fixed.run("pinned", 1)
    negative = fixed.run("pinned", -1)
    gave_up = make_runner(journal, broken={11}).run("gave_up")
    by_hand = journal.start("three", {"base": 0}).id
    return {"failed": failed.id, "retried": retried.id, "forked": forked.id,
            "pinned": pinned.id, "negative": negative.id, "gave_up": gave_up.id,
            "by_hand": by_hand}


def _ids(rows: list[Any]) -> list[UUID]:
    return [r.execution_id for r in rows]


def test_versions_and_forks_in_the_views(journal: Journal) -> None:
    ids = _record(journal)
    everyone = list(ids.values())
    with Projections(journal, page_size=3) as views:
        views.catch_up()
        for eid in everyone:
            assert_matches_state(views, journal.state(eid))
        rows = {k: views.execution(v) for k, v in ids.items()}
        assert rows["pinned"] is not None and rows["pinned"].code_version == "billing-7"
        assert rows["by_hand"] is not None and rows["by_hand"].code_version is None
        assert rows["retried"] is not None
        assert (rows["retried"].forked_from, rows["retried"].forked_seq) == (ids["failed"], 2)
        assert rows["forked"] is not None
        assert (rows["forked"].forked_from, rows["forked"].forked_seq) == (ids["retried"], 2)
        assert _ids(views.forks(ids["failed"])) == [ids["retried"]]
        assert _ids(views.forks(str(ids["retried"]))) == [ids["forked"]]
        assert views.forks(ids["forked"]) == []

        incremental = dump(views, everyone)
        views.rebuild()  # in bulk
        assert dump(views, everyone) == incremental
        views.rebuild(bulk=False, page_size=2)
        assert dump(views, everyone) == incremental


def test_executions_by_error_type_and_end(journal: Journal) -> None:
    ids = _record(journal)
    with Projections(journal) as views:
        views.catch_up()

        def failed(**filters: Any) -> list[UUID]:
            return sorted(_ids(views.executions(status="failed", **filters)), key=str)

        name = f"{__name__}.Throttled"
        both = sorted([ids["failed"], ids["gave_up"]], key=str)
        assert failed() == sorted([*both, ids["negative"]], key=str)
        # The execution's error (a step's let through), or its failed step's.
        assert failed(error_type="Throttled") == both
        assert failed(error_type=name) == both
        assert failed(error_type="projections.test_forks.Throttled") == both
        assert failed(error_type="RuntimeError") == [ids["gave_up"]]
        assert failed(error_type="ValueError") == [ids["negative"]]
        assert failed(error_type="rottled") == failed(error_type="throttled") == []
        row = views.execution(ids["gave_up"])  # the last to end
        assert row is not None and row.ended_at is not None
        assert failed(ended_since=row.ended_at) == [ids["gave_up"]]
        assert failed(ended_since=row.ended_at + timedelta(microseconds=1)) == []
        assert failed(error_type="ValueError", ended_since=row.ended_at) == []


@pytest.mark.parametrize("how", ["dropped columns", "old DDL"])
def test_an_executions_table_without_versions_and_forks_is_rebuilt_on_open(
    journal: Journal, how: str
) -> None:
    ids = _record(journal)
    everyone = list(ids.values())
    with Projections(journal) as views:
        views.catch_up()
        want = dump(views, everyone)
        head = views.head()
        make_old(views, EXECUTIONS, FORK_COLUMNS, how)
        assert views.views.survey([EXECUTIONS]) == ([], [EXECUTIONS])
    with Projections(journal) as views:
        # Only the executions view starts again; the others keep their rows and positions.
        assert views.positions() == {"executions": 0, "steps": head, "costs": head}
        assert views.views.survey([TRACKING, EXECUTIONS, STEPS, COSTS]) == ([], [])
        views.catch_up()
        assert dump(views, everyone) == want
        assert _ids(views.forks(ids["failed"])) == [ids["retried"]]
