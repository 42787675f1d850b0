"""Two OS processes race for the same position of one execution: one wins, the log never forks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from journal import ConcurrencyConflict, Journal, StepStarted

ROUNDS = 5

# Each writer opens its own journal, then for every round: takes a handle at the end of the
# stream, says "ready", waits for "go" (both handles are then at the same position) and
# appends. It reports "won <position>" or "conflict <position>".
WRITER = textwrap.dedent(
    """
    import sys
    from journal import ConcurrencyConflict, Journal

    url, eid, name, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Journal.open(url) as journal:
        for _ in range(rounds):
            run = journal.execution(eid)
            print("ready", run.position, flush=True)
            assert sys.stdin.readline().strip() == "go"
            try:
                run.step_started(name)
                print("won", run.position, flush=True)
            except ConcurrencyConflict as e:
                print("conflict", e.position, flush=True)
    """
)


def _stderr(writers: list[subprocess.Popen[str]]) -> list[str]:
    for w in writers:
        if w.poll() is None:
            w.kill()
    return [w.communicate(timeout=30)[1][-2000:] for w in writers]


@pytest.mark.slow
def test_two_processes_race_for_one_position(journal_url: str, tmp_path: Path) -> None:
    with Journal.open(journal_url) as journal:
        eid = journal.start("race").id

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = Path(__file__).resolve().parents[2]
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), journal_url, str(eid), name, str(ROUNDS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=root,
        )
        for name in ("left", "right")
    ]
    try:
        for round_ in range(ROUNDS):
            ready = [w.stdout.readline().split() for w in writers]  # type: ignore[union-attr]
            if ready != [["ready", str(round_ + 1)]] * 2:
                pytest.fail(f"writers not ready: {ready}; stderr: {_stderr(writers)}")
            for w in writers:
                w.stdin.write("go\n")  # type: ignore[union-attr]
                w.stdin.flush()  # type: ignore[union-attr]
            outcomes = sorted(w.stdout.readline().split()[0] for w in writers)  # type: ignore[union-attr]
            assert outcomes == ["conflict", "won"], outcomes
        for w in writers:
            _, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
            w.communicate()  # closes the pipes

    with Journal.open(journal_url) as journal:
        events = journal.events(eid)
        assert [e.position for e in events] == list(range(1, ROUNDS + 2))
        steps = [e for e in events if isinstance(e, StepStarted)]
        assert len(steps) == ROUNDS  # one winner per round, nothing from the losers
        assert [s.seq for s in steps] == list(range(1, ROUNDS + 1))
        assert journal.state(eid).position == ROUNDS + 1


def test_a_stale_handle_in_the_same_process_conflicts(journal_url: str) -> None:
    with Journal.open(journal_url) as journal, Journal.open(journal_url) as other:
        mine = journal.start("race")
        theirs = other.execution(mine.id)
        theirs.step_started("theirs")
        with pytest.raises(ConcurrencyConflict) as info:
            mine.step_started("mine")
        assert info.value.position == 2 and info.value.execution_id == mine.id
        assert "Reload" in str(info.value)
        assert [type(e).__name__ for e in journal.events(mine.id)] == [
            "ExecutionStarted", "StepStarted"
        ]
        assert mine.step_started("mine") == 2  # the loser reloaded and carries on after it
