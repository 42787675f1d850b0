"""Views after chunked catch-up with restarts == views after a rebuild == journal.state().

Hypothesis draws valid lifecycles for several executions (steps, retries, failures, pauses,
logs, Decimal costs), interleaves them arbitrarily, records them, and catches up after each
chunk of appends with a new ``Projections`` object (a simulated restart) and a random page
size. The result must equal a bulk rebuild (with a random read page and bound on running
states kept, so some are replayed), a page-by-page rebuild, and what ``journal.state(id)``
says.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import Cost, ErrorInfo, ExecutionHandle, Journal
from projections import VIEWS, Projections
from projections.bulk import bulk_rebuild
from tests.projections.helpers import assert_costs_add_up, assert_matches_state, dump, fresh_url

Op = tuple[Any, ...]

costs = st.lists(
    st.builds(
        Cost,
        usd=st.decimals(min_value=0, max_value=50, places=6, allow_nan=False),
        input_tokens=st.integers(0, 10_000),
        output_tokens=st.integers(0, 10_000),
        model=st.sampled_from(["gpt-4o", "claude", ""]),
    ),
    max_size=2,
)
errors = st.builds(
    ErrorInfo,
    type=st.sampled_from(["ValueError", "TimeoutError", "httpx.ReadError"]),
    message=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12),
)
step_names = st.sampled_from(["fetch", "summarize", "review", "write"])


@st.composite
def lifecycle(draw: st.DrawFn) -> list[Op]:
    """One execution's valid sequence of recording calls."""
    ops: list[Op] = [("start", draw(st.sampled_from(["etl", "chat", "review"])))]
    status = "running"
    seq = 0
    open_step: tuple[str, int, int] | None = None  # name, seq, attempt
    last_error: ErrorInfo | None = None
    for _ in range(draw(st.integers(0, 9))):
        if status == "paused":
            kind = draw(st.sampled_from(["resume", "log"]))
        elif open_step is not None:
            kind = draw(st.sampled_from(["complete", "fail", "retry", "log", "pause"]))
        else:
            kind = draw(st.sampled_from(["step", "step", "pause", "log"]))
        if kind == "step":
            seq += 1
            open_step = (draw(step_names), seq, 1)
            ops.append(("step", open_step[0], seq, 1))
        elif kind == "complete" and open_step:
            ops.append(("complete", open_step[1], draw(costs)))
            open_step = None
        elif kind == "fail" and open_step:
            last_error = draw(errors)
            ops.append(("fail", open_step[1], last_error, False, draw(costs)))
            open_step = None
        elif kind == "retry" and open_step:
            name, s, attempt = open_step
            ops.append(("fail", s, draw(errors), True, draw(costs)))
            open_step = (name, s, attempt + 1)
            ops.append(("step", name, s, attempt + 1))
        elif kind == "pause":
            ops.append(("pause", draw(st.sampled_from(["human_review", "approval"]))))
            status = "paused"
        elif kind == "resume":
            ops.append(("resume",))
            status = "running"
        elif kind == "log":
            ops.append(("log", draw(st.sampled_from(["debug", "info"]))))
    end = draw(st.sampled_from(["none", "complete", "fail", "cancel"]))
    if end == "complete":
        if status == "paused":
            ops.append(("resume",))
        if open_step:
            ops.append(("complete", open_step[1], draw(costs)))
        ops.append(("done",))
    elif end == "fail":
        same = last_error is not None and draw(st.booleans())
        ops.append(("failed", last_error if same else draw(errors)))
    elif end == "cancel":
        ops.append(("cancel",))
    return ops


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[list[Op]], list[int], list[int], list[int]]:
    plans = draw(st.lists(lifecycle(), min_size=1, max_size=4))
    order = draw(st.permutations([i for i, p in enumerate(plans) for _ in p]))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    # One page size per chunk, then the bulk rebuild's read page and its bound on states.
    pages = draw(st.lists(st.integers(1, 7), min_size=len(cuts) + 3, max_size=len(cuts) + 3))
    return plans, order, cuts, pages


def perform(journal: Journal, handles: dict[int, ExecutionHandle], i: int, op: Op) -> None:
    kind = op[0]
    if kind == "start":
        handles[i] = journal.start(op[1], {"n": i})
        return
    h = handles[i]
    if kind == "step":
        h.step_started(op[1], {"x": 1}, seq=op[2], attempt=op[3])
    elif kind == "complete":
        h.step_completed(op[1], {"out": op[1]}, costs=op[2])
    elif kind == "fail":
        h.step_failed(op[1], op[2], will_retry=op[3], costs=op[4])
    elif kind == "pause":
        h.paused(op[1], {"ask": "ok?"})
    elif kind == "resume":
        h.resumed("yes")
    elif kind == "log":
        h.log("line", level=op[1], k=1)
    elif kind == "done":
        h.completed({"result": True})
    elif kind == "failed":
        h.failed(op[1])
    elif kind == "cancel":
        h.cancelled("user")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_chunked_catch_up_with_restarts_equals_rebuild_and_journal_state(
    journal_url: str, scenario: tuple[list[list[Op]], list[int], list[int], list[int]]
) -> None:
    plans, order, cuts, pages = scenario
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_url(journal_url, Path(tmp))
        with Journal.open(url) as journal:
            handles: dict[int, ExecutionHandle] = {}
            done = [0] * len(plans)
            bounds = [*cuts, len(order)]
            k = 0
            for chunk, end in enumerate(bounds):
                while k < end:
                    i = order[k]
                    perform(journal, handles, i, plans[i][done[i]])
                    done[i] += 1
                    k += 1
                journal.flush()
                # A restart: a new Projections object, with its own page size.
                with Projections(journal, page_size=pages[chunk]) as views:
                    views.catch_up()
            ids = [h.id for h in handles.values()]
            with Projections(journal, page_size=pages[0]) as views:
                assert views.catch_up() == 0
                incremental = dump(views, ids)
                assert set(views.positions().values()) == {views.head()}
                for eid in ids:
                    assert_matches_state(views, journal.state(eid))
                assert_costs_add_up(views, journal, ids)
                assert views.rebuild(page_size=pages[-3], bulk=False) == views.head()
                assert dump(views, ids) == incremental
                assert views.rebuild(page_size=pages[-2]) == views.head()
                assert dump(views, ids) == incremental
                done = bulk_rebuild(journal.storage, views.views, VIEWS, page_size=pages[-2],
                                    max_states=pages[-1])
                views.projector.reset()
                assert done == (views.head(), views.head())
                rebuilt = dump(views, ids)
            assert incremental == rebuilt
            assert len(incremental["executions"]) == len(ids)
            total = sum((journal.state(i).cost.usd for i in ids), Decimal(0))
            assert sum((c.usd for c in rebuilt["costs"]["day"]), Decimal(0)) == total
