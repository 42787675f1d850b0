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
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lease_is_exclusive_until_its_process_dies(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        eid = str(journal.start("w").id)
        holder = _hold_in_another_process(journal_url, eid)
        try:
            assert journal.lease(eid) is None  # a live process drives it
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()
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
        again.release(ended=True)


def test_an_ended_executions_lease_file_is_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    with Journal.open(url) as journal:
        run = journal.start("w")
        lease = journal.lease(run.id)
        assert lease is not None
        assert (tmp_path / "j.db.leases" / run.id.hex).exists()
        run.completed()
        lease.release(ended=True)
        assert not (tmp_path / "j.db.leases" / run.id.hex).exists()
