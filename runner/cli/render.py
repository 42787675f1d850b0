"""Rich rendering of what the commands found: tables, the timeline, one-line events.

Only presentation lives here; the data comes from the other modules of ``runner.cli`` and
from the projections. Colours follow status: green completed, red failed, yellow paused,
blue waiting, cyan running, dim cancelled (Rich drops them when the output is not a terminal).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Literal

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
    "cents",
    "compact_traceback",
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
    """Money as ``$0.0042`` (exact, no float rounding, no exponent): in sentences, where
    there is room (``journal show``'s summary); tables print :func:`cents`."""
    if value is None:
        return ""
    if value == 0:
        return "$0"
    return f"${value.normalize():f}"


_CENT = Decimal("0.01")


def cents(value: Decimal | None) -> str:
    """Money in a table cell: ``$1,234.57``, rounded to the cent (half up); ``<$0.01`` for
    a cost below half a cent that is not nothing, ``$0`` for nothing (``--json`` keeps
    every digit)."""
    if value is None:
        return ""
    if value == 0:
        return "$0"
    rounded = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    if rounded == 0:
        return "<$0.01" if value > 0 else ">-$0.01"
    return f"-${-rounded:,f}" if rounded < 0 else f"${rounded:,f}"


@dataclasses.dataclass
class _Col:
    """One column of a table that fits its width: cells are whole or the column goes.

    ``fold``: the narrowest it may fold to (0: never folds: an id, a status, a time, money
    print whole); ``drop``: dropped, highest first, while the table does not fit (0:
    never); ``cut``: cells too long are cut with an ellipsis instead of folding (the detail
    of a timeline event: ``--json`` has it whole)."""

    header: str
    justify: Literal["left", "right"] = "left"
    fold: int = 0
    drop: int = 0
    cut: bool = False
    footer: str = ""
    cells: list[str | Text] = dataclasses.field(default_factory=list)

    def natural(self) -> int:
        return max([_cell_len(self.header), _cell_len(self.footer),
                    *(_cell_len(c) for c in self.cells)])

    def narrowest(self, *, words: bool) -> int:
        """The least it may fold to: ``fold``, or (``words``) the longest word of its
        cells, so that folding breaks lines between words only."""
        if not self.fold:
            return self.natural()
        if not words or self.cut:
            return min(self.fold, self.natural())
        longest = max((_cell_len(w) for c in (self.header, *self.cells)
                       for w in _plain(c).split()), default=0)
        return min(max(self.fold, longest), self.natural())


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _cell_len(cell: str | Text) -> int:
    return (cell if isinstance(cell, Text) else Text(cell)).cell_len


#: Between two columns of a table without borders (``pad_edge=False``: none at the edges).
_GAP = 2


def _add_row(columns: Sequence[_Col], *cells: str | Text) -> None:
    for column, cell in zip(columns, cells, strict=True):
        column.cells.append(cell)


def _fit(columns: Sequence[_Col], width: int | None, **table: Any) -> Table:
    """A borderless table of ``columns`` within ``width`` cells (the console's by default):
    the columns that may be dropped go (highest ``drop`` first) until those that never fold
    fit whole and each folding one has room for its longest word (failing that, for
    ``fold`` cells: a word is cut only where nothing else can give); the room left goes to
    the folding ones, up to what their longest cell needs. Rich never has to squeeze a
    column then, so an id, a status or an amount is never cut."""
    width = console().width if width is None else width
    kept = list(columns)
    words = True

    def needs(cols: list[_Col]) -> int:
        return sum(c.narrowest(words=words) for c in cols) + _GAP * (len(cols) - 1)

    while needs(kept) > width and any(c.drop for c in kept):
        kept.remove(max((c for c in kept if c.drop), key=lambda c: c.drop))
    if needs(kept) > width:
        words = False
    widths = {id(c): c.narrowest(words=words) for c in kept if c.fold}
    natural = {id(c): c.natural() for c in kept if c.fold}
    spare = width - needs(kept)
    while spare > 0:  # a cell at a time to each folding column still short of its longest
        short = [k for k in widths if widths[k] < natural[k]]
        for k in short[:spare]:
            widths[k] += 1
        spare -= len(short[:spare])
        if not short:
            break
    out = Table(box=None, pad_edge=False, show_footer=any(c.footer for c in kept), **table)
    for c in kept:
        if c.fold:
            out.add_column(c.header, justify=c.justify, footer=c.footer, width=widths[id(c)],
                           overflow="ellipsis" if c.cut else "fold", no_wrap=c.cut)
        else:
            out.add_column(c.header, justify=c.justify, footer=c.footer, no_wrap=True,
                           min_width=c.natural())
    for row in zip(*(c.cells for c in kept), strict=True):
        out.add_row(*row)
    return out


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def short_id(value: object) -> str:
    """The first 8 characters of an id: what people type back (a unique prefix)."""
    return str(value)[:8]


#: Before the workflow of a child execution in ``journal ls`` (``journal show`` names its parent).
CHILD_MARK = "↳ "


#: Below this many columns, tables print times without this year's number.
NARROW = 100


def _when(at: datetime | None, *, narrow: bool = False, now: datetime | None = None) -> str:
    """A time in a table cell, UTC: ``2026-12-01 17:10:01``; ``narrow``, this year's without
    the year (``12-01 17:10:01``, as ``ls -l`` leaves out what is plain)."""
    if at is None:
        return "-"
    at = at.astimezone(UTC)
    if narrow and at.year == (now or datetime.now(UTC)).year:
        return at.strftime("%m-%d %H:%M:%S")
    return at.strftime("%Y-%m-%d %H:%M:%S")


def executions_table(rows: list[ExecutionSummary], *, now: datetime | None = None,
                     width: int | None = None) -> Table:
    """``journal ls``: id, workflow (``↳`` for a child), status, started, ended, duration,
    last step, cost. Where they do not all fit ``ended`` goes first (started + duration tell
    it), then ``started`` (narrow: this year's without the year), then the last step: names
    are never cut while a column can go instead."""
    now = now or datetime.now(UTC)
    width = console().width if width is None else width
    narrow = width < NARROW
    cols = [_Col("id"), _Col("workflow", fold=8), _Col("status"), _Col("started", drop=2),
            _Col("ended", drop=3), _Col("duration", "right"),
            _Col("last step", fold=10, drop=1), _Col("cost", "right")]
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
        _add_row(cols, short_id(r.execution_id), workflow, _status(r.status),
                 _when(r.started_at, narrow=narrow, now=now),
                 _when(r.ended_at, narrow=narrow, now=now),
                 format_seconds(duration) + ("" if r.ended_at else "…"), step,
                 cents(r.cost_usd))
    return _fit(cols, width)


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


def errors_table(groups: list[ErrorGroup], *, now: datetime | None = None,
                 width: int | None = None) -> Table:
    """``journal errors``: each root cause, how often, last seen, an example id."""
    cols = [_Col("count", "right"), _Col("error", fold=20), _Col("last seen", "right"),
            _Col("example")]
    for g in groups:
        _add_row(cols, str(g.count), Text.assemble((g.error_type, "red"), f": {g.message}"),
                 format_age(g.last_at, now=now), short_id(g.example_id))
    return _fit(cols, width)


def costs_table(rows: list[CostSummary], by: str, *, width: int | None = None) -> Table:
    """``journal costs``: totals per key (to the cent), and a total line."""
    total = sum((r.usd for r in rows), Decimal(0))
    cols = [
        _Col(by, fold=12, footer="total"), _Col("usd", "right", footer=cents(total)),
        _Col("input tokens", "right", footer=f"{sum(r.input_tokens for r in rows):,}"),
        _Col("output tokens", "right", footer=f"{sum(r.output_tokens for r in rows):,}"),
        _Col("calls", "right", footer=f"{sum(r.calls for r in rows):,}"),
    ]
    for r in rows:
        _add_row(cols, r.key or "(none)", cents(r.usd), f"{r.input_tokens:,}",
                 f"{r.output_tokens:,}", f"{r.calls:,}")
    return _fit(cols, width)


def stats_table(rows: list[StepStats], *, width: int | None = None) -> Table:
    """``journal stats``: per step name, runs, failure rate and durations (the mean goes
    first when narrow: p50 and p95 tell more)."""
    cols = [_Col("step", fold=10), _Col("runs", "right"), _Col("failed", "right"),
            _Col("failure rate", "right"), _Col("retries", "right"),
            _Col("running", "right", drop=1), _Col("mean", "right", drop=2),
            _Col("p50", "right"), _Col("p95", "right")]
    for r in rows:
        _add_row(cols, r.name, str(r.runs), str(r.failures), f"{r.failure_rate:.1%}",
                 str(r.retries), str(r.running), format_seconds(r.mean_duration),
                 format_seconds(r.p50_duration), format_seconds(r.p95_duration))
    return _fit(cols, width)


def _summary_lines(s: dict[str, Any], children: list[ChildLine]) -> list[Text]:
    lines = [Text.assemble(
        ("execution ", "bold"), (s["execution_id"], "bold"), "  ", (s["workflow"], "bold"),
        "  ", _status(s["status"]),
    )]
    if s.get("parent") is not None:
        lines.append(Text(f"child of {s['parent']} (call seq {s['parent_seq']})"))
    if s.get("forked_from") is not None:
        lines.append(Text(f"forked from {s['forked_from']} at seq {s['forked_seq']}"))
    started = s["started_at"]
    when = format_utc(started) if started else "-"
    # The code version ends the line of when it started: one line less in a short screen.
    version = f"; code version {s['code_version']}" if s.get("code_version") else ""
    if s["status"] in ("running", "paused", "waiting"):
        lines.append(Text(
            f"started {when}, running for {format_seconds(s.get('running_for'))}, "
            f"last event {format_seconds(s.get('since_last_event'))} ago{version}"
        ))
    else:
        lines.append(Text(f"started {when}, took {format_seconds(s['duration'])}{version}"))
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


def _calls_table(timeline: Timeline, width: int) -> Table:
    narrow = width < NARROW
    cols = [_Col("seq", "right"), _Col("call", fold=10), _Col("status"), _Col("at"),
            _Col("until", drop=1), _Col("outcome", fold=12), _Col("value", fold=12, cut=True)]
    for c in timeline.calls:
        call = f"{c.call} {c.name!r}" if c.name else c.call
        if c.kind == "child":
            outcome, value = _child_outcome(c)
        else:
            outcome = c.outcome
            value = "" if c.kind != "value" and not c.signal else preview(c.value, 60)
        if c.signal:
            outcome += f" (#{c.signal})"
        _add_row(cols, str(c.seq), call, _status(c.status), _when(c.at, narrow=narrow),
                 _when(c.until, narrow=narrow), outcome, value)
    return _fit(cols, width, title="calls", title_justify="left")


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


def _signals_table(timeline: Timeline, width: int) -> Table:
    cols = [_Col("#", "right"), _Col("signal", fold=12), _Col("at"), _Col("consumed by"),
            _Col("value", fold=12, cut=True)]
    for sig in timeline.signals:
        name, value = sig.name, sig.value
        if sig.child is not None and isinstance(value, dict):
            # Its name says whose end it is: the value need not say it again.
            name = f"end of child {sig.child}"
            value = {k: v for k, v in value.items() if k != "execution_id"}
        _add_row(cols, str(sig.position), name, _when(sig.at, narrow=width < NARROW),
                 f"call #{sig.consumed_by}" if sig.consumed_by else "-", preview(value, 60))
    return _fit(cols, width, title="signals", title_justify="left")


def timeline_view(out: Console, timeline: Timeline) -> None:
    """``journal show``: the summary, the steps, calls, signals and the event timeline, one
    line per event (a detail too long for the width is cut: ``--json`` has it whole), and
    the tracebacks of what failed, without the runner's own frames."""
    width = out.width
    for line in _summary_lines(timeline.summary, timeline.children):
        out.print(line)
    if timeline.steps:
        out.print()
        out.print(_steps_table(timeline, width))
    if timeline.calls:
        out.print()
        out.print(_calls_table(timeline, width))
    if timeline.signals:
        out.print()
        out.print(_signals_table(timeline, width))
    out.print()
    out.print(_events_table(timeline, width))
    _tracebacks(out, timeline)


def _steps_table(timeline: Timeline, width: int) -> Table:
    cols = [_Col("seq", "right"), _Col("step", fold=10), _Col("status"),
            _Col("attempts", "right"), _Col("duration", "right"), _Col("cost", "right"),
            _Col("error", fold=12, cut=True)]
    for st in timeline.steps:
        _add_row(cols, str(st.seq), st.name, _status(st.status), str(st.attempts),
                 format_seconds(st.duration), cents(st.cost_usd), st.error or "")
    return _fit(cols, width, title="steps", title_justify="left")


def _events_table(timeline: Timeline, width: int) -> Table:
    """One line per event: its number, offset, what, the step (and try, past the first),
    how long and what it cost (those two only where some event has one), the detail."""
    entries = timeline.entries
    cols = [_Col("#", "right"), _Col("offset", "right", drop=1), _Col("event"),
            _Col("step")]
    took = _Col("took", "right", drop=2) if any(e.duration is not None for e in entries) else None
    cost = _Col("cost", "right", drop=3) if any(e.cost_usd for e in entries) else None
    detail = _Col("detail", fold=20, cut=True)
    for e in entries:
        kind = Text(e.event if e.level is None else f"log {e.level}",
                    style=LEVEL_STYLE.get(e.level or "", ""))
        if "failed" in e.event:
            kind.stylize("red")
        step = f"{e.step} #{e.seq}" if e.step else ("" if e.seq is None else f"#{e.seq}")
        if e.attempt is not None and e.attempt > 1:
            step += f" try {e.attempt}"
        _add_row(cols, str(e.position), f"+{e.offset:.3f}s", kind, step)
        if took is not None:
            took.cells.append("" if e.duration is None else format_seconds(e.duration))
        if cost is not None:
            cost.cells.append(cents(e.cost_usd))
        detail.cells.append(e.detail)
    cols += [c for c in (took, cost) if c is not None]
    return _fit([*cols, detail], width, title="timeline", title_justify="left")


def _tracebacks(out: Console, timeline: Timeline) -> None:
    """The tracebacks of the failed steps, then the execution's own (the workflow's, where
    it let a step's failure through), last: what a reader of a failure looks at first."""
    shown = set()
    for st in timeline.steps:
        if st.status == "failed" and st.traceback:
            out.print()
            _traceback(out, f"traceback of step {st.name} #{st.seq} ({st.error}):",
                       st.traceback)
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
    _traceback(out, f"traceback of the execution's failure ({title}):", text)


def _traceback(out: Console, title: str, text: str) -> None:
    compact, hidden = compact_traceback(text)
    note = f" ({hidden} runner frame(s) hidden)" if hidden else ""
    out.print(Text(title, style="red") + Text(note, style="dim"))
    out.print(compact, markup=False, highlight=False)


_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)", line \d+, in ')
_MARKERS = re.compile(r"^\s*[\^~]+\s*$")


