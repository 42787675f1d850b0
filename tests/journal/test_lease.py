"""Liveness leases: held by the process driving an execution, gone when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from journal import Journal

HOLDER = textwrap.dedent(
    """
    import sys, time
    from journal import Journal
    journal = Journal.open(sys.argv[1])
    lease = journal.lease(sys.argv[2])
    print("held" if lease is not None else "refused", flush=True)
    time.sleep(60)
    """
)


def _hold_in_another_process(url: str, eid: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, eid], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
    except BaseException:
        holder.kill()
        holder.communicate()
        raise
    return holder


def test_a_lease_is_exclusive_until_its_process_dies(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        eid = str(journal.start("w").id)
        holder = _hold_in_another_process(journal_url, eid)
        try:
            assert journal.lease(eid) is None  # a live process drives it
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.communicate()
        deadline = time.monotonic() + 10
        lease = journal.lease(eid)
        while lease is None and time.monotonic() < deadline:  # PostgreSQL notices the death
            time.sleep(0.05)
            lease = journal.lease(eid)
        assert lease is not None
        assert journal.lease(eid) is None  # not twice in one process either
        lease.release()
        again = journal.lease(eid)
        assert again is not None
        again.release()
        again.release()  # idempotent
        assert journal.lease(eid) is not None


def test_a_lease_file_goes_with_its_stream(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        run = journal.start("w")
        lease = journal.lease(run.id)
        assert lease is not None
        assert (tmp_path / "j.db.leases" / run.id.hex).exists()
        run.completed()
        lease.release()
        assert (tmp_path / "j.db.leases" / run.id.hex).exists()  # never unlinked while live
        journal.storage.delete_streams([run.id])
        assert not (tmp_path / "j.db.leases" / run.id.hex).exists()


def test_no_lease_through_a_closed_journal(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    eid = journal.start("w").id
    journal.close()
    with Journal.open(journal_url) as other:
        lease = other.lease(eid)  # the closed journal's process holds nothing
        assert lease is not None
        lease.release()


def test_a_lost_postgres_lease_session_is_replaced_and_its_leases_retaken(
    pg_database: str,
) -> None:
    import psycopg

    from journal.storage.postgres import connect_params

    url = f"{pg_database}?schema=s_lease"
    with Journal.open(url) as journal, Journal.open(url) as other:
        eid = journal.start("w").id
        lease = journal.lease(eid)
        assert lease is not None
        keeper = journal.storage.leases
        pid = keeper._conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(**connect_params(url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.01)
        keeper.check()  # the heartbeat notices, reconnects and takes the lease again
        assert keeper._conn.info.backend_pid != pid  # type: ignore[attr-defined]
        assert other.lease(eid) is None
        lease.release()
        again = other.lease(eid)
        assert again is not None
        again.release()
