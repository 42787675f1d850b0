"""Async workflows on one event loop: how late the loop runs, and steps/s, against baselines.

For SQLite (synchronous=FULL and NORMAL) and PostgreSQL, with K = 1, 10 and 100 concurrent
tasks on one event loop, each running for ``--seconds``, this prints medians over
``--repeat`` rounds (the modes alternate within each round):

* ``plain``: each task awaits the trivial async step (``await asyncio.sleep(0)``) plainly,
  no journal: the loop's own lag and speed;
* ``raw/thread``: the same, plus one raw INSERT + commit per step into a bare table run in a
  worker thread (``asyncio.to_thread``, one connection per thread): the floor for a journal
  that never commits on the loop thread;
* ``raw/loop``: the same raw commit made on the loop thread (blocking it, as a journal
  committing on the loop does): the floor of that shape;
* ``journal``: each task runs workflows of ``--steps`` such steps (``await ctx.step``) again
  and again with ``runner.arun``;

each with the loop lag (a ticker task sleeps 1 ms and records how late it wakes; p50 and
p99) and the total steps/s; the ratios are journal / raw-thread and journal / raw-loop.

Then the starvation check: one workflow of async steps that never suspend
(``async def step(): return 1``) runs for ``--seconds`` (a timer thread tells it to stop:
nothing on the loop could), beside a task doing ``await asyncio.sleep(0.05)`` over and over.
That task's wake-ups and worst lateness are reported; "starved" when it did not wake once
while the workflow ran. Baselines: the same non-suspending steps called plainly (which starve
the loop too: a coroutine that never suspends never yields), and plainly with an
``await asyncio.sleep(0)`` between steps (what "yield between steps" costs).

Issue 10's figures: 100 workflows on PostgreSQL, lag p99 279 ms and ~1.8k steps/s today; goal
< 10 ms and at least 2x the steps/s.

PostgreSQL: a database of its own is created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
The code measured is the checkout at ``$JOURNAL_BENCH_ROOT`` (default: this script's
repository), put first on ``sys.path``.

    python scripts/bench_async.py [--seconds 3] [--repeat 3] [--steps 20] [--tasks 1,10,100]
                                  [--only sqlite|postgres] [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

from benchlib import RawFloor, arg_parser, med, postgres_database, revision, use_checkout

ROOT = use_checkout()

from journal import Journal  # noqa: E402
from runner import AsyncContext, Runner  # noqa: E402

TICK = 0.001
SLEEP = 0.05
#: Set by a timer thread: the non-suspending workflow's only way to learn its time is up.
STOP = threading.Event()


async def suspending_step() -> int:
    """The trivial async step: it suspends once, as any real awaited I/O would."""
    await asyncio.sleep(0)
    return 1


async def never_suspends() -> int:
    return 1


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# -- raw commits from worker threads ---------------------------------------------------------------


class RawCommits:
    """One INSERT + commit of one row, on a floor (a connection) of the calling thread's own."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self.url = url.replace(".db", "_floor.db") if self.sqlite else url
        self.stream: uuid.UUID | str = "s" if self.sqlite else uuid.UUID(int=0)
        self.local = threading.local()
        self.floors: list[RawFloor] = []
        self.lock = threading.Lock()
        self._floor(create=True)

    def _floor(self, *, create: bool = False) -> RawFloor:
        floor = RawFloor(self.url, create=create)
        with self.lock:
            self.floors.append(floor)
        self.local.floor = floor
        return floor

    def commit(self) -> None:
        floor = getattr(self.local, "floor", None) or self._floor()
        floor.commit(self.stream, 0)

    def close(self) -> None:
        for floor in self.floors:
            floor.close()


# -- one measured round ----------------------------------------------------------------------------


async def _ticker(lags: list[float], done: asyncio.Event) -> None:
    while not done.is_set():
        t = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - t - TICK)


async def _measure(k: int, seconds: float,
                   work: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """Run ``k`` tasks, each calling ``work()`` (which returns steps done) until the time is
    up, beside the ticker; steps/s and lag quantiles."""
    lags: list[float] = []
    done = asyncio.Event()
    steps = [0] * k
    deadline = time.perf_counter() + seconds

    async def task(i: int) -> None:
        while time.perf_counter() < deadline:
            steps[i] += await work()

    ticker = asyncio.create_task(_ticker(lags, done))
    await asyncio.sleep(0.01)  # the ticker is going before the load starts
    lags.clear()
    t = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(k)))
    elapsed = time.perf_counter() - t
    done.set()
    await ticker
    return {"steps_s": sum(steps) / elapsed, "p50": pct(lags, 50) * 1e3,
            "p99": pct(lags, 99) * 1e3, "max": max(lags, default=0.0) * 1e3,
            "ticks": float(len(lags))}


