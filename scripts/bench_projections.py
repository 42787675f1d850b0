"""Benchmark the projections on SQLite and PostgreSQL; prints medians and ratios.

    python scripts/bench_projections.py [--events 200000] [--executions-rows 1000000]
                                        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

1. Fills a journal with ``--events`` events (executions of 10 events, interleaved 500 at a
   time, appended in raw batches), then measures, each in a process of its own (so its peak
   RSS is its own), alternating, ``--repeat`` times: a raw keyset SELECT of the same rows
   (the floor); a rebuild from zero in bulk (fresh tables, each row once, swapped in); the
   page-by-page rebuild it replaced (upserts, pages of 5,000); and incremental catch-ups
   from 0 with rebuild-sized pages (``CATCH_UP_PAGE``) and with following-sized ones (1,000).
   Prints events/s, the ratio to the raw read (medians) and peak RSS (``--modes`` picks).
2. On PostgreSQL: lag from an append returning to its page being committed by a
   ``follow()``-ing projector (LISTEN/NOTIFY), median and p99.
3. ``executions(...)`` query time with ``--executions-rows`` rows in the view (rows inserted
   directly), for the common filters and a deep keyset page.

It creates its own PostgreSQL database and drops it afterwards, and its SQLite files in a
temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from benchlib import postgres_database

from journal import Journal
from journal.encoding import encode_event
from journal.events import (
    Cost,
    Event,
    ExecutionCompleted,
    ExecutionStarted,
    StepCompleted,
    StepStarted,
)
from journal.storage.postgres import connect_params, parse_postgres_url
from journal.storage.sqlite import sqlite_path
from projections import VIEWS, Projections
from projections.api import CATCH_UP_PAGE
from projections.tables import EXECUTIONS

ROOT = Path(__file__).resolve().parents[1]

STEPS = ("fetch", "parse", "summarize", "write")
MODELS = ("gpt-4o", "claude", "small")


def lifecycle(eid: uuid.UUID, t0: datetime, i: int) -> list[Event]:
    """A 10-event execution: start, four steps with costs, completed."""
    ts = [t0 + timedelta(milliseconds=k) for k in range(10)]
    events: list[Event] = [
        ExecutionStarted(execution_id=eid, position=1, timestamp=ts[0], workflow=f"wf{i % 7}",
                         input={"i": i}),
    ]
    pos = 2
    for seq, name in enumerate(STEPS, start=1):
        events.append(StepStarted(execution_id=eid, position=pos, timestamp=ts[pos - 1],
                                  name=name, seq=seq, input={"seq": seq}))
        pos += 1
        events.append(StepCompleted(
            execution_id=eid, position=pos, timestamp=ts[pos - 1], seq=seq,
            output={"ok": True, "n": i}, duration=0.01 * seq,
            costs=(Cost(usd=Decimal("0.000123") * seq, input_tokens=100, output_tokens=20,
                        model=MODELS[(i + seq) % 3]),),
        ))
        pos += 1
    events.append(ExecutionCompleted(execution_id=eid, position=pos, timestamp=ts[pos - 1],
                                     output={"done": i}))
    return events


def fill(journal: Journal, n_events: int, *, interleave: int = 500) -> int:
    """Append ``n_events`` (rounded up to whole executions), interleaved, in raw batches."""
    n_exec = -(-n_events // 10)
    base = datetime.now(UTC) - timedelta(days=1)
    done = 0
    while done < n_exec:
        block = [
            lifecycle(uuid.uuid4(), base + timedelta(seconds=done + k), done + k)
            for k in range(min(interleave, n_exec - done))
        ]
        for position in range(10):  # event k of every execution of the block, in turn
            journal.storage.append([encode_event(ev[position]) for ev in block])
        done += len(block)
    return n_exec * 10


def raw_scan(url: str, page: int = 1000) -> int:
    """Keyset-read every (id, topic, state) row with the bare driver: the baseline."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(sqlite_path(url)[0])
        sql = ("SELECT notification_id, topic, state FROM journal_events "
               "WHERE notification_id > ? ORDER BY notification_id LIMIT ?")
        cur = conn.cursor()
    else:
        conn = psycopg.connect(**connect_params(url), autocommit=True)
        schema = parse_postgres_url(url)["options"].get("schema") or "public"
        conn.execute(f'SET search_path TO "{schema}"')
        sql = ("SELECT notification_id, topic, state FROM journal_events "
               "WHERE notification_id > %s ORDER BY notification_id LIMIT %s")
        cur = conn.cursor(binary=True)
    try:
        after, n = 0, 0
        while True:
            cur.execute(sql, (after, page))
            rows = cur.fetchall()
            if not rows:
                return n
            n += len(rows)
            after = rows[-1][0]
    finally:
        conn.close()


