"""Replay tests for a service's own suite: keep recorded histories (``journal export``) in a
folder, and check in CI that today's code still replays every one of them::

    from pathlib import Path
    from runner.testing import replay
    from myservice.workflows import runner

    def test_recorded_histories_still_replay():
        for path in Path("tests/histories").glob("*.json"):
            replay(runner, path)

A history that the code no longer replays raises :class:`NonDeterministicWorkflow`, with a
call-by-call listing of what was recorded against what the code calls now. Replay is the
runner's own, dry: nothing is written anywhere and no step code runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from journal import Event, Journal, fold
from journal.state import ExecutionState
from runner._runner import Runner
from runner.check import CheckResult, dry_replay
from runner.errors import NonDeterministicWorkflow, RunnerError

__all__ = ["replay"]


def replay(
    target: Runner | Callable[..., Any], history: str | Path | Sequence[Event]
) -> CheckResult:
    """Replay ``history`` (a file ``journal export`` wrote, or its events) against ``target``
    (a runner with the workflow registered, or the workflow function itself). Returns the
    result when it replays cleanly; raises :class:`NonDeterministicWorkflow` (with the
    listing as a note) when the code diverges, and :class:`RunnerError` when the history
    cannot be replayed here at all (its workflow is not there, a value cannot be decoded)."""
    events = _events(history)
    if not events:
        raise ValueError("replay() needs a history with at least its ExecutionStarted")
    state = fold(events[0].execution_id, list(events))
    runner = target if isinstance(target, Runner) else _runner_for(target, state)
    result = dry_replay(runner, state)
    if result.outcome == "diverged":
        error = result.error or NonDeterministicWorkflow(
            execution_id=state.execution_id, workflow=state.workflow, seq=result.seq or 0,
            recorded=result.recorded, called=result.called, recorded_kind="call",
            called_kind="call",
        )
        error.add_note(listing(state, result))
        if result.hint:
            error.add_note(f"hint: {result.hint}")
        raise error
    if result.outcome != "ok":
        raise RunnerError(f"history of execution {state.execution_id} cannot be replayed "
                          f"here ({result.outcome}): {result.message}")
    return result


def listing(state: ExecutionState, result: CheckResult) -> str:
    """The recorded calls before the divergence, then what was recorded there against what
    the code calls now."""
    rows: list[tuple[float, str, str]] = [
        (s.seq, str(s.seq), f"step {s.name!r}") for s in state.steps.values()]
    rows += [(c.seq, str(c.seq), f"{c.kind} {c.name!r}") for c in state.calls.values()]
    rows += [(p.steps_before + 0.5, "-", f"pause {p.reason!r}") for p in state.pauses]
    lines = ["seq  recorded                         now"]
    for key, seq, text in sorted(rows):
        if result.seq is not None and key >= result.seq - 0.5:
            break
        lines.append(f"{seq:>3}  {text:<32} (the same)")
    lines.append(f"{result.seq if result.seq is not None else '-':>3}  "
                 f"{result.recorded or '(nothing)':<32} "
                 f"{result.called or 'nothing (it returns)'}  <-- diverges")
    return "\n".join(lines)


def _events(history: str | Path | Sequence[Event]) -> list[Event]:
    if isinstance(history, str | Path):
        from runner.cli.retention import read_archive

        return read_archive(Path(history))[1]
    return list(history)


def _runner_for(fn: Callable[..., Any], state: ExecutionState) -> Runner:
    """A runner on an in-memory journal with ``fn`` under the history's workflow name."""
    runner = Runner(Journal.open("memory:"))
    runner.register(fn, name=state.workflow)
    return runner
