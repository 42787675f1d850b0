"""``journal show ID --html FILE``: one execution's timeline as a self-contained HTML page.

The page draws the run the way people think of it: each step a lane, each attempt a bar
placed by time (failed attempts marked, with their errors), pauses and waits (sleeps,
signals, children) as gaps labelled with what they waited for and how they ended, log
lines and signals as ticks; then the steps with their costs and attempts, the calls, the
children and forks, the signals, the log, the final failure's traceback and every event.

It is built from :class:`~runner.cli.timeline.Timeline` (what ``journal show`` prints),
never from the events again: where a bar goes is worked out by the pure functions below
(:func:`attempts_of`, :func:`gaps_of`, :func:`make_scale`, :func:`place`, :func:`layout`),
which the tests check without a browser. A run that paused for three hours around steps of
a second would be a blank line drawn to scale, so pauses and waits much longer than the
work are drawn shorter than their time (marked, and labelled with their real length).

The file must open anywhere, from a mail attachment or an artefact store, and must not
leak the journal's data when it does: CSS and the one small script are inline, there is
no URL of any network resource, a Content-Security-Policy forbids loading anything, and
every value from the journal (step names, errors, log lines, payloads: user data) is
escaped. :mod:`runner.cli.ui` serves the same pages, with links between executions.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from journal.state import TERMINAL_STATUSES
from runner.cli.jsonout import preview
from runner.cli.render import short_id, usd
from runner.cli.timeline import CallLine, Entry, StepLine, Timeline, format_utc, waits_for
from runner.cli.timeparse import format_seconds

if TYPE_CHECKING:
    from journal import Journal
    from projections import ExecutionSummary, Projections

__all__ = [
    "CSP",
    "Attempt",
    "Gap",
    "Lane",
    "Layout",
    "Linker",
    "Mark",
    "Scale",
    "attempts_of",
    "badge",
    "caption_at",
    "chart",
    "document",
    "execution_ref",
    "gaps_of",
    "layout",
    "load",
    "make_scale",
    "marks_of",
    "page",
    "page_body",
    "place",
    "seconds_text",
    "span_of",
    "ticks",
    "time_tag",
    "write_page",
]

#: The labels :func:`runner.cli.timeline.event_label` gives the events the lanes are made of.
STEP_STARTED, STEP_COMPLETED, STEP_FAILED = "step started", "step completed", "step failed"
PAUSED, RESUMED = "execution paused", "execution resumed"
SIGNAL_RECEIVED = "signal received"
#: The kinds of call that make the execution wait (value calls are instants, in the table).
WAIT_KINDS = ("timer", "signal", "child")
#: A bar is at least this wide (percent), so an instant still shows.
MIN_WIDTH = 0.4
#: At most this share of the width for one shortened gap (less when there are many).
GAP_SHARE = 0.15
#: All shortened gaps together take at most this share of the width.
GAPS_SHARE = 0.6
#: The room (percent) beside a bar its words need; with less on both sides they go over it.
CAPTION_ROOM = 25.0
#: Forks listed on a page.
FORKS_SHOWN = 100

#: Returns the address of another execution's page, or None where there are no pages (a
#: file on its own): then the id is printed as text.
Linker = Callable[[str], str | None]


def _no_links(_: str) -> None:
    return None


# -- layout: pure functions from the Timeline to positions --------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt of one step, as a bar: from its StepStarted to its end event."""

    seq: int
    attempt: int
    #: completed, failed, running (no end yet) or interrupted (no end, and none will come:
    #: the execution ended, or the step was started again after a crash).
    status: str
    #: Offsets (seconds since the start) of its start and of its end (None: still open).
    start: float
    end: float | None
    #: How long the step's function ran (the events' ``duration``), None without an end.
    took: float | None = None
    cost_usd: Decimal | None = None
    #: ``Type: message (will retry)`` for a failed attempt.
    error: str | None = None


@dataclass(frozen=True)
class Gap:
    """A time the execution waited: a pause for a human, or a call that waits (a sleep, a
    signal, a child)."""

    #: pause, timer, signal or child.
    kind: str
    #: The call's seq (None: a pause, which is no call).
    seq: int | None
    #: What it waited for, as people read it.
    label: str
    start: float
    #: None while it still waits.
    end: float | None
    #: How it ended (``resumed value=...``, ``fired``, ``signal consumed``, ``completed``),
    #: or ``waiting``.
    outcome: str
    #: The child execution of a child call.
    child: UUID | None = None


@dataclass(frozen=True)
class Mark:
    """An instant on the timeline: a log line or a signal received."""

    kind: str
    offset: float
    text: str
    level: str | None = None


@dataclass(frozen=True)
class Lane:
    """One row of the chart: a step and its attempts, or a gap."""

    start: float
    step: StepLine | None = None
    attempts: tuple[Attempt, ...] = ()
    gap: Gap | None = None