def bench_backend(title: str, url: str, tasks: list[int], seconds: float, repeat: int,
                  n_steps: int) -> None:
    journal = Journal.open(url)
    runner = Runner(journal)

    @runner.workflow(name="async_steps")
    async def async_steps(ctx: AsyncContext, n: int) -> int:
        for _ in range(n):
            await ctx.step("step", suspending_step)
        return n

    raw = RawCommits(url)

    async def plain() -> int:
        for _ in range(n_steps):
            await suspending_step()
        return n_steps

    async def raw_thread() -> int:
        for _ in range(n_steps):
            await suspending_step()
            await asyncio.to_thread(raw.commit)
        return n_steps

    async def raw_loop() -> int:
        for _ in range(n_steps):
            await suspending_step()
            raw.commit()
        return n_steps

    async def journaled() -> int:
        run = await runner.arun("async_steps", n_steps)
        assert run.status == "completed", run.status
        return n_steps

    modes: dict[str, Callable[[], Awaitable[int]]] = {
        "plain": plain, "raw/thread": raw_thread, "raw/loop": raw_loop, "journal": journaled,
    }

    async def rounds() -> dict[tuple[int, str], list[dict[str, float]]]:
        await _measure(1, 0.3, journaled)  # warm up: schema, sessions, caches
        await _measure(2, 0.3, raw_thread)
        out: dict[tuple[int, str], list[dict[str, float]]] = {}
        for r in range(repeat):
            for k in tasks:
                names = list(modes) if r % 2 == 0 else list(reversed(modes))
                for name in names:
                    gc.collect()
                    out.setdefault((k, name), []).append(
                        await _measure(k, seconds, modes[name]))
        return out

    try:
        results = asyncio.run(rounds())
    finally:
        runner.close()
        journal.close()
        raw.close()
    print(f"\n{title}: K tasks on one loop, {seconds:g} s each, median of {repeat} rounds "
          f"(journal: workflows of {n_steps} steps; spread of p99 over rounds in brackets)")
    print(f"  {'K':>4} {'mode':<11} {'lag p50':>9} {'lag p99':>9} {'p99 range':>17} "
          f"{'steps/s':>10}   journal vs raw")
    for k in tasks:
        summary: dict[str, dict[str, float]] = {}
        for name in modes:
            rs = results[(k, name)]
            summary[name] = {f: med([x[f] for x in rs]) for f in ("steps_s", "p50", "p99")}
            lo, hi = min(x["p99"] for x in rs), max(x["p99"] for x in rs)
            s = summary[name]
            extra = ""
            if name == "journal":
                base, blocking = summary["raw/thread"], summary["raw/loop"]
                extra = (f"   steps/s {s['steps_s'] / base['steps_s']:5.2f}x thread "
                         f"{s['steps_s'] / blocking['steps_s']:5.2f}x loop, "
                         f"lag p99 {s['p99'] / max(base['p99'], 1e-3):6.1f}x thread")
            print(f"  {k:>4} {name:<11} {s['p50']:7.2f}ms {s['p99']:7.2f}ms "
                  f"[{lo:6.1f}-{hi:7.1f}ms] {s['steps_s']:10.0f}{extra}")


# -- starvation ------------------------------------------------------------------------------------


