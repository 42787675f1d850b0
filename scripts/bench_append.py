"""Durable appends through the recording API, against the physical floor, on both backends.

For SQLite (synchronous=FULL, and NORMAL) and PostgreSQL this prints, as medians of
``--repeat`` runs:

* one commit per event: transitions/s through ``ExecutionHandle`` (step_started /
  step_completed alternating) beside a plain INSERT + commit of the same bytes into a bare
  table with the same commit pattern; and the ratio;
* batches of 100 events per commit (``handle.atomic()``) beside a raw 100-row transaction;
* 4 concurrent writer processes, each on its own execution, beside 4 raw writers.

    python scripts/bench_append.py [--events 2000] [--repeat 5] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import psycopg
from benchlib import REPO, postgres_database, use_checkout

use_checkout(REPO)  # this repository only: no $JOURNAL_BENCH_ROOT here

from journal import Journal  # noqa: E402
from journal.encoding import encode_event  # noqa: E402
from journal.events import StepStarted  # noqa: E402


def _sample_state() -> bytes:
    """The bytes of a typical trivial event, so raw inserts write what the journal writes."""
    from datetime import UTC, datetime

    ev = StepStarted(
        execution_id=uuid.uuid4(), position=2, timestamp=datetime.now(UTC), name="step", seq=1
    )
    return bytes(encode_event(ev).state)


STATE = _sample_state()
TOPIC = "journal.events:StepStarted"


# -- the journal -------------------------------------------------------------------------------


def journal_single(url: str, n: int) -> float:
    """Events/s with one commit per event."""
    with Journal.open(url) as j:
        run = j.start("bench")
        t = time.perf_counter()
        for _ in range(n // 2):
            seq = run.step_started("step")
            run.step_completed(seq)
        return (n // 2 * 2) / (time.perf_counter() - t)


def journal_batch(url: str, n: int, size: int = 100) -> float:
    """Events/s with ``size`` events per commit."""
    with Journal.open(url) as j:
        run = j.start("bench")
        t = time.perf_counter()
        done = 0
        while done < n:
            with run.atomic():
                for _ in range(size // 2):
                    seq = run.step_started("step")
                    run.step_completed(seq)
            done += size
        return done / (time.perf_counter() - t)


def _journal_writer(url: str, seconds: float, start_at: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    with Journal.open(url) as j:
        run = j.start("bench")
        while time.time() < start_at:
            time.sleep(0.001)
        count = 0
        end = start_at + seconds
        while time.time() < end:
            seq = run.step_started("step")
            run.step_completed(seq)
            count += 2
        out.put(count)


# -- the floor: the same bytes into a bare table -------------------------------------------------


def _raw_sqlite_conn(path: str, synchronous: str) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={synchronous}")
    c.execute(
        "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "stream TEXT, version INTEGER, topic TEXT, state BLOB)"
    )
    c.execute("CREATE UNIQUE INDEX IF NOT EXISTS raw_stream ON raw (stream, version)")
    return c


def _pg_conn(url: str) -> psycopg.Connection:  # type: ignore[type-arg]
    c = psycopg.connect(url, autocommit=True)
    c.execute(
        "CREATE TABLE IF NOT EXISTS raw (id bigserial, stream uuid, version bigint, "
        "topic text, state bytea, PRIMARY KEY (stream, version))"
    )
    c.execute("CREATE UNIQUE INDEX IF NOT EXISTS raw_id ON raw (id)")
    return c


def raw_single(kind: str, target: str, n: int, synchronous: str = "FULL") -> float:
    stream = uuid.uuid4()
    if kind == "sqlite":
        c = _raw_sqlite_conn(target, synchronous)
        t = time.perf_counter()
        for v in range(1, n + 1):
            c.execute("INSERT INTO raw (stream, version, topic, state) VALUES (?,?,?,?)",
                      (stream.hex, v, TOPIC, STATE))
        rate = n / (time.perf_counter() - t)
        c.close()
        return rate
    pc = _pg_conn(target)
    t = time.perf_counter()
    for v in range(1, n + 1):
        pc.execute("INSERT INTO raw (stream, version, topic, state) VALUES (%s,%s,%s,%b)",
                   (stream, v, TOPIC, STATE), prepare=True)
    rate = n / (time.perf_counter() - t)
    pc.close()
    return rate


def raw_batch(kind: str, target: str, n: int, synchronous: str = "FULL", size: int = 100) -> float:
    stream = uuid.uuid4()
    rows = [(stream.hex if kind == "sqlite" else stream, v, TOPIC, STATE) for v in range(1, n + 1)]
    t = time.perf_counter()
    if kind == "sqlite":
        c = _raw_sqlite_conn(target, synchronous)
        t = time.perf_counter()
        for i in range(0, n, size):
            c.execute("BEGIN")
            c.executemany("INSERT INTO raw (stream, version, topic, state) VALUES (?,?,?,?)",
                          rows[i:i + size])
            c.execute("COMMIT")
        rate = n / (time.perf_counter() - t)
        c.close()
        return rate
    pc = _pg_conn(target)
    t = time.perf_counter()
    for i in range(0, n, size):
        with pc.transaction(), pc.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw (stream, version, topic, state) VALUES (%s,%s,%s,%b)",
                rows[i:i + size],
            )
    rate = n / (time.perf_counter() - t)
    pc.close()
    return rate


def _raw_writer(kind: str, target: str, synchronous: str, seconds: float, start_at: float,
                out: mp.Queue) -> None:  # type: ignore[type-arg]
    stream = uuid.uuid4()
    count = 0
    if kind == "sqlite":
        c = _raw_sqlite_conn(target, synchronous)
        def one(v: int) -> None:
            c.execute("INSERT INTO raw (stream, version, topic, state) VALUES (?,?,?,?)",
                      (stream.hex, v, TOPIC, STATE))
    else:
        pc = _pg_conn(target)
        def one(v: int) -> None:
            pc.execute("INSERT INTO raw (stream, version, topic, state) VALUES (%s,%s,%s,%b)",
                       (stream, v, TOPIC, STATE), prepare=True)
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        count += 1
        one(count)
    out.put(count)


def concurrent(target: Callable[..., None], args: tuple[object, ...], writers: int,
               seconds: float) -> float:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 2.0
    procs = [ctx.Process(target=target, args=(*args, seconds, start_at, out))
             for _ in range(writers)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


# -- driver ------------------------------------------------------------------------------------


def medians(
    repeat: int, ours: Callable[[], float], floor: Callable[[], float]
) -> tuple[float, float]:
    """Medians of ``repeat`` runs of each, alternated so that drift in the machine (the
    disk's fsync latency wanders here) hits both sides alike."""
    a, b = [], []
    for _ in range(repeat):
        a.append(ours())
        b.append(floor())
    return statistics.median(a), statistics.median(b)


def report(label: str, ours: float, floor: float, goal: float) -> None:
    ratio = ours / floor
    verdict = "meets" if ratio >= goal else "below"
    print(f"  {label:<34} {ours:>9,.0f}/s   floor {floor:>9,.0f}/s   ratio {ratio:4.2f}"
          f"   (goal {goal}: {verdict})")


def bench_backend(name: str, url: str, raw_kind: str, raw_target: str, synchronous: str,
                  args: argparse.Namespace) -> None:
    print(f"\n{name}")
    n = args.events
    ours, floor = medians(args.repeat, lambda: journal_single(url, n),
                          lambda: raw_single(raw_kind, raw_target, n, synchronous))
    report("1 commit per event", ours, floor, 0.6)
    ours, floor = medians(args.repeat, lambda: journal_batch(url, n * 5),
                          lambda: raw_batch(raw_kind, raw_target, n * 5, synchronous))
    report("batches of 100", ours, floor, 0.5)
    if args.writers:
        # Create the bare table before the writers race to.
        (_raw_sqlite_conn(raw_target, synchronous) if raw_kind == "sqlite"
         else _pg_conn(raw_target)).close()
        ours, floor = medians(
            3,
            lambda: concurrent(_journal_writer, (url,), args.writers, args.seconds),
            lambda: concurrent(_raw_writer, (raw_kind, raw_target, synchronous), args.writers,
                               args.seconds),
        )
        report(f"{args.writers} concurrent writers", ours, floor, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    print(f"bench_append: medians of {args.repeat} runs, {args.events} events each")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as d:
            for sync in ("FULL", "NORMAL"):
                path = f"{d}/journal-{sync}.db"
                raw = f"{d}/raw-{sync}.db"
                bench_backend(f"SQLite (WAL, synchronous={sync})",
                              f"sqlite:///{path}?synchronous={sync}", "sqlite", raw, sync, args)
    if args.only in (None, "postgres"):
        with postgres_database("bench_append", width=8) as url:
            bench_backend("PostgreSQL", url, "postgres", url, "FULL", args)


if __name__ == "__main__":
    main()