@dataclass(frozen=True)
class Scale:
    """Seconds since the start to a position across the chart (percent), piecewise linear:
    straight in time except over the ``shortened`` gaps."""

    #: (seconds, percent) points, both increasing, from (0, 0) to (span, 100).
    knots: tuple[tuple[float, float], ...]
    #: The (start, end) of the gaps drawn shorter than their time.
    shortened: tuple[tuple[float, float], ...] = ()

    def x(self, t: float) -> float:
        """Where offset ``t`` (seconds) is drawn, in percent, clamped to the chart."""
        if t <= self.knots[0][0]:
            return self.knots[0][1]
        if t >= self.knots[-1][0]:
            return self.knots[-1][1]
        i = bisect_right(self.knots, t, key=lambda k: k[0]) - 1
        (t0, x0), (t1, x1) = self.knots[i], self.knots[i + 1]
        return x0 if t1 == t0 else x0 + (x1 - x0) * (t - t0) / (t1 - t0)


@dataclass(frozen=True)
class Layout:
    """What the chart draws: its span, the scale, the lanes in time order, the ticks."""

    span: float
    scale: Scale
    lanes: tuple[Lane, ...]
    marks: tuple[Mark, ...]
    ticks: tuple[tuple[float, str], ...]


def span_of(timeline: Timeline) -> float:
    """The seconds the chart spans: the run's duration (or how long it has been running),
    at least up to its last event; never 0 (everything is a share of it)."""
    s = timeline.summary
    last = max((e.offset for e in timeline.entries), default=0.0)
    whole = s.get("duration")
    if whole is None:
        whole = s.get("running_for")
    return max(float(whole or 0.0), last, 1e-6)


def _terminal(timeline: Timeline) -> bool:
    return timeline.summary.get("status") in TERMINAL_STATUSES


def attempts_of(entries: Sequence[Entry], *, ended: bool = False) -> dict[int, list[Attempt]]:
    """Each step's attempts (by seq), paired from its started and completed/failed entries.

    An end without a start (a step copied by a fork) is an instant at its end; a start
    followed by another start of the same seq (a crash, then recovery) is interrupted, and
    so is one still open once the execution ``ended``.
    """
    found: dict[int, list[Attempt]] = {}
    open_: dict[int, Entry] = {}

    def close(start: Entry, status: str, end: Entry | None = None) -> None:
        assert start.seq is not None
        found.setdefault(start.seq, []).append(Attempt(
            seq=start.seq, attempt=start.attempt or 1, status=status, start=start.offset,
            end=None if end is None else end.offset,
            took=None if end is None else end.duration,
            cost_usd=None if end is None else end.cost_usd,
            error=end.detail if end is not None and end.event == STEP_FAILED else None,
        ))

    for e in entries:
        if e.seq is None:
            continue
        if e.event == STEP_STARTED:
            if e.seq in open_:
                close(open_.pop(e.seq), "interrupted")
            open_[e.seq] = e
        elif e.event in (STEP_COMPLETED, STEP_FAILED):
            start = open_.pop(e.seq, e)
            status = "completed" if e.event == STEP_COMPLETED else "failed"
            close(start, status, e)
    for start in open_.values():
        close(start, "interrupted" if ended else "running")
    for attempts in found.values():
        attempts.sort(key=lambda a: (a.start, a.attempt))
    return found


def _offset(when: datetime, origin: datetime) -> float:
    return max(0.0, (when - origin).total_seconds())


def _wait_label(call: CallLine) -> str:
    """``sleep until 2026-12-01 15:00:49 UTC``, ``wait_for signal 'paid', no deadline``,
    ``child 'kid'``: the call and what it waited for."""
    if call.kind == "timer":
        return "sleep" + (f" until {format_utc(call.until)}" if call.until is not None else "")
    if call.kind == "signal":
        return "wait_for " + waits_for("signal", call.name, call.until)
    return waits_for(call.kind, call.name, call.until)


def _wait_outcome(call: CallLine) -> str:
    if call.kind == "child":
        status = call.outcome if call.status == "done" else call.child_status
        return f"child {status}" if status else "child running"
    return call.outcome


def gaps_of(timeline: Timeline) -> list[Gap]:
    """The times the execution waited, in time order: its pauses (from each ``execution
    paused`` entry to the ``execution resumed`` after it) and its waiting calls. One still
    open in an execution that ended (cancelled while it waited) ends with it."""
    gaps: list[Gap] = []
    pause: Entry | None = None
    for e in timeline.entries:
        if e.event == PAUSED:
            pause = e
        elif e.event == RESUMED and pause is not None:
            gaps.append(Gap(kind="pause", seq=None, label=f"paused: {pause.detail}",
                            start=pause.offset, end=e.offset, outcome=f"resumed {e.detail}"))
            pause = None
    if pause is not None:
        gaps.append(Gap(kind="pause", seq=None, label=f"paused: {pause.detail}",
                        start=pause.offset, end=None, outcome="waiting"))
    origin = timeline.entries[0].at if timeline.entries else None
    if origin is not None:
        for c in timeline.calls:
            if c.kind not in WAIT_KINDS:
                continue
            gaps.append(Gap(
                kind=c.kind, seq=c.seq, label=_wait_label(c), start=_offset(c.at, origin),
                end=None if c.ended_at is None else _offset(c.ended_at, origin),
                outcome=_wait_outcome(c), child=c.child,
            ))
    gaps.sort(key=lambda g: (g.start, g.seq or 0))
    if _terminal(timeline):
        end, how = span_of(timeline), f"execution {timeline.summary['status']}"
        gaps = [g if g.end is not None else dataclasses.replace(g, end=end, outcome=how)
                for g in gaps]
    return gaps


