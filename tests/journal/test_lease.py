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


def test_a_lease_is_a_record_lock_with_no_file_per_execution(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        runs = [journal.start("w") for _ in range(20)]
        leases = [journal.lease(r.id) for r in runs]
        assert all(lease is not None for lease in leases)
        made = sorted(p.name for p in (tmp_path / "j.db.leases").iterdir())
        assert made == ["locks", f"pid-{os.getpid()}"]
        for lease in leases:
            assert lease is not None
            lease.release()


def test_another_process_is_named_as_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        eid = str(journal.start("w").id)
    holder = _hold_in_another_process(url, eid)
    try:
        with Journal.open(url) as journal:
            assert journal.lease(eid) is None
            named = journal.lease_holder(eid)
            assert named is not None and f":{holder.pid} " in named  # host:pid since ...
    finally:
        holder.kill()
        holder.communicate()
    with Journal.open(url) as journal:
        lease = journal.lease(eid)  # the OS dropped the dead holder's lock
        assert lease is not None
        lease.release()


LEGACY_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"an earlier release")
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_lock_file_of_the_earlier_release_is_respected(tmp_path: Path) -> None:
    """A process of the release that flocked one file per execution still fences us."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        run = journal.start("w")
    (tmp_path / "j.db.leases").mkdir(exist_ok=True)
    legacy = tmp_path / "j.db.leases" / run.id.hex
    old = subprocess.Popen([sys.executable, "-c", LEGACY_HOLDER, str(legacy)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert old.stdout is not None and old.stdout.readline().strip() == "held"
        with Journal.open(url) as journal:
            assert journal.lease(run.id) is None
            assert journal.lease_holder(run.id) == "an earlier release"
    finally:
        old.kill()
        old.communicate()
    with Journal.open(url) as journal:
        lease = journal.lease(run.id)
        assert lease is not None
        journal.execution(run.id).completed()
        lease.release()
        journal.storage.delete_streams([run.id])
        assert not legacy.exists()  # retention removes what the earlier release made


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
