"""Rich rendering of what the commands found: tables, the timeline, one-line events.

Only presentation lives here; the data comes from the other modules of ``runner.cli`` and
from the projections. Colours follow status: green completed, red failed, yellow paused,
blue waiting, cyan running, dim cancelled (Rich drops them when the output is not a terminal).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from journal import ExecutionState
from journal.events import Event
from projections import CostSummary, ExecutionSummary, Stall, StepStats
from runner.cli.jsonout import preview, to_jsonable
from runner.cli.timeline import (
    CallLine,
    ChildLine,
    Timeline,
    describe,
    event_label,
    format_utc,
    waits_for,
)
from runner.cli.timeparse import format_age, format_seconds

if TYPE_CHECKING:
    from runner.cli.queries import LogLine
    from runner.cli.triage import ErrorGroup
    from runner.diff import RunDiff

__all__ = [
    "console",
    "costs_table",
    "diff_view",
    "errors_table",
    "event_line",
    "executions_table",
    "log_line",
    "short_id",
    "stall_document",
    "stats_table",
    "stuck_table",
    "timeline_view",
    "usd",
]

STATUS_STYLE = {
    "completed": "green", "failed": "red", "paused": "yellow", "running": "cyan",
    "cancelled": "dim", "retrying": "yellow", "waiting": "blue",
}
LEVEL_STYLE = {"error": "red", "warning": "yellow", "debug": "dim"}


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout/stderr; wide when piped, so lines are not cut."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        width = int(os.environ.get("COLUMNS") or 200)
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def usd(value: Decimal | None) -> str:
    """Money as ``$0.0042`` (exact, no float rounding, no exponent)."""
    if value is None:
        return ""
    if value == 0:
        return "$0"
    return f"${value.normalize():f}"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def short_id(value: object) -> str:
    """The first 8 characters of an id: what people type back (a unique prefix)."""
    return str(value)[:8]


#: Before the workflow of a child execution in ``journal ls`` (``journal show`` names its parent).
CHILD_MARK = "↳ "


def executions_table(rows: list[ExecutionSummary], *, now: datetime | None = None) -> Table:
    """``journal ls``: id, workflow (``↳`` for a child), status, started, duration, last
    step, cost."""
    now = now or datetime.now(UTC)
    table = Table(box=None, pad_edge=False)
    for col in ("id", "workflow", "status", "started", "duration", "last step", "cost"):
        table.add_column(col, justify="right" if col in ("duration", "cost") else "left",
                         no_wrap=True)
    for r in rows:
        duration = r.duration if r.duration is not None else (
            now - r.started_at).total_seconds()
        last = r.last_started_step
        step = f"{last.name} #{last.seq}" if last else "-"
        if r.status == "failed" and r.error_step:
            step = f"{r.error_step} #{r.error_step_seq} ✗"
        elif r.status == "paused" and r.pause_reason:
            step = f"{step} ⏸ {r.pause_reason}"
        elif r.status == "waiting" and r.wait_kind:
            step = f"{step} ⏳ {r.wait_kind}" + (f" {r.wait_name}" if r.wait_name else "")
        workflow = r.workflow if r.parent_id is None else CHILD_MARK + r.workflow
        table.add_row(
            short_id(r.execution_id), workflow, _status(r.status),
            r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            format_seconds(duration) + ("" if r.ended_at else "…"), step, usd(r.cost_usd),
        )
    return table


def stall_document(stall: Stall) -> dict[str, Any]:
    """``journal stuck --json``: the execution's view row, then why it is stuck (``kind``,
    ``reason``), since when, until when, the step and the lease's holder."""
    r = stall.reason
    return {**to_jsonable(stall.execution), "kind": r.kind, "reason": r.text,
            "stalled_since": to_jsonable(r.since), "until": to_jsonable(r.until),
            "step": r.step, "holder": r.holder}


def stuck_table(rows: list[Stall], *, now: datetime | None = None) -> Table:
    """``journal stuck``: each stalled execution, how long, and why (the reason folds: the
    table fits 80 columns with whole ids and statuses)."""
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=8)
    table.add_column("workflow", overflow="fold", max_width=20)
    table.add_column("status", no_wrap=True)
    table.add_column("for", no_wrap=True, justify="right")
    table.add_column("reason", overflow="fold", ratio=1)
    now = now or datetime.now(UTC)
    for s in rows:
        r = s.execution
        style = "red" if s.reason.kind == "orphaned" else ""
        table.add_row(
            short_id(r.execution_id), r.workflow, _status(r.status),
            format_seconds((now - s.reason.since).total_seconds()),
            Text(s.reason.text, style=style),
        )
    return table