#: What the rebuild bench measures, each in a child process: the floor first.
MODES = ("raw", "bulk", "upserts", "catch-up", "pages")
LABELS = {
    "raw": "raw keyset SELECT",
    "bulk": "rebuild from zero (bulk)",
    "upserts": "rebuild page by page (5,000; before)",
    "catch-up": f"catch-up from 0, pages of {CATCH_UP_PAGE:,}",
    "pages": "catch-up from 0, pages of 1,000",
}


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM, KiB): unlike ``ru_maxrss``, not inherited
    from the parent across fork and exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(mode: str, url: str) -> dict[str, float]:
    """In this process: run one ``mode`` over the journal at ``url``; events, seconds and
    peak RSS (KiB; before and after)."""
    with Journal.open(url) as journal, Projections(journal, bulk_from=2**62) as views:
        if mode in ("catch-up", "pages"):
            # The views at 0 (as new), then caught up without the bulk path.
            views.projector.drop_and_create(VIEWS)
        before = peak_rss_kb()
        start = time.perf_counter()
        if mode == "raw":
            n = raw_scan(url)
        elif mode == "bulk":
            n = views.rebuild()
        elif mode == "upserts":  # what rebuild() did before it built in bulk
            n = views.rebuild(bulk=False, page_size=5000)
        elif mode == "catch-up":
            n = views.catch_up()
        else:  # the projector's own catch-up, at the following page size
            views.projector.page_size = 1000
            n = views.projector.catch_up()
        seconds = time.perf_counter() - start
        if mode != "raw":
            assert views.catch_up() == 0
            assert len(views.executions(limit=10)) == 10
    peak = peak_rss_kb()
    return {"events": n, "seconds": seconds, "rss_before_kb": before, "rss_peak_kb": peak}