def marks_of(entries: Sequence[Entry]) -> list[Mark]:
    """The log lines and the signals received, as instants."""
    marks = []
    for e in entries:
        if e.level is not None:
            step = f"[{e.step} #{e.seq}] " if e.step else ""
            marks.append(Mark(kind="log", offset=e.offset, text=f"{step}{e.detail}",
                              level=e.level))
        elif e.event == SIGNAL_RECEIVED:
            marks.append(Mark(kind="signal", offset=e.offset, text=f"signal {e.detail}"))
    return marks


def _merged(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def make_scale(span: float, idle: Sequence[tuple[float, float]]) -> Scale:
    """The scale of a chart ``span`` seconds wide whose ``idle`` intervals (pauses, waits)
    may be drawn shorter than their time.

    Straight in time unless an idle interval would take more than its share of the width
    (``GAP_SHARE``, less when there are many; ``GAPS_SHARE`` for all of them) next to the
    rest, the time something ran: those are drawn that wide, everything else to scale.
    """
    linear = Scale(knots=((0.0, 0.0), (span, 100.0)))
    gaps = _merged([(max(0.0, a), min(span, b)) for a, b in idle])
    busy = span - sum(b - a for a, b in gaps)
    if not gaps or busy <= 0:
        return linear
    share = min(GAP_SHARE, GAPS_SHARE / len(gaps))
    cap = share * busy / (1 - len(gaps) * share)
    if all(b - a <= cap for a, b in gaps):
        return linear
    knots = [(0.0, 0.0)]
    shortened = []
    drawn, last = 0.0, 0.0
    for a, b in gaps:
        drawn += a - last
        knots.append((a, drawn))
        if b - a > cap:
            shortened.append((a, b))
        drawn += min(b - a, cap)
        knots.append((b, drawn))
        last = b
    drawn += span - last
    knots.append((span, drawn))
    unique = [k for i, k in enumerate(knots) if i == 0 or k[0] > knots[i - 1][0]]
    return Scale(knots=tuple((t, 100.0 * x / drawn) for t, x in unique),
                 shortened=tuple(shortened))


def place(scale: Scale, start: float, end: float) -> tuple[float, float]:
    """(left, width) in percent of a bar from ``start`` to ``end`` seconds: at least
    ``MIN_WIDTH`` wide, and inside the chart."""
    left = scale.x(start)
    width = max(scale.x(end) - left, MIN_WIDTH)
    return min(left, 100.0 - width), width


def ticks(scale: Scale, span: float, *, count: int = 4, min_apart: float = 12.0
          ) -> list[tuple[float, str]]:
    """The time axis: (percent, ``+1.20s``) marks, evenly spaced on a straight scale, at
    the ends of the shortened gaps (whose time jumps) on one that is not; none closer than
    ``min_apart`` percent to the one before."""
    if scale.shortened:
        times = [0.0, *(t for gap in scale.shortened for t in gap), span]
    else:
        times = [span * i / count for i in range(count + 1)]
    out: list[tuple[float, str]] = []
    for t in times:
        x = scale.x(t)
        if out and x - out[-1][0] < min_apart:
            if t != span:
                continue
            out.pop()  # the end always shows
        out.append((x, "0" if t == 0 else f"+{format_seconds(t)}"))
    return out


def layout(timeline: Timeline) -> Layout:
    """Where everything of ``timeline`` goes: lanes (steps and gaps) in the order they
    began, their scale, the instants, the axis."""
    span = span_of(timeline)
    attempts = attempts_of(timeline.entries, ended=_terminal(timeline))
    gaps = gaps_of(timeline)
    lanes = [Lane(start=min((a.start for a in attempts.get(st.seq, ())), default=0.0),
                  step=st, attempts=tuple(attempts.get(st.seq, ())))
             for st in timeline.steps]
    lanes += [Lane(start=g.start, gap=g) for g in gaps]
    lanes.sort(key=lambda lane: (lane.start, _lane_seq(lane)))
    scale = make_scale(span, [(g.start, span if g.end is None else g.end) for g in gaps])
    return Layout(span=span, scale=scale, lanes=tuple(lanes),
                  marks=tuple(marks_of(timeline.entries)), ticks=tuple(ticks(scale, span)))


def _lane_seq(lane: Lane) -> int:
    if lane.step is not None:
        return lane.step.seq
    return lane.gap.seq if lane.gap is not None and lane.gap.seq is not None else 0


# -- markup --------------------------------------------------------------------------------------


def _e(value: object) -> str:
    """A value as HTML text or attribute value: every user value goes through here."""
    return escape(str(value), quote=True)


def seconds_text(seconds: float | None) -> str:
    """:func:`~runner.cli.timeparse.format_seconds`, except that a step that took a few
    microseconds reads ``<0.1ms``, not ``0.0ms`` (which looks like nothing was measured)."""
    if seconds is not None and 0 < seconds < 0.00005:
        return "<0.1ms"
    return format_seconds(seconds)


def _pct(value: float) -> str:
    return f"{value:.3f}%"


_CSS = """
:root{--ok:#23874a;--bad:#c62f2f;--wait:#2f6fc6;--pause:#c99a12;--run:#1b95a8;--dim:#777;
--line:#e3e3e3;--bg:#fff;--fg:#1d1d1f;--soft:#f5f6f8}
*{box-sizing:border-box}
body{margin:0;padding:1.2rem 1.6rem 3rem;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--soft);padding:.7rem;overflow:auto;white-space:pre-wrap;margin:.4rem 0}
a{color:#1f5fbf}nav{margin-bottom:.6rem}nav a{margin-right:.8rem}
nav a.current{color:var(--fg);font-weight:600;text-decoration:none}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;color:#fff;font-size:12px;
vertical-align:middle;background:var(--dim)}
.s-completed{background:var(--ok)}.s-failed{background:var(--bad)}
.s-paused{background:var(--pause)}.s-waiting{background:var(--wait)}
.s-running,.s-retrying{background:var(--run)}.s-cancelled,.s-interrupted{background:var(--dim)}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}
dl.summary dt{color:var(--dim)}dl.summary dd{margin:0}
.error{color:var(--bad)}.warn{background:#fff4d6;padding:.5rem .7rem;border-left:3px solid
var(--pause)}.muted{color:var(--dim)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2rem .5rem;
border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600;color:#444}
td.num,th.num{text-align:right;white-space:nowrap}tfoot td{font-weight:600}
tr:target,.lane:target{background:#fff8dc}
.chart{border:1px solid var(--line);border-radius:4px;padding:.3rem .5rem .5rem}
.lane,.axis{display:grid;grid-template-columns:minmax(12rem,22%) 1fr;align-items:center;
border-bottom:1px solid #f0f0f0;min-height:1.9rem}
.lane .label{padding-right:.6rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.lane .label small{color:var(--dim)}
.track{position:relative;height:1.9rem}
.axis .track{height:1.3rem;border-bottom:1px solid #bbb}
.tick{position:absolute;bottom:0;font-size:11px;color:var(--dim);white-space:nowrap;
border-left:1px solid #bbb;padding-left:3px}
.tick.end{border-left:none;border-right:1px solid #bbb;padding:0 3px 0 0;
transform:translateX(-100%)}
.attempt,.wait{position:absolute;top:.45rem;height:1rem;border-radius:2px}
.attempt{background:var(--ok)}
.attempt[data-status=failed]{background:repeating-linear-gradient(135deg,var(--bad) 0 4px,
#e57b7b 4px 8px)}
.attempt[data-status=running]{background:var(--run)}
.attempt[data-status=interrupted]{background:var(--dim)}
.wait{background:repeating-linear-gradient(45deg,#cfe0f7 0 5px,#e9f1fc 5px 10px);
border:1px solid var(--wait)}
.gap[data-kind=pause] .wait{background:repeating-linear-gradient(45deg,#f5dc8f 0 5px,
#fcf1cf 5px 10px);border-color:var(--pause)}
.wait.shortened{border-left-style:dashed;border-right-style:dashed}
.wait.open{border-right:none}
.caption{position:absolute;top:.35rem;font-size:12px;white-space:nowrap;padding:0 .35rem;
color:#333;overflow:hidden;text-overflow:ellipsis}.caption.bad{color:var(--bad)}
.caption.inside{top:.4rem;line-height:1.05rem;color:#fff;font-weight:600;
background:rgba(20,20,20,.72);border-radius:3px}
.mark{position:absolute;top:.35rem;width:3px;height:1.2rem;background:#555;border-radius:1px}
.mark[data-level=error]{background:var(--bad)}.mark[data-level=warning]{background:var(--pause)}
.mark[data-kind=signal]{background:var(--wait)}
time{white-space:nowrap}details{margin:.4rem 0}summary{cursor:pointer;color:#333}
.attempts{margin:0;padding-left:1.1rem}
"""

#: The page's only script: times in the reader's own time zone, as tooltips (the page
#: itself says UTC everywhere, so it reads the same wherever it is opened).
_SCRIPT = (
    "document.querySelectorAll('time[datetime]').forEach(function(t){"
    "var d=new Date(t.getAttribute('datetime'));"
    "if(!isNaN(d)){t.title=d.toLocaleString();t.dataset.local='1';}});"
)

#: Nothing may be loaded from anywhere: inline styles, and only the script above (by hash).
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()}'"
    "; base-uri 'none'; form-action 'none'"
)