def _runner_modules() -> frozenset[tuple[str, str]]:
    """(package, file name) of the journal's and the runner's own modules."""
    from pathlib import Path

    import journal
    import runner

    return frozenset((Path(pkg.__file__).parent.name, f.name)
                     for pkg in (journal, runner) if pkg.__file__
                     for f in Path(pkg.__file__).parent.rglob("*.py"))


def compact_traceback(text: str) -> tuple[str, int]:
    """A recorded traceback for people: without the frames of the runner's and the
    journal's own code (told by package and file name: the recording host installed them
    elsewhere, maybe) and without the ``^^^^`` marker lines; and how many frames went."""
    ours = _runner_modules()
    lines = text.rstrip().splitlines()
    kept: list[str] = []
    hidden = i = 0
    while i < len(lines):
        frame = _FRAME.match(lines[i])
        if frame is None:
            if not _MARKERS.match(lines[i]):
                kept.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].startswith("    ") and not _FRAME.match(
                lines[end]):
            end += 1
        path = frame["path"].replace("\\", "/").split("/")
        if len(path) >= 2 and (path[-2], path[-1]) in ours:
            hidden += 1
        else:
            kept += [ln for ln in lines[i:end] if not _MARKERS.match(ln)]
        i = end
    return "\n".join(kept), hidden


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
