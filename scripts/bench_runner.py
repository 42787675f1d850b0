"""What a journaled step costs, against the physical floor and against DBOS and LangGraph.

For a workflow of ``--steps`` trivial steps (default 1,000) this prints, as medians of
``--repeat`` runs, on SQLite (synchronous=FULL, the default, and NORMAL) and PostgreSQL:

* per-step overhead in µs: (journaled run - the same calls made plainly) / steps;
* the floor: one raw INSERT + commit per step into a bare table, same database, same setting;
* the same workflow on DBOS (``@DBOS.step`` in a ``@DBOS.workflow``) and on LangGraph (one
  node per step, SqliteSaver / PostgresSaver), each in its own process, if installed
  (``pip install -e '.[bench]'``); otherwise the row says "not installed";
* resume (replay) time of a 1,000-step and of a 10,000-event execution;
* stored bytes per step after 100 and after 1,000 steps.

PostgreSQL: a database of its own is created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).

    python scripts/bench_runner.py [--steps 1000] [--repeat 5] [--only sqlite|postgres]

Measured here (2 cores, shared disk whose fsync latency drifts 2-5x between runs; medians of 5
runs of 1,000 steps, floor and runner interleaved run by run), µs per step:

    backend                 floor   journal alone   runner (ratio)   DBOS    LangGraph
    SQLite FULL               323             500      507 (1.57x)   2334         3639
    SQLite NORMAL              41             106      101 (2.48x)      -            -
    PostgreSQL            163-294         445-607  539-602 (2.0-3.3x)  1956-2651  5167-5280
    memory (CPU only)           -              16       20

The runner commits once per step (the completion rides with the next StepStarted), so its
own share over the journal's commit is within noise (about 4 µs of CPU per step); the gap to
the floor is the journal's append path. Resume (replay) of a 1,000-step execution: 12-19 ms;
of a 10,000-event execution: 57-62 ms, of which reading and folding the stream is 44-58 ms.
Stored: 226-230 bytes of event per step at 100 and at 1,000 steps (SQLite file growth
369-414 B/step); DBOS 250-331 B/step; LangGraph 9 KB/step at 100 steps, 73 KB at 1,000.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchlib import REPO, RawFloor, arg_parser, med, postgres_database, trivial, use_checkout

use_checkout(REPO)  # this repository only: no $JOURNAL_BENCH_ROOT here

from journal import Journal  # noqa: E402
from runner import Context, Runner  # noqa: E402

# -- plain calls and the runner --------------------------------------------------------------------


def plain(n: int) -> float:
    """Seconds for ``n`` plain calls of the step function, in the same loop shape."""
    def workflow(ctx: object, n: int) -> int:
        for _ in range(n):
            trivial()
        return n

    t = time.perf_counter()
    workflow(None, n)
    return time.perf_counter() - t


def _bench_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="bench")
    def bench(ctx: Context, n: int) -> int:
        for _ in range(n):
            ctx.step("step", trivial)
        return n

    @runner.workflow(name="bench_then_pause")
    def bench_then_pause(ctx: Context, n: int) -> int:
        for _ in range(n):
            ctx.step("step", trivial)
        ctx.pause("wait")
        return n

    return runner


class Ours:
    """Journaled runs on one journal: the runner, and the journal alone with the same commits."""

    def __init__(self, url: str) -> None:
        self.journal = Journal.open(url)
        self.runner = _bench_runner(self.journal)
        self.runner.run("bench", 10)  # warm up: schema, connections, caches

    def run(self, n: int) -> float:
        """Seconds for one workflow run of ``n`` steps (a fresh execution)."""
        gc.collect()
        t = time.perf_counter()
        run = self.runner.run("bench", n)
        elapsed = time.perf_counter() - t
        assert run.status == "completed"
        return elapsed

    def journal_only(self, n: int) -> float:
        """Seconds for the runner's commit pattern through the journal API alone: start, then
        per step one atomic() commit of the previous completion with the next start."""
        gc.collect()
        t = time.perf_counter()
        handle = self.journal.start("bench", {"n": n})
        seq = handle.step_started("step")
        for _ in range(n - 1):
            with handle.atomic():
                handle.step_completed(seq, None)
                seq = handle.step_started("step")
        with handle.atomic():
            handle.step_completed(seq, None)
            handle.completed(n)
        return time.perf_counter() - t

    def close(self) -> None:
        self.runner.close()
        self.journal.close()


def replay(url: str, steps: int, repeat: int) -> dict[str, float]:
    """Resume of an execution of ``steps`` steps then a pause: the whole resume (replay of
    every step, plus the two commits it makes) and, within it, reading + folding the stream."""
    resumes, reads, events = [], [], 0
    with Journal.open(url) as journal, _bench_runner(journal) as runner:
        for _ in range(repeat):
            run = runner.run("bench_then_pause", steps)
            gc.collect()
            t = time.perf_counter()
            state = journal.state(run.id)
            reads.append(time.perf_counter() - t)
            events = state.position
            del state
            gc.collect()
            t = time.perf_counter()
            done = runner.resume(run.id, None)
            resumes.append(time.perf_counter() - t)
            assert done.status == "completed"
    return {"events": events, "resume": med(resumes), "read_fold": med(reads)}


def stored_bytes(url: str, n: int) -> float:
    """Bytes of stored events per step for a run of ``n`` steps (state + topic + keys)."""
    with Journal.open(url) as journal, _bench_runner(journal) as runner:
        run = runner.run("bench", n)
        total = sum(len(state) + len(topic) + 16 + 8
                    for _, topic, state in journal.storage.read_stream(run.id))
    return total / n


# -- DBOS and LangGraph, each in a process of its own ----------------------------------------------


def child_dbos(url: str, n: int, repeat: int) -> dict[str, Any]:
    from dbos import DBOS

    DBOS(config={"name": "bench_runner", "system_database_url": url, "log_level": "ERROR",
                 "run_admin_server": False})  # type: ignore[typeddict-unknown-key]

    @DBOS.step()
    def step() -> None:
        return None

    @DBOS.workflow()
    def workflow(n: int) -> int:
        for _ in range(n):
            step()
        return n

    DBOS.launch()
    workflow(10)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        workflow(n)
        times.append(time.perf_counter() - t)
    DBOS.destroy()
    return {"times": times}


def child_langgraph(url: str, n: int, repeat: int) -> dict[str, Any]:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        i: int

    def node(state: State) -> dict[str, int]:
        return {"i": state["i"] + 1}

    graph = StateGraph(State)
    for k in range(n):
        graph.add_node(f"n{k}", node)
    graph.add_edge(START, "n0")
    for k in range(n - 1):
        graph.add_edge(f"n{k}", f"n{k + 1}")
    graph.add_edge(f"n{n - 1}", END)

    @contextmanager
    def saver() -> Iterator[Any]:
        if url.startswith("sqlite"):
            from langgraph.checkpoint.sqlite import SqliteSaver

            conn = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
            try:
                yield SqliteSaver(conn)
            finally:
                conn.close()
        else:
            from langgraph.checkpoint.postgres import PostgresSaver

            with PostgresSaver.from_conn_string(url) as cp:
                cp.setup()
                yield cp

    times = []
    with saver() as checkpointer:
        app = graph.compile(checkpointer=checkpointer)
        config: Any = {"recursion_limit": n + 10}
        for _ in range(repeat):
            tid = uuid.uuid4().hex
            t = time.perf_counter()
            out = app.invoke({"i": 0}, {**config, "configurable": {"thread_id": tid}})
            times.append(time.perf_counter() - t)
            assert out["i"] == n
    return {"times": times}


def sqlite_growth(kind: str, n: int) -> float:
    """Bytes per step a SQLite file grows by for one run of ``n`` steps (vacuumed)."""
    sizes = []
    for steps in (1, n):
        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/g.db"
            if kind == "ours":
                url = f"sqlite:///{path}"
                with Journal.open(url) as journal, _bench_runner(journal) as runner:
                    runner.run("bench", steps)
            else:
                run_child(kind, f"sqlite:///{path}", steps, 1)
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            sizes.append(conn.execute("PRAGMA page_count").fetchone()[0] * page_size)
            conn.close()
    return (sizes[1] - sizes[0]) / (n - 1)


def installed(kind: str) -> bool:
    module = {"dbos": "dbos", "langgraph": "langgraph.checkpoint.sqlite"}[kind]
    try:
        __import__(module)
    except ImportError:
        return False
    if kind == "langgraph":
        try:
            __import__("langgraph.checkpoint.postgres")
        except ImportError:
            return False
    return True


def run_child(kind: str, url: str, n: int, repeat: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--steps", str(n),
         "--repeat", str(repeat)],
        capture_output=True, text=True, timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the report ------------------------------------------------------------------------------------


def us_per_step(times: list[float], n: int, base: float = 0.0) -> float:
    return (med(times) - base) / n * 1e6


def line(label: str, value: float | str, floor: float | None = None, extra: str = "") -> None:
    if isinstance(value, str):
        print(f"  {label:<44} {value}")
        return
    ratio = f"{value / floor:6.2f}x floor" if floor else ""
    print(f"  {label:<44} {value:9.1f} µs/step  {ratio} {extra}")


def bench_backend(title: str, url: str, floor: RawFloor, n: int,
                  repeat: int, others: dict[str, str | None]) -> None:
    """Floor, journal alone and runner interleaved run by run (disks drift), then the others."""
    ours = Ours(url)
    times: dict[str, list[float]] = {"floor": [], "journal": [], "runner": [], "plain": []}
    try:
        for _ in range(repeat):
            times["floor"].append(floor.commits(n))
            times["journal"].append(ours.journal_only(n))
            times["runner"].append(ours.run(n))
            times["plain"].append(plain(n))
    finally:
        ours.close()
        floor.close()
    base = med(times["plain"])
    floor_us = us_per_step(times["floor"], n)
    runner_us = us_per_step(times["runner"], n, base)
    print(f"\n{title}")
    line("plain calls (baseline)", base / n * 1e6)
    line("floor: raw INSERT + commit per step", floor_us, floor_us)
    line("journal API alone, same commits", us_per_step(times["journal"], n), floor_us)
    line("runner: per-step overhead", runner_us, floor_us,
         f"(runner's own share: {runner_us - us_per_step(times['journal'], n):+.1f} µs)")
    for kind, other_url in others.items():
        label = {"dbos": "DBOS @DBOS.step", "langgraph": "LangGraph node"}[kind]
        if other_url is None:
            line(label, "not installed")
            continue
        try:
            result = run_child(kind, other_url, n, repeat)
        except Exception as e:
            line(label, f"failed: {e}"[:300])
            continue
        theirs = us_per_step(result["times"], n)
        line(label, theirs, floor_us, f"(runner {theirs / runner_us:.1f}x cheaper)")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--child", choices=["dbos", "langgraph"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n, repeat = args.steps, args.repeat
    if args.child:
        fn: Callable[[str, int, int], dict[str, Any]] = (
            child_dbos if args.child == "dbos" else child_langgraph
        )
        print(json.dumps(fn(args.url, n, repeat)))
        return

    have = {kind: installed(kind) for kind in ("dbos", "langgraph")}
    print(f"bench_runner: {n} trivial steps, median of {repeat} runs; "
          + ", ".join(f"{k} {'installed' if v else 'not installed'}" for k, v in have.items()))
    ours = Ours("memory:")
    cpu = {"journal": [ours.journal_only(n) for _ in range(repeat)],
           "runner": [ours.run(n) for _ in range(repeat)]}
    ours.close()
    print("\nmemory: (no I/O: the CPU cost of the code alone)")
    line("journal API alone, same calls", us_per_step(cpu["journal"], n))
    line("runner (workflow, replay bookkeeping, journal)", us_per_step(cpu["runner"], n))
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            for sync in ("FULL", "NORMAL"):
                suffix = "" if sync == "FULL" else "?synchronous=NORMAL"
                url = f"sqlite:///{tmp}/ours_{sync}.db{suffix}"
                floor = RawFloor(f"sqlite:///{tmp}/floor_{sync}.db?synchronous={sync}")
                others: dict[str, str | None] = {}
                if sync == "FULL":  # DBOS and LangGraph use SQLite's default, FULL
                    others = {k: (f"sqlite:///{tmp}/{k}.db" if have[k] else None)
                              for k in have}
                bench_backend(f"SQLite, synchronous={sync}", url, floor, n, repeat, others)
            url = f"sqlite:///{tmp}/replay.db"
            print_replay_and_bytes("SQLite", url, n, repeat, have)
        if args.only in (None, "postgres"):
            with postgres_database("bench_runner") as db:
                others = {k: (db if have[k] else None) for k in have}
                bench_backend("PostgreSQL", f"{db}?schema=journal", RawFloor(db),
                              n, repeat, others)
                print_replay_and_bytes("PostgreSQL", f"{db}?schema=replay", n, repeat, None)


def print_replay_and_bytes(title: str, url: str, n: int, repeat: int,
                           have: dict[str, bool] | None) -> None:
    print(f"\n{title}: resume = replay")
    for steps in (n, 4999):
        r = replay(url, steps, repeat)
        print(f"  {steps:>5} steps ({int(r['events']):>5} events): resume "
              f"{r['resume'] * 1000:7.1f} ms  (read + fold {r['read_fold'] * 1000:6.1f} ms)")
    print(f"{title}: stored bytes per step")
    small, large = stored_bytes(url, 100), stored_bytes(url, n)
    print(f"  runner events: {small:7.1f} B/step at 100 steps, {large:7.1f} at {n}")
    if have is None:
        return
    for kind in ("ours", "dbos", "langgraph"):
        if kind != "ours" and not have[kind]:
            print(f"  {kind}: not installed")
            continue
        try:
            sizes = [sqlite_growth(kind, steps) for steps in (100, n)]
        except Exception as e:
            print(f"  {kind}: failed: {e}"[:300])
            continue
        print(f"  {kind:<9} SQLite file growth: {sizes[0]:9.0f} B/step at 100 steps, "
              f"{sizes[1]:9.0f} at {n}")


if __name__ == "__main__":
    main()
