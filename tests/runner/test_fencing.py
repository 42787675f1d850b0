"""Two runner processes resume or recover the same execution at once: exactly one proceeds.

The claim is the append of the next event at the next position; the loser's append of that
same position fails (ConcurrencyConflict) before any step code of its own has run.
"""

from __future__ import annotations

import time
from pathlib import Path

from journal import Journal
from tests.runner.test_crash import child, outputs
from tests.runner.workflows import contested, effects, make_runner


def release(barrier: Path, names: list[str]) -> None:
    deadline = time.monotonic() + 30
    while not all((barrier / f"ready-{n}").exists() for n in names):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.001)
    (barrier / "go").touch()


def test_two_processes_resume_one_paused_execution(journal_url: str, tmp_path: Path) -> None:
    path = tmp_path / "effects.txt"
    with Journal.open(journal_url) as journal, make_runner(journal) as runner:
        run = runner.run(contested, str(path))
    assert run.status == "paused"

    procs = [child("resume", journal_url, str(run.id), str(tmp_path), n) for n in ("a", "b")]
    release(tmp_path, ["a", "b"])
    results = outputs(procs)

    winners = [r for r in results if r.get("status") == "completed"]
    losers = [r for r in results if "error" in r]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0]["error"] == "AlreadyResumed"  # one situation, one error
    after = [e for e in effects(path) if e.startswith("after-")]
    assert len(after) == 1  # only the winner ran step code
    with Journal.open(journal_url) as journal:
        state = journal.state(run.id)
    assert state.status == "completed"
    assert [s.attempts for s in state.steps.values()] == [1, 1]


def test_two_processes_recover_one_orphaned_execution(journal_url: str, tmp_path: Path) -> None:
    path = tmp_path / "effects.txt"
    proc = child("run", journal_url, str(path), env={"KILL_AT": "3:after"})
    proc.communicate(timeout=60)
    assert effects(path) == ["s0", "s1", "s2"]
    time.sleep(1.1)  # let it go stale

    procs = [child("recover", journal_url, "1", str(tmp_path), n) for n in ("a", "b")]
    release(tmp_path, ["a", "b"])
    results = sorted(len(r["recovered"]) for r in outputs(procs))
    assert results == [0, 1]  # one recovered it; the other was fenced off or saw it fresh
    assert effects(path) == ["s0", "s1", "s2", "s2", "s3", "s4"]
