"""Two runs side by side (``journal diff A B``): call by call, where they agree, where they
differ (inputs, outputs, attempts, durations, costs), the calls only one of them made, and
the first seq at which they took different paths.

Works from the two executions' folded states alone, so it compares any two runs: a fork and
its source, a retry and the failure, yesterday's run and today's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from journal import ExecutionState

__all__ = ["CallDiff", "RunDiff", "diff_runs"]

#: Durations closer than this (seconds, or this fraction) count as the same.
_DURATION_SLACK = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class CallDiff:
    """One seq of the two runs."""

    seq: int
    #: "step 'fetch'", "wait_for 'paid'" ... in each run (None: that run has no call here).
    a: str | None
    b: str | None
    #: same, differs (same call, other outcome), or only_a / only_b / other (other calls).
    kind: str
    #: For "differs": field -> (value in a, value in b).
    changes: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunDiff:
    a: str
    b: str
    #: The first seq where the runs made other calls (None: the same calls throughout).
    diverged_at: int | None
    calls: list[CallDiff]
    #: Run-level differences (status, output, error, cost).
    summary: dict[str, tuple[Any, Any]]

    @property
    def same(self) -> bool:
        return not self.summary and all(c.kind == "same" for c in self.calls)


def _calls(state: ExecutionState) -> dict[int, tuple[str, dict[str, Any]]]:
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for step in state.steps.values():
        out[step.seq] = (f"step {step.name!r}", {
            "status": step.status, "input": step.input, "output": step.output,
            "attempts": step.attempts, "duration": step.duration,
            "error": None if step.error is None else f"{step.error.type}: {step.error.message}",
            "cost_usd": sum((c.usd for c in step.costs), start=0),
        })
    for call in state.calls.values():
        label = "patched" if call.name == "patch" else call.name
        out[call.seq] = (f"{call.kind} {label!r}", {
            "status": call.status, "value": call.value, "timed_out": call.timed_out,
        })
    return out


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= max(_DURATION_SLACK, _DURATION_SLACK * max(abs(x), abs(y)))
    return bool(x == y)


def diff_runs(a: ExecutionState, b: ExecutionState) -> RunDiff:
    """How run ``b`` differs from run ``a``."""
    ca, cb = _calls(a), _calls(b)
    calls: list[CallDiff] = []
    diverged: int | None = None
    for seq in sorted(set(ca) | set(cb)):
        left, right = ca.get(seq), cb.get(seq)
        if left is None or right is None:
            kind = "only_b" if left is None else "only_a"
            calls.append(CallDiff(seq=seq, a=left and left[0], b=right and right[0],
                                  kind=kind))
            continue
        if left[0] != right[0]:
            diverged = seq if diverged is None else diverged
            calls.append(CallDiff(seq=seq, a=left[0], b=right[0], kind="other"))
            continue
        changes = {k: (v, right[1].get(k)) for k, v in left[1].items()
                   if not _close(v, right[1].get(k))}
        calls.append(CallDiff(seq=seq, a=left[0], b=right[0],
                              kind="differs" if changes else "same", changes=changes))
    if diverged is None and set(ca) != set(cb):
        diverged = min(set(ca) ^ set(cb))
    summary = {k: (x, y) for k, x, y in (
        ("input", a.input, b.input),
        ("workflow", a.workflow, b.workflow), ("status", a.status, b.status),
        ("output", a.output, b.output),
        ("error", a.error and a.error.message, b.error and b.error.message),
        ("cost_usd", a.cost.usd, b.cost.usd), ("version", a.version, b.version),
    ) if x != y}
    return RunDiff(a=str(a.execution_id), b=str(b.execution_id), diverged_at=diverged,
                   calls=calls, summary=summary)