def starvation(title: str, url: str, seconds: float, repeat: int) -> None:
    journal = Journal.open(url)
    runner = Runner(journal)

    @runner.workflow(name="no_suspend")
    async def no_suspend(ctx: AsyncContext, cap: int) -> int:
        n = 0
        while not STOP.is_set() and n < cap:
            await ctx.step("step", never_suspends)
            n += 1
        return n

    async def plain(cap: int) -> int:
        n = 0
        while not STOP.is_set() and n < cap:
            await never_suspends()
            n += 1
        return n

    async def plain_yielding(cap: int) -> int:
        n = 0
        while not STOP.is_set() and n < cap:
            await never_suspends()
            await asyncio.sleep(0)
            n += 1
        return n

    async def journaled(cap: int) -> int:
        run = await runner.arun("no_suspend", cap)
        assert run.status == "completed", run.status
        out: int = run.output
        return out

    async def one(work: Callable[[int], Awaitable[int]]) -> dict[str, float]:
        STOP.clear()
        lateness: list[float] = []
        ended = asyncio.Event()

        async def sleeper() -> None:
            while not ended.is_set():
                t = time.perf_counter()
                await asyncio.sleep(SLEEP)
                lateness.append(time.perf_counter() - t - SLEEP)

        sleeping = asyncio.create_task(sleeper())
        await asyncio.sleep(0.06)
        lateness.clear()
        timer = threading.Timer(seconds, STOP.set)
        timer.start()
        t = time.perf_counter()
        steps = await work(10_000_000)
        elapsed = time.perf_counter() - t
        during = len(lateness)  # the sleeper's wake-ups while the workflow ran
        timer.cancel()
        ended.set()
        await sleeping
        return {"steps_s": steps / elapsed, "wakeups": during, "elapsed": elapsed,
                "worst": max(lateness, default=float("nan")) * 1e3,
                "p50": pct(lateness, 50) * 1e3}

    modes: dict[str, Callable[[int], Awaitable[int]]] = {
        "plain": plain, "plain + sleep(0)": plain_yielding, "journal": journaled,
    }

    async def rounds() -> dict[str, list[dict[str, float]]]:
        out: dict[str, list[dict[str, float]]] = {}
        for _ in range(repeat):
            for name, work in modes.items():
                out.setdefault(name, []).append(await one(work))
        return out

    # A watchdog: should the run hang in spite of the timer, say so and leave.
    finished = threading.Event()

    def watchdog() -> None:
        if not finished.wait(seconds * repeat * len(modes) * 5 + 60):
            print(f"  {title}: the starvation check hung (watchdog); giving up", flush=True)
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        results = asyncio.run(rounds())
    finally:
        finished.set()
        runner.close()
        journal.close()
    expected = seconds / SLEEP
    print(f"\n{title}: steps that never suspend, {seconds:g} s, beside a task sleeping "
          f"{SLEEP * 1e3:.0f} ms again and again (~{expected:.0f} wake-ups if never late); "
          f"median of {repeat}")
    for name in modes:
        rs = results[name]
        wakeups = med([x["wakeups"] for x in rs])
        worst = med([x["worst"] for x in rs])
        starved = sum(x["worst"] >= 500 * x["elapsed"] for x in rs)  # late half the run
        verdict = (f"starved in {starved} of {len(rs)} ({wakeups:.0f} wake-ups)" if starved
                   else f"{wakeups:.0f} wake-ups, lateness p50 "
                   f"{med([x['p50'] for x in rs]):.1f} ms")
        print(f"  {name:<17} {med([x['steps_s'] for x in rs]):10.0f} steps/s   sleeper: "
              f"{verdict}; worst {worst:8.1f} ms late")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="steps per journaled workflow")
    parser.add_argument("--tasks", default="1,10,100")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--skip-starvation", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 s per mode, 1 round")
    args = parser.parse_args()
    seconds, repeat = (1.0, 1) if args.quick else (args.seconds, args.repeat)
    tasks = [int(k) for k in args.tasks.split(",")]
    print(f"bench_async: code from {revision(ROOT)}")
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str]] = []
        if args.only in (None, "sqlite"):
            backends += [("SQLite, synchronous=FULL", f"sqlite:///{tmp}/full.db"),
                         ("SQLite, synchronous=NORMAL",
                          f"sqlite:///{tmp}/normal.db?synchronous=NORMAL")]
        for title, url in backends:
            bench_backend(title, url, tasks, seconds, repeat, args.steps)
            if not args.skip_starvation:
                starvation(title, url.replace(".db", "_starve.db"), seconds, repeat)
        if args.only in (None, "postgres"):
            with postgres_database("bench_async") as db:
                bench_backend("PostgreSQL", f"{db}?schema=journal", tasks, seconds, repeat,
                              args.steps)
                if not args.skip_starvation:
                    starvation("PostgreSQL", f"{db}?schema=starve", seconds, repeat)


if __name__ == "__main__":
    main()
