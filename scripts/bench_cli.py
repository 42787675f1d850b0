"""How long ``journal ls`` and ``journal show`` take as whole processes, against the interpreter.

Makes a small journal (``--executions`` runs of a 3-step workflow with costs, one paused) on
SQLite and on PostgreSQL (a database of its own, created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``), then
times each command as a fresh subprocess, ``--repeat`` rounds (default 15), every command and
baseline once per round in turn (the machine drifts), and prints medians and the ratio to the
bare interpreter. Baselines, measured in the same rounds: ``python -c pass`` and
``python -c "import sqlite3"`` (``import psycopg`` for PostgreSQL): what any command that reads
the database cannot go below.

    python scripts/bench_cli.py [--repeat 15] [--executions 5] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ADMIN = os.environ.get("JOURNAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def journal_command() -> list[str]:
    """The ``journal`` console script next to this interpreter, else ``python -m journal``."""
    script = Path(sys.executable).with_name("journal")
    if script.exists():
        return [str(script)]
    found = shutil.which("journal")
    return [found] if found else [sys.executable, "-m", "journal"]


def make_journal(url: str, executions: int) -> str:
    """Runs a few executions into ``url``; returns the id of the last one."""
    from decimal import Decimal

    from journal import Journal
    from runner import Context, Runner, add_cost

    def fetch(doc: str) -> str:
        return f"text of {doc}"

    def analyse(text: str) -> dict[str, int]:
        add_cost(usd=Decimal("0.002"), input_tokens=len(text), output_tokens=12,
                 model="sim-llm-1")
        return {"chars": len(text)}

    last = ""
    with Journal.open(url) as journal, Runner(journal) as runner:

        @runner.workflow()
        def review(ctx: Context, doc: str) -> dict[str, object]:
            text = ctx.step("fetch", fetch, doc)
            analysis = ctx.step("analyse", analyse, text)
            if doc.endswith("-pause"):
                ctx.pause("human_review", payload=analysis)
            ctx.log("done")
            return {"doc": doc, **analysis}

        for i in range(executions):
            run = runner.run(review, f"doc-{i}" + ("-pause" if i == 0 else ""))
            last = str(run.id)
    return last


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def bench(title: str, url: str, floor_import: str, executions: int, repeat: int) -> None:
    eid = make_journal(url, executions)
    journal = journal_command()
    cases: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        f"python -c 'import {floor_import}'": [sys.executable, "-c", f"import {floor_import}"],
        "journal ls": [*journal, "ls", "--url", url],
        "journal ls --json": [*journal, "ls", "--url", url, "--json"],
        "journal show ID": [*journal, "show", eid, "--url", url],
        "journal show ID --json": [*journal, "show", eid, "--url", url, "--json"],
    }
    for argv in cases.values():  # views caught up, files in the page cache
        timed(argv)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, argv in cases.items():
            times[name].append(timed(argv))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    bare = medians["python -c pass"]
    floor = medians[f"python -c 'import {floor_import}'"]
    print(f"\n{title} ({executions} executions; median of {repeat} runs, whole process)")
    print(f"  {'':<30} {'median':>9} {'min':>9}  {'/ bare':>7}  {'above floor':>11}")
    for name, ts in times.items():
        print(f"  {name:<30} {medians[name] * 1000:7.1f}ms {min(ts) * 1000:7.1f}ms"
              f"  {medians[name] / bare:6.2f}x  {(medians[name] - floor) * 1000:+9.1f}ms")


def _conninfo(url: str) -> str:
    from journal.storage.postgres import parse_postgres_url

    p = parse_postgres_url(url)
    return (f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
            + (f" password={p['password']}" if p["password"] else ""))


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"bench_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_conninfo(ADMIN), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_conninfo(ADMIN), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--executions", type=int, default=5)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            bench("SQLite", f"sqlite:///{tmp}/journal.db", "sqlite3", args.executions,
                  args.repeat)
    if args.only in (None, "postgres"):
        with postgres_database() as db:
            bench("PostgreSQL", db, "psycopg", args.executions, args.repeat)


if __name__ == "__main__":
    main()
