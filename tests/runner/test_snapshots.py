"""Snapshots: a resume reads the latest snapshot and the events after it, never the history,
and gets exactly what folding the whole stream gives, in this process and in another."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import Journal
from journal.snapshots import decode_snapshot, encode_snapshot
from journal.state import fold
from runner import Context, Runner
from runner._engine import SNAPSHOT_EVENTS

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Note:
    text: str
    score: Decimal


def agent_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    def think(i: int) -> Note:
        return Note(text=f"thought {i}", score=Decimal(i) / 4)

    @runner.workflow(name="agent")
    def agent(ctx: Context, steps: int, every: int) -> dict[str, Any]:
        notes: list[Note] = []
        answers = []
        for i in range(steps):
            notes.append(ctx.step("think", think, i))
            if i % every == every - 1:
                answers.append(ctx.pause("review", payload={"at": i}))
                ctx.log("answered", i=i)
        return {"last": dataclasses.asdict(notes[-1]), "answers": answers}

    return runner


def read_after(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on stream reads: the ``after`` position of each."""
    storage: Any = journal.storage
    real = storage.read_stream
    seen: list[int] = []

    def read_stream(eid: Any, *, after: int = 0) -> Any:
        seen.append(after)
        return real(eid, after=after)

    monkeypatch.setattr(storage, "read_stream", read_stream)
    return seen


