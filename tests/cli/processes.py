"""Real processes for the CLI tests: ``python -m journal`` and a live lease holder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

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


def hold(url: str, eid: object) -> subprocess.Popen[str]:
    """A live process holding the execution's lease, as a busy driver does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(eid)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != "held":
        holder.kill()
        holder.communicate()
        raise AssertionError("the holder did not get the lease")
    return holder


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.communicate()


def journal_cli(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "JOURNAL_URL": url, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(PROJECT),
                                                       os.environ.get("PYTHONPATH"))))}
    return subprocess.Popen([sys.executable, "-m", "journal", *args], env=env, cwd=PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
