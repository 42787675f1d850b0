"""The reader of ``tests/test_cross_process.py``: ``python reader.py URL IDS_JSON``.

Run as a script from a directory that does not hold ``worker.py``, so the writer's
``__main__:Report`` / ``__main__:Verdict`` cannot be imported here (and this ``__main__``
defines no class of those names). It reads what the writer recorded through every library
surface (``Journal.state/events/notifications``, ``Projections``), then recovers with a
Runner of its own, and prints one JSON summary on its last line. Values are described, not
pickled: ``describe`` turns an ``Unresolved`` into ``{"unresolved": type_name, "topic",
"fields"}``, a Decimal into ``"Decimal(...)"``, a long string into ``"str[N]"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import traceback
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from journal import Journal, Unresolved
from projections import ExecutionSummary, Projections
from runner import Context, Runner, RunnerError

RAN: list[str] = []  # the reader's step functions that actually ran
FAILURES: dict[str, str] = {}  # section -> traceback: one broken surface does not hide others


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        FAILURES[name] = traceback.format_exc()


@dataclasses.dataclass
class Draft:
    """This process's own class for what the writer stored as ``__main__:Report``."""

    title: str
    pages: int
    score: Decimal
    tags: list[str]
    body: str = ""


def describe(value: Any) -> Any:
    if isinstance(value, Unresolved):
        return {"unresolved": value.type_name, "topic": value.topic,
                "fields": describe(value.fields)}
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, Decimal):
        return f"Decimal({value})"
    if isinstance(value, str) and len(value) > 200:
        return f"str[{len(value)}]"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return {"type": f"{type(value).__module__}:{type(value).__qualname__}",
            "repr": repr(value)[:300]}


def first_unresolved(value: Any) -> Unresolved | None:
    if isinstance(value, Unresolved):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for v in value:
            found = first_unresolved(v)
            if found is not None:
                return found
    return None


def row(e: ExecutionSummary) -> dict[str, Any]:
    return {
        "workflow": e.workflow, "status": e.status, "steps_completed": e.steps_completed,
        "log_count": e.log_count, "cost_usd": str(e.cost_usd), "pause_reason": e.pause_reason,
        "error_type": e.error_type,
        "last_started_step": e.last_started_step.name if e.last_started_step else None,
    }


# -- the reader's own workflows ---------------------------------------------------------------


def unrelated(ctx: Context) -> str:
    return "unrelated"


def prepare_untyped(doc):  # type: ignore[no-untyped-def]  # no annotation, on purpose
    RAN.append("prepare_untyped")
    return {"doc": doc}


def prepare_typed(doc: str) -> Draft:
    RAN.append("prepare_typed")
    return Draft(title="live", pages=0, score=Decimal(0), tags=[])


def work(report: Any) -> dict[str, Any]:
    RAN.append("work")
    return {"type": type(report).__name__, "title": getattr(report, "title", None)}


def shared(ctx: Context, doc: str) -> Any:
    prepared = ctx.step("prepare", prepare_untyped, doc)
    return ctx.step("work", work, prepared)


def converted(ctx: Context, doc: str) -> Any:
    prepared = ctx.step("prepare", prepare_typed, doc)
    done = ctx.step("work", work, prepared)
    return {"prepared": type(prepared).__name__, "fields": dataclasses.asdict(prepared),
            "work": done}


def describe_event(e: Any) -> dict[str, Any]:
    return {"type": type(e).__name__,
            **{f: describe(getattr(e, f)) for f in type(e).payload_fields}}