def document(title: str, body: str) -> str:
    """A whole page: ``title`` (escaped here), ``body`` (markup, escaped by its builder)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_e(CSP)}\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def time_tag(when: datetime | None) -> str:
    """A point in time as the CLI prints it (UTC), machine-readable for the script."""
    if when is None:
        return "-"
    return (f"<time datetime=\"{_e(when.astimezone(UTC).isoformat())}\">"
            f"{_e(format_utc(when))}</time>")


def badge(status: str | None) -> str:
    """A status in its colour."""
    status = status or "unknown"
    return f"<span class=\"badge s-{_e(status)}\">{_e(status)}</span>"


def execution_ref(eid: object, link: Linker, *, short: bool = False) -> str:
    """Another execution: a link to its page, or its id as text where there are no pages
    (``short``: its first 8 characters shown, the whole id in the tooltip)."""
    text = str(eid)
    shown = f"<code title=\"{_e(text)}\">{_e(short_id(text))}</code>" if short else (
        f"<code>{_e(text)}</code>")
    href = link(text)
    return shown if href is None else f"<a href=\"{_e(href)}\">{shown}</a>"


def _row(cells: Sequence[str], *, attrs: str = "", nums: Sequence[int] = ()) -> str:
    tds = "".join(f"<td class=\"num\">{c}</td>" if i in nums else f"<td>{c}</td>"
                  for i, c in enumerate(cells))
    return f"<tr{attrs}>{tds}</tr>"


def _head(names: Sequence[str], nums: Sequence[int] = ()) -> str:
    ths = "".join(f"<th class=\"num\">{_e(n)}</th>" if i in nums else f"<th>{_e(n)}</th>"
                  for i, n in enumerate(names))
    return f"<thead><tr>{ths}</tr></thead>"


def _summary(timeline: Timeline, link: Linker) -> str:
    s = timeline.summary
    rows: list[tuple[str, str]] = [
        ("execution", f"<code>{_e(s['execution_id'])}</code>"),
        ("workflow", _e(s["workflow"])),
        ("status", badge(s["status"])),
        ("started", time_tag(s["started_at"])),
        ("ended", time_tag(s["ended_at"])),
    ]
    if s.get("duration") is not None:
        rows.append(("duration", _e(seconds_text(s["duration"]))))
    elif s.get("running_for") is not None:
        rows.append(("running for", _e(seconds_text(s["running_for"]))
                     + f" <span class=\"muted\">(last event "
                     f"{_e(seconds_text(s.get('since_last_event')))} ago)</span>"))
    if s.get("code_version"):
        rows.append(("code version", f"<code>{_e(s['code_version'])}</code>"))
    cost = s["cost"]
    rows.append(("cost", f"<span class=\"cost total\">{_e(usd(cost['usd']))}</span> "
                 f"<span class=\"muted\">({cost['input_tokens']:,} in / "
                 f"{cost['output_tokens']:,} out tokens)</span>"))
    rows.append(("events", f"{s['events']:,} events, {s['log_lines']:,} log line(s)"))
    if s.get("parent") is not None:
        rows.append(("child of", f"{execution_ref(s['parent'], link)} "
                     f"(its call #{_e(s['parent_seq'])})"))
    if s.get("forked_from") is not None:
        rows.append(("forked from", f"{execution_ref(s['forked_from'], link)} "
                     f"at seq {_e(s['forked_seq'])}"))
    if s.get("idempotency_key"):
        rows.append(("idempotency key", f"<code>{_e(s['idempotency_key'])}</code>"))
    wait, pause = s.get("wait"), s.get("pause")
    if s["status"] == "waiting" and wait is not None:
        rows.append(("waiting for", _e(waits_for(wait["kind"], wait["name"], wait["until"]))
                     + " since " + time_tag(wait["since"])))
    if pause is not None:
        rows.append(("paused for", _e(waits_for("human", pause["reason"], pause.get("until")))
                     + " since " + time_tag(pause["at"])
                     + f", payload <code>{_e(preview(pause['payload'], 200))}</code>"))
    if s.get("error") is not None:
        rows.append(("error", f"<span class=\"error\">{_e(s['error'].type)}: "
                     f"{_e(s['error'].message)}</span>"))
    if s["status"] == "completed":
        rows.append(("output", f"<code>{_e(preview(s['output'], 200))}</code>"))
    rows.append(("input", f"<code>{_e(preview(s['input'], 200))}</code>"))
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl class=\"summary\">{items}</dl>"


def caption_at(left: float, width: float) -> tuple[str, float, float]:
    """Where a bar's words go: (``after``, ``before`` or ``inside``, the position, the
    room), all in percent: beside the bar where there is more room, over it when neither
    side has ``CAPTION_ROOM`` (the words are cut to the room, whole in the tooltip)."""
    after, before = 100.0 - left - width, left
    if max(after, before) < min(CAPTION_ROOM, width):
        return "inside", left, width
    if after >= before:
        return "after", left + width, after
    return "before", 100.0 - left, before


def _caption(left: float, width: float, text: str, *, bad: bool = False) -> str:
    """A bar's words, placed by :func:`caption_at`."""
    side, at, room = caption_at(left, width)
    where = f"right:{_pct(at)}" if side == "before" else f"left:{_pct(at)}"
    cls = "caption" + (" bad" if bad else "") + (" inside" if side == "inside" else "")
    return (f"<span class=\"{cls}\" style=\"{where};max-width:{_pct(room)}\" "
            f"title=\"{_e(text)}\">{_e(text)}</span>")