def errors_table(groups: list[ErrorGroup], *, now: datetime | None = None) -> Table:
    """``journal errors``: each root cause, how often, last seen, an example id."""
    table = Table(box=None, pad_edge=False)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    table.add_column("last seen", no_wrap=True, justify="right")
    table.add_column("example", no_wrap=True, min_width=8)
    for g in groups:
        table.add_row(str(g.count), Text.assemble((g.error_type, "red"), f": {g.message}"),
                      format_age(g.last_at, now=now), short_id(g.example_id))
    return table


def costs_table(rows: list[CostSummary], by: str) -> Table:
    """``journal costs``: totals per key, and a total line."""
    table = Table(box=None, pad_edge=False, show_footer=True)
    total = sum((r.usd for r in rows), Decimal(0))
    table.add_column(by, footer="total", no_wrap=True)
    table.add_column("usd", justify="right", footer=usd(total))
    table.add_column("input tokens", justify="right",
                     footer=f"{sum(r.input_tokens for r in rows):,}")
    table.add_column("output tokens", justify="right",
                     footer=f"{sum(r.output_tokens for r in rows):,}")
    table.add_column("calls", justify="right", footer=f"{sum(r.calls for r in rows):,}")
    for r in rows:
        table.add_row(r.key or "(none)", usd(r.usd), f"{r.input_tokens:,}",
                      f"{r.output_tokens:,}", f"{r.calls:,}")
    return table


def stats_table(rows: list[StepStats]) -> Table:
    """``journal stats``: per step name, runs, failure rate and durations."""
    table = Table(box=None, pad_edge=False)
    for col in ("step", "runs", "failed", "failure rate", "retries", "running",
                "mean", "p50", "p95"):
        table.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r.name, str(r.runs), str(r.failures), f"{r.failure_rate:.1%}", str(r.retries),
            str(r.running), format_seconds(r.mean_duration), format_seconds(r.p50_duration),
            format_seconds(r.p95_duration),
        )
    return table


def _summary_lines(s: dict[str, Any], children: list[ChildLine]) -> list[Text]:
    lines = [Text.assemble(
        ("execution ", "bold"), (s["execution_id"], "bold"), "  ", (s["workflow"], "bold"),
        "  ", _status(s["status"]),
    )]
    if s.get("parent") is not None:
        lines.append(Text(f"child of {s['parent']} (call seq {s['parent_seq']})"))
    if s.get("forked_from") is not None:
        lines.append(Text(f"forked from {s['forked_from']} at seq {s['forked_seq']}"))
    if s.get("code_version"):
        lines.append(Text(f"code version {s['code_version']}"))
    started = s["started_at"]
    when = started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if started else "-"
    if s["status"] in ("running", "paused", "waiting"):
        lines.append(Text(
            f"started {when}, running for {format_seconds(s.get('running_for'))}, "
            f"last event {format_seconds(s.get('since_last_event'))} ago"
        ))
    else:
        lines.append(Text(f"started {when}, took {format_seconds(s['duration'])}"))
    cost = s["cost"]
    lines.append(Text(
        f"{s['events']} events, {s['log_lines']} log line(s), cost {usd(cost['usd'])} "
        f"({cost['input_tokens']:,} in / {cost['output_tokens']:,} out tokens)"
    ))
    if s["last_started_step"] is not None:
        ls, lc = s["last_started_step"], s["last_completed_step"]
        lines.append(Text(
            f"last started step {ls.name} #{ls.seq}, last completed "
            + (f"{lc.name} #{lc.seq}" if lc else "none")
        ))
    driver = s.get("driver")
    if driver is not None:
        quiet = driver.get("quiet_for")
        taken = f" after {format_seconds(quiet)} quiet" if quiet is not None else ""
        lines.append(Text(
            f"driven by {driver['host']}:{driver['pid']} ({driver['reason']}{taken}, "
            f"{format_age(driver['at'])}); {s.get('claims', 1)} claim(s) in all"
        ))
    wait = s.get("wait")
    if s["status"] == "waiting" and wait is not None:
        what = waits_for(wait["kind"], wait["name"], wait["until"])
        child = next((c for c in children if c.seq == wait["seq"]), None)
        if wait["kind"] == "child" and child is not None and child.execution_id is not None:
            what += f" {child.execution_id}, now {child.status}"
        lines.append(Text.assemble(
            ("waiting for ", "blue"), what, _since(wait["since"], wait["until"]),
        ))
    if s["pause"] is not None:
        p = s["pause"]
        lines.append(Text.assemble(
            ("paused for ", "yellow"), waits_for("human", p["reason"], p.get("until")),
            _since(p["at"], p.get("until")), ", payload ", preview(p["payload"], 120),
        ))
    if s["error"] is not None:
        lines.append(Text(f"error: {s['error'].type}: {s['error'].message}", style="red"))
    if s["status"] == "completed":
        lines.append(Text(f"output: {preview(s['output'], 120)}"))
    return lines