def read_journal(journal: Journal, ids: dict[str, str], out: dict[str, Any]) -> None:
    states: dict[str, Any] = out.setdefault("states", {})
    events: dict[str, Any] = out.setdefault("events", {})
    same: dict[str, bool] = out.setdefault("same_when_read_again", {})
    for name, eid in ids.items():
        with section(f"state {name}"):
            state = journal.state(eid)
            states[name] = {
                "status": state.status,
                "workflow": state.workflow,
                "input": describe(state.input),
                "output": describe(state.output),
                "pause": describe(state.pause.payload) if state.pause else None,
                "error": state.error.message if state.error else None,
                "cost_usd": str(state.cost.usd),
                "position": state.position,
                "steps": {
                    str(s.seq): {"name": s.name, "status": s.status,
                                 "input": describe(s.input), "output": describe(s.output)}
                    for s in state.steps.values()
                },
            }
            # Decoded twice, independently: equal values.
            same[name] = bool(journal.state(eid).output == state.output)
        with section(f"events {name}"):
            events[name] = [describe_event(e) for e in journal.events(eid)]
    with section("probe"):
        probe = first_unresolved(journal.state(ids["completed"]).output)
        out["probe"] = None if probe is None else {
            "repr": repr(probe),
            "equal_to_rebuilt": Unresolved(topic=probe.topic, fields=dict(probe.fields)) == probe,
        }
    with section("notifications"):
        by_id = {UUID(eid): name for name, eid in ids.items()}
        notes: dict[str, list[Any]] = {name: [] for name in ids}
        after = 0
        while page := journal.notifications(after=after, limit=100):
            for nid, e in page:
                after = nid
                notes[by_id[e.execution_id]].append(describe_event(e))
        out["notifications"] = notes


def read_views(views: Projections, ids: dict[str, str], out: dict[str, Any]) -> None:
    by_id = {UUID(eid): name for name, eid in ids.items()}

    def name_of(eid: UUID) -> str:
        return by_id.get(eid, str(eid))

    with section("catch_up"):
        out["applied"] = views.catch_up()
    with section("executions"):
        out["executions"] = {name_of(e.execution_id): row(e)
                             for e in views.executions(limit=100)}
    with section("steps"):
        out["steps"] = {name: [[s.name, s.status] for s in views.steps(eid)]
                        for name, eid in ids.items()}
    with section("costs"):
        out["costs_by_model"] = {c.key: [str(c.usd), c.input_tokens, c.output_tokens, c.calls]
                                 for c in views.costs(by="model")}
    with section("step_stats"):
        out["stats"] = {s.name: [s.runs, s.running] for s in views.step_stats()}
    with section("stuck"):
        out["stuck"] = sorted(name_of(s.execution_id)
                              for s in views.stuck(older_than=timedelta(0)))
    with section("rebuild"):
        out["rebuilt"] = views.rebuild()
        out["executions_after_rebuild"] = {name_of(e.execution_id): row(e)
                                           for e in views.executions(limit=100)}


def recover(journal: Journal, ids: dict[str, str], out: dict[str, Any]) -> None:
    """Recover with a runner that knows none of the writer's classes."""
    by_id = {UUID(eid): name for name, eid in ids.items()}

    def name_of(eid: UUID) -> str:
        return by_id.get(eid, str(eid))

    errors: list[list[str]] = []

    def on_error(eid: UUID, error: RunnerError) -> None:
        errors.append([name_of(eid), type(error).__name__, str(error)])

    with section("recover"), Runner(journal) as runner:
        runner.register(unrelated)
        runner.register(shared)
        runner.register(converted)
        runs = runner.recover(stale_after=timedelta(0), on_error=on_error)
        out["recovered"] = {name_of(r.id): [r.status, describe(r.output)] for r in runs}
    out["recover_errors"] = sorted(errors)
    out["ran"] = RAN
    with section("after recover"):
        out["after_recover"] = {
            name: [journal.state(eid).status, journal.state(eid).position]
            for name, eid in ids.items()
        }


def main(url: str, ids: dict[str, str]) -> dict[str, Any]:
    here = sys.modules["__main__"]
    out: dict[str, Any] = {"defined_here": [n for n in ("Report", "Verdict") if hasattr(here, n)]}
    with section("open"), Journal.open(url, create=False) as journal:
        read_journal(journal, ids, out)
        with section("projections"), Projections(journal) as views:
            read_views(views, ids, out)
            recover(journal, ids, out)
            with section("final catch_up"):
                views.catch_up()  # so the CLI's read commands have nothing left to apply
                out["executions_after_recover"] = {
                    by_id_name(ids, e.execution_id): e.status
                    for e in views.executions(limit=100)
                }
    out["failures"] = FAILURES
    return out


def by_id_name(ids: dict[str, str], eid: UUID) -> str:
    return next((name for name, i in ids.items() if UUID(i) == eid), str(eid))


if __name__ == "__main__":
    summary = main(sys.argv[1], json.loads(sys.argv[2]))
    print(json.dumps(summary))