def _attempt_text(a: Attempt) -> str:
    """``attempt 1 failed after 21ms, $0.002: ConnectionError: ... (will retry)``."""
    took = f" after {seconds_text(a.took)}" if a.took is not None else ""
    cost = f", {usd(a.cost_usd)}" if a.cost_usd else ""
    error = f": {a.error}" if a.error else ""
    return f"attempt {a.attempt} {a.status}{took}{cost}{error}"


def _step_lane(lane: Lane, scale: Scale, span: float) -> str:
    st = lane.step
    assert st is not None
    bars = []
    for a in lane.attempts:
        left, width = place(scale, a.start, span if a.end is None else a.end)
        bars.append(
            f"<div class=\"attempt\" data-seq=\"{st.seq}\" data-attempt=\"{a.attempt}\" "
            f"data-status=\"{_e(a.status)}\" style=\"left:{_pct(left)};width:{_pct(width)}\" "
            f"title=\"{_e(_attempt_text(a))}\"></div>")
    caption = ""
    if lane.attempts:
        first = lane.attempts[0]
        left = scale.x(first.start)
        last = lane.attempts[-1]
        right = scale.x(span if last.end is None else last.end)
        failed = [a for a in lane.attempts if a.status == "failed"]
        words = [seconds_text(st.duration) if st.duration is not None else st.status]
        if len(lane.attempts) > 1:
            words.append(f"{len(lane.attempts)} attempts")
        if st.cost_usd:
            words.append(usd(st.cost_usd))
        if failed and failed[-1].error:
            words.append(failed[-1].error)
        caption = _caption(left, max(right - left, MIN_WIDTH), " · ".join(words),
                           bad=st.status == "failed")
    label = (f"<a href=\"#step-{st.seq}\" class=\"mono\">#{st.seq}</a> {_e(st.name)} "
             f"<small>{_e(st.status)}</small>")
    return (
        f"<div class=\"lane step\" id=\"lane-{st.seq}\" data-seq=\"{st.seq}\" "
        f"data-step=\"{_e(st.name)}\" data-status=\"{_e(st.status)}\" "
        f"data-attempts=\"{len(lane.attempts)}\">"
        f"<div class=\"label\" title=\"{_e(st.name)}\">{label}</div>"
        f"<div class=\"track\">{''.join(bars)}{caption}</div></div>"
    )


