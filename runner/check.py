"""Replaying recorded executions against the code now importable, writing nothing and running
no step code: the pre-deploy ``check`` and the replay tests of ``runner.testing``.

A dry replay is the runner's own replay (the same engine, the same matching of calls), with
every write turned into a stop: at the first call that would run live (a step's code, a new
pause, a wait's record) the replay has shown what it had to show, and ends there. A
divergence before that point is the :class:`NonDeterministicWorkflow` a real resume would
raise, and nothing else can happen on the way: no lease is taken, no log line is written, no
snapshot kept, no child started.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from journal import DecodingError, ExecutionHandle, ExecutionState
from journal.state import PAUSED, RUNNING, WAITING
from runner._engine import UNSET, Engine, Halt
from runner._runner import _unbind_input
from runner.context import AsyncContext, Context
from runner.errors import (
    IncompatibleOutput,
    NonDeterministicWorkflow,
    ValueClassMissing,
    WorkflowNotFound,
)

if TYPE_CHECKING:
    from runner._runner import Runner

__all__ = ["OPEN_STATUSES", "CheckResult", "dry_replay"]

#: Executions a deploy may break: any that will be replayed again.
OPEN_STATUSES = (RUNNING, PAUSED, WAITING)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckResult:
    """How one execution replays against the code now importable."""

    execution_id: str
    workflow: str
    status: str
    #: ok (replays cleanly), diverged, undecodable, or missing (no such workflow here).
    outcome: str
    #: Where it diverged: the seq, what the journal recorded and what the code now calls.
    seq: int | None = None
    recorded: str | None = None
    called: str | None = None
    message: str = ""
    #: What would fix a divergence, when something obvious would.
    hint: str = ""
    #: The code version the execution started with, and the one registered now.
    recorded_version: str = ""
    current_version: str = ""
    #: The divergence as a real resume would raise it.
    error: NonDeterministicWorkflow | None = dataclasses.field(
        default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _NoChildren:
    """A dry replay's stand-in for the runner: it names workflows, starts no child."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def workflow_name(self, workflow: Any) -> str:
        return self._runner.workflow_name(workflow)

    def _run_child(self, *args: Any) -> None:
        return None

    async def _arun_child(self, *args: Any) -> None:
        return None


def dry_replay(runner: Runner, state: ExecutionState) -> CheckResult:
    """Replay ``state`` (its history folded, from the log or an export) against the workflow
    registered under its name, writing nothing and running no step code."""
    base: dict[str, Any] = {
        "execution_id": str(state.execution_id), "workflow": state.workflow,
        "status": state.status, "recorded_version": state.version,
    }
    try:
        wf = runner._lookup(state.workflow, state.execution_id)
    except WorkflowNotFound as e:
        return CheckResult(**base, outcome="missing", message=str(e))
    base["current_version"] = wf.version
    engine = Engine(runner.journal, ExecutionHandle(runner.journal, state), workflow=wf.name,
                    resume_value=UNSET, is_async=wf.is_async, dry=True)
    engine.children = _NoChildren(runner)
    note = ""
    try:
        args, kwargs = _unbind_input(wf, state.input)
        if wf.is_async:
            asyncio.run(_drive_async(engine, wf.fn, args, kwargs))
        else:
            wf.fn(Context(engine), *args, **kwargs)
        engine.check_all_replayed()  # it returned: every recorded call must have been made
    except Halt:
        pass  # the first live call, or a wait still open: everything before it replayed
    except NonDeterministicWorkflow as e:
        return _diverged(base, e)
    except (ValueClassMissing, DecodingError, IncompatibleOutput) as e:
        return CheckResult(**base, outcome="undecodable", message=str(e))
    except Exception as e:  # the workflow's own code raised: a real resume would fail it
        note = f"replays to an error: {type(e).__name__}: {e}"
    halt = engine.halt  # what workflow code may have caught and swallowed
    if isinstance(halt, NonDeterministicWorkflow):
        return _diverged(base, halt)
    if isinstance(halt, ValueClassMissing | DecodingError | IncompatibleOutput):
        return CheckResult(**base, outcome="undecodable", message=str(halt))
    return CheckResult(**base, outcome="ok", message=note)


async def _drive_async(engine: Engine, fn: Any, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> None:
    await fn(AsyncContext(engine), *args, **kwargs)


def _diverged(base: dict[str, Any], e: NonDeterministicWorkflow) -> CheckResult:
    return CheckResult(**base, outcome="diverged", seq=e.seq, message=str(e),
                       recorded=_what(e.recorded_kind, e.recorded),
                       called=_what(e.called_kind, e.called), hint=_hint(e), error=e)


def _what(kind: str | None, name: str | None) -> str | None:
    if name is None:
        return None
    return name if kind == "call" else f"{kind} {name!r}"


def _hint(e: NonDeterministicWorkflow) -> str:
    if e.called is None:
        return ("the code now returns before the recorded calls: keep them for executions "
                "started before, behind `if not ctx.patched(...)`")
    if e.recorded is None:
        return ""
    if e.recorded_kind == "call" and e.recorded.startswith("patched("):
        return f"the code lost the patch {e.recorded}: keep it, or ctx.deprecate_patch() it"
    return (f"guard the new call with `if ctx.patched(\"<id>\"):` so that executions "
            f"recorded before it ({_what(e.recorded_kind, e.recorded)} at seq {e.seq}) keep "
            "their path")
