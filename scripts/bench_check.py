"""How fast the pre-deploy check replays every open execution, against reading them.

Builds ``--executions`` (1,000) paused executions of about ``--events`` (50) events each (a
workflow of 24 trivial steps and a pause, written in bulk by ``journal.restore``), then
times, as medians of ``--repeat`` (3):

* ``runner.check()``: find the open executions, replay each against the code (dry: nothing
  written, no step code run);
* baselines of the same run: reading every event of the journal (``storage.read_log``) and
  reading + decoding + folding it (``journal.notifications`` into states): a check cannot be
  faster than the fold it needs; the rest is replay.

Goal (issue 12): 1,000 open executions of 50 events in under 10 s on this machine.

    python scripts/bench_check.py [--executions 1000] [--events 50] [--repeat 3]
        [--only sqlite|postgres]
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchlib import arg_parser, med, postgres_database, revision, trivial, use_checkout

ROOT = use_checkout(export=True)

from journal import (  # noqa: E402
    Event,
    ExecutionPaused,
    ExecutionStarted,
    Journal,
    StepCompleted,
    StepStarted,
    apply,
)
from journal.state import ExecutionState  # noqa: E402
from runner import Context, Runner  # noqa: E402


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="steps")
    def steps(ctx: Context, n: int) -> int:
        for i in range(n):
            ctx.step(f"s{i}", trivial)
        ctx.pause("review")
        return n

    return runner


def history(n_steps: int) -> list[Event]:
    eid, now = uuid.uuid4(), datetime.now(UTC)
    events: list[Event] = [ExecutionStarted(execution_id=eid, position=1, timestamp=now,
                                            workflow="steps", input={"n": n_steps})]
    for i in range(n_steps):
        events.append(StepStarted(execution_id=eid, position=len(events) + 1, timestamp=now,
                                  name=f"s{i}", seq=i + 1))
        events.append(StepCompleted(execution_id=eid, position=len(events) + 1,
                                    timestamp=now, seq=i + 1))
    events.append(ExecutionPaused(execution_id=eid, position=len(events) + 1, timestamp=now,
                                  reason="review"))
    return events


def measure(title: str, url: str, executions: int, events: int, repeat: int) -> None:
    n_steps = max(1, (events - 2) // 2)
    with Journal.open(url) as journal, make_runner(journal) as runner:
        t = time.perf_counter()
        for _ in range(executions):
            journal.restore(history(n_steps))
        built = time.perf_counter() - t
        total = executions * (2 * n_steps + 2)
        checks, reads, folds = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            results = runner.check()
            checks.append(time.perf_counter() - t)
            assert len(results) == executions and all(r.ok for r in results)
            t = time.perf_counter()
            after = 0
            while page := journal.storage.read_log(after, 5000):
                after = page[-1][0]
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            states: dict[uuid.UUID, ExecutionState] = {}
            after = 0
            while page2 := journal.notifications(after=after, limit=5000):
                for nid, event in page2:
                    after = nid
                    state = states.setdefault(event.execution_id,
                                              ExecutionState(execution_id=event.execution_id))
                    apply(state, event)
            folds.append(time.perf_counter() - t)
        c, r, f = med(checks), med(reads), med(folds)
        print(f"  {title:<22} {executions:>6} x {2 * n_steps + 2:>3} ev  built {built:5.1f}s  "
              f"check {c:6.2f}s = {executions / c:8.0f} exec/s {total / c:9.0f} ev/s  "
              f"read {r:5.2f}s  read+fold {f:5.2f}s  check/fold {c / f:4.1f}x")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    print(f"bench_check: code from {revision(ROOT)}")
    print("(goal: 1,000 open executions of 50 events in under 10 s)")
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            measure("SQLite", f"sqlite:///{Path(tmp) / 'check.db'}", args.executions,
                    args.events, args.repeat)
    if args.only != "sqlite":
        with postgres_database("bench_check") as db:
            measure("PostgreSQL", f"{db}?schema=check", args.executions, args.events,
                    args.repeat)


if __name__ == "__main__":
    sys.exit(main())
