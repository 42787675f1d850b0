"""Review of issue 10: failing tests for bugs found in the group commit, the record-lock
leases, deferred starts, snapshots and the async paths."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import pytest

from journal import Journal

HOLDER = textwrap.dedent(
    """
    import sys, time
    from journal import Journal
    journal = Journal.open(sys.argv[1])
    lease = journal.lease(sys.argv[2])
    print("held" if lease is not None else "refused", flush=True)
    if lease is not None:
        time.sleep(60)
    """
)


def _try_lease_elsewhere(url: str, eid: UUID) -> tuple[str, subprocess.Popen[str]]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(eid)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p.stdout.readline().strip(), p


def _stop(p: subprocess.Popen[str]) -> None:
    p.kill()
    p.communicate()


def test_file_leases_of_ids_sharing_their_top_bits_are_distinct(tmp_path: Path) -> None:
    # Ids a user gives (sequential, or time-ordered like uuid7 made in one millisecond)
    # share their top 62 bits: they must still be separate leases.
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    a, b = UUID(int=1), UUID(int=2)
    with Journal.open(url) as journal:
        la = journal.lease(a)
        assert la is not None
        answer, p = _try_lease_elsewhere(url, b)
        _stop(p)
        assert answer == "held"  # b is not driven by anyone
        lb = journal.lease(b)
        assert lb is not None
        lb.release()  # must not drop a's lock
        answer, p = _try_lease_elsewhere(url, a)
        _stop(p)
        assert answer == "refused"
        la.release()


INTERRUPTED_WAITER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import psycopg
    from journal import Journal

    journal = Journal.open(sys.argv[1])
    storage = journal.storage
    journal.start("warm")
    blocker = psycopg.connect(**storage.conninfo)
    blocker.execute(f"LOCK TABLE {storage.events_table} IN EXCLUSIVE MODE")

    leader = threading.Thread(target=journal.start, args=("leader",))
    leader.start()  # leads a group, blocked on the table lock
    while not storage._leading:
        time.sleep(0.01)
    time.sleep(0.2)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        journal.start("waiter")  # waits in the group: interrupted (Ctrl-C)
    except KeyboardInterrupt:
        pass
    blocker.rollback()  # the leader commits now
    leader.join(10)
    later = threading.Thread(target=journal.start, args=("later",), daemon=True)
    later.start()
    later.join(10)
    print("hung" if later.is_alive() else "ok", flush=True)
    os._exit(0)
    """
)


def test_an_interrupted_group_commit_waiter_does_not_hang_later_appends(
    journal_url: str,
) -> None:
    if not journal_url.startswith("postgresql"):
        return  # the group commit is PostgreSQL's
    with Journal.open(journal_url):
        pass  # the schema
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_WAITER, journal_url],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_pause_whose_snapshot_cannot_be_read_still_pauses(
    journal_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A snapshot is a cache: a failed read of the log for it must not turn the pause (already
    # durable) into an error in the workflow.
    from journal import JournalError
    from runner import Context, Runner
    from runner._engine import SNAPSHOT_EVENTS

    with Journal.open(journal_url) as journal:
        runner = Runner(journal)

        @runner.workflow(name="long")
        def long(ctx: Context) -> str:
            for i in range(SNAPSHOT_EVENTS):
                ctx.step("s", lambda i=i: i)
            return str(ctx.pause("review"))

        def unavailable(execution_id: object) -> object:
            raise JournalError("the journal is unavailable for a moment")

        monkeypatch.setattr(journal, "load_state", unavailable)
        run = runner.run("long")
        monkeypatch.undo()
        assert run.status == "paused"
        assert runner.resume(run.id, "ok").output == "ok"


SNAPSHOT_OF_A_HANDLE = textwrap.dedent(
    """
    import os, sys
    from journal import Journal
    journal = Journal.open(sys.argv[1])
    handle = journal.start("w")
    handle.log("buffered, not yet committed")
    journal.snapshot(handle.state)  # the state from a handle, as the docstring says
    print(handle.id, flush=True)
    os._exit(0)  # dies before the log line's flush
    """
)


def test_a_snapshot_never_runs_ahead_of_the_log(journal_url: str) -> None:
    from journal.state import fold

    with Journal.open(journal_url) as journal:
        out = subprocess.run([sys.executable, "-c", SNAPSHOT_OF_A_HANDLE, journal_url],
                             capture_output=True, text=True, timeout=60, check=True)
        eid = UUID(out.stdout.strip())
        assert journal.state(eid) == fold(eid, journal.events(eid))


def test_a_run_cancelled_twice_lets_go_of_its_lease(journal_url: str) -> None:
    # Cancellation that is delivered again at each await (anyio's cancel scopes, a
    # supervisor cancelling until the task ends) must not keep the lease forever.
    import asyncio

    from runner import AsyncContext, Runner

    with Journal.open(journal_url) as journal:
        runner = Runner(journal)
        started = asyncio.Event()

        async def slow() -> int:
            started.set()
            await asyncio.sleep(30)
            return 1

        @runner.workflow(name="slow")
        async def slow_wf(ctx: AsyncContext) -> int:
            return int(await ctx.step("slow", slow))

        async def main() -> UUID:
            other = asyncio.create_task(asyncio.sleep(60))  # commits go off the loop
            task = asyncio.create_task(runner.arun("slow", execution_id=UUID(int=7)))
            await started.wait()
            while not task.done():
                task.cancel()
                await asyncio.sleep(0)
            other.cancel()
            return UUID(int=7)

        eid = asyncio.run(main())
        lease = journal.lease(eid)
        assert lease is not None  # nobody drives it any more
        lease.release()


REDELIVERED = textwrap.dedent(
    """
    import sys, time
    from journal import Journal
    from runner import Context, Runner
    journal = Journal.open(sys.argv[1])
    runner = Runner(journal)

    @runner.workflow(name="task")
    def task(ctx: Context) -> str:
        if sys.argv[2] == "first":
            print("started", flush=True)
            time.sleep(float(sys.argv[3]))  # workflow code before its first step
        return "done"

    try:
        run = runner.run("task", idempotency_key="order-1")
        print(run.status, run.held_elsewhere, flush=True)
    except Exception as e:
        print(type(e).__name__, flush=True)
    """
)


def test_a_redelivered_idempotent_run_sees_the_live_one(journal_url: str) -> None:
    # README: a redelivered run(..., idempotency_key=k) "leaves one a live process drives
    # alone (Run.held_elsewhere)"; with ExecutionStarted deferred to the first commit it
    # must still find the execution, not raise ExecutionBusy.
    with Journal.open(journal_url):
        pass
    first = subprocess.Popen([sys.executable, "-c", REDELIVERED, journal_url, "first", "4"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "started"
        again = subprocess.run([sys.executable, "-c", REDELIVERED, journal_url, "again"],
                               capture_output=True, text=True, timeout=60)
        assert again.stdout.strip() == "running True", again.stderr
    finally:
        _stop(first)
