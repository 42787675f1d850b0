"""The folder beside a SQLite journal (``<journal>.leases``): one lock file, and one small
file naming each live process that holds leases; a killed process's file is removed by the
next process that takes a lease there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from journal import Journal

TAKE_LEASE = """
import json, sys
from pathlib import Path
from journal import Journal
with Journal.open(sys.argv[1]) as j:
    assert j.lease(Journal.new_execution_id()) is not None
    print(json.dumps(sorted(p.name for p in Path(sys.argv[2]).iterdir())))
"""


def test_the_lease_folder_holds_a_lock_file_and_the_live_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    folder = tmp_path / "journal.db.leases"
    with Journal.open(url) as journal:
        assert journal.lease(Journal.new_execution_id()) is not None
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        namespace = os.readlink("/proc/self/ns/pid")
        gone = f"pid-{dead.stdout.strip()}"
        (folder / gone).write_text(f"killed box:1 since then\npid namespace {namespace}")
        # The same pid written in another pid namespace (a container) is not judged here.
        (folder / "pid-999999999").write_text("box:7 since then\npid namespace pid:[1]")
        out = subprocess.run([sys.executable, "-c", TAKE_LEASE, url, str(folder)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)  # the folder as the other process saw it, leased
        assert gone not in seen and "pid-999999999" in seen
        assert "locks" in seen and f"pid-{os.getpid()}" in seen and len(seen) == 4
    # Closed cleanly: each process removed its own; the other namespace's file stays.
    assert sorted(p.name for p in folder.iterdir()) == ["locks", "pid-999999999"]
