"""How long ``journal ls`` and ``journal show`` take as whole processes, against the interpreter.

Makes a small journal (``--executions`` runs of a 3-step workflow with costs, one paused) on
SQLite and on PostgreSQL (a database of its own, created and dropped on the server named by
``$JOURNAL_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``), then
times each command as a fresh subprocess, ``--repeat`` rounds (default 15), every command and
baseline once per round in turn (the machine drifts), and prints medians and the ratio to the
bare interpreter, with each one's CPU time (user + system: steadier than wall-clock when
others share the machine). Baselines, measured in the same rounds: ``python -c pass`` and
``python -c "import sqlite3"`` (``import psycopg`` for PostgreSQL): what any command that reads
the database cannot go below.

Every process runs with bytecode caching on (``$PYTHONDONTWRITEBYTECODE`` dropped, the cache
in a temporary ``$PYTHONPYCACHEPREFIX``, warmed by one untimed run of each), as an installed
``journal`` runs: without it each process compiles the journal's own modules again.

    python scripts/bench_cli.py [--repeat 15] [--executions 5] [--only sqlite|postgres]
                                [--against DIR]

``--against DIR`` also times the same commands from another checkout (``$PYTHONPATH=DIR``),
interleaved in the same rounds: a before/after on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import arg_parser, postgres_database


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


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                          env=env)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_journal_with(tree: str, url: str, executions: int, env: dict[str, str]) -> str:
    """``make_journal`` run by the code of another checkout (its own storage format)."""
    done = subprocess.run(
        [sys.executable, __file__, "--make", url, "--executions", str(executions)],
        env={**env, "PYTHONPATH": tree}, capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def bench(title: str, url: str, floor_import: str, executions: int, repeat: int,
          env: dict[str, str], against: tuple[str, str] | None) -> None:
    """``against``: another checkout and the URL of a journal for it to make and read."""
    eid = make_journal(url, executions)
    journal = journal_command()
    commands = {
        "journal ls": ["ls", "--url", url],
        "journal ls --json": ["ls", "--url", url, "--json"],
        "journal show ID": ["show", eid, "--url", url],
        "journal show ID --json": ["show", eid, "--url", url, "--json"],
    }
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        f"python -c 'import {floor_import}'": (
            [sys.executable, "-c", f"import {floor_import}"], env),
    }
    for name, args in commands.items():
        cases[name] = ([*journal, *args], env)
    if against is not None:
        tree, other_url = against
        other_eid = make_journal_with(tree, other_url, executions, env)
        other = {**env, "PYTHONPATH": tree}
        for name, args in commands.items():
            args = [other_eid if a == eid else other_url if a == url else a for a in args]
            cases[f"{name} (against)"] = ([*journal, *args], other)
    for name, (argv, e) in list(cases.items()):  # views caught up, files in the page cache
        try:
            timed(argv, e)
        except RuntimeError as error:
            print(f"  {name}: skipped, {error}"[:300])
            del cases[name]
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (argv, e) in cases.items():
            wall, used = timed(argv, e)
            times[name].append(wall)
            cpu[name].append(used)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    bare = medians["python -c pass"]
    floor = medians[f"python -c 'import {floor_import}'"]
    print(f"\n{title} ({executions} executions; median of {repeat} runs, whole process)")
    print(f"  {'':<34} {'median':>9} {'min':>9} {'cpu':>9}  {'/ bare':>7}  {'above floor':>11}")
    for name, ts in times.items():
        print(f"  {name:<34} {medians[name] * 1000:7.1f}ms {min(ts) * 1000:7.1f}ms"
              f" {statistics.median(cpu[name]) * 1000:7.1f}ms"
              f"  {medians[name] / bare:6.2f}x  {(medians[name] - floor) * 1000:+9.1f}ms")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--executions", type=int, default=5)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--make", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--against", metavar="DIR",
                        help="also time the commands of another checkout of this repository "
                             "(e.g. `git worktree add /tmp/before HEAD~3`), in the same rounds")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.make:  # a child making a journal with the code on its $PYTHONPATH
        print(make_journal(args.make, args.executions))
        return
    tree = os.path.abspath(args.against) if args.against else None
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        if args.only in (None, "sqlite"):
            with tempfile.TemporaryDirectory() as tmp:
                bench("SQLite", f"sqlite:///{tmp}/journal.db", "sqlite3", args.executions,
                      args.repeat, env, (tree, f"sqlite:///{tmp}/against.db") if tree else None)
        if args.only in (None, "postgres"):
            with postgres_database("bench_cli") as db, contextlib.ExitStack() as stack:
                other = stack.enter_context(postgres_database("bench_cli")) if tree else ""
                bench("PostgreSQL", db, "psycopg", args.executions, args.repeat, env,
                      (tree, other) if tree else None)


if __name__ == "__main__":
    main()
