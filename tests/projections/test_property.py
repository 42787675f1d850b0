"""Views after chunked catch-up with restarts == views after a rebuild == journal.state().

Hypothesis draws valid lifecycles for several executions (steps, retries, failures, pauses
with and without deadlines, answered or timed out, waits for a timer, a signal or a child
and how they end, signals, drawn values, logs, Decimal costs, parents), interleaves them
arbitrarily, records them, and catches up after each chunk of appends with a new
``Projections`` object (a simulated restart) and a random page size. The result must equal
a bulk rebuild (with a random read page and bound on running states kept, so some are
replayed), a page-by-page rebuild, and what ``journal.state(id)`` says.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import Cost, ErrorInfo, ExecutionHandle, Journal
from journal.events import child_signal
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
#: Deadlines (of waits and pauses) are minutes from here.
BASE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
deadlines = st.integers(-90, 90)
#: What each kind of drawn value gives (the views never read it).
DRAWN = {"now": BASE, "random": 0.25, "uuid4": UUID(int=7)}


@st.composite
def lifecycle(draw: st.DrawFn) -> list[Op]:
    """One execution's valid sequence of recording calls: steps (retried, failed), pauses
    (with or without a deadline, answered or timed out), waits for a timer, a signal or a
    child (fired, consuming a signal, timed out), signals, drawn values and logs."""
    ops: list[Op] = [("start", draw(st.sampled_from(["etl", "chat", "review"])))]
    status = "running"
    seq = 0
    open_step: tuple[str, int, int] | None = None  # name, seq, attempt
    last_error: ErrorInfo | None = None
    pause_until = False
    wait: tuple[int, str, str, bool] | None = None  # seq, kind, the signal it takes, until

    def end_wait(how: str) -> None:
        nonlocal status, wait
        assert wait is not None
        w_seq, _, signal, _ = wait
        if how == "consume":
            ops.append(("signal", signal))  # (one sent earlier may be the one consumed)
            ops.append(("consume", w_seq, signal))
        else:
            ops.append(("wait ended", w_seq, how == "timed out"))
        status, wait = "running", None

    def wait_endings() -> list[str]:
        assert wait is not None
        if wait[1] == "timer":
            return ["fired"]
        return ["consume", "timed out"] if wait[3] else ["consume"]

    for _ in range(draw(st.integers(0, 10))):
        if status == "paused":
            kinds = ["resume", "log", "signal"] + (["timeout"] if pause_until else [])
        elif status == "waiting":
            kinds = ["end wait", "end wait", "log", "signal"]
        elif open_step is not None:
            kinds = ["complete", "fail", "retry", "log", "pause", "value"]
        else:
            kinds = ["step", "step", "pause", "log", "wait", "wait", "value", "signal"]
        kind = draw(st.sampled_from(kinds))
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
            until = draw(st.none() | deadlines)
            ops.append(("pause", draw(st.sampled_from(["human_review", "approval"])), until))
            status, pause_until = "paused", until is not None
        elif kind in ("resume", "timeout"):
            ops.append(("resume", kind == "timeout"))
            status = "running"
        elif kind == "wait":
            seq += 1
            what = draw(st.sampled_from(["timer", "signal", "child"]))
            if what == "timer":
                until: int | None = draw(deadlines)
                name = signal = ""
            elif what == "signal":
                until = draw(st.none() | deadlines)
                name = signal = draw(st.sampled_from(["paid", "go"]))
            else:  # a child's end comes as a signal named after the call
                until, name, signal = None, draw(st.sampled_from(["kid", "etl"])), \
                    child_signal(seq)
            ops.append(("wait", seq, what, name, until))
            status, wait = "waiting", (seq, what, signal, until is not None)
        elif kind == "end wait":
            end_wait(draw(st.sampled_from(wait_endings())))
        elif kind == "value":
            seq += 1
            ops.append(("value", seq, draw(st.sampled_from(sorted(DRAWN)))))
        elif kind == "signal":
            names = ["paid", "go"] + ([wait[2]] if wait is not None and wait[2] else [])
            ops.append(("signal", draw(st.sampled_from(names))))
        elif kind == "log":
            ops.append(("log", draw(st.sampled_from(["debug", "info"]))))
    end = draw(st.sampled_from(["none", "complete", "fail", "cancel"]))
    if end == "complete":
        if status == "paused":
            ops.append(("resume", False))
        elif status == "waiting":
            end_wait(wait_endings()[0])
        if open_step:
            ops.append(("complete", open_step[1], draw(costs)))
        ops.append(("done",))
    elif end == "fail":
        same = last_error is not None and draw(st.booleans())
        ops.append(("failed", last_error if same else draw(errors)))
    elif end == "cancel":
        ops.append(("cancel",))
    return ops


#: A plan's parent: None, or (the plan that started it, at which call).
Parent = tuple[int, int] | None


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[list[Op]], list[Parent], list[int], list[int], list[int]]:
    plans = draw(st.lists(lifecycle(), min_size=1, max_size=4))
    # Some executions are children of others (their parents' streams need not say so: the
    # views take the link from the child's start); one call of a parent starts one child.
    parents: list[Parent] = [
        None if not draw(st.booleans()) else (draw(st.integers(0, len(plans) - 1)), i + 1)
        for i in range(len(plans))
    ]
    order = draw(st.permutations([i for i, p in enumerate(plans) for _ in p]))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    # One page size per chunk, then the bulk rebuild's read page and its bound on states.
    pages = draw(st.lists(st.integers(1, 7), min_size=len(cuts) + 3, max_size=len(cuts) + 3))
    return plans, parents, order, cuts, pages


def _minutes(offset: int | None) -> datetime | None:
    return None if offset is None else BASE + timedelta(minutes=offset)


def perform(
    journal: Journal, handles: dict[int, ExecutionHandle], ids: list[UUID],
    parents: list[Parent], i: int, op: Op,
) -> None:
    kind = op[0]
    if kind == "start":
        parent = parents[i]
        handles[i] = journal.start(
            op[1], {"n": i}, execution_id=ids[i],
            parent=None if parent is None else ids[parent[0]],
            parent_seq=0 if parent is None else parent[1],
        )
        return
    h = handles[i]
    if kind == "step":
        h.step_started(op[1], {"x": 1}, seq=op[2], attempt=op[3])
    elif kind == "complete":
        h.step_completed(op[1], {"out": op[1]}, costs=op[2])
    elif kind == "fail":
        h.step_failed(op[1], op[2], will_retry=op[3], costs=op[4])
    elif kind == "pause":
        h.paused(op[1], {"ask": "ok?"}, until=_minutes(op[2]))
    elif kind == "resume":
        h.resumed(None if op[1] else "yes", timed_out=op[1])
    elif kind == "wait":
        h.wait_started(op[1], op[2], op[3], until=_minutes(op[4]))
    elif kind == "wait ended":
        h.wait_ended(op[1], timed_out=op[2])
    elif kind == "consume":
        signal = h.state.unconsumed(op[2])
        assert signal is not None, op
        h.wait_ended(op[1], signal=signal.position)
    elif kind == "signal":
        h.signal_received(op[1], {"sent": op[1]})
    elif kind == "value":
        h.value_recorded(op[1], op[2], DRAWN[op[2]])
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
    journal_url: str,
    scenario: tuple[list[list[Op]], list[Parent], list[int], list[int], list[int]],
) -> None:
    plans, parents, order, cuts, pages = scenario
    ids = [uuid4() for _ in plans]
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
                    perform(journal, handles, ids, parents, i, plans[i][done[i]])
                    done[i] += 1
                    k += 1
                journal.flush()
                # A restart: a new Projections object, with its own page size.
                with Projections(journal, page_size=pages[chunk]) as views:
                    views.catch_up()
            with Projections(journal, page_size=pages[0]) as views:
                assert views.catch_up() == 0
                incremental = dump(views, ids)
                assert set(views.positions().values()) == {views.head()}
                for eid in ids:
                    assert_matches_state(views, journal.state(eid))
                for k, eid in enumerate(ids):  # its children, by its calls (seq = index + 1)
                    assert [c.execution_id for c in views.children(eid)] == [
                        ids[c] for c, p in enumerate(parents) if p is not None and p[0] == k]
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
