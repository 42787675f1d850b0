"""A Journal (and its Projections) opened before ``os.fork()`` keeps working on both sides.

The parent opens a journal, records (so its connections, pool, flusher thread and, on
PostgreSQL, the notify thread exist), buffers a log line and forks four children through
``multiprocessing`` with the ``fork`` start method. Each child records 100 transitions and
some log lines on its own execution through the inherited journal, leaves its last log line
unflushed and leaves by ``os._exit`` 1.5 s later (no flush, no close, no finalizers): that line
must be durable anyway (the promise is one second). The parent keeps writing meanwhile.
A fresh journal must then hold every child's events and the parent's, nothing twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections import Counter
from typing import Any
from uuid import UUID

import pytest

from journal import (
    ExecutionStarted,
    Journal,
    LogRecorded,
    StepCompleted,
    StepStarted,
)
from projections import Projections

# Python 3.12+ warns on fork() in a process with threads; forking one is what this tests.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)

CHILDREN = 4
PAIRS = 49  # ExecutionStarted + 49 (StepStarted, StepCompleted) + a last StepStarted = 100
CHILD_TRANSITIONS = 1 + 2 * PAIRS + 1
CHILD_LOGS = PAIRS + 1  # one per pair, plus the last one, left unflushed
BEFORE_FORK = "buffered in the parent just before the fork"


class _Collect(logging.Handler):
    """Keeps the journal's warnings and errors, to report them from a child."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"log {record.levelname}: {record.getMessage()}")


