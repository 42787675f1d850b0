"""``Runner.enqueue``: a run recorded in one process and run by a ``journal serve`` process
elsewhere (another directory, none of this process's state), exactly once; the serving
process seen alive by others, with its code versions; a queued run's idempotency key, its
cancellation, and its stall reason. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from journal import Journal
from journal.errors import ExecutionNotFound, JournalError
from journal.storage.base import WORKER_ALIVE_FOR
from projections import Projections
from runner import ExecutionBusy, SecretInput, WorkflowNotFound
from tests.polling import until
from tests.runner import queued

PROJECT = Path(__file__).resolve().parents[2]



def _serve(url: str, cwd: Path, ledger: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "QUEUE_LEDGER": str(ledger)}
    env.pop("JOURNAL_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "journal", "serve", "--app", "tests.runner.queued:runner",
         "--url", url, "--workers", "4", "--poll-interval", "0.1", "--grace", "10"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_enqueued_runs_are_run_once_by_a_serve_process_elsewhere(
    journal_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("QUEUE_LEDGER", str(ledger))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Journal.open(journal_url) as journal, queued.make_runner(journal) as runner:
        runs = [runner.enqueue(queued.work, n) for n in range(12)]
        assert {r.status for r in runs} == {"queued"} and not ledger.exists()  # none ran
        again = runner.enqueue(queued.work, 99, idempotency_key="order-7")
        assert runner.enqueue(queued.work, 99, idempotency_key="order-7").id == again.id
        dropped = runner.enqueue(queued.work, 100)
        assert runner.cancel(dropped.id, reason="not needed").status == "cancelled"
        with Projections(journal) as views:
            views.catch_up()
            assert {e.status for e in views.executions(limit=100)} == {"queued", "cancelled"}
            # No serve() process is alive: nothing will take them, and stuck says so.
            stalls = views.stalled(older_than=timedelta(hours=1))
            assert {s.execution.execution_id for s in stalls} == {r.id for r in [*runs, again]}
            assert all(s.reason.kind == "queued" and s.reason.text.endswith(
                "; no serve() process is alive") for s in stalls), stalls
        versions = runner.versions()

    proc = _serve(journal_url, elsewhere, ledger)
    try:
        with Journal.open(journal_url) as journal:
            ids = [r.id for r in [*runs, again]]
            until(lambda: proc.poll() is not None or all(
                journal.state(i).status == "completed" for i in ids), "the queue to drain")
            assert proc.poll() is None, proc.communicate()
            for r, n in zip(runs, range(12), strict=True):
                state = journal.state(r.id)
                assert state.output == n * 2 and state.driver is not None
                assert (state.driver.reason, state.driver.pid) == ("dequeue", proc.pid)
            assert journal.state(dropped.id).status == "cancelled"
            # Alive, as this process sees it: the serving process and the code it runs.
            [worker] = journal.storage.workers(WORKER_ALIVE_FOR) or []
            assert worker.pid == proc.pid and worker.workflows == versions
            # A workflow that process does not run stays queued, and stuck (its own
            # process, from elsewhere) says why at once.
            with queued.make_runner(journal) as here:
                here.register(queued.work, name="billing")
                orphan = here.enqueue("billing", 5).id
            out = subprocess.run(
                [sys.executable, "-m", "journal", "stuck", "--json", "--url", journal_url],
                cwd=elsewhere, capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            [stall] = json.loads(out.stdout)
            assert stall["execution_id"] == str(orphan) and stall["kind"] == "stranded"
            assert stall["reason"] == (
                "stranded: workflow billing is not served by any live process (serving: "
                f"{socket.gethostname()}:{proc.pid})")
            assert journal.state(orphan).status == "queued"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    ran = sorted(int(line.split()[0]) for line in ledger.read_text().splitlines())
    assert ran == [*range(12), 99]  # each step once; the cancelled one never
    with Journal.open(journal_url) as journal:
        assert journal.storage.workers() == []  # it signed off as it stopped


def test_run_with_the_key_of_a_queued_execution_runs_it_here(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, queued.make_runner(journal) as runner:
        first = runner.enqueue(queued.work, 4, idempotency_key="k")
        done = runner.run(queued.work, 4, idempotency_key="k")
        assert done.id == first.id and (done.status, done.output) == ("completed", 8)
        state = journal.state(first.id)
        assert state.driver is not None and state.driver.reason == "dequeue"
        assert state.driver.pid == os.getpid()
        # Done: enqueueing it again returns it as it is, and nothing more is written.
        head = state.position
        assert runner.enqueue(queued.work, 4, idempotency_key="k").status == "completed"
        assert journal.state(first.id).position == head


def test_enqueue_refuses_what_run_refuses_and_writes_nothing(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, queued.make_runner(journal) as runner:
        with pytest.raises(WorkflowNotFound):
            runner.enqueue("nowhere", 1)
        with pytest.raises(TypeError):
            runner.enqueue(queued.work)  # its argument is missing
        with pytest.raises(SecretInput, match="api_key"):
            runner.enqueue(queued.call, {"api_key": "sk-" + "a" * 40})
        assert journal.storage.head() == 0
        with pytest.raises(ExecutionNotFound):
            journal.state(Journal.new_execution_id(idempotency_key="x"))


def test_recover_leaves_queued_runs_to_serve_and_says_so(journal_url: str, tmp_path: Path
                                                        ) -> None:
    with Journal.open(journal_url) as journal, queued.make_runner(journal) as runner:
        ids = [runner.enqueue(queued.work, n).id for n in (1, 2)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("JOURNAL_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "journal", "recover", "--app", "tests.runner.queued:runner",
         "--url", journal_url, "--stale-after", "0s"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "2 queued execution(s) wait for a serve() process" in out.stdout, out.stdout
    with Journal.open(journal_url) as journal:
        assert [journal.state(i).status for i in ids] == ["queued", "queued"]


def test_enqueue_under_a_lease_held_elsewhere_writes_nothing(journal_url: str) -> None:
    """A run() of the same key holds the lease, its start not committed yet (deferred):
    enqueue does not write a start of its own under it."""
    eid = Journal.new_execution_id(idempotency_key="k1")
    with Journal.open(journal_url) as other, Journal.open(journal_url) as journal, \
            queued.make_runner(journal) as runner:
        lease = other.lease(eid)
        assert lease is not None
        with pytest.raises(ExecutionBusy):
            runner.enqueue(queued.work, 1, idempotency_key="k1")
        assert journal.storage.head() == 0
        lease.release()
        first = runner.enqueue(queued.work, 1, idempotency_key="k1")
        # Now a server (here: the other journal) is taking it: run() of its key says so.
        lease = other.lease(eid)
        assert lease is not None
        taken = runner.run(queued.work, 1, idempotency_key="k1")
        assert (taken.id, taken.status, taken.held_elsewhere) == (first.id, "queued", True)
        lease.release()


def test_enqueue_into_a_journal_without_wake_ups_is_refused(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        views = journal.storage.views()
        try:
            views.execute("DROP TABLE " + (
                "journal_wakeups" if journal_url.startswith("sqlite") else
                f"{journal_url.rpartition('schema=')[2].split('&')[0]}.journal_wakeups"))
        finally:
            views.close()
    with Journal.open(journal_url, create=False) as journal, \
            queued.make_runner(journal) as runner:
        with pytest.raises(JournalError, match="no journal_wakeups table"):
            runner.enqueue(queued.work, 1)
        assert journal.storage.head() == 0


def test_serve_goes_on_when_it_cannot_say_it_is_alive(pg_database: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """A role with rights on every table but journal_workers (granted table by table before
    the table existed): serve() still runs what is queued, and says why it is not listed."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    url = f"{pg_database}?schema={schema}"
    with Journal.open(url):
        pass
    role = f"rw_{uuid.uuid4().hex[:10]}"
    dbname = urlsplit(pg_database).path.lstrip("/")
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"')
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'REVOKE ALL ON "{schema}".journal_workers FROM "{role}"')
    parts = urlsplit(pg_database)
    limited = f"postgresql://{role}@{parts.hostname}:{parts.port or 5432}/{dbname}?schema={schema}"
    try:
        with Journal.open(limited, create=False) as journal, \
                queued.make_runner(journal) as runner:
            run = runner.enqueue(queued.work, 3)
            stop = threading.Event()
            serving = threading.Thread(target=runner.serve, kwargs={
                "stop": stop, "poll_interval": 0.05, "handle_signals": False})
            serving.start()
            try:
                until(lambda: journal.state(run.id).status == "completed", "serve to run it",
                      timeout=20)
            finally:
                stop.set()
                serving.join(timeout=30)
            assert journal.state(run.id).output == 6
    finally:
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE usename = %s", (role,))
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_a_run_taken_off_the_queue_is_due_no_more_while_it_runs(journal_url: str) -> None:
    """Its claim's commit forgets the queue's wake-up: servers do not keep trying a run a
    live process drives through a long step."""
    gate = threading.Event()
    with Journal.open(journal_url) as journal, queued.make_runner(journal) as runner:
        runner.register(lambda ctx: ctx.step("long", gate.wait, 30), name="long")
        first = runner.enqueue("long", idempotency_key="long-1")
        assert [w[0] for w in journal.storage.due(time.time() + 1)] == [first.id]
        done: list[object] = []
        driving = threading.Thread(target=lambda: done.append(
            runner.run("long", idempotency_key="long-1")))
        driving.start()
        try:
            until(lambda: journal.state(first.id).status == "running", "the claim")
            assert journal.storage.due(time.time() + 1) == []
        finally:
            gate.set()
            driving.join(timeout=30)
        assert journal.state(first.id).status == "completed"
