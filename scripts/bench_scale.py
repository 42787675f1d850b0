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

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("JOURNAL_BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))
os.environ["JOURNAL_BENCH_ROOT"] = str(ROOT)  # spawned children import the same code

import psycopg  # noqa: E402

from journal.storage.postgres import parse_postgres_url  # noqa: E402

ADMIN = os.environ.get("JOURNAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROW = os.urandom(60)  # about what one trivial event weighs


def trivial() -> None:
    """The step: nothing, so what is measured is the machinery around it."""


def med(values: list[float]) -> float:
    return statistics.median(values)


def revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        out = ""
    import journal

    where = Path(journal.__file__).resolve().parent.parent
    warning = "" if where == ROOT.resolve() else f"; WARNING: journal imported from {where}"
    return f"{ROOT} ({out[:70] or 'not a git checkout'}){warning}"


# -- the children ----------------------------------------------------------------------------------


def child(kind: str, url: str, seconds: float, n_steps: int, barrier: Any, out: Any) -> None:
    """Get ready, wait for every sibling, then work for ``seconds``; put (steps, elapsed)."""
    try:
        if kind == "raw":
            conn = psycopg.connect(_conninfo(url.partition("?")[0]), autocommit=True)
            stream = uuid.uuid4()
            sql = ("INSERT INTO public.bench_floor (stream, position, body) "
                   "VALUES (%s, %s, %s)")
            conn.execute(sql, (stream, 0, ROW), prepare=True)
            barrier.wait()
            steps, t = 0, time.perf_counter()
            deadline = t + seconds
            while time.perf_counter() < deadline:
                for _ in range(n_steps):
                    conn.execute(sql, (stream, steps, ROW), prepare=True)
                    steps += 1
            elapsed = time.perf_counter() - t
            conn.close()
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


# -- PostgreSQL database of our own ----------------------------------------------------------------


def _conninfo(url: str) -> str:
    p = parse_postgres_url(url)
    return (f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
            + (f" password={p['password']}" if p["password"] else ""))


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"bench_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_conninfo(ADMIN), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_conninfo(ADMIN), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps per workflow run")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement, 1 round")
    args = parser.parse_args()
    seconds, repeat = (2.0, 1) if args.quick else (args.seconds, args.repeat)
    counts = [int(p) for p in args.procs.split(",")]
    print(f"bench_scale: code from {revision()}; {os.cpu_count()} cores")
    with postgres_database() as db:
        with psycopg.connect(_conninfo(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.bench_floor (id bigserial PRIMARY KEY, "
                         "stream uuid, position int, body bytea)")
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
