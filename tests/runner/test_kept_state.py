"""A waiting execution's state kept in memory for its next resume in this process: what it
saves (no history read), and why it can never differ from the log (values handed to workflow
code and values taken from it are copies; another process's writes are folded on; a stream
replaced under the same id is never mistaken for it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from journal import Journal
from journal.state import fold
from runner import Context, Runner

ROOT = Path(__file__).resolve().parents[2]


def loop_runner(journal: Journal) -> Runner:
    """An agent loop whose workflow changes everything it is handed: step outputs, the
    resume values and its own input."""
    runner = Runner(journal)

    def think(i: int) -> Any:  # untyped: replay hands out what it holds, unconverted
        return {"i": i, "seen": []}

    @runner.workflow(name="loop")
    def loop(ctx: Context, turns: int, notes: list[str]) -> dict[str, Any]:
        seen = []
        for t in range(turns):
            out = ctx.step("think", think, t)
            seen.append(len(out["seen"]))  # 0 unless replay handed out a changed value
            out["seen"].append("changed by the workflow")
            answer = ctx.pause("turn")
            seen.append(len(answer["got"]))
            answer["got"].append("changed too")
            notes.append("changed input")
        return {"seen": seen, "notes": len(notes)}

    return runner


def spy_reads(journal: Journal) -> list[int]:
    storage: Any = journal.storage
    real = storage.read_stream
    seen: list[int] = []

    def read_stream(eid: Any, *, after: int = 0) -> Any:
        seen.append(after)
        return real(eid, after=after)

    storage.read_stream = read_stream
    return seen


def test_values_changed_by_the_workflow_never_reach_the_kept_state(journal: Journal) -> None:
    runner = loop_runner(journal)
    run = runner.run("loop", 6, ["a"])
    reads = spy_reads(journal)
    while run.status == "paused":
        run = runner.resume(run.id, {"got": []})
        # Each resume here takes the kept state: it reads at most the last event again.
        assert reads and min(reads) >= journal.state(run.id).position - 8
        reads.clear()
    assert run.status == "completed"
    assert run.output == {"seen": [0] * 12, "notes": 7}  # its own 6 appends, once
    state = journal.state(run.id)
    assert state == fold(run.id, journal.events(run.id))
    assert [s.output for s in state.steps.values()] == [{"i": i, "seen": []} for i in range(6)]
    assert [p.value for p in state.pauses] == [{"got": []}] * 6
    assert state.input == {"turns": 6, "notes": ["a"]}


def test_a_step_input_changed_after_the_step_started_stays_as_recorded(
    journal: Journal,
) -> None:
    runner = Runner(journal)

    def count(items: list[int]) -> int:
        return len(items)

    @runner.workflow(name="grows")
    def grows(ctx: Context) -> int:
        items = [1]
        total = 0
        for _ in range(3):
            total += ctx.step("count", count, items)
            items.append(len(items) + 1)
        ctx.pause("look")
        return total

    run = runner.run(grows)
    handle_state = journal.state(run.id)
    logged = fold(run.id, journal.events(run.id))
    assert [s.input for s in logged.steps.values()] == [
        {"items": [1]}, {"items": [1, 2]}, {"items": [1, 2, 3]}]
    assert handle_state == logged
    done = runner.resume(run.id, None)
    assert done.output == 6


def test_the_kept_state_folds_on_what_another_process_wrote(
    journal: Journal, tmp_path: Path
) -> None:
    runner = loop_runner(journal)
    run = runner.run("loop", 4, [])
    run = runner.resume(run.id, {"got": []})  # this process now keeps its state
    assert run.status == "paused"
    script = tmp_path / "other.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from journal import Journal
        from tests.runner.test_kept_state import loop_runner
        with Journal.open(sys.argv[1]) as journal:
            with loop_runner(journal) as runner:
                run = runner.resume(sys.argv[2], {{"got": ["elsewhere"]}})
                print(json.dumps({{"status": run.status}}))
    """))
    out = subprocess.run(
        [sys.executable, str(script), journal.url, str(run.id)], cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=True,
    )
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other["status"] == "paused"
    while run.status == "paused":
        run = runner.resume(run.id, {"got": []})
    assert run.status == "completed"
    # The other process's answer was replayed here (1 item seen at its turn), not lost.
    assert run.output == {"seen": [0, 0, 0, 1, 0, 0, 0, 0], "notes": 4}
    assert journal.state(run.id) == fold(run.id, journal.events(run.id))


def test_a_kept_state_is_never_used_for_a_stream_replaced_under_its_id(
    journal: Journal,
) -> None:
    runner = loop_runner(journal)
    run = runner.run("loop", 3, [], idempotency_key="same")
    run = runner.resume(run.id, {"got": []})  # kept here, at the old stream's head
    journal.storage.delete_streams([run.id])
    again = runner.run("loop", 2, ["new"], idempotency_key="same")
    assert again.id == run.id and again.status == "paused"
    done = runner.resume(run.id, {"got": []})
    done = runner.resume(run.id, {"got": []})
    assert done.status == "completed"
    assert done.output == {"seen": [0, 0, 0, 0], "notes": 3}
    assert journal.state(run.id) == fold(run.id, journal.events(run.id))
