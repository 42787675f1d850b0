"""Bulk rebuilds on SQLite and PostgreSQL: the same views as page by page, swapped in whole.

A bulk rebuild (``projections.bulk``) folds the log into fresh tables and swaps them in; it
must give exactly what incremental catch-up gives (whatever its page size and however few
running states it may keep), leave nothing behind when it fails, never show a reader half
a view, and fence a follower that was applying pages meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import Cost, ErrorInfo, ExecutionHandle, Journal
from journal.errors import JournalError
from projections import Projections
from projections import bulk as bulk_module
from projections.bulk import bulk_rebuild
from projections.tables import EXECUTIONS, STEPS, VIEW_TABLES
from projections.views import VIEWS
from tests.projections.helpers import assert_costs_add_up, assert_matches_state, dump

PROJECT = Path(__file__).resolve().parents[2]
FOLLOWER = Path(__file__).resolve().parent / "follower_proc.py"
ALL_TABLES = [t for v in VIEWS for t in VIEW_TABLES[v]]


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as j:
        yield j


def _record(journal: Journal, n: int, *, steps: int = 3, seed: int = 0) -> list[ExecutionHandle]:
    """``n`` executions advanced one event at a time in turn (interleaved in the log), ending
    every way there is: completed, failed, cancelled, paused, still running."""
    runs = [journal.start(f"wf{(seed + i) % 3}", {"i": i}) for i in range(n)]
    for k in range(steps):
        for i, run in enumerate(runs):
            if (i + k) % 5 == 4:
                run.log("tick", level="info", k=k)
            seq = run.step_started(("fetch", "parse", "write")[k % 3], {"k": k})
            if (i + seed) % 7 == 3 and k == 1:
                err = ErrorInfo(type="TimeoutError", message=f"slow {i}")
                run.step_failed(seq, err, will_retry=True,
                                costs=[Cost(usd=Decimal("0.001"), input_tokens=3, model="m")])
                run.step_started(("fetch", "parse", "write")[k % 3], seq=seq, attempt=2)
            run.step_completed(seq, {"k": k}, costs=[
                Cost(usd=Decimal("0.000123") * (i + 1), input_tokens=10 + k, output_tokens=i,
                     model=("big", "small")[i % 2]),
            ])
    for i, run in enumerate(runs):
        end = i % 5
        if end == 0:
            run.completed({"i": i})
        elif end == 1:
            run.failed(ErrorInfo(type="ValueError", message=f"bad {i}"))
        elif end == 2:
            run.cancelled("user")
        elif end == 3:
            run.paused("human_review", {"draft": i})
    journal.flush()
    return runs


def _ids(runs: list[ExecutionHandle]) -> list[uuid.UUID]:
    return [r.id for r in runs]


def test_bulk_equals_page_by_page_whatever_pages_and_memory(journal: Journal) -> None:
    runs = _record(journal, 23)
    ids = _ids(runs)
    with Projections(journal, page_size=7) as views:
        views.catch_up()
        incremental = dump(views, ids)
        head = views.head()
        assert views.rebuild(bulk=False, page_size=11) == head
        assert dump(views, ids) == incremental
        for page_size in (1, 5, 20_000):
            assert views.rebuild(page_size=page_size) == head
            assert dump(views, ids) == incremental
            assert set(views.positions().values()) == {head}
        # Hardly any running state kept: the rest are replayed from their streams, and
        # still every row is written once (no key exists to upsert on until the end).
        for max_states in (1, 2, 5):
            store = views.views.sibling()
            try:
                events, position = bulk_rebuild(journal.storage, store, VIEWS, page_size=13,
                                                 max_states=max_states) or (0, 0)
            finally:
                if store is not views.views:
                    store.close()
            views.projector.reset()
            assert (events, position) == (head, head)
            assert dump(views, ids) == incremental
        for eid in ids:
            assert_matches_state(views, journal.state(eid))
        assert_costs_add_up(views, journal, ids)


def test_bulk_rebuild_of_one_view_keeps_the_others(journal: Journal) -> None:
    runs = _record(journal, 6)
    with Projections(journal) as views:
        views.catch_up()
        before = dump(views, _ids(runs))
        more = _record(journal, 2, seed=1)
        views.projector.page_size = 10**9  # (only what rebuild itself catches up)
        views.rebuild(only=["steps"])
        positions = views.positions()
        assert positions["steps"] == views.head()
        assert positions["executions"] == positions["costs"] == views.head()  # caught up after
        after = dump(views, _ids(runs))
        assert after["steps"] == before["steps"]
        assert [e for e in after["executions"] if e.execution_id in set(_ids(runs))] == before[
            "executions"]
        for eid in _ids(runs + more):
            assert_matches_state(views, journal.state(eid))


def test_rebuilt_views_are_indexed_and_upsertable(journal: Journal) -> None:
    runs = _record(journal, 4)
    with Projections(journal) as views:
        views.rebuild()
        # The key exists after the swap: page-by-page catch-up upserts onto it.
        more = _record(journal, 3, seed=2)
        views.catch_up()
        for eid in _ids(runs + more):
            assert_matches_state(views, journal.state(eid))
        with pytest.raises(JournalError):  # a duplicate key: the key is there
            views.views.bulk_insert(
                EXECUTIONS, views.views.select(EXECUTIONS, limit=1), ""
            )
        assert views.views.drop_fresh(ALL_TABLES) == []


def test_a_failed_bulk_rebuild_changes_nothing(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _record(journal, 8)
    with Projections(journal) as views:
        views.catch_up()
        before, positions = dump(views, _ids(runs)), views.positions()

        def boom(self: Any, position: int) -> None:
            self._flush()  # some rows are in the fresh tables already
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(bulk_module._Build, "_finish", boom)
        with pytest.raises(RuntimeError, match="disk on fire"):
            views.rebuild()
        monkeypatch.undo()
        assert views.positions() == positions
        assert dump(views, _ids(runs)) == before
        assert views.views.drop_fresh(ALL_TABLES) == []  # nothing was left behind
        assert views.catch_up() == 0


def test_tables_of_a_killed_build_are_dropped_by_the_next(journal: Journal) -> None:
    runs = _record(journal, 3)
    with Projections(journal) as views:
        views.catch_up()
        store = views.views
        left = store.fresh_suffix()
        store.create_fresh(ALL_TABLES, left)  # as a build killed before its swap leaves
        store.bulk_insert(STEPS, [(uuid.uuid4(), 1, "x", "running", 1, None, None, None,
                                   Decimal(0), 0, 0, None, None, None, 0)], left)
        views.rebuild()
        assert store.drop_fresh(ALL_TABLES) == []
        for eid in _ids(runs):
            assert_matches_state(views, journal.state(eid))


def test_catch_up_from_zero_behind_a_long_log_builds_in_bulk(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _record(journal, 12)
    calls: list[list[str]] = []
    real = bulk_module.bulk_rebuild

    def spy(storage: Any, store: Any, views: Any, **kw: Any) -> Any:
        calls.append(list(views))
        return real(storage, store, views, **kw)

    monkeypatch.setattr("projections.api.bulk_rebuild", spy)
    seen: list[tuple[int, int]] = []
    with Projections(journal, bulk_from=10) as views:
        assert views.backlog() == views.head()
        assert views.refresh(progress=lambda n, p: seen.append((n, p))) is None
        assert calls == [list(VIEWS)]
        assert seen and seen[-1][1] == views.head() and views.backlog() == 0
        for eid in _ids(runs):
            assert_matches_state(views, journal.state(eid))
        more = _record(journal, 2, seed=3)
        views.catch_up()  # not at 0 any more: page by page
        assert len(calls) == 1
        for eid in _ids(more):
            assert_matches_state(views, journal.state(eid))
    with Projections(journal, bulk_from=10) as views:
        views.catch_up()
        assert len(calls) == 1


def test_readers_see_the_old_view_or_the_new_never_half(journal: Journal) -> None:
    runs = _record(journal, 40)
    n_steps = sum(len(journal.state(r.id).steps) for r in runs)
    with Projections(journal) as views, Projections(journal) as reader:
        views.catch_up()
        stop = threading.Event()
        seen: list[tuple[int, int]] = []
        errors: list[BaseException] = []

        def read() -> None:
            try:
                while not stop.is_set():
                    # One statement: one snapshot of both tables on either backend.
                    (row,) = reader.views.query(
                        f"SELECT (SELECT count(*) FROM {EXECUTIONS.name}), "
                        f"(SELECT count(*) FROM {STEPS.name})"
                    )
                    seen.append((int(row[0]), int(row[1])))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=read)
        t.start()
        try:
            for page_size in (3, 50, 7):
                views.rebuild(page_size=page_size)
        finally:
            stop.set()
            t.join()
        assert not errors, errors
        assert seen and set(seen) == {(len(runs), n_steps)}


def test_a_follower_during_bulk_rebuilds_is_fenced(journal: Journal) -> None:
    runs = _record(journal, 10)
    stop = threading.Event()
    errors: list[BaseException] = []
    with Projections(journal, page_size=3) as follower:
        t = threading.Thread(target=lambda: follower.follow(stop=stop, poll_interval=0.01))
        t.start()

        def write() -> None:
            try:
                for k in range(6):
                    runs.extend(_record(journal, 2, seed=k))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        w = threading.Thread(target=write)
        w.start()
        try:
            with Projections(journal) as rebuilder:
                for page_size in (5, 40, 2):
                    rebuilder.rebuild(page_size=page_size)
        finally:
            w.join()
            time.sleep(0.1)
            stop.set()
            t.join()
        assert not errors, errors
        follower.catch_up()
        ids = _ids(runs)
        assert_costs_add_up(follower, journal, ids)  # nothing counted twice
        for eid in ids:
            assert_matches_state(follower, journal.state(eid))
        with Projections(journal) as fresh:
            fresh.rebuild()
            assert dump(fresh, ids) == dump(follower, ids)


def test_a_follower_in_another_process_never_sees_half_a_view(
    journal_url: str, tmp_path: Path
) -> None:
    with Journal.open(journal_url) as journal:
        runs = _record(journal, 30)
        with Projections(journal) as views:
            views.catch_up()
        stop_file = tmp_path / "stop"
        env = {**{k: v for k, v in os.environ.items() if k != "JOURNAL_URL"},
               "PYTHONPATH": str(PROJECT)}
        proc = subprocess.Popen(
            [sys.executable, str(FOLLOWER), journal_url, str(stop_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
            with Projections(journal) as rebuilder:
                for k, page_size in enumerate((4, 60, 9)):
                    runs.extend(_record(journal, 3, seed=k))
                    rebuilder.rebuild(page_size=page_size)
            time.sleep(0.3)
        finally:
            stop_file.touch()
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines and lines[-1].startswith("checked "), out + err
        assert int(lines[-1].split()[1]) > 0
        assert not [ln for ln in lines if ln.startswith("HALF")], out
        with Projections(journal) as views:
            views.catch_up()
            ids = _ids(runs)
            assert_costs_add_up(views, journal, ids)
            for eid in ids:
                assert_matches_state(views, journal.state(eid))


def test_refresh_with_progress_shows_a_bar_only_far_behind(journal: Journal) -> None:
    import io

    from rich.console import Console

    from projections.rebuild import refresh_with_progress

    runs = _record(journal, 8)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with Projections(journal, bulk_from=10) as views:
        assert refresh_with_progress(views, console=console, min_backlog=10) is None
        assert views.backlog() == 0
        for eid in _ids(runs):
            assert_matches_state(views, journal.state(eid))
    assert "bringing the views up to the log" in out.getvalue()
    out.truncate(0)
    more = _record(journal, 1, seed=4)
    with Projections(journal) as views:
        assert refresh_with_progress(views, console=console) is None
        assert_matches_state(views, journal.state(more[0].id))
    assert out.getvalue().strip("\x00") == ""
