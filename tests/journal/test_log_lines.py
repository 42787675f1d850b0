"""An accepted log line is never dropped silently: not by a lost race, not at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from journal import ConcurrencyConflict, InvalidTransition, Journal, LogRecorded

ROOT = Path(__file__).resolve().parents[2]


def _lines(journal: Journal, eid: object) -> list[str]:
    return [e.message for e in journal.events(eid) if isinstance(e, LogRecorded)]  # type: ignore[arg-type]


def test_lines_of_a_lost_race_go_at_the_new_head(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        mine = journal.start("race")
        rival = journal.execution(mine.id)
        mine.log("one", n=1)
        mine.log("two")
        rival.step_started("theirs")  # takes position 2 first
        with pytest.raises(ConcurrencyConflict):
            mine.step_started("mine")  # the lifecycle event lost; the lines must not
        events = journal.events(mine.id)
        assert [type(e).__name__ for e in events] == [
            "ExecutionStarted", "StepStarted", "LogRecorded", "LogRecorded"]
        assert _lines(journal, mine.id) == ["one", "two"]
        assert events[2].fields == {"n": 1}  # type: ignore[attr-defined]
        mine.log("three")  # the handle goes on from what the log holds
        mine.flush()
        assert _lines(journal, mine.id) == ["one", "two", "three"]


def test_lines_that_cannot_follow_an_end_are_reported(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        mine = journal.start("race")
        rival = journal.execution(mine.id)
        mine.log("too late")
        rival.completed("done")
        with pytest.raises(ConcurrencyConflict) as lost:
            mine.step_started("mine")
        assert any("log line" in note for note in getattr(lost.value, "__notes__", []))
        with pytest.raises(InvalidTransition):
            mine.log("after the end")
        assert _lines(journal, mine.id) == []


def test_lines_buffered_at_interpreter_exit_are_written(journal_url: str) -> None:
    script = (
        "import sys\n"
        "from journal import Journal\n"
        "journal = Journal.open(sys.argv[1])\n"
        "run = journal.start('exit')\n"
        "run.log('last words')\n"
        "print(run.id)\n"  # no close(), no flush(): the process simply ends
    )
    done = subprocess.run([sys.executable, "-c", script, journal_url], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    with Journal.open(journal_url) as journal:
        assert _lines(journal, done.stdout.strip()) == ["last words"]
