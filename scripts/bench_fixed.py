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

import argparse
import gc
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("JOURNAL_BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from journal import Journal  # noqa: E402
from journal.storage.postgres import parse_postgres_url  # noqa: E402
from runner import Context, Runner  # noqa: E402

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


# -- the floor -------------------------------------------------------------------------------------


class Floor:
    """Raw INSERT + commit (autocommit) into a bare table of the same database."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path, _, query = url.removeprefix("sqlite:///").partition("?")
            sync = "NORMAL" if "synchronous=normal" in query.lower() else "FULL"
            self.lite = sqlite3.connect(path, isolation_level=None)
            self.lite.execute("PRAGMA journal_mode=WAL")
            self.lite.execute(f"PRAGMA synchronous={sync}")
            self.lite.execute("PRAGMA busy_timeout=5000")
            self.lite.execute("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY "
                              "AUTOINCREMENT, stream TEXT, position INTEGER, body BLOB)")
        else:
            self.pg = psycopg.connect(_conninfo(url.partition("?")[0]), autocommit=True)
            self.pg.execute("CREATE TABLE IF NOT EXISTS public.bench_floor (id bigserial "
                            "PRIMARY KEY, stream uuid, position int, body bytea)")

    def commits(self, n: int) -> float:
        """Seconds for ``n`` commits of one row each."""
        stream = uuid.uuid4()
        t = time.perf_counter()
        if self.sqlite:
            for i in range(n):
                self.lite.execute("INSERT INTO bench_floor (stream, position, body) "
                                  "VALUES (?, ?, ?)", (stream.hex, i, ROW))
        else:
            for i in range(n):
                self.pg.execute("INSERT INTO public.bench_floor (stream, position, body) "
                                "VALUES (%s, %s, %s)", (stream, i, ROW), prepare=True)
        return time.perf_counter() - t

    def close(self) -> None:
        if self.sqlite:
            self.lite.close()
        else:
            self.pg.close()


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
    ours, floor = Ours(url), Floor(url)
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


# -- PostgreSQL database of our own ----------------------------------------------------------------


def _conninfo(url: str) -> str:
    p = parse_postgres_url(url)
    return (f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
            + (f" password={p['password']}" if p["password"] else ""))


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"bench_fixed_{uuid.uuid4().hex[:10]}"
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
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--quick", action="store_true", help="30 runs per configuration")
    args = parser.parse_args()
    runs = 30 if args.quick else args.runs
    print(f"bench_fixed: code from {revision()}")
    backends: list[tuple[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            backends += [("SQLite, synchronous=FULL", f"sqlite:///{tmp}/full.db"),
                         ("SQLite, synchronous=NORMAL",
                          f"sqlite:///{tmp}/normal.db?synchronous=NORMAL")]
        for title, url in backends:
            bench_backend(title, url, runs)
        if args.only in (None, "postgres"):
            with postgres_database() as db:
                bench_backend("PostgreSQL", f"{db}?schema=journal", runs)


if __name__ == "__main__":
    main()
