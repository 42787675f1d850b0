"""No step's code ever runs in two processes at once, whatever the interleaving.

Hypothesis chooses a schedule over real processes: the first driver runs a three-step
workflow; then, at chosen moments, the latest live driver is SIGKILLed, every database
session is dropped (PostgreSQL), the task is redelivered (``run()`` with the same
idempotency key) or ``recover(stale_after=0)`` runs elsewhere. Each step writes its start
and end to an fsync'd ledger. Afterwards the execution completes, and for every step the
intervals of different processes never overlap (a killed process's open interval lasts
until its kill).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import Journal
from journal.storage.postgres import connect_params
from tests.conftest import _admin_conninfo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 30 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 4

actions = st.lists(
    st.tuples(st.sampled_from(["kill", "drop", "redeliver", "recover"]), st.integers(0, 300)),
    min_size=1, max_size=4,
)


def spawn(mode: str, url: str, ledger: Path, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runner.ledger_child", mode, url, str(ledger), key],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def intervals(ledger: Path, killed: dict[int, float]) -> dict[str, list[tuple[float, float]]]:
    opened: dict[tuple[str, int], float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        step, pid, what, at = line.split()
        if what == "start":
            opened[(step, int(pid))] = float(at)
        else:
            out.setdefault(step, []).append((opened.pop((step, int(pid))), float(at)))
    for (step, pid), start in opened.items():  # cut short: it ran until its process died
        assert pid in killed, f"{step} started in {pid}, which neither ended it nor was killed"
        out.setdefault(step, []).append((start, killed[pid]))
    return out


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=actions)
def test_no_step_runs_in_two_processes_at_once(
    journal_url: str, tmp_path_factory: Any, plan: list[tuple[str, int]]
) -> None:
    work = tmp_path_factory.mktemp("interleave")
    ledger = work / "ledger.txt"
    key = f"task-{work.name}"
    url = journal_url if journal_url.startswith("postgresql") else f"sqlite:///{work}/j.db"
    procs = [spawn("run", url, ledger, key)]
    drivers = [procs[0]]
    killed: dict[int, float] = {}
    for action, delay_ms in plan:
        time.sleep(delay_ms / 1000)
        if action == "kill":
            live = [p for p in drivers if p.poll() is None]
            if live:
                killed[live[-1].pid] = time.time()
                live[-1].send_signal(signal.SIGKILL)
        elif action == "drop" and url.startswith("postgresql"):
            with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (connect_params(url)["dbname"],),
                )
        elif action in ("redeliver", "recover"):
            proc = spawn("run" if action == "redeliver" else "recover", url, ledger, key)
            procs.append(proc)
            drivers.append(proc)
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0 or p.pid in killed, err
    # Whatever was left running is finished by a redelivery (after any grace period).
    for _ in range(3):
        with Journal.open(url) as journal:
            eid = journal.new_execution_id(idempotency_key=key)
            try:
                status = journal.state(eid).status
            except LookupError:
                status = "missing"
        if status == "completed":
            break
        final = spawn("run", url, ledger, key)
        out, err = final.communicate(timeout=60)
        assert final.returncode == 0, err
        if json.loads(out.strip().splitlines()[-1]).get("status") == "completed":
            break
    else:
        raise AssertionError(f"not completed after the plan {plan}: {status}")
    ends = [line.split()[0] for line in ledger.read_text().splitlines() if " end " in line]
    drops = sum(1 for action, _ in plan if action == "drop")
    for step in set(ends):
        # Done again only where a driver was killed (or lost its lease in a dropped
        # session) before its completion was committed.
        assert ends.count(step) <= 1 + len(killed) + drops, (step, ends, plan)
    for step, spans in intervals(ledger, killed).items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"step {step} ran in two processes at once: {spans} ({plan})"
