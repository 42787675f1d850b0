"""An embeddable durable workflow runner: every step journaled, resume = replay.

::

    from journal import Journal
    from runner import Runner, add_cost

    runner = Runner(Journal.open())

    @runner.workflow()
    def review(ctx, doc_id: str) -> dict:
        text = ctx.step("fetch", fetch_doc, doc_id)
        decision = ctx.pause("human_review", payload={"chars": len(text)})
        return {"approved": decision["approved"]}

    run = runner.run(review, "doc-1")              # returns paused, committed
    run = runner.resume(run.id, {"approved": True})

What workflow code uses lives in ``runner.context``; what drives and replays it in
``runner._engine`` and ``runner._runner``; the errors in ``runner.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner._runner import Run, Runner
    from runner.context import AsyncContext, Context, Retry, StepInfo, add_cost, current_step
    from runner.errors import (
        AlreadyResumed,
        ChildFailed,
        ExecutionBusy,
        IncompatibleOutput,
        LeaseLost,
        NonDeterministicWorkflow,
        OutsideStep,
        RunnerError,
        SecretInput,
        StepFailedError,
        ValueClassMissing,
        WaitTimedOut,
        WorkflowNotFound,
    )

__all__ = [
    "AlreadyResumed",
    "AsyncContext",
    "ChildFailed",
    "Context",
    "ExecutionBusy",
    "IncompatibleOutput",
    "LeaseLost",
    "NonDeterministicWorkflow",
    "OutsideStep",
    "Retry",
    "Run",
    "Runner",
    "RunnerError",
    "SecretInput",
    "StepFailedError",
    "StepInfo",
    "ValueClassMissing",
    "WaitTimedOut",
    "WorkflowNotFound",
    "add_cost",
    "current_step",
]

# Loaded on first use, so that ``journal ls`` (``runner.cli`` lives in this package) does not
# pay for the engine, asyncio and the runner's own machinery it never uses.
_HOMES = {
    "Run": "runner._runner",
    "Runner": "runner._runner",
    **dict.fromkeys(("AsyncContext", "Context", "Retry", "StepInfo", "add_cost",
                     "current_step"), "runner.context"),
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES.get(name, "runner.errors")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
