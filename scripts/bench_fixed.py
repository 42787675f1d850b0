"""The fixed cost of one run: a 3-step workflow end to end against 4 and 5 raw commits.

For SQLite (synchronous=FULL, the default, and NORMAL) and PostgreSQL this prints, as
medians of ``--runs`` runs, interleaved run by run (disks drift):

* ``runner.run(wf)`` of a workflow of 3 trivial steps, from the call to ``completed``;
* the same with a fresh ``idempotency_key`` each run (the lease is taken with a wait, and
  ExecutionStarted carries the key);
* the floor: 4 and 5 raw INSERT + commit into a bare table in the same database (the ideal
  3-step run is one commit per step plus the start, or plus the start and the end);
* for reference: taking and releasing one execution's lease alone, and one raw commit;

and the ratios runner / 4 raw commits and runner / 5 raw commits (issue 10: 2.8x today,
goal <= 1.5x against 4).

PostgreSQL: a database of its own is created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
The code measured is the checkout at ``$JOURNAL_BENCH_ROOT`` (default: this script's
repository), put first on ``sys.path``, so the same script measures an older checkout.

    python scripts/bench_fixed.py [--runs 200] [--only sqlite|postgres] [--quick]
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchlib import RawFloor, arg_parser, med, postgres_database, revision, trivial, use_checkout

ROOT = use_checkout()

from journal import Journal  # noqa: E402
from runner import Context, Runner  # noqa: E402

# -- the runner ------------------------------------------------------------------------------------


class Ours:
    def __init__(self, url: str) -> None:
        self.journal = Journal.open(url)
        self.runner = Runner(self.journal)

        @self.runner.workflow(name="three")
        def three(ctx: Context) -> int:
            ctx.step("a", trivial)
            ctx.step("b", trivial)
            ctx.step("c", trivial)
            return 3

        for _ in range(10):  # warm up: schema, sessions, caches
            self.run()
            self.run(idempotent=True)

    def run(self, *, idempotent: bool = False) -> float:
        key = uuid.uuid4().hex if idempotent else None
        t = time.perf_counter()
        run = self.runner.run("three", idempotency_key=key)
        elapsed = time.perf_counter() - t
        assert run.status == "completed", run.status
        return elapsed

    def lease(self) -> float:
        eid = uuid.uuid4()
        t = time.perf_counter()
        lease = self.journal.lease(eid)
        assert lease is not None
        lease.release()
        return time.perf_counter() - t

    def close(self) -> None:
        self.runner.close()
        self.journal.close()


def bench_backend(title: str, url: str, runs: int) -> None:
    ours, floor = Ours(url), RawFloor(url)
    floor.commits(20)
    names = ("raw1", "raw4", "raw5", "run", "run_key", "lease")
    times: dict[str, list[float]] = {k: [] for k in names}
    measure: dict[str, Callable[[], float]] = {
        "raw1": lambda: floor.commits(1),
        "raw4": lambda: floor.commits(4),
        "raw5": lambda: floor.commits(5),
        "run": lambda: ours.run(),
        "run_key": lambda: ours.run(idempotent=True),
        "lease": ours.lease,
    }
    gc.collect()
    gc.disable()  # a collection in the middle of one run is noise of its own
    try:
        for i in range(runs):
            order = names if i % 2 == 0 else tuple(reversed(names))
            for name in order:
                times[name].append(measure[name]())
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()
        ours.close()
        floor.close()
    m = {k: med(v) * 1e3 for k, v in times.items()}
    q = {k: statistics.quantiles(v, n=10) for k, v in times.items()}
    print(f"\n{title} (median of {runs} runs, interleaved; p10-p90 in brackets)")

    def row(label: str, key: str, extra: str = "") -> None:
        lo, hi = q[key][0] * 1e3, q[key][-1] * 1e3
        print(f"  {label:<46} {m[key]:8.3f} ms  [{lo:7.3f}-{hi:7.3f}] {extra}")

    row("1 raw commit", "raw1")
    row("4 raw commits (baseline)", "raw4")
    row("5 raw commits (baseline)", "raw5")
    row("3-step workflow, run() to completed", "run",
        f"{m['run'] / m['raw4']:5.2f}x 4 raw, {m['run'] / m['raw5']:5.2f}x 5 raw")
    row("  the same with an idempotency key", "run_key",
        f"{m['run_key'] / m['raw4']:5.2f}x 4 raw, {m['run_key'] / m['raw5']:5.2f}x 5 raw")
    row("lease take + release alone (reference)", "lease",
        f"{m['lease'] / m['raw1']:5.2f}x 1 raw commit")
    print(f"  run() costs {m['run'] / m['raw1']:.1f} raw commits "
          f"({m['run_key'] / m['raw1']:.1f} with a key)")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--quick", action="store_true", help="30 runs per configuration")
    args = parser.parse_args()
    runs = 30 if args.quick else args.runs
    print(f"bench_fixed: code from {revision(ROOT)}")
    backends: list[tuple[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            backends += [("SQLite, synchronous=FULL", f"sqlite:///{tmp}/full.db"),
                         ("SQLite, synchronous=NORMAL",
                          f"sqlite:///{tmp}/normal.db?synchronous=NORMAL")]
        for title, url in backends:
            bench_backend(title, url, runs)
        if args.only in (None, "postgres"):
            with postgres_database("bench_fixed") as db:
                bench_backend("PostgreSQL", f"{db}?schema=journal", runs)


if __name__ == "__main__":
    main()
