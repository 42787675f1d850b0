"""What a resume costs as histories grow: one long history, and an agent loop of many pauses.

(a) Long history. For executions of ``--events`` events (default 10k, 100k and 1,000,000: a
workflow of N trivial steps, then a pause), written in bulk (``--build restore``, the
default: ``journal.restore(events)``, the archive import, under the journal's own policy;
``--build append``: the storage's ``append`` in batches of encoded events, faster, bypassing
whatever the journal keeps beside its events; ``--build run``: the workflow run live,
slowest), this prints, as medians of ``--repeat`` resumes:

* ``runner.resume(id, value)`` until it returns (the workflow then pauses again, so each
  resume meets the same history plus 3 events; each on a freshly opened journal, so no
  in-process cache carries over);
* what it is made of: ``storage.read_stream`` (read), ``journal.events`` (read + decode),
  ``journal.state`` (read + decode + fold); the rest of the resume is replay bookkeeping and
  its 2-3 commits;
* baselines measured in the same run: the resume of a tiny execution (0 steps, a pause: what
  an O(1) resume would cost whatever the length) and a raw read of as many 60-byte rows from
  a bare table of the same database (the floor for any resume that reads everything);
* peak RSS of a fresh process doing nothing but that resume (its VmHWM, which is what
  ``getrusage`` maxrss means to say: see ``peak_rss_kb``), beside the same process's peak
  before the resume (interpreter, imports, an open and warmed journal).

Every timed resume (and every fresh process) is on a journal opened for it, first warmed
by resuming another, tiny, execution: connecting to the database is not counted, and no
in-process cache about the resumed execution carries over.

(b) Agent loop. One workflow of S steps (``--agent-steps``, default 1,000 and 10,000) that
pauses every ``--every`` (10) steps, driven by a loop of ``resume`` calls: total time spent in
``resume`` (sum), total wall time, the first and last resumes, against baselines of the same
run: the same S steps in one ``run()`` without pauses, and (S / every) resumes of a tiny
execution (what a loop that stays linear would spend resuming).

Issue 10's figures (today / goal): resume of 1,000,000 events 4.1 s / < 50 ms and 700-800 MB
/ < 100 MB peak RSS; agent loop of 10,000 steps pausing every 10: ~29 s / < 5 s total resume.

PostgreSQL: a database of its own is created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
The code measured is the checkout at ``$JOURNAL_BENCH_ROOT`` (default: this script's
repository), put first on ``sys.path`` (in the child processes too).

    python scripts/bench_resume.py [--events 10000,100000,1000000] [--agent-steps 1000,10000]
        [--every 10] [--repeat 3] [--build restore|append|run] [--only sqlite|postgres]
        [--sqlite FULL,NORMAL] [--profile] [--quick]

``--quick`` (under a minute): 10k and 100k events, an agent loop of 1,000 steps, 2 resumes.
``--profile``: also a cProfile of the fresh process's resume of the largest history.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from benchlib import (
    ROW,
    arg_parser,
    conninfo,
    med,
    postgres_database,
    revision,
    trivial,
    use_checkout,
)

ROOT = use_checkout(export=True)  # child processes import the same code

import psycopg  # noqa: E402

from journal import Journal  # noqa: E402
from journal.encoding import encode_event  # noqa: E402
from journal.events import (  # noqa: E402
    Event,
    ExecutionClaimed,
    ExecutionPaused,
    ExecutionStarted,
    StepCompleted,
    StepStarted,
)
from runner import Context, Runner  # noqa: E402

BATCH = 20_000  # events per append when building with --build append


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="long")
    def long(ctx: Context, n: int) -> int:
        """N steps, then a pause answered again and again (until "stop")."""
        for _ in range(n):
            ctx.step("step", trivial)
        while ctx.pause("wait") != "stop":
            pass
        return n

    @runner.workflow(name="agent")
    def agent(ctx: Context, s: int, every: int) -> int:
        """S steps pausing after every ``every`` of them (not after the last)."""
        for i in range(1, s + 1):
            ctx.step("step", trivial)
            if i % every == 0 and i < s:
                ctx.pause("turn")
        return s

    @runner.workflow(name="straight")
    def straight(ctx: Context, s: int) -> int:
        for _ in range(s):
            ctx.step("step", trivial)
        return s

    return runner


# -- building a long history -----------------------------------------------------------------------


def synthetic(eid: uuid.UUID, n: int) -> Iterator[Event]:
    """The events ``long(n)`` writes up to its first pause: 2n + 3 of them."""
    now = datetime.now(UTC)
    yield ExecutionStarted(execution_id=eid, position=1, timestamp=now, workflow="long",
                           input={"n": n})
    yield ExecutionClaimed(execution_id=eid, position=2, timestamp=now, host="bench",
                           pid=os.getpid(), runner=uuid.uuid4().hex, reason="start",
                           process_started=now)
    pos = 3
    for seq in range(1, n + 1):
        yield StepStarted(execution_id=eid, position=pos, timestamp=now, name="step", seq=seq)
        yield StepCompleted(execution_id=eid, position=pos + 1, timestamp=now, seq=seq,
                            duration=1e-6)
        pos += 2
    yield ExecutionPaused(execution_id=eid, position=pos, timestamp=now, reason="wait")


def steps_for(events: int) -> int:
    return max(0, (events - 3) // 2)


def build(url: str, n: int, how: str) -> tuple[uuid.UUID, float]:
    """An execution of ``long(n)`` standing at its first pause; (its id, seconds to build)."""
    t = time.perf_counter()
    with Journal.open(url) as journal:
        if how == "run":
            with make_runner(journal) as runner:
                run = runner.run("long", n)
            assert run.status == "paused", run.status
            return run.id, time.perf_counter() - t
        eid = uuid.uuid4()
        if how == "restore":
            assert journal.restore(list(synthetic(eid, n)))
        else:
            batch: list[Any] = []
            for event in synthetic(eid, n):
                batch.append(encode_event(event))
                if len(batch) >= BATCH:
                    journal.storage.append(batch)
                    batch = []
            if batch:
                journal.storage.append(batch)
    gc.collect()
    return eid, time.perf_counter() - t


def check_synthetic(url: str) -> None:
    """The synthetic stream is what the runner itself writes (but for times and the claim)."""
    with Journal.open(url) as journal, make_runner(journal) as runner:
        real = journal.events(runner.run("long", 3).id)
    fake = list(synthetic(real[0].execution_id, 3))

    def shape(e: Event) -> tuple[Any, ...]:
        skip = {"timestamp", "duration", "pid", "runner", "host", "process_started"}
        return (type(e).__name__, *(getattr(e, f) for f in e.__struct_fields__
                                    if f not in skip))

    assert [shape(e) for e in real] == [shape(e) for e in fake], (real, fake)


# -- the measurements ------------------------------------------------------------------------------


def warm(journal: Journal, runner: Runner, other: uuid.UUID | None) -> None:
    """Resume another (tiny) execution first: the journal's sessions, leases and prepared
    statements are warm, so what is timed is the resume, not connecting; nothing about the
    resumed execution is read."""
    if other is not None:
        assert runner.resume(other, "again").status == "paused"
    else:
        lease = journal.lease(uuid.uuid4())
        if lease is not None:
            lease.release()


def timed_resume(url: str, eid: uuid.UUID, other: uuid.UUID | None = None) -> float:
    with Journal.open(url) as journal, make_runner(journal) as runner:
        warm(journal, runner, other)
        gc.collect()
        t = time.perf_counter()
        run = runner.resume(eid, "again")
        elapsed = time.perf_counter() - t
        assert run.status == "paused", run.status
    return elapsed


def timed_parts(url: str, eid: uuid.UUID, other: uuid.UUID) -> dict[str, float]:
    out: dict[str, float] = {}
    with Journal.open(url) as journal:
        journal.state(other)  # the session is open before anything is timed
        for name, read in (("read", lambda: journal.storage.read_stream(eid)),
                           ("decode", lambda: journal.events(eid)),
                           ("fold", lambda: journal.state(eid))):
            gc.collect()
            t = time.perf_counter()
            result = read()
            out[name] = time.perf_counter() - t
            del result
    return out


class BareTable:
    """N 60-byte rows in a bare table of the same database, read back whole: the floor."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path = url.removeprefix("sqlite:///").partition("?")[0]
            self.conn: Any = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY "
                              "AUTOINCREMENT, stream TEXT, position INTEGER, body BLOB)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS bench_rows_s ON bench_rows "
                              "(stream, position)")
        else:
            self.conn = psycopg.connect(conninfo(url.partition("?")[0]), autocommit=True)
            self.conn.execute("CREATE TABLE IF NOT EXISTS public.bench_rows (id bigserial "
                              "PRIMARY KEY, stream uuid, position int, body bytea)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS bench_rows_s ON public.bench_rows "
                              "(stream, position)")

    def fill(self, n: int) -> str:
        stream = uuid.uuid4()
        if self.sqlite:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO bench_rows (stream, position, body) VALUES (?, ?, ?)",
                ((stream.hex, i, ROW) for i in range(n)))
            self.conn.execute("COMMIT")
            return stream.hex
        with self.conn.cursor().copy(
            "COPY public.bench_rows (stream, position, body) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row((stream, i, ROW))
        self.conn.execute("ANALYZE public.bench_rows")
        return str(stream)

    def read(self, stream: str) -> float:
        gc.collect()
        t = time.perf_counter()
        sql = ("SELECT position, body FROM bench_rows WHERE stream = ? ORDER BY position"
               if self.sqlite else
               "SELECT position, body FROM public.bench_rows WHERE stream = %s "
               "ORDER BY position")
        rows = self.conn.execute(sql, (stream,)).fetchall()
        elapsed = time.perf_counter() - t
        del rows
        return elapsed

    def close(self) -> None:
        self.conn.close()


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB: VmHWM, the high-water mark of this process's own
    memory map (getrusage's ru_maxrss is not that on Linux: after fork + exec it starts from
    the parent's RSS at the fork, so a big parent makes every child look big)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child_resume(url: str, eid: str, other: str, profile: bool) -> None:
    """In a fresh process: one resume, its time and this process's peak RSS around it."""
    journal = Journal.open(url)
    runner = make_runner(journal)
    warm(journal, runner, uuid.UUID(other) if other else None)
    gc.collect()
    before = peak_rss_kb()
    t = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        run = prof.runcall(runner.resume, eid, "again")
        elapsed = time.perf_counter() - t
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(22)
        stats.sort_stats("cumulative").print_stats(30)
        text = buf.getvalue()
    else:
        run = runner.resume(eid, "again")
        elapsed = time.perf_counter() - t
        text = ""
    after = peak_rss_kb()
    assert run.status == "paused", run.status
    runner.close()
    journal.close()
    print(json.dumps({"resume": elapsed, "before_kb": before, "peak_kb": after,
                      "profile": text}))


def fresh_resume(url: str, eid: uuid.UUID, other: uuid.UUID | None = None,
                 profile: bool = False) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child-resume", str(eid), "--url", url,
         "--other", str(other or "")] + (["--profile"] if profile else []),
        capture_output=True, text=True, timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child resume failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def long_history(title: str, url: str, sizes: list[int], repeat: int, how: str,
                 profile: bool) -> None:
    check_synthetic(url)
    print(f"\n{title}: resume of one long history (median of {repeat}; in-process resumes "
          f"on a fresh journal each; built with --build {how})")
    tiny, _ = build(url, 0, "restore" if how != "run" else "run")
    other, _ = build(url, 0, "restore" if how != "run" else "run")
    timed_resume(url, tiny, other)  # warm up
    tiny_times = [timed_resume(url, tiny, other) for _ in range(15)]
    tiny_ms = med(tiny_times) * 1e3
    fresh_tiny = [fresh_resume(url, tiny, other) for _ in range(3)]
    tiny_fresh = {k: med([f[k] for f in fresh_tiny]) for k in ("resume", "peak_kb", "before_kb")}
    bare = BareTable(url)
    print(f"  baseline: resume of a tiny execution {tiny_ms:8.2f} ms in process, "
          f"{tiny_fresh['resume'] * 1e3:.2f} ms in a fresh one, whose peak RSS is "
          f"{tiny_fresh['peak_kb'] / 1024:.0f} MB (before it "
          f"{tiny_fresh['before_kb'] / 1024:.0f} MB)")
    print(f"  {'events':>9} {'build':>7} {'resume':>10} {'vs tiny':>9} {'read':>9} "
          f"{'+decode':>9} {'+fold':>9} {'rest':>9} {'raw read':>9} {'vs raw':>7} "
          f"{'fresh':>9} {'peak RSS':>9} {'before':>7}")
    largest: uuid.UUID | None = None
    try:
        for events in sizes:
            n = steps_for(events)
            eid, built = build(url, n, how)
            largest = eid
            stream = bare.fill(2 * n + 3)
            resumes, parts, raws, fresh = [], [], [], []
            for _ in range(repeat):  # interleaved: the disk and the neighbours drift
                raws.append(bare.read(stream))
                parts.append(timed_parts(url, eid, tiny))
                resumes.append(timed_resume(url, eid, tiny))
                fresh.append(fresh_resume(url, eid, tiny))
            resume = med(resumes)
            p = {k: med([x[k] for x in parts]) for k in ("read", "decode", "fold")}
            raw = med(raws)
            peak = med([f["peak_kb"] for f in fresh]) / 1024
            before = med([f["before_kb"] for f in fresh]) / 1024
            print(f"  {2 * n + 3:>9} {built:6.1f}s {resume * 1e3:8.1f}ms "
                  f"{resume * 1e3 / tiny_ms:8.0f}x {p['read'] * 1e3:7.1f}ms "
                  f"{p['decode'] * 1e3:7.1f}ms {p['fold'] * 1e3:7.1f}ms "
                  f"{(resume - p['fold']) * 1e3:7.1f}ms {raw * 1e3:7.1f}ms "
                  f"{resume / raw:6.1f}x "
                  f"{med([f['resume'] for f in fresh]) * 1e3:7.1f}ms {peak:7.0f}MB "
                  f"{before:5.0f}MB")
        print("  (read: storage.read_stream; +decode: journal.events; +fold: journal.state; "
              "rest: resume - fold = replay bookkeeping + commits + lease; raw read: a bare "
              "table's rows; fresh: the resume in a new process, peak RSS its maxrss)")
        if profile and largest is not None:
            result = fresh_resume(url, largest, tiny, profile=True)
            print(f"\n{title}: cProfile of a fresh process resuming the largest history "
                  f"({result['resume']:.2f} s under the profiler)")
            print("\n".join("    " + line for line in result["profile"].splitlines()
                            if line.strip()))
    finally:
        bare.close()


def agent_loop(title: str, url: str, sizes: list[int], every: int, repeat: int) -> None:
    with Journal.open(url) as journal, make_runner(journal) as runner:
        runner.run("straight", 10)
        tiny, _ = build(url, 0, "restore")
        timed_resume(url, tiny)
        t = time.perf_counter()  # on the loop's own warm journal, as the loop resumes
        for _ in range(5):
            runner.resume(tiny, "again")
        tiny_ms = (time.perf_counter() - t) / 5 * 1e3
        print(f"\n{title}: agent loop, pausing every {every} steps, driven by resume() "
              f"(median of {repeat}; a tiny resume costs {tiny_ms:.2f} ms here)")
        print(f"  {'steps':>6} {'resumes':>7} {'resume sum':>11} {'vs linear':>9} "
              f"{'wall':>9} {'straight':>9} {'wall/straight':>13} {'first 10':>9} "
              f"{'last 10':>9}")
        for s in sizes:
            rows: list[dict[str, float]] = []
            for _ in range(repeat):
                t = time.perf_counter()
                straight = runner.run("straight", s)
                straight_s = time.perf_counter() - t
                assert straight.status == "completed"
                gc.collect()
                resumes: list[float] = []
                t = time.perf_counter()
                run = runner.run("agent", s, every)
                while run.status == "paused":
                    t0 = time.perf_counter()
                    run = runner.resume(run.id, None)
                    resumes.append(time.perf_counter() - t0)
                wall = time.perf_counter() - t
                assert run.status == "completed", run.status
                rows.append({"sum": sum(resumes), "wall": wall, "straight": straight_s,
                             "n": len(resumes), "first": med(resumes[:10]),
                             "last": med(resumes[-10:])})
            m = {k: med([r[k] for r in rows]) for k in rows[0]}
            linear = m["n"] * tiny_ms / 1e3
            print(f"  {s:>6} {m['n']:>7.0f} {m['sum']:10.2f}s {m['sum'] / linear:8.1f}x "
                  f"{m['wall']:8.2f}s {m['straight']:8.2f}s {m['wall'] / m['straight']:12.1f}x "
                  f"{m['first'] * 1e3:7.1f}ms {m['last'] * 1e3:7.1f}ms")
        print("  (vs linear: resume sum / (resumes x a tiny resume); straight: the same steps "
              "in one run() without pauses; first/last 10: median time of one resume)")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--events", default="10000,100000,1000000")
    parser.add_argument("--agent-steps", default="1000,10000")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build", choices=["restore", "append", "run"], default="restore")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--sqlite", default="FULL,NORMAL", help="synchronous settings")
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child-resume", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--other", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_resume:
        child_resume(args.url, args.child_resume, args.other, args.profile)
        return
    sizes = [int(x) for x in args.events.split(",")]
    agents = [int(x) for x in args.agent_steps.split(",")]
    repeat = args.repeat
    if args.quick:
        sizes, agents, repeat = [s for s in sizes if s <= 100_000] or sizes[:1], [1000], 2
    print(f"bench_resume: code from {revision(ROOT)}")
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str]] = []
        if args.only in (None, "sqlite"):
            for sync in args.sqlite.upper().split(","):
                suffix = "" if sync == "FULL" else f"?synchronous={sync}"
                backends.append((f"SQLite, synchronous={sync}",
                                 f"sqlite:///{tmp}/{sync.lower()}.db{suffix}"))
        for title, url in backends:
            if not args.skip_long:
                long_history(title, url, sizes, repeat, args.build, args.profile)
            if not args.skip_agent:
                agent_loop(title, url.replace(".db", "_agent.db"), agents, args.every, repeat)
        if args.only in (None, "postgres"):
            with postgres_database("bench_resume") as db:
                if not args.skip_long:
                    long_history("PostgreSQL", f"{db}?schema=journal", sizes, repeat,
                                 args.build, args.profile)
                if not args.skip_agent:
                    agent_loop("PostgreSQL", f"{db}?schema=agent", agents, args.every, repeat)


if __name__ == "__main__":
    main()