def test_long_agent_loop_resumes_from_snapshots(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = agent_runner(journal)
    run = runner.run("agent", 120, 10)
    resumes = 0
    while run.status == "paused":
        run = runner.resume(run.id, f"ok {resumes}")
        resumes += 1
    assert run.status == "completed" and resumes == 12
    assert run.output["answers"] == [f"ok {i}" for i in range(12)]
    assert run.output["last"] == {"text": "thought 119", "score": Decimal("29.75")}
    kept = journal.storage.get_snapshot(run.id)
    assert kept is not None and kept[0] >= SNAPSHOT_EVENTS  # written along the way

    # A later load reads only the events after the snapshot, and agrees with the full fold.
    reads = read_after(journal, monkeypatch)
    state = journal.state(run.id)
    assert reads == [kept[0] - 1]  # the snapshot's own last event (checked), then the tail
    monkeypatch.undo()
    assert state == fold(run.id, journal.events(run.id))


def test_resume_from_a_snapshot_in_another_process(journal: Journal, tmp_path: Path) -> None:
    """Writer and resumer are different processes, the resumer in another directory; the
    resumer reads the snapshot, not the stream before it, and finishes the same way."""
    runner = agent_runner(journal)
    run = runner.run("agent", 60, 10)
    for i in range(5):
        run = runner.resume(run.id, f"ok {i}")
    assert run.status == "paused"
    kept = journal.storage.get_snapshot(run.id)
    assert kept is not None
    journal.close()

    script = tmp_path / "elsewhere" / "resume.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from journal import Journal
        from tests.runner.test_snapshots import agent_runner
        journal = Journal.open(sys.argv[1])
        reads = []
        real = journal.storage.read_stream
        def spy(eid, *, after=0):
            reads.append(after)
            return real(eid, after=after)
        journal.storage.read_stream = spy
        run = agent_runner(journal).resume(sys.argv[2], "ok 5")
        print(json.dumps({{"status": run.status, "answers": run.output["answers"],
                          "reads": reads}}))
        journal.close()
    """))
    out = subprocess.run(
        [sys.executable, str(script), journal.url, str(run.id)], cwd=script.parent,
        capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert result["answers"] == [f"ok {i}" for i in range(6)]
    assert result["reads"] and min(result["reads"]) >= kept[0] - 1  # never from the start
    with Journal.open(journal.url) as again:
        final = again.state(run.id)
        assert final == fold(run.id, again.events(run.id))
        assert final.status == "completed"


def test_unreadable_snapshot_is_ignored(journal: Journal) -> None:
    runner = agent_runner(journal)
    run = runner.run("agent", 100, 50)
    run = runner.resume(run.id, "a")
    kept = journal.storage.get_snapshot(run.id)
    assert kept is not None
    truth = fold(run.id, journal.events(run.id))
    # Another format (a newer release), then garbage: both fall back to the whole fold.
    for data in (b"\x92\x63\xc0", b"not msgpack"):
        journal.storage.put_snapshot(run.id, kept[0] + 1, data)
        assert journal.state(run.id) == truth
        kept = (kept[0] + 1, data)
    done = runner.resume(run.id, "b")
    assert done.status == "completed" and done.output["answers"] == ["a", "b"]


def test_retention_deletes_snapshots_with_their_stream(journal: Journal) -> None:
    runner = agent_runner(journal)
    run = runner.run("agent", 60, 50)
    assert journal.storage.get_snapshot(run.id) is not None
    journal.storage.delete_streams([run.id])
    assert journal.storage.get_snapshot(run.id) is None


values = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.builds(Note, st.text(max_size=10), st.decimals(allow_nan=False, allow_infinity=False,
                                                       places=2)),
    st.lists(st.integers(), max_size=4),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outputs=st.lists(values, min_size=1, max_size=12), pause_at=st.integers(0, 12),
       answer=values)
def test_snapshot_round_trip_equals_the_fold(
    journal: Journal, outputs: list[Any], pause_at: int, answer: Any
) -> None:
    """state at any position -> snapshot bytes -> state is exact, typed values included."""
    handle = journal.start("w", {"n": len(outputs)})
    for i, out in enumerate(outputs):
        seq = handle.step_started("s", input={"i": i})
        if i == pause_at:
            handle.log("before pause")
            handle.paused("review", payload=out)
            handle.resumed(answer)
        handle.step_completed(seq, out)
    state = handle.state
    again = decode_snapshot(encode_snapshot(state))
    assert again == state
    assert again == fold(handle.id, journal.events(handle.id))


def test_a_value_changed_after_its_step_returned_never_reaches_the_snapshot(
    journal: Journal,
) -> None:
    runner = Runner(journal)

    def items(i: int) -> list[int]:
        return [i]

    @runner.workflow(name="mutates")
    def mutates(ctx: Context) -> list[list[int]]:
        got = [ctx.step("items", items, i) for i in range(60)]
        for g in got:
            g.append(-1)  # the workflow's own business, after the steps returned
        ctx.pause("look")
        return got

    run = runner.run(mutates)
    kept = journal.storage.get_snapshot(run.id)
    assert kept is not None
    snap = decode_snapshot(kept[1])
    assert snap is not None
    assert [snap.steps[s].output for s in sorted(snap.steps)] == [[i] for i in range(60)]
    done = runner.resume(run.id, None)
    assert done.output == [[i, -1] for i in range(60)]


def test_a_long_stream_without_a_snapshot_gets_one_when_loaded(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream written before snapshots existed (or imported): the first resume keeps a
    snapshot of the state as loaded, before replay hands any value to the workflow."""
    from runner._engine import Engine

    runner = agent_runner(journal)
    with monkeypatch.context() as m:
        m.setattr(Engine, "_snapshot", lambda self: None)  # as an older release wrote it
        run = runner.run("agent", 120, 60)
    assert journal.storage.get_snapshot(run.id) is None
    loaded_at = run.pause.position if run.pause else 0
    taken: list[int] = []
    real = journal.snapshot

    def snapshot(state: Any) -> bool:
        taken.append(state.position)
        return real(state)

    monkeypatch.setattr(journal, "snapshot", snapshot)
    run = runner.resume(run.id, "a")
    assert taken[0] == loaded_at  # at the load, from the log as it was
    done = runner.resume(run.id, "b")
    assert done.status == "completed" and done.output["answers"] == ["a", "b"]
    assert journal.state(run.id) == fold(run.id, journal.events(run.id))


def test_a_snapshot_of_a_deleted_stream_is_never_used_for_its_successor(
    journal: Journal,
) -> None:
    """A process that could not delete a snapshot with its stream (an older schema) leaves
    it behind; a new stream under the same id (an idempotency key used again) ignores it."""
    runner = agent_runner(journal)
    run = runner.run("agent", 60, 50, idempotency_key="same")
    kept = journal.storage.get_snapshot(run.id)
    assert kept is not None
    journal.storage.delete_streams([run.id])
    journal.storage.put_snapshot(run.id, kept[0], kept[1])  # left behind
    again = runner.run("agent", 60, 55, idempotency_key="same")
    assert again.id == run.id
    assert journal.state(again.id) == fold(again.id, journal.events(again.id))
    done = runner.resume(again.id, "x")
    assert done.status == "completed" and done.output["answers"] == ["x"]
