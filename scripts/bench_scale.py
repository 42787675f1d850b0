"""Runner processes side by side on PostgreSQL: total steps/s against raw commits/s.

For P = 1, 2, 4 and 8 processes (``--procs``) this prints, as medians of ``--repeat`` rounds
(raw and runner alternate within each round), each process running for ``--seconds``
after all of them are ready (a barrier: start-up and imports are not timed):

* raw: each process makes one INSERT + commit per "step" into a bare table of the same
  database, on one connection of its own: the floor for P processes;
* runner: each process runs sync workflows of ``--steps`` trivial steps (``ctx.step``) again
  and again through its own ``Journal`` and ``Runner``;

and the ratio runner steps/s / raw commits/s per process count (issue 10: 0.54 / 0.63 / 0.42
/ 0.32 at 1 / 2 / 4 / 8 today; goal >= 0.6 at each).

PostgreSQL: a database of its own is created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
The code measured is the checkout at ``$JOURNAL_BENCH_ROOT`` (default: this script's
repository), put first on ``sys.path`` (in every child process too).

    python scripts/bench_scale.py [--procs 1,2,4,8] [--seconds 4] [--repeat 3] [--steps 100]
                                  [--quick]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from typing import Any

from benchlib import RawFloor, arg_parser, med, postgres_database, revision, trivial, use_checkout

ROOT = use_checkout(export=True)  # spawned children import the same code


# -- the children ----------------------------------------------------------------------------------


def child(kind: str, url: str, seconds: float, n_steps: int, barrier: Any, out: Any) -> None:
    """Get ready, wait for every sibling, then work for ``seconds``; put (steps, elapsed)."""
    try:
        if kind == "raw":
            floor = RawFloor(url, create=False)
            stream = uuid.uuid4()
            floor.commit(floor.key(stream), 0)
            barrier.wait()
            steps, t = 0, time.perf_counter()
            deadline = t + seconds
            while time.perf_counter() < deadline:
                floor.commits(n_steps, stream, steps)
                steps += n_steps
            elapsed = time.perf_counter() - t
            floor.close()
        else:
            from journal import Journal
            from runner import Context, Runner

            journal = Journal.open(url)
            runner = Runner(journal)

            @runner.workflow(name="steps")
            def steps_wf(ctx: Context, n: int) -> int:
                for _ in range(n):
                    ctx.step("step", trivial)
                return n

            runner.run("steps", 5)  # warm up: sessions, caches
            barrier.wait()
            steps, t = 0, time.perf_counter()
            deadline = t + seconds
            while time.perf_counter() < deadline:
                run = runner.run("steps", n_steps)
                assert run.status == "completed", run.status
                steps += n_steps
            elapsed = time.perf_counter() - t
            runner.close()
            journal.close()
        out.put((steps, elapsed, None))
    except BaseException as e:
        barrier.abort()
        out.put((0, 1.0, f"{type(e).__name__}: {e}"))


def measure(kind: str, url: str, procs: int, seconds: float, n_steps: int) -> float:
    """Total steps (or commits) per second of ``procs`` processes working at once."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    workers = [ctx.Process(target=child, args=(kind, url, seconds, n_steps, barrier, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    results: list[tuple[int, float, str | None]] = [
        out.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    errors = [e for _, _, e in results if e]
    if errors:
        raise RuntimeError(f"{kind} x{procs}: {errors[0]}")
    return float(sum(steps / elapsed for steps, elapsed, _ in results))


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps per workflow run")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement, 1 round")
    args = parser.parse_args()
    seconds, repeat = (2.0, 1) if args.quick else (args.seconds, args.repeat)
    counts = [int(p) for p in args.procs.split(",")]
    print(f"bench_scale: code from {revision(ROOT)}; {os.cpu_count()} cores")
    with postgres_database("bench_scale") as db:
        RawFloor(db).close()  # the floor's table, before any child races to create it
        url = f"{db}?schema=journal"
        from journal import Journal

        Journal.open(url).close()  # the schema, before any child races to create it
        results: dict[tuple[str, int], list[float]] = {}
        for r in range(repeat):
            for p in counts:
                kinds = ("raw", "runner") if r % 2 == 0 else ("runner", "raw")
                for kind in kinds:
                    results.setdefault((kind, p), []).append(
                        measure(kind, url, p, seconds, args.steps))
    print(f"\nPostgreSQL: P processes, {seconds:g} s each, workflows of {args.steps} steps; "
          f"median of {repeat} rounds (range in brackets)")
    print(f"  {'P':>3} {'raw commits/s':>15} {'runner steps/s':>22} {'ratio':>7}  per process")
    for p in counts:
        raw, ours = results[("raw", p)], results[("runner", p)]
        ratio = med(ours) / med(raw)
        ratios = [o / r for o, r in zip(ours, raw, strict=True)]
        print(f"  {p:>3} {med(raw):9.0f} [{min(raw):5.0f}-{max(raw):5.0f}] "
              f"{med(ours):9.0f} [{min(ours):5.0f}-{max(ours):5.0f}] {ratio:6.2f}x  "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; runner "
              f"{med(ours) / p:.0f}/s, raw {med(raw) / p:.0f}/s per process)")


if __name__ == "__main__":
    main()