def _since(since: datetime, until: datetime | None, *, now: datetime | None = None) -> str:
    """`` (since 2026-12-01 14:00:49 UTC, 1h00m ago)``, and ``due ... ago`` once the
    deadline has passed (a ``journal serve`` wakes it: is one running?)."""
    now = now or datetime.now(UTC)
    due = f"; due {format_age(until, now=now)}" if until is not None and until <= now else ""
    return f" (since {format_utc(since)}, {format_age(since, now=now)}{due})"


def _calls_table(timeline: Timeline) -> Table:
    table = Table(box=None, pad_edge=False, title="calls", title_justify="left")
    for col in ("seq", "call", "status", "at", "until", "outcome", "value"):
        table.add_column(col, justify="right" if col == "seq" else "left",
                         no_wrap=col != "value")
    for c in timeline.calls:
        call = f"{c.call} {c.name!r}" if c.name else c.call
        if c.kind == "child":
            outcome, value = _child_outcome(c)
        else:
            outcome = c.outcome
            value = "" if c.kind != "value" and not c.signal else preview(c.value, 60)
        if c.signal:
            outcome += f" (#{c.signal})"
        table.add_row(
            str(c.seq), call, _status(c.status), format_utc(c.at),
            format_utc(c.until) if c.until is not None else "-", outcome, value,
        )
    return table


def _child_outcome(c: CallLine) -> tuple[str, str]:
    """A child call's outcome and value cells: ``child <id> completed`` and its output (or
    its error), ``child <id> waiting`` while it runs."""
    who = f"child {c.child}" if c.child is not None else "child (not in the views yet)"
    status = c.outcome if c.status == "done" else c.child_status
    outcome = f"{who} {status}" if status else who
    value = ""
    if c.status == "done" and isinstance(c.value, dict):
        error = c.value.get("error")
        if c.outcome == "completed":
            value = preview(c.value.get("output"), 60)
        elif isinstance(error, dict):
            value = f"{error.get('type')}: {error.get('message')}"
    return outcome, value


def _signals_table(timeline: Timeline) -> Table:
    table = Table(box=None, pad_edge=False, title="signals", title_justify="left")
    for col in ("#", "signal", "at", "consumed by", "value"):
        table.add_column(col, justify="right" if col == "#" else "left",
                         no_wrap=col != "value")
    for sig in timeline.signals:
        name, value = sig.name, sig.value
        if sig.child is not None and isinstance(value, dict):
            # Its name says whose end it is: the value need not say it again.
            name = f"end of child {sig.child}"
            value = {k: v for k, v in value.items() if k != "execution_id"}
        table.add_row(
            str(sig.position), name, format_utc(sig.at),
            f"call #{sig.consumed_by}" if sig.consumed_by else "-", preview(value, 60),
        )
    return table


def timeline_view(out: Console, timeline: Timeline) -> None:
    """``journal show``: the summary, the steps and the event timeline."""
    for line in _summary_lines(timeline.summary, timeline.children):
        out.print(line)
    if timeline.steps:
        out.print()
        steps = Table(box=None, pad_edge=False, title="steps", title_justify="left")
        for col in ("seq", "step", "status", "attempts", "duration", "cost", "error"):
            steps.add_column(col, justify="right" if col in ("seq", "attempts", "duration",
                                                             "cost") else "left")
        for st in timeline.steps:
            steps.add_row(str(st.seq), st.name, _status(st.status), str(st.attempts),
                          format_seconds(st.duration), usd(st.cost_usd), st.error or "")
        out.print(steps)
    if timeline.calls:
        out.print()
        out.print(_calls_table(timeline))
    if timeline.signals:
        out.print()
        out.print(_signals_table(timeline))
    out.print()
    table = Table(box=None, pad_edge=False, title="timeline", title_justify="left")
    for col in ("#", "offset", "event", "step", "try", "took", "cost", "detail"):
        table.add_column(col, justify="right" if col in ("#", "offset", "try", "took", "cost")
                         else "left", no_wrap=col != "detail")
    for e in timeline.entries:
        kind = Text(e.event if e.level is None else f"log {e.level}",
                    style=LEVEL_STYLE.get(e.level or "", ""))
        if "failed" in e.event:
            kind.stylize("red")
        step = f"{e.step} #{e.seq}" if e.step else ("" if e.seq is None else f"#{e.seq}")
        table.add_row(
            str(e.position), f"+{e.offset:.3f}s", kind, step,
            "" if e.attempt is None else str(e.attempt),
            "" if e.duration is None else format_seconds(e.duration),
            usd(e.cost_usd), e.detail,
        )
    out.print(table)
    _tracebacks(out, timeline)