def _gap_lane(lane: Lane, scale: Scale, span: float, link: Linker) -> str:
    g = lane.gap
    assert g is not None
    end = span if g.end is None else g.end
    left, width = place(scale, g.start, end)
    short = any(a <= g.start and end <= b for a, b in scale.shortened)
    classes = "wait" + (" shortened" if short else "") + (" open" if g.end is None else "")
    took = seconds_text(end - g.start) + ("…" if g.end is None else "")
    text = f"{g.label} · {took} · {g.outcome}"
    seq = f" data-seq=\"{g.seq}\"" if g.seq is not None else ""
    name = "pause" if g.kind == "pause" else f"#{g.seq} {g.kind}"
    child = f" {execution_ref(g.child, link, short=True)}" if g.child is not None else ""
    return (
        f"<div class=\"lane gap\" data-kind=\"{_e(g.kind)}\"{seq} "
        f"data-outcome=\"{_e(g.outcome)}\">"
        f"<div class=\"label\" title=\"{_e(g.label)}\"><small>{_e(name)}</small>{child}</div>"
        f"<div class=\"track\"><div class=\"{classes}\" style=\"left:{_pct(left)};"
        f"width:{_pct(width)}\" title=\"{_e(text)}\"></div>"
        f"{_caption(left, width, text)}</div></div>"
    )


def _marks_lane(kind: str, title: str, marks: Sequence[Mark], scale: Scale) -> str:
    ticks_ = "".join(
        f"<span class=\"mark\" data-kind=\"{_e(m.kind)}\""
        + (f" data-level=\"{_e(m.level)}\"" if m.level else "")
        + f" style=\"left:{_pct(min(scale.x(m.offset), 99.6))}\" title=\"+"
        f"{_e(seconds_text(m.offset))} {_e(m.text)}\"></span>"
        for m in marks if m.kind == kind)
    return (f"<div class=\"lane marks\" data-kind=\"{_e(kind)}\"><div class=\"label\">"
            f"<small>{_e(title)}</small></div><div class=\"track\">{ticks_}</div></div>")


def chart(lay: Layout, link: Linker = _no_links) -> str:
    """The timeline: an axis, a lane per step and per wait, the log lines and signals."""
    parts = ["<div class=\"axis\"><div class=\"label muted\">"
             f"{_e(seconds_text(lay.span))} in all</div><div class=\"track\">"
             + "".join(f"<span class=\"tick{' end' if x > 90 else ''}\" style=\"left:{_pct(x)}\">"
                       f"{_e(text)}</span>" for x, text in lay.ticks) + "</div></div>"]
    for lane in lay.lanes:
        if lane.step is not None:
            parts.append(_step_lane(lane, lay.scale, lay.span))
        else:
            parts.append(_gap_lane(lane, lay.scale, lay.span, link))
    if any(m.kind == "log" for m in lay.marks):
        parts.append(_marks_lane("log", "log lines", lay.marks, lay.scale))
    if any(m.kind == "signal" for m in lay.marks):
        parts.append(_marks_lane("signal", "signals", lay.marks, lay.scale))
    note = ""
    if lay.scale.shortened:
        note = ("<p class=\"muted\">Pauses and waits much longer than the work are drawn "
                "shorter than their time (dashed ends); their labels say how long they "
                "took.</p>")
    return f"<div class=\"chart\">{''.join(parts)}</div>{note}"