def in_child(mode: str, url: str) -> dict[str, float]:
    """``measure(mode, url)`` in a new interpreter."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, url], capture_output=True, text=True,
        check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode:
        raise RuntimeError(f"{mode} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_rebuild(
    name: str, url: str, n_events: int, repeat: int, modes: Sequence[str] = MODES[1:]
) -> dict[str, float]:
    with Journal.open(url) as journal:
        t = time.perf_counter()
        total = fill(journal, n_events)
        print(f"[{name}] filled {total:,} events in {time.perf_counter() - t:.1f} s")
        with Projections(journal) as views:
            views.rebuild()  # views exist (and tables are warm) before the first measure
    modes = ["raw", *modes]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(repeat):
        for mode in modes:
            runs[mode].append(in_child(mode, url))
    rates = {m: statistics.median(r["events"] / r["seconds"] for r in rs)
             for m, rs in runs.items()}
    out: dict[str, float] = {}
    for mode in modes:
        peak = max(r["rss_peak_kb"] for r in runs[mode]) / 1024
        base = min(r["rss_before_kb"] for r in runs[mode]) / 1024
        print(f"[{name}] {LABELS[mode]:34s} {rates[mode]:>11,.0f} events/s, ratio "
              f"{rates[mode] / rates['raw']:.3f} of raw (median of {repeat}); peak RSS "
              f"{peak:,.0f} MB (before: {base:,.0f} MB)")
        out[mode] = rates[mode]
        out[f"{mode} rss"] = peak
    return out


def bench_follow_lag(url: str, n: int = 1000) -> tuple[float, float]:
    """Lag (ms) from an append returning to the follower committing its page."""
    with Journal.open(url) as journal, Projections(journal) as views:
        views.catch_up()
        committed: list[tuple[float, int]] = []
        lock = threading.Lock()

        def on_update(_: int, position: int) -> None:
            with lock:
                committed.append((time.perf_counter(), position))

        t = threading.Thread(target=lambda: views.follow(on_update=on_update))
        t.start()
        time.sleep(0.3)
        appended: list[tuple[float, int]] = []
        try:
            for i in range(n):
                run = journal.start("lag", i)
                appended.append((time.perf_counter(), run.id.int))
                time.sleep(0.002)
            time.sleep(0.5)
        finally:
            views.stop()
            t.join()
        # Each start is one event; ids are consecutive after the head at the start.
        head = views.head()
        first = head - n + 1
        lags = []
        for k, (t_app, _) in enumerate(appended):
            nid = first + k
            t_done = next(tc for tc, pos in committed if pos >= nid)
            lags.append(max(0.0, t_done - t_app) * 1000)
        lags.sort()
        return statistics.median(lags), lags[int(0.99 * (len(lags) - 1))]


def fill_execution_rows(views: Projections, n: int) -> None:
    """Insert ``n`` synthetic rows straight into the executions view."""
    v = views.views
    base = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ("completed", "completed", "completed", "failed", "running", "paused",
                "cancelled")
    if v.dialect.percentiles:  # PostgreSQL: generate the rows in the server
        v.execute(
            "INSERT INTO proj_executions SELECT gen_random_uuid(), 'wf' || mod(g, 20), "
            "(ARRAY['completed','completed','completed','failed','running','paused',"
            "'cancelled'])[1 + mod(g, 7)], ?::timestamptz + g * interval '1 second', "
            "?::timestamptz + g * interval '1 second' + interval '5 seconds', NULL, NULL, "
            "'fetch', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            "1, 0, 0, 4, 0, 0.001, 10, 20 FROM generate_series(1, ?) g",
            (base, base, n),
        )
        v.execute("ANALYZE proj_executions")
        return

    def rows() -> Iterator[tuple[Any, ...]]:
        for g in range(n):
            at = base + timedelta(seconds=g)
            yield (uuid.uuid4(), f"wf{g % 20}", statuses[g % 7], at, at, None, None,
                   "fetch", 1, at, None, None, None, None, None, None, None, None, None, None,
                   1, 0, 0, 4, 0, Decimal("0.001"), 10, 20, None, None, None, None, None,
                   None, None, None, None)

    with v.transaction():
        v.upsert(EXECUTIONS, list(rows()))
    v.execute("ANALYZE")


def bench_queries(name: str, url: str, n_rows: int) -> None:
    with Journal.open(url) as journal, Projections(journal) as views:
        t = time.perf_counter()
        fill_execution_rows(views, n_rows)
        print(f"[{name}] inserted {n_rows:,} execution rows in {time.perf_counter() - t:.1f} s")
        deep = views.executions(limit=1)[0]
        hour_ago = deep.started_at - timedelta(hours=1)
        for _ in range(3):  # 3 pages deep
            deep = views.executions(limit=50, before=deep)[-1]
        cases: dict[str, Callable[[], Any]] = {
            "newest 50": lambda: views.executions(),
            "status=failed": lambda: views.executions(status="failed"),
            "workflow=wf3": lambda: views.executions(workflow="wf3"),
            "workflow+status": lambda: views.executions(workflow="wf3", status="running"),
            "since (last hour)": lambda: views.executions(since=hour_ago),
            "next page (before=)": lambda: views.executions(before=deep),
            "status+before": lambda: views.executions(status="completed", before=deep),
            "stuck(older_than=1h)": lambda: views.stuck(older_than=timedelta(hours=1), limit=50),
        }
        for label, fn in cases.items():
            fn()
            times = []
            for _ in range(15):
                t = time.perf_counter()
                rows = fn()
                times.append((time.perf_counter() - t) * 1000)
            assert len(rows) > 0, label
            print(f"[{name}] executions {label:22s} median {statistics.median(times):6.2f} ms, "
                  f"max {max(times):6.2f} ms ({len(rows)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--executions-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lag-appends", type=int, default=1000)
    parser.add_argument("--pg-url", default=os.environ.get(
        "JOURNAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--skip", action="append", default=[],
                        choices=["sqlite", "postgres", "rebuild", "queries", "lag"])
    parser.add_argument("--modes", nargs="+", choices=MODES[1:], default=list(MODES[1:]),
                        help="what to measure beside the raw read (default: all)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" not in args.skip:
            url = f"sqlite:///{tmp}/bench.db"
            if "rebuild" not in args.skip:
                results["sqlite"] = bench_rebuild("sqlite", url, args.events, args.repeat,
                                                   args.modes)
            if "queries" not in args.skip:
                bench_queries("sqlite", f"sqlite:///{tmp}/rows.db", args.executions_rows)
        if "postgres" not in args.skip:
            with postgres_database("bench_projections", args.pg_url, width=8) as db:
                if "rebuild" not in args.skip:
                    results["postgres"] = bench_rebuild(
                        "postgres", f"{db}?schema=bench", args.events, args.repeat, args.modes
                    )
                if "lag" not in args.skip:
                    med, p99 = bench_follow_lag(f"{db}?schema=lag", args.lag_appends)
                    print(f"[postgres] follow lag over {args.lag_appends} appends: "
                          f"median {med:.2f} ms, p99 {p99:.2f} ms")
                if "queries" not in args.skip:
                    bench_queries("postgres", f"{db}?schema=rows", args.executions_rows)
    print("summary (events/s; ratio to the raw keyset SELECT of the same run; peak RSS):")
    for name, r in results.items():
        print(f"  {name:8s} raw {r['raw']:>10,.0f}  "
              + "  ".join(f"{m} {r[m]:>9,.0f} ({r[m] / r['raw']:.3f}, {r[m + ' rss']:,.0f} MB)"
                          for m in MODES[1:] if m in r))


if __name__ == "__main__":
    main()