def _tracebacks(out: Console, timeline: Timeline) -> None:
    """The tracebacks of the failed steps, then the execution's own (the workflow's, where
    it let a step's failure through), last: what a reader of a failure looks at first."""
    shown = set()
    for st in timeline.steps:
        if st.status == "failed" and st.traceback:
            out.print()
            out.print(Text(f"traceback of step {st.name} #{st.seq} ({st.error}):", style="red"))
            out.print(st.traceback.rstrip(), markup=False, highlight=False)
            shown.add(st.traceback)
    error = timeline.summary.get("error")
    if error is None or not error.traceback or error.traceback in shown:
        return
    text, title = error.traceback.rstrip(), f"{error.type}: {error.message}"
    # The workflow's traceback begins with the step's, its cause: that part is above.
    cause = next((tb.rstrip() for tb in shown if text.startswith(tb.rstrip())), None)
    if cause is not None:
        rest = text[len(cause):].strip().splitlines()
        if rest and rest[0].startswith("The above exception"):
            rest = rest[1:]
        text = "\n".join(rest).strip()
        title = f"{title}; the step's traceback above is its cause"
    out.print()
    out.print(Text(f"traceback of the execution's failure ({title}):", style="red"))
    out.print(text, markup=False, highlight=False)


def event_line(nid: int, event: Event, step_names: dict[int, str]) -> Text:
    """``journal tail``: one line per event."""
    entry = describe(event, step_names)
    at = event.timestamp.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
    step = f" {entry.step} #{entry.seq}" if entry.step else ""
    attempt = f" try {entry.attempt}" if entry.attempt and entry.attempt > 1 else ""
    kind = event_label(event) if entry.level is None else f"log {entry.level}"
    style = "red" if "failed" in kind else LEVEL_STYLE.get(entry.level or "", "")
    return Text.assemble(
        f"{at} {short_id(event.execution_id)} #{event.position:<3} ", (kind, style),
        step, attempt, f"  {entry.detail}" if entry.detail else "",
    )


def log_line(line: LogLine) -> Text:
    """``journal logs``: one line per log line (time UTC to the millisecond, short id,
    workflow, level, message, fields), as a log file reads: long lines wrap, nothing is
    cut but the fields past 160 characters (``--json`` has them whole)."""
    at = line.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    fields = f"  {preview(line.fields, 160)}" if line.fields else ""
    return Text.assemble(
        f"{at} {short_id(line.execution_id)} {line.workflow} ",
        (f"{line.level:<7}", LEVEL_STYLE.get(line.level.lower(), "")),
        f" {line.message}", (fields, "dim"),
    )


#: How each kind of seq reads in ``journal diff``.
_DIFF_STYLE = {"same": "dim", "differs": "yellow", "only_a": "red", "only_b": "red",
               "other": "red"}


def _diff_side(tag: str, s: ExecutionState, other: ExecutionState) -> list[Text]:
    lines = [Text.assemble(f"{tag}  ", (str(s.execution_id), "bold"), f"  {s.workflow}  ",
                           _status(s.status))]
    notes = []
    if s.version:
        notes.append(f"code version {s.version}")
    if s.forked_from is not None:
        source = ("A" if tag == "B" else "B") if s.forked_from == other.execution_id else (
            str(s.forked_from))
        notes.append(f"forked from {source} at seq {s.forked_seq}")
    if notes:
        lines.append(Text("   " + ", ".join(notes), style="dim"))
    return lines


def diff_view(out: Console, a: ExecutionState, b: ExecutionState, diff: RunDiff) -> None:
    """``journal diff``: the two runs, where they diverged, a table call by call (what
    differs at each seq), and the run-level differences; readable at 80 columns."""
    from runner.cli import deploys

    for line in [*_diff_side("A", a, b), *_diff_side("B", b, a)]:
        out.print(line)
    out.print(deploys.diverged_text(diff))
    if diff.calls:
        kinds = {k: sum(c.kind == k for c in diff.calls) for k in _DIFF_STYLE}
        out.print(f"{len(diff.calls)} seq(s): " + ", ".join(
            f"{n} {deploys.KINDS[k]}" for k, n in kinds.items() if n))
        out.print()
        table = Table(box=None, pad_edge=False)
        table.add_column("seq", justify="right", no_wrap=True)
        table.add_column("A", overflow="fold")
        table.add_column("B", overflow="fold")
        table.add_column("difference", overflow="fold")
        for c in diff.calls:
            same_call = c.a == c.b
            table.add_row(str(c.seq), c.a or "-", "=" if same_call else (c.b or "-"),
                          Text(deploys.change_text(c), style=_DIFF_STYLE.get(c.kind, "")))
        out.print(table)
    else:
        out.print("neither run made a call")
    out.print()
    changes = deploys.run_changes(a, b, diff)
    if not changes:
        out.print("run: no difference (status, input, output, error, cost, code version)")
        return
    out.print("run:")
    for change in deploys.run_change_lines(changes):
        out.print(Text("  " + change, style="yellow"), overflow="fold")
