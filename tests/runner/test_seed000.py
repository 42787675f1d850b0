"""seeds/000: a run that reaches human_review 580 ms after it began lost its last log lines,
buffered in memory behind a 2-second flush timer. Here run() returns only once the previous
step's completion, the pause and every log line before it are committed: a second journal
on the same database (another process, say) reads them all at once.
"""

from __future__ import annotations

import time

from journal import ExecutionPaused, Journal, LogRecorded, StepCompleted, StepStarted
from runner import Context, Runner


def validate_structure(sections: list[str]) -> dict[str, int]:
    return {"sections": len(sections)}


def test_everything_before_the_pause_is_committed_when_run_returns(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow()
    def document_review(ctx: Context, doc: str) -> str:
        sections = ctx.step("split", str.split, doc)
        ctx.log("开始执行:structure_validation")
        result = ctx.step("structure_validation", validate_structure, sections)
        ctx.log("完成执行:structure_validation", **result)
        ctx.log("开始执行:human_review")
        ctx.pause("human_review", payload=result)
        return "reviewed"

    t0 = time.monotonic()
    with runner:
        run = runner.run(document_review, "intro body conclusion")
    elapsed = time.monotonic() - t0
    assert run.status == "paused"
    # The seed's scenario paused 580 ms after it began; the premise, not a speed test.
    assert elapsed < 5.0

    with Journal.open(journal.url) as other:  # read through another connection, right away
        events = other.events(run.id)
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "ExecutionPaused"
    seq = next(e.seq for e in events if isinstance(e, StepStarted)
               and e.name == "structure_validation")
    assert any(isinstance(e, StepCompleted) and e.seq == seq for e in events)
    assert [e.message for e in events if isinstance(e, LogRecorded)] == [
        "开始执行:structure_validation", "完成执行:structure_validation", "开始执行:human_review",
    ]
    pause = events[-1]
    assert isinstance(pause, ExecutionPaused)
    assert pause.reason == "human_review" and pause.payload == {"sections": 3}
    # the completion comes before the log lines written after it, as it happened
    done = next(e.position for e in events if isinstance(e, StepCompleted) and e.seq == seq)
    finished = next(e.position for e in events
                    if isinstance(e, LogRecorded) and e.message.startswith("完成"))
    assert done < finished