def _steps_table(timeline: Timeline, lay: Layout) -> str:
    attempts = {lane.step.seq: lane.attempts for lane in lay.lanes if lane.step is not None}
    body = []
    for st in timeline.steps:
        tries = "".join(f"<li data-attempt=\"{a.attempt}\" data-status=\"{_e(a.status)}\">"
                        f"{_e(_attempt_text(a))}</li>" for a in attempts.get(st.seq, ()))
        tb = (f"<details class=\"traceback step-traceback\"><summary>traceback</summary>"
              f"<pre>{_e(st.traceback.rstrip())}</pre></details>" if st.traceback else "")
        error = f"<span class=\"error\">{_e(st.error)}</span>{tb}" if st.error else ""
        body.append(_row(
            [str(st.seq), _e(st.name), badge(st.status), str(st.attempts),
             _e(seconds_text(st.duration)),
             f"<span class=\"cost\">{_e(usd(st.cost_usd))}</span>",
             f"{st.input_tokens:,} / {st.output_tokens:,}",
             f"<ol class=\"attempts\">{tries}</ol>", error],
            attrs=f" id=\"step-{st.seq}\"", nums=(0, 3, 4, 5, 6)))
    total = sum((st.cost_usd for st in timeline.steps), Decimal(0))
    foot = _row(["", "total", "", str(sum(st.attempts for st in timeline.steps)), "",
                 f"<span class=\"cost\">{_e(usd(total))}</span>", "", "", ""],
                nums=(3, 5))
    head = _head(["seq", "step", "status", "attempts", "took", "cost", "tokens in / out",
                  "each attempt", "error"], nums=(0, 3, 4, 5, 6))
    return (f"<h2>steps</h2><table class=\"steps\">{head}<tbody>{''.join(body)}</tbody>"
            f"<tfoot>{foot}</tfoot></table>")


def _calls_table(timeline: Timeline, link: Linker) -> str:
    rows = []
    for c in timeline.calls:
        call = f"{c.call} {c.name!r}" if c.name else c.call
        if c.kind == "child":
            who = execution_ref(c.child, link) if c.child is not None else "(not in the views)"
            outcome = f"child {who} {_e(_wait_outcome(c))}"
        else:
            outcome = _e(c.outcome + (f" (#{c.signal})" if c.signal else ""))
        shows_value = c.kind == "value" or c.signal or c.kind == "child"
        value = f"<code>{_e(preview(c.value, 120))}</code>" if shows_value else ""
        rows.append(_row([str(c.seq), _e(call), badge(c.status), time_tag(c.at),
                          time_tag(c.until), time_tag(c.ended_at), outcome, value],
                         nums=(0,)))
    head = _head(["seq", "call", "status", "at", "until", "ended", "outcome", "value"],
                 nums=(0,))
    return f"<h2>calls</h2><table class=\"calls\">{head}<tbody>{''.join(rows)}</tbody></table>"


def _related(timeline: Timeline, forks: Sequence[ExecutionSummary], link: Linker) -> str:
    parts = []
    if timeline.children:
        items = "".join(
            f"<li class=\"child\" data-seq=\"{c.seq}\">call #{c.seq} {_e(c.workflow)}: "
            + (execution_ref(c.execution_id, link) if c.execution_id is not None
               else "<span class=\"muted\">not in the views yet</span>")
            + f" {badge(c.status)}</li>" for c in timeline.children)
        parts.append(f"<h2>children</h2><ul>{items}</ul>")
    if forks:
        items = "".join(
            f"<li class=\"fork\">{execution_ref(f.execution_id, link)} {_e(f.workflow)} "
            f"{badge(f.status)} from seq {_e(f.forked_seq)}, started "
            f"{time_tag(f.started_at)}</li>" for f in forks)
        parts.append(f"<h2>forks</h2><ul>{items}</ul>")
    return "".join(parts)


def _signals_table(timeline: Timeline, link: Linker) -> str:
    rows = []
    for sig in timeline.signals:
        name, value = _e(repr(sig.name)), sig.value
        if sig.child is not None and isinstance(value, dict):
            name = f"end of child {execution_ref(sig.child, link)}"
            value = {k: v for k, v in value.items() if k != "execution_id"}
        consumed = f"call #{sig.consumed_by}" if sig.consumed_by else "-"
        rows.append(_row([str(sig.position), name, time_tag(sig.at), _e(consumed),
                          f"<code>{_e(preview(value, 120))}</code>"], nums=(0,)))
    head = _head(["#", "signal", "at", "consumed by", "value"], nums=(0,))
    return f"<h2>signals</h2><table class=\"signals\">{head}<tbody>{''.join(rows)}</tbody></table>"


