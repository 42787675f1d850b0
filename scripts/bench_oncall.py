"""The on-call commands as whole processes, on a journal shaped like issue 13's, against a floor.

Fills a journal per backend (``--backends sqlite,postgres``) with ``--executions`` runs
(default 20,000; of every 20,000: 1,079 failed, 313 timeouts, 248 context-window
``ValueError``s, 187 ``KeyError``s and 331 rate limits, some after a retry; 434 paused
for a human, a quarter of them with a deadline; the rest completed with costs; started
over the last 24 hours, with ``ctx.log`` lines) by appending their events in raw batches, as
``bench_projections.py`` does (seconds, not the minutes 20,000 Runner runs would take).
Then a few stuck in different ways: three orphans written with the recording API
(``Journal.start`` / ``claimed`` / ``step_started``, the driver a dead pid and no lease), a
slow step and a retry back-off whose lease this process holds (their driver alive), a
sleep, a signal wait and a queued run.

Timed, each as a fresh process, ``--repeat`` rounds (default 5) after one untimed warm-up
(which checks the output), every case once per round in turn (the machine drifts): the
first ``journal ls`` after filling, the views catching up from zero, once on its own (its
stderr a terminal, so its progress line is drawn and shown); then ``journal stuck``,
``ls``, ``errors``, ``costs`` (plain and ``--since 1h``: issue 13 saw ``--since`` 6-9x
slower), ``stats`` and ``logs`` (if ``journal logs --help`` works), with ``COLUMNS=80``.
The floor, in the same rounds: ``python -c`` opening the database with the driver alone
(``sqlite3`` / ``psycopg``) and reading the 50 newest rows of ``proj_executions`` (an
index) — what a process that shows 50 rows cannot go below. Printed per backend: median,
p90 and CPU time (user + system) in ms, the ratio to that floor, what each printed.

Last, how ``journal stuck --json`` scales with the running executions (``--running``,
default 10 and 1,000, orphans added in bulk): the whole command, and the lease look-up
it makes for them (``Journal.lease_holders``: one session and two queries on PostgreSQL)
timed in this process.

Processes run with bytecode caching on (in a temporary ``$PYTHONPYCACHEPREFIX``, warmed on a
small journal first), as an installed ``journal`` does. SQLite files live in a temporary
directory; PostgreSQL uses a database of its own (schema ``bench_oncall``) on the server of
``$JOURNAL_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
dropped at the end. The code measured is ``$JOURNAL_BENCH_ROOT`` (default: this checkout).

    python scripts/bench_oncall.py [--backends sqlite,postgres] [--executions 20000]
                                   [--repeat 5] [--running 10,1000]
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench_cli import journal_command, timed
from benchlib import arg_parser, conninfo, med, postgres_database, revision, use_checkout

ROOT = use_checkout(export=True)  # the `journal` subprocesses import the same code

#: Of every 20,000 executions (issue 13's journal).
SHAPE_OF = 20_000
FAILED, PAUSED = 1_079, 434
#: Root causes of the failures: error type, message, how many of the 1,079, retried once.
CAUSES = (
    ("TimeoutError", "timeout after {n}s waiting for the model", 313, True),
    ("ValueError", "context window exceeded: {n} tokens > 128000", 248, False),
    ("KeyError", "'summary'", 187, False),
    ("ConnectionError", "rate limited (429), retry after {n}s", 331, True),
)
WORKFLOWS = ("review", "review", "review", "summarize", "triage")
MODELS = ("gpt-4o", "claude-sonnet", "small-llm")
VERSION = "bench0ncall00001"
SCHEMA = "bench_oncall"
SPAN = timedelta(hours=24)  # the executions started over the last day
BLOCK = 500  # executions appended interleaved, one event of each per batch


# -- filling the journal -----------------------------------------------------------------------


class _Stream:
    """The events of one execution, positions and timestamps in order."""

    def __init__(self, eid: uuid.UUID, t: datetime) -> None:
        self.eid, self.t = eid, t
        self.events: list[Any] = []

    def add(self, cls: type, after: float = 0.001, **fields: Any) -> None:
        self.t += timedelta(seconds=after)
        self.events.append(cls(execution_id=self.eid, position=len(self.events) + 1,
                               timestamp=self.t, **fields))


def _traceback(etype: str, message: str) -> str:
    return ("Traceback (most recent call last):\n"
            '  File "/srv/app/runner/_engine.py", line 848, in run_step\n'
            "    output = fn(*args, **kwargs)\n"
            '  File "/srv/app/review/steps.py", line 112, in analyze\n'
            "    reply = client.complete(prompt, model=model, timeout=30)\n"
            '  File "/srv/app/review/llm.py", line 57, in complete\n'
            "    raise " + etype + "(" + repr(message) + ")\n"
            f"{etype}: {message}\n")


def _cost(rng: random.Random, model: str, tokens_in: int) -> Any:
    from journal.events import Cost

    tokens_out = rng.randint(50, 800)
    usd = (Decimal(tokens_in) * Decimal("0.0000025") + Decimal(tokens_out) * Decimal("0.00001"))
    return Cost(usd=usd.quantize(Decimal("0.000001")), input_tokens=tokens_in,
                output_tokens=tokens_out, model=model)


def lifecycle(i: int, kind: str, cause: tuple[str, str, int, bool] | None, t0: datetime,
              rng: random.Random) -> list[Any]:
    """One execution as a Runner records it: started, claimed, fetch, a log line, analyze
    (with a cost; failing, maybe after a retry), then paused, or write and completed."""
    from journal.events import (
        ErrorInfo,
        ExecutionClaimed,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionPaused,
        ExecutionStarted,
        LogRecorded,
        StepCompleted,
        StepFailed,
        StepStarted,
    )

    s = _Stream(uuid.uuid4(), t0)
    doc = f"doc-{i}"
    s.add(ExecutionStarted, 0, workflow=WORKFLOWS[i % len(WORKFLOWS)],
          input={"doc": doc, "lang": "en"}, version=VERSION)
    w = i % 4
    s.add(ExecutionClaimed, host=f"worker-{w}", pid=4100 + w, runner=f"runner{w:028d}",
          reason="start", process_started=t0 - timedelta(hours=3))
    s.add(StepStarted, name="fetch", seq=1, input={"doc": doc})
    chars = rng.randint(2_000, 400_000)
    d = rng.uniform(0.05, 0.6)
    s.add(StepCompleted, d, seq=1, output={"chars": chars, "url": f"s3://docs/{doc}"},
          duration=d)
    s.add(LogRecorded, level="info", message="fetched", seq=1, fields={"chars": chars})
    s.add(StepStarted, name="analyze", seq=2, input={"chars": chars})
    model = MODELS[i % len(MODELS)]
    cost = _cost(rng, model, chars // 4)
    if kind == "failed":
        assert cause is not None
        etype, template, _, retried = cause
        message = template.format(n=rng.choice((30, 60, 120)) if etype != "ValueError"
                                  else chars // 3)
        error = ErrorInfo(type=etype, message=message, traceback=_traceback(etype, message))
        attempt = 1
        if retried:
            d = rng.uniform(1.0, 30.0)
            s.add(StepFailed, d, seq=2, attempt=1, error=error, will_retry=True, duration=d,
                  retry_at=s.t + timedelta(seconds=2), max_attempts=2)
            s.add(LogRecorded, level="warning", message=f"analyze: {etype}, retrying",
                  seq=2, fields={"attempt": 1})
            s.add(StepStarted, 2.0, name="analyze", seq=2, attempt=2, input={"chars": chars})
            attempt = 2
        d = rng.uniform(0.5, 30.0)
        s.add(StepFailed, d, seq=2, attempt=attempt, error=error, duration=d,
              costs=(cost,) if etype == "ValueError" else (), max_attempts=attempt)
        s.add(LogRecorded, level="error", message=f"analyze failed: {etype}", seq=2,
              fields={"attempts": attempt})
        s.add(ExecutionFailed, error=error)
        return s.events
    d = rng.uniform(0.5, 8.0)
    score = round(rng.random(), 3)
    s.add(StepCompleted, d, seq=2, output={"score": score, "labels": ["a", "b"]},
          costs=(cost,), duration=d)
    if kind == "paused":
        until = s.t + timedelta(days=7) if i % 4 == 0 else None
        s.add(ExecutionPaused, reason="human_review", payload={"doc": doc, "score": score},
              until=until)
        return s.events
    s.add(StepStarted, name="write", seq=3, input={"score": score})
    d = rng.uniform(0.05, 1.0)
    s.add(StepCompleted, d, seq=3, output={"ok": True},
          costs=(_cost(rng, MODELS[-1], 200),), duration=d)
    s.add(ExecutionCompleted, output={"doc": doc, "score": score})
    return s.events


def kinds(n: int, rng: random.Random) -> list[tuple[str, tuple[str, str, int, bool] | None]]:
    """What each of ``n`` executions ends as, in issue 13's proportions, shuffled."""
    failed = max(len(CAUSES), round(n * FAILED / SHAPE_OF))
    paused = max(1, round(n * PAUSED / SHAPE_OF))
    out: list[tuple[str, tuple[str, str, int, bool] | None]] = []
    left = failed
    for k, cause in enumerate(CAUSES):
        count = left if k == len(CAUSES) - 1 else max(1, round(failed * cause[2] / FAILED))
        out += [("failed", cause)] * count
        left -= count
    out += [("paused", None)] * paused
    out += [("completed", None)] * max(0, n - len(out))
    rng.shuffle(out)
    return out[:n]