def _child(journal: Journal, views: Projections, index: int, queue: Any) -> None:
    """Record on a new execution through the inherited journal; report, then os._exit."""
    problems: list[str] = []
    eid: str | None = None
    collect = _Collect()
    logging.getLogger("journal").addHandler(collect)
    logging.getLogger("projections").addHandler(collect)

    def on_thread_error(args: threading.ExceptHookArgs) -> None:
        problems.append(f"thread {args.thread!r}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = on_thread_error
    try:
        run = journal.start("forked", {"child": index})
        eid = str(run.id)
        for i in range(PAIRS):
            seq = run.step_started(f"step-{i}")
            run.log(f"child {index} line {i}", i=i)
            run.step_completed(seq, {"child": index, "i": i})
        run.step_started("last")
        if index == 0:
            views.catch_up()  # the parent's Projections, inherited, works in the child too
        run.log(f"child {index} last line")  # no flush, no close: must be durable within 1 s
        time.sleep(1.5)
        # Read (never flush) to see the last line reached the database.
        position = journal.state(run.id).position
        if position != CHILD_TRANSITIONS + CHILD_LOGS:
            problems.append(f"the child read back position {position} 1.5 s after its last line")
    except BaseException:
        problems.append(traceback.format_exc())
    problems.extend(collect.lines)
    queue.put((index, eid, problems))
    os._exit(1 if problems else 0)


def _all_notifications(journal: Journal) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    after = 0
    while True:
        page = journal.notifications(after=after, limit=500)
        if not page:
            return out
        out.extend(page)
        after = page[-1][0]


# Two processes: a memory: journal is in-process only (each child would write to its own copy).
@pytest.mark.slow
@pytest.mark.parametrize("journal_url", ["sqlite", "postgres"], indirect=True)
def test_children_record_through_a_journal_opened_before_fork(journal_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()
    journal = Journal.open(journal_url)
    views = Projections(journal)
    try:
        # Connections, pools and threads exist in the parent before it forks.
        parent = journal.start("parent")
        seq = parent.step_started("before")
        parent.log("parent line before the fork, flushed with the next transition")
        parent.step_completed(seq, "done")
        busy = journal.start("busy")
        views.catch_up()
        parent.log(BEFORE_FORK)  # buffered: the children inherit it and must not write it

        children = [
            ctx.Process(target=_child, args=(journal, views, i, queue), daemon=True)
            for i in range(CHILDREN)
        ]
        for child in children:
            child.start()

        # The parent keeps writing (on another execution: its buffered line on `parent` is left
        # to the parent's own flusher) while the children run.
        busy_steps = 0
        deadline = time.monotonic() + 60
        while any(c.is_alive() for c in children) and time.monotonic() < deadline:
            s = busy.step_started(f"busy-{busy_steps}")
            busy.log(f"busy line {busy_steps}")
            busy.step_completed(s, busy_steps)
            busy_steps += 1
            time.sleep(0.005)
        for child in children:
            child.join(timeout=max(0.1, deadline - time.monotonic()))
        hung = [c.pid for c in children if c.is_alive()]
        for c in children:
            if c.is_alive():
                c.kill()
                c.join(5)
        assert not hung, f"children {hung} did not finish within 60 s (deadlocked after fork?)"

        reports = {}
        while not queue.empty():
            index, eid, problems = queue.get()
            reports[index] = (eid, problems)
        assert sorted(reports) == list(range(CHILDREN)), (
            f"not every child reported: {sorted(reports)}; exit codes "
            f"{[c.exitcode for c in children]}"
        )
        for index, (_, problems) in sorted(reports.items()):
            assert not problems, f"child {index}:\n" + "\n".join(problems)
        assert [c.exitcode for c in children] == [0] * CHILDREN
        assert busy_steps > 0

        # The parent's journal still works after the fork: its buffered line was flushed by
        # the parent (not a child), so its handle is not stale and the next write follows it.
        seq = parent.step_started("after")
        parent.step_completed(seq, "done")
        parent.completed("ok")
        busy.completed(busy_steps)
        journal.flush()
        views.catch_up()
        child_ids = [UUID(eid) for eid, _ in (reports[i] for i in range(CHILDREN)) if eid]
        assert len(child_ids) == CHILDREN
    finally:
        views.close()
        journal.close()

    with Journal.open(journal_url) as fresh:
        for index, eid in enumerate(child_ids):
            events = fresh.events(eid)
            assert [e.position for e in events] == list(range(1, len(events) + 1))
            kinds = Counter(type(e).__name__ for e in events)
            assert kinds == {
                "ExecutionStarted": 1, "StepStarted": PAIRS + 1, "StepCompleted": PAIRS,
                "LogRecorded": CHILD_LOGS,
            }, (index, kinds)
            assert isinstance(events[0], ExecutionStarted) and events[0].input == {"child": index}
            logs = [e.message for e in events if isinstance(e, LogRecorded)]
            assert logs == [f"child {index} line {i}" for i in range(PAIRS)] + [
                f"child {index} last line"
            ]
            outputs = [e.output for e in events if isinstance(e, StepCompleted)]
            assert outputs == [{"child": index, "i": i} for i in range(PAIRS)]
            assert [e.seq for e in events if isinstance(e, StepStarted)] == list(
                range(1, PAIRS + 2)
            )

        parent_events = fresh.events(parent.id)
        assert [type(e).__name__ for e in parent_events] == [
            "ExecutionStarted", "StepStarted", "LogRecorded", "StepCompleted", "LogRecorded",
            "StepStarted", "StepCompleted", "ExecutionCompleted",
        ]
        busy_events = fresh.events(busy.id)
        assert len(busy_events) == 1 + 3 * busy_steps + 1
        assert [e.position for e in busy_events] == list(range(1, len(busy_events) + 1))

        # The whole log: every stream's events once, the parent's buffered line exactly once.
        log = _all_notifications(fresh)
        ids = [nid for nid, _ in log]
        assert ids == sorted(set(ids))
        keys = Counter((e.execution_id, e.position) for _, e in log)
        assert max(keys.values()) == 1
        per_stream = Counter(e.execution_id for _, e in log)
        assert per_stream == {
            **{eid: CHILD_TRANSITIONS + CHILD_LOGS for eid in child_ids},
            parent.id: len(parent_events), busy.id: len(busy_events),
        }
        messages = Counter(e.message for _, e in log if isinstance(e, LogRecorded))
        assert messages[BEFORE_FORK] == 1
        assert max(messages.values()) == 1

        # The views, caught up by the parent and by a child, count every event once.
        with Projections(fresh) as check:
            check.catch_up()
            for eid in [*child_ids, parent.id, busy.id]:
                summary = check.execution(eid)
                assert summary is not None, eid
                assert summary.event_count == fresh.state(eid).position, eid