def _log_table(timeline: Timeline) -> str:
    rows = [
        _row([f"+{e.offset:.3f}s", badge(e.level), _e(f"{e.step} #{e.seq}" if e.step else ""),
              f"<span class=\"log-message\">{_e(e.detail)}</span>"],
             attrs=f" class=\"log\" data-level=\"{_e(e.level)}\"", nums=(0,))
        for e in timeline.entries if e.level is not None
    ]
    head = _head(["offset", "level", "step", "message"], nums=(0,))
    return f"<h2>log</h2><table class=\"log\">{head}<tbody>{''.join(rows)}</tbody></table>"


def _failure(timeline: Timeline) -> str:
    """The execution's error and its traceback, open: what a reader of a failure wants
    (a failed step's own, its cause, is with the step, folded)."""
    error = timeline.summary.get("error")
    if error is None:
        return ""
    parts = [f"<h2>failure</h2><p class=\"error\">{_e(error.type)}: {_e(error.message)}</p>"]
    if error.traceback:
        parts.append("<details class=\"traceback\" open><summary>traceback of the "
                     f"execution's failure</summary><pre>{_e(error.traceback.rstrip())}</pre>"
                     "</details>")
    return "".join(parts)


def _events_table(timeline: Timeline) -> str:
    rows = [
        _row([str(e.position), f"+{e.offset:.3f}s",
              _e(e.event if e.level is None else f"log {e.level}"),
              _e(f"{e.step} #{e.seq}" if e.step else ("" if e.seq is None else f"#{e.seq}")),
              "" if e.attempt is None else str(e.attempt),
              "" if e.duration is None else _e(seconds_text(e.duration)),
              _e(usd(e.cost_usd)), _e(e.detail)], nums=(0, 1, 4, 5, 6))
        for e in timeline.entries
    ]
    head = _head(["#", "offset", "event", "step", "try", "took", "cost", "detail"],
                 nums=(0, 1, 4, 5, 6))
    return (f"<details class=\"events\"><summary>all {len(timeline.entries)} events"
            f"</summary><table>{head}<tbody>{''.join(rows)}</tbody></table></details>")


def page_body(
    timeline: Timeline, *, forks: Sequence[ExecutionSummary] = (), link: Linker = _no_links,
    notice: str = "",
) -> str:
    """The markup of an execution's page (``notice``: a warning shown first, as text)."""
    s = timeline.summary
    lay = layout(timeline)
    parts = [
        f"<p class=\"warn\">{_e(notice)}</p>" if notice else "",
        f"<h1>{_e(s['workflow'])} {badge(s['status'])} "
        f"<small class=\"muted mono\">{_e(short_id(s['execution_id']))}</small></h1>",
        _summary(timeline, link),
        "<h2>timeline</h2>", chart(lay, link),
        _failure(timeline),
        _steps_table(timeline, lay) if timeline.steps else "",
        _calls_table(timeline, link) if timeline.calls else "",
        _related(timeline, forks, link),
        _signals_table(timeline, link) if timeline.signals else "",
        _log_table(timeline) if any(e.level is not None for e in timeline.entries) else "",
        "<h2>events</h2>", _events_table(timeline),
    ]
    return "\n".join(p for p in parts if p)


def page(
    timeline: Timeline, *, forks: Sequence[ExecutionSummary] = (), link: Linker = _no_links,
    nav: str = "", notice: str = "",
) -> str:
    """An execution's whole page (``nav``: markup put first, the ui's way back)."""
    s = timeline.summary
    title = f"{s['workflow']} {short_id(s['execution_id'])} ({s['status']})"
    return document(title, nav + page_body(timeline, forks=forks, link=link, notice=notice))


# -- reading and writing -----------------------------------------------------------------------


def load(
    journal: Journal, views: Projections, text: str, *, refresh: bool = True
) -> tuple[Timeline, list[ExecutionSummary]]:
    """The timeline of the execution whose id is or starts with ``text``, and its forks.

    Its children and forks come from the views: brought up to the log first unless the
    caller did (``refresh=False``; the ui refreshes once per request and says if behind).
    """
    from runner.cli.lookup import resolve_id
    from runner.cli.plumbing import catch_up, resolve
    from runner.cli.timeline import build_timeline, has_children

    # A command says when it must catch the views up for a prefix; the ui does not.
    eid = resolve(journal, views, text) if refresh else resolve_id(journal, views, text)
    events = journal.events(eid)
    if refresh:
        catch_up(views)
    children = views.children(eid, limit=None) if has_children(events) else []
    forks = views.forks(eid, limit=FORKS_SHOWN)
    return build_timeline(eid, events, children=children), forks


def write_page(*, url: str, execution: str, path: Path) -> None:
    """``journal show ID --html FILE``: write the execution's page to ``path``; nothing is
    written unless the page was made whole."""
    from runner.cli.plumbing import echo, fail, session

    with session(url, read_only=True) as (journal, views):
        timeline, forks = load(journal, views, execution)
    text = page(timeline, forks=forks)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
    echo(f"wrote {path} ({len(timeline.steps)} step(s), {len(timeline.entries)} events)")