def append_interleaved(journal: Any, streams: list[list[Any]]) -> int:
    """Append the executions' events ``BLOCK`` executions at a time, event k of each in turn
    (one batch, one transaction), as concurrent runners interleave them; returns the count."""
    from journal.encoding import encode_event

    total = 0
    for b in range(0, len(streams), BLOCK):
        block = streams[b:b + BLOCK]
        for k in range(max(len(s) for s in block)):
            batch = [encode_event(s[k]) for s in block if len(s) > k]
            journal.storage.append(batch)
            total += len(batch)
    return total


def fill(journal: Any, n: int, now: datetime) -> int:
    """``n`` executions started over the ``SPAN`` before ``now``; the events appended."""
    rng = random.Random(13)
    shapes = kinds(n, rng)
    total = 0
    for b in range(0, n, 4 * BLOCK):
        streams = [lifecycle(i, kind, cause, now - SPAN + SPAN * (i / n), rng)
                   for i, (kind, cause) in enumerate(shapes[b:b + 4 * BLOCK], start=b)]
        total += append_interleaved(journal, streams)
    return total


def dead_pid() -> int:
    """The pid of a process that has exited: a driver that is gone."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def orphans(journal: Any, count: int, pid: int, at: datetime) -> list[uuid.UUID]:
    """``count`` running executions in step analyze, driven by ``pid`` (dead), no lease;
    appended in bulk, last event at ``at``."""
    from journal.events import ExecutionClaimed, ExecutionStarted, StepStarted

    streams, ids = [], []
    for k in range(count):
        s = _Stream(uuid.uuid4(), at)
        s.add(ExecutionStarted, 0, workflow="review", input={"doc": f"orphan-{k}"},
              version=VERSION)
        s.add(ExecutionClaimed, host=socket.gethostname(), pid=pid, runner="killed" * 5,
              reason="start")
        s.add(StepStarted, name="analyze", seq=1, input={"doc": f"orphan-{k}"})
        streams.append(s.events)
        ids.append(s.eid)
    append_interleaved(journal, streams)
    return ids


def stuck_ones(journal: Any, now: datetime, stack: ExitStack) -> list[uuid.UUID]:
    """Open executions stuck in different ways; returns the running ones' ids. Orphans
    through the recording API; the rest in bulk (their times in the past), the running ones
    with their lease held by this process until ``stack`` closes (their driver alive)."""
    from journal.events import (
        ErrorInfo,
        ExecutionClaimed,
        ExecutionStarted,
        StepCompleted,
        StepFailed,
        StepStarted,
        WaitStarted,
    )

    running: list[uuid.UUID] = []
    gone = dead_pid()
    for k in range(3):  # killed drivers: events as a Runner writes them, no lease
        h = journal.start("review", {"doc": f"killed-{k}"}, version=VERSION)
        h.claimed(host=socket.gethostname(), pid=gone, runner="killed" * 5)
        seq = h.step_started("fetch", {"doc": f"killed-{k}"})
        h.step_completed(seq, {"chars": 1000}, duration=0.1)
        h.step_started("analyze", {"chars": 1000})
        running.append(h.id)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "runner": "live" * 7}
    streams = []
    slow = _Stream(uuid.uuid4(), now - timedelta(minutes=15))  # a slow step, driver alive
    slow.add(ExecutionStarted, 0, workflow="review", input={"doc": "slow"}, version=VERSION)
    slow.add(ExecutionClaimed, **me)
    slow.add(StepStarted, name="fetch", seq=1, input={"doc": "slow"})
    slow.add(StepCompleted, 180, seq=1, output={"chars": 10}, duration=180.0)
    slow.add(StepStarted, name="analyze", seq=2, input={"chars": 10})
    backoff = _Stream(uuid.uuid4(), now - timedelta(minutes=8))  # a retry's back-off
    backoff.add(ExecutionStarted, 0, workflow="triage", input={"doc": "backoff"},
                version=VERSION)
    backoff.add(ExecutionClaimed, **me)
    backoff.add(StepStarted, name="fetch", seq=1, input={"doc": "backoff"})
    backoff.add(StepFailed, 60, seq=1, attempt=1, will_retry=True, duration=60.0,
                error=ErrorInfo(type="ConnectionError", message="rate limited (429)"),
                retry_at=now + timedelta(minutes=10), max_attempts=5)
    for s in (slow, backoff):
        lease = journal.lease(s.eid)
        assert lease is not None
        stack.callback(lease.release)
        running.append(s.eid)
        streams.append(s.events)
    for name, kind, ago, until in (("", "timer", timedelta(hours=2), now + timedelta(hours=3)),
                                   ("approval", "signal", timedelta(days=1), None)):
        s = _Stream(uuid.uuid4(), now - ago)
        s.add(ExecutionStarted, 0, workflow="summarize", input={"doc": kind}, version=VERSION)
        s.add(ExecutionClaimed, host="worker-0", pid=4100, runner="runner" + "0" * 28)
        s.add(StepStarted, name="fetch", seq=1, input={"doc": kind})
        s.add(StepCompleted, 1, seq=1, output={"chars": 10}, duration=1.0)
        s.add(WaitStarted, seq=2, kind=kind, name=name, until=until)
        streams.append(s.events)
    queued = _Stream(uuid.uuid4(), now - timedelta(minutes=20))
    queued.add(ExecutionStarted, 0, workflow="review", input={"doc": "queued"},
               version=VERSION, queued=True)
    streams.append(queued.events)
    append_interleaved(journal, streams)
    return running


def tiny_journal(url: str) -> None:
    """One completed execution: what the bytecode-warming run reads."""
    from journal import Journal

    with Journal.open(url) as journal:
        h = journal.start("warm", {"doc": "warm"})
        seq = h.step_started("fetch")
        h.step_completed(seq, "x", duration=0.01)
        h.completed("x")


# -- running the commands ----------------------------------------------------------------------


def floor_code(url: str) -> tuple[str, str]:
    """A ``python -c`` program that opens the database with the driver alone and reads the
    50 newest rows of proj_executions (index proj_executions_started); and its label."""
    select = ("SELECT * FROM {t} ORDER BY started_at DESC, execution_id DESC LIMIT 50")
    if url.startswith("sqlite"):
        from journal.storage.sqlite import sqlite_path

        path = sqlite_path(url)[0]
        code = (f"import sqlite3; c = sqlite3.connect({path!r}); "
                f"rows = c.execute({select.format(t='proj_executions')!r}).fetchall(); "
                "assert len(rows) == 50, len(rows)")
        return code, "python -c: sqlite3, SELECT 50 newest"
    sql = select.format(t=f'"{SCHEMA}".proj_executions')
    code = (f"import psycopg; c = psycopg.connect({conninfo(url)!r}); "
            f"rows = c.execute({sql!r}).fetchall(); assert len(rows) == 50, len(rows)")
    return code, "python -c: psycopg, SELECT 50 newest"


def describe(out: bytes) -> str:
    """What a command printed: rows of a JSON list, else lines."""
    try:
        data = json.loads(out)
    except ValueError:
        return f"{len(out.splitlines())} lines"
    if isinstance(data, list):
        return f"{len(data)} rows"
    if isinstance(data, dict):
        for key in ("rows", "groups", "executions", "stuck", "lines", "steps"):
            if isinstance(data.get(key), list):
                return f"{len(data[key])} {key}"
        return f"{len(data)} keys"
    return f"{len(out)} bytes"


_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def with_terminal_stderr(argv: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    """Run ``argv`` once, its stderr a terminal (as an engineer's is: a progress bar is
    drawn); seconds, what it printed on stdout (described) and the last frame on stderr."""
    import pty

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, env=env, check=False)
    elapsed = time.perf_counter() - t
    os.close(slave)
    reader.join(timeout=5)
    os.close(master)
    if done.returncode:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {b''.join(chunks)[-500:]!r}")
    frames = [f.strip() for f in re.split(rb"[\r\n]", _ANSI.sub(b"", b"".join(chunks)))]
    frames = [f for f in frames if f]
    last = frames[-1].decode(errors="replace") if frames else "(nothing on stderr)"
    return elapsed, describe(done.stdout), f"{last} ({len(frames)} frames)"


def check(argv: list[str], env: dict[str, str]) -> str:
    """One untimed run (the warm-up): fails loudly, returns what it printed."""
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{argv[1:]} failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace')[-800:]}")
    return describe(done.stdout)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def rounds(cases: dict[str, list[str]], env: dict[str, str], repeat: int
           ) -> tuple[dict[str, str], dict[str, list[float]], dict[str, list[float]]]:
    """Warm each case up once (checked), then ``repeat`` rounds of every case in turn."""
    printed = {name: check(argv, env) for name, argv in cases.items()}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, argv in cases.items():
            w, c = timed(argv, env)
            wall[name].append(w)
            cpu[name].append(c)
    return printed, wall, cpu


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def views_count(url: str) -> str:
    """Executions per status in the views (driver alone)."""
    sql = "SELECT status, count(*) FROM {t} GROUP BY status ORDER BY count(*) DESC"
    if url.startswith("sqlite"):
        import sqlite3

        from journal.storage.sqlite import sqlite_path

        with sqlite3.connect(sqlite_path(url)[0]) as c:
            rows = c.execute(sql.format(t="proj_executions")).fetchall()
    else:
        import psycopg

        with psycopg.connect(conninfo(url)) as c:
            rows = c.execute(sql.format(t=f'"{SCHEMA}".proj_executions')).fetchall()
    return ", ".join(f"{status} {count:,}" for status, count in rows)


def bench(title: str, url: str, warm_url: str, args: Any, env: dict[str, str]) -> None:
    from journal import Journal

    journal = journal_command()
    print(f"\n== {title}: load {load()} (1/5/15 min, {os.cpu_count()} cores)", flush=True)
    tiny_journal(warm_url)
    check([*journal, "ls", "--json", "--url", warm_url], env)  # bytecode, off the clock
    with ExitStack() as stack:
        j = stack.enter_context(Journal.open(url))
        now = datetime.now(UTC)
        t = time.perf_counter()
        events = fill(j, args.executions, now)
        running = stuck_ones(j, now, stack)
        print(f"filled {args.executions:,} executions ({events:,} events) and 8 stuck ones "
              f"in {time.perf_counter() - t:.1f} s", flush=True)

        first, printed, progress = with_terminal_stderr(
            [*journal, "ls", "--limit", "50", "--url", url], env)
        print(f"first `journal ls` (views from zero): {first:.2f} s once, printed {printed}; "
              f"stderr: {progress}")
        print(f"views: {views_count(url)}", flush=True)

        u = ["--url", url]
        cases = {"python -c pass": [sys.executable, "-c", "pass"]}
        code, floor = floor_code(url)
        cases[floor] = [sys.executable, "-c", code]
        commands = {
            "stuck --json": ["stuck", "--json"],
            "stuck (table, COLUMNS=80)": ["stuck"],
            "ls --json --limit 50": ["ls", "--json", "--limit", "50"],
            "ls --status failed --limit 50": ["ls", "--status", "failed", "--limit", "50"],
            "errors --json": ["errors", "--json"],
            "errors --since 1h --json": ["errors", "--since", "1h", "--json"],
            "costs --json": ["costs", "--json"],
            "costs --since 1h --json": ["costs", "--since", "1h", "--json"],
            "stats --json": ["stats", "--json"],
            "logs --limit 100 --json": ["logs", "--limit", "100", "--json"],
        }
        if subprocess.run([*journal, "logs", "--help"], capture_output=True, env=env,
                          check=False).returncode:
            print("note: `journal logs --help` fails here: logs skipped")
            del commands["logs --limit 100 --json"]
        for name, argv in commands.items():
            cases[f"journal {name}"] = [*journal, *argv, *u]
        printed_by, wall, cpu = rounds(cases, env, args.repeat)
        base, base_cpu = med(wall[floor]), med(cpu[floor])
        print(f"\n{title}: {args.executions:,} executions; whole processes, median of "
              f"{args.repeat} after 1 warm-up; ratio to the floor ({floor}), of wall-clock "
              f"and of CPU time (user + system: steadier on a shared machine)")
        print(f"  {'command':<40} {'median':>9} {'p90':>9} {'/ floor':>8} {'cpu':>9} "
              f"{'/ floor':>8}  printed")
        for name in cases:
            print(f"  {name:<40} {med(wall[name]) * 1000:7.1f}ms {p90(wall[name]) * 1000:7.1f}ms"
                  f" {med(wall[name]) / base:7.2f}x {med(cpu[name]) * 1000:7.1f}ms "
                  f"{med(cpu[name]) / base_cpu:7.2f}x  {printed_by[name]}")
        print(f"  {'first `journal ls` (catch-up from 0)':<40} {first * 1000:7.0f}ms {'':>9}"
              f" {first / base:7.2f}x {'':>9} {'':>8}  once")
        plain, since = wall["journal costs --json"], wall["journal costs --since 1h --json"]
        print(f"  costs --since 1h / costs: {med(since) / med(plain):.2f}x (issue 13: 6-9x)")
        print(f"  load after: {load()}", flush=True)

        scale(title, url, j, running, args, env)


def scale(title: str, url: str, j: Any, running: list[uuid.UUID], args: Any,
          env: dict[str, str]) -> None:
    """``journal stuck --json`` with more and more running (orphaned) executions."""
    from journal import Journal

    journal = journal_command()
    argv = [*journal, "stuck", "--json", "--url", url]
    gone = dead_pid()
    print(f"\n{title}: `journal stuck --json` by running executions (orphans added; the lease "
          f"look-up in this process, fresh Journal, median of {args.repeat})")
    print(f"  {'running':>8} {'stuck --json':>13} {'p90':>9} {'lease look-up':>14}  printed")
    with Journal.open(url) as other:
        for target in args.running:
            if target > len(running):
                running += orphans(j, target - len(running), gone,
                                   datetime.now(UTC) - timedelta(minutes=1))
            check([*journal, "ls", "--limit", "1", "--url", url], env)  # views caught up
            printed, wall, _ = rounds({"stuck": argv}, env, args.repeat)
            lookups: list[float] = []
            for _ in range(args.repeat + 1):
                t = time.perf_counter()
                holders = other.lease_holders(running)
                lookups.append(time.perf_counter() - t)
            held = sum(1 for h in holders.values() if h is not None)
            capped = " (its limit)" if printed["stuck"] == "1000 rows" else ""
            print(f"  {len(running):>8,} {med(wall['stuck']) * 1000:11.1f}ms "
                  f"{p90(wall['stuck']) * 1000:7.1f}ms {med(lookups[1:]) * 1000:12.2f}ms  "
                  f"{printed['stuck']}{capped}; {held} leases held", flush=True)


@contextmanager
def backend_urls(name: str, tmp: str) -> Iterator[tuple[str, str]]:
    """The journal's URL and the warm-up journal's, made and cleaned up."""
    if name == "sqlite":
        yield f"sqlite:///{tmp}/journal.db", f"sqlite:///{tmp}/warm.db"
        return
    with postgres_database("bench_oncall") as db:
        yield f"{db}?schema={SCHEMA}", f"{db}?schema={SCHEMA}_warm"


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--executions", type=int, default=SHAPE_OF)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--running", default="10,1000",
                        help="running executions to time `journal stuck` with")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgres"}:
        parser.error(f"unknown backends {sorted(unknown)}: sqlite, postgres")
    if args.repeat < 1 or args.executions < 100:
        parser.error("--repeat must be at least 1 and --executions at least 100")
    args.running = sorted(int(n) for n in args.running.split(","))
    dirty = [line for line in subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False).stdout.splitlines() if line.strip()]
    print(f"bench_oncall: code from {revision(ROOT)}"
          + (f"; {len(dirty)} files modified, measured as they are" if dirty else ""))
    titles = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONDONTWRITEBYTECODE", "JOURNAL_URL")}
        env.update(PYTHONPYCACHEPREFIX=cache, COLUMNS="80",
                   PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
        for name in backends:
            with tempfile.TemporaryDirectory() as tmp, backend_urls(name, tmp) as (url, warm):
                bench(titles[name], url, warm, args, env)


if __name__ == "__main__":
    main()
