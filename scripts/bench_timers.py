"""How late serve() wakes sleeping executions, whatever their number, and what it costs idle.

For each number of sleeping executions (``--sleepers``, default 1,000, 10,000 and 100,000),
written in bulk (each an ExecutionStarted and a WaitStarted of workflow ``sleeper``, with its
wake-up row, exactly what ``ctx.sleep_until`` commits), of which ``--due`` (200) fall due
within the next few seconds and the rest in a day, one ``serve()`` (in a thread of this
process) wakes them. Printed per backend:

* wake-up lateness p50 / p99 / max: from the timer's time to its WaitEnded's timestamp;
* ``due()`` (the query that finds what is due) median time: flat in the number of
  sleepers, since it is an index range read, against a full scan of the same table
  measured in the same run (``count(*)`` of every row: what a scan would cost);
* idle cost: over ``--idle`` (5) seconds with nothing due, queries per second and the
  CPU seconds per second serve() used (after its first search for orphans, a catch-up of
  the views over every execution, has ended).

Goals (issue 11): lateness p99 < 100 ms on PostgreSQL, < the polling interval (0.5 s) +
100 ms on SQLite; not growing with the number of sleepers.

    python scripts/bench_timers.py [--sleepers 1000,10000,100000] [--due 200] [--idle 5]
        [--only sqlite|postgres] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import arg_parser, med, postgres_database, revision, use_checkout

ROOT = use_checkout(export=True)

from journal import Journal  # noqa: E402
from journal.encoding import encode_event  # noqa: E402
from journal.events import ExecutionStarted, WaitEnded, WaitStarted  # noqa: E402
from runner import Context, Runner  # noqa: E402
from runner.serve import Server  # noqa: E402


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="sleeper")
    def sleeper(ctx: Context, due: str) -> int:
        ctx.sleep_until(datetime.fromisoformat(due))
        return 1

    return runner


def build(journal: Journal, n: int, due: int) -> list[tuple[uuid.UUID, datetime]]:
    """``n`` sleepers: first those due in a day, then ``due`` of them due from 3 s after
    the build on (10 ms apart)."""
    storage = journal.storage
    later = datetime.now(UTC) + timedelta(days=1)
    woken: list[tuple[uuid.UUID, datetime]] = []
    batch: list[Any] = []
    wakes: list[Any] = []
    t0 = datetime.now(UTC)
    soon = t0
    for i in range(n):
        eid = uuid.uuid4()
        if i == n - due:  # the ones that fall due: times from now on
            soon = datetime.now(UTC) + timedelta(seconds=3)
        at = soon + timedelta(milliseconds=10 * (i - (n - due))) if i >= n - due else later
        if i >= n - due:
            woken.append((eid, at))
        batch.append(encode_event(ExecutionStarted(
            execution_id=eid, position=1, timestamp=t0, workflow="sleeper",
            input={"due": at.isoformat()})))
        batch.append(encode_event(WaitStarted(
            execution_id=eid, position=2, timestamp=t0, seq=1, kind="timer", until=at)))
        wakes.append((eid, at.timestamp(), 2))
        if len(batch) >= 2000:
            storage.append(batch, (), wakes)
            batch, wakes = [], []
    if batch:
        storage.append(batch, (), wakes)
    return woken


def due_query_ms(journal: Journal, repeat: int = 50) -> float:
    now = time.time()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        journal.storage.due(now, limit=100)
        times.append(time.perf_counter() - t)
    return med(times) * 1e3


def scan_ms(journal: Journal, repeat: int = 10) -> float:
    views = journal.storage.views()
    times = []
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            views.query("SELECT count(*) FROM journal_wakeups WHERE position > 0")
            times.append(time.perf_counter() - t)
    finally:
        views.close()
    return med(times) * 1e3


class Counting:
    """Counts the wake-up queries serve() makes (due, next_due)."""

    def __init__(self, journal: Journal) -> None:
        self.calls = 0
        storage: Any = journal.storage
        for name in ("due", "next_due"):
            real = getattr(storage, name)

            def counted(*a: Any, _real: Any = real, **k: Any) -> Any:
                self.calls += 1
                return _real(*a, **k)

            setattr(storage, name, counted)


def measure(title: str, url: str, n: int, due: int, idle: float) -> None:
    with Journal.open(url) as journal, make_runner(journal) as runner:
        t = time.perf_counter()
        woken = build(journal, n, due)
        built = time.perf_counter() - t
        q_ms, s_ms = due_query_ms(journal), scan_ms(journal)
        counter = Counting(journal)
        stop = threading.Event()
        server = Server(runner, stop=stop, poll_interval=0.5, workers=4)
        thread = threading.Thread(target=server.run, kwargs={"handle_signals": False})
        thread.start()
        deadline = time.monotonic() + 60
        last = max(at for _, at in woken)
        while datetime.now(UTC) < last + timedelta(seconds=1) and time.monotonic() < deadline:
            time.sleep(0.1)
        while time.monotonic() < deadline and any(
                journal.state(eid).status != "completed" for eid, _ in woken[-5:]):
            time.sleep(0.1)
        # Idle: nothing due for a day (once the first search for orphans, a catch-up of
        # the views over every execution, is over: it is a one-off of a new server).
        while server._searching is not None and not server._searching.done():
            time.sleep(0.1)
        calls0, cpu0 = counter.calls, time.process_time()
        time.sleep(idle)
        calls1, cpu1 = counter.calls, time.process_time()
        stop.set()
        thread.join(timeout=60)
        lateness = []
        for eid, at in woken:
            ended = [e for e in journal.events(eid) if isinstance(e, WaitEnded)]
            if ended:
                lateness.append((ended[0].timestamp - at).total_seconds() * 1e3)
        missed = len(woken) - len(lateness)
        lateness.sort()
        p99 = lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))] if lateness else 0.0
        print(f"  {n:>7} {built:7.1f}s {statistics.median(lateness) if lateness else 0:8.1f}ms "
              f"{p99:8.1f}ms {max(lateness, default=0):8.1f}ms {missed:>6} {q_ms:8.3f}ms "
              f"{s_ms:8.2f}ms {(calls1 - calls0) / idle:8.1f} {(cpu1 - cpu0) / idle:8.3f}")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--sleepers", default="1000,10000,100000")
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [1000, 10000] if args.quick else [int(s) for s in args.sleepers.split(",")]
    print(f"bench_timers: code from {revision(ROOT)}")
    header = (f"  {'sleepers':>7} {'build':>8} {'late p50':>10} {'p99':>10} {'max':>10} "
              f"{'missed':>6} {'due()':>10} {'scan':>10} {'idle q/s':>8} {'idle cpu':>8}")
    legend = ("  (late: timer time -> WaitEnded; due(): the indexed query serve() uses; scan: "
              "count(*) over every wake-up row, what a scan would cost; idle: queries/s and "
              "CPU s/s of the whole process while nothing is due)")
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            print(f"\nSQLite (polling every 0.5 s), {args.due} due per size")
            print(header)
            for n in sizes:
                url = f"sqlite:///{Path(tmp) / f'timers{n}.db'}?synchronous=NORMAL"
                measure("SQLite", url, n, args.due, args.idle)
            print(legend)
    if args.only != "sqlite":
        with postgres_database("bench_timers") as db:
            print(f"\nPostgreSQL (LISTEN/NOTIFY), {args.due} due per size")
            print(header)
            for n in sizes:
                measure("PostgreSQL", f"{db}?schema=t{n}", n, args.due, args.idle)
            print(legend)


if __name__ == "__main__":
    sys.exit(main())
