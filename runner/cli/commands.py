"""The ``journal`` command: thin Typer wrappers over the library functions of ``runner.cli``.

Each command opens the journal named by ``--url`` (or ``$JOURNAL_URL``, else the embedded
SQLite file), calls one or two library functions, and prints a Rich table or, with
``--json``, plain JSON. Every failure a user can cause (unknown id, ambiguous prefix, bad
argument, unreachable database) ends with exit code 1 (2 for usage errors) and one line
on stderr that says why, with any password masked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from uuid import UUID

import typer
from typer.core import TyperCommand, TyperGroup

from journal.errors import mask_url
from journal.events import TERMINAL_EVENTS, StepStarted
from journal.storage import DEFAULT_URL
from projections import ExecutionSummary, Projections
from runner.cli import reads
from runner.cli.apps import describe_mismatch, load_runner
from runner.cli.jsonout import dumps, preview
from runner.cli.plumbing import CommandExit
from runner.cli.plumbing import catch_up as _catch_up
from runner.cli.plumbing import echo_json as _echo_json
from runner.cli.plumbing import fail as _fail
from runner.cli.plumbing import one_line as _one_line
from runner.cli.plumbing import reported as _reported
from runner.cli.plumbing import resolve as _resolve
from runner.cli.plumbing import scrub as _scrub
from runner.cli.plumbing import session as _session
from runner.cli.timeline import format_utc, waits_for
from runner.cli.timeparse import parse_duration, parse_since

if TYPE_CHECKING:
    from runner._runner import Run, Runner

# What only some commands use (the runner, Rich, retention, following, the rebuild) is
# imported inside them: a command pays for its own needs only.

__all__ = ["app", "main"]


def _click_class(name: str) -> type[Exception]:
    """A Click exception class as this Typer uses it (recent Typers vendor their own Click)."""
    found: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == name
    )
    return found


_UsageError = _click_class("UsageError")


class _OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr (Typer's default draws a multi-line box); help
    without placeholders (see ``_plain_help``)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag
        return option

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code: Any
        try:
            code = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var,
                standalone_mode=False, **extra,
            )
        except _UsageError as e:
            ctx: Any = getattr(e, "ctx", None)
            format_message = getattr(e, "format_message", None)
            message = format_message() if format_message is not None else str(e)
            if type(e).__name__ == "NoArgsIsHelpError":
                # Its message is the help; Rich help is printed while it is built (message "").
                if message:
                    typer.echo(message)
                code = 0
            else:
                where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                typer.echo(f"error: {_one_line(message)}{where}", err=True)
                code = getattr(e, "exit_code", 2)
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 130
        except CommandExit as e:  # a command's own failure, already printed
            code = e.code
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


#: One example per command, printed as the last paragraph of its help (a test checks each
#: command has one).
EXAMPLES = {
    "ls": "journal ls --status failed --since 1h --sort cost --limit 10",
    "show": "journal show 3f2a9c1e (a unique prefix of the id is enough)",
    "ui": "journal ui --port 8765, then open http://127.0.0.1:8765",
    "tail": "journal tail 3f2a9c1e",
    "logs": "journal logs --level warning --grep timeout --since 1h",
    "stuck": "journal stuck --older-than 10m",
    "errors": "journal errors --since 24h",
    "costs": "journal costs --by model --since 24h",
    "stats": "journal stats --workflow review --limit 5",
    "diff": "journal diff 3f2a9c1e 7b0d2e4f",
    "resume": "journal resume --app myservice.jobs:runner --reason human_review --since 2d "
              "--value '{\"approved\": true}' --dry-run",
    "recover": "journal recover --app myservice.jobs:runner --stale-after 2m",
    "check": "journal check --app myservice.jobs:runner --workflow review",
    "fork": "journal fork 3f2a9c1e --from-step analyse --app myservice.jobs:runner",
    "retry": "journal retry --app myservice.jobs:runner --status failed --error-type "
             "TimeoutError --since 1h --dry-run",
    "signal": "journal signal 3f2a9c1e payment --value '{\"paid\": 12.5}'",
    "serve": "journal serve --app myservice.jobs:runner --workers 8",
    "cancel": "journal cancel --status paused --workflow review --since 2d --dry-run",
    "export": "journal export --status failed --out ./failed",
    "prune": "journal prune --older-than 30d --archive ./archive --dry-run",
    "import": "journal import ./archive/*.json",
    "rebuild": "journal rebuild --only costs",
    "demo": "journal demo --url sqlite:///demo.db",
}


def _reflowed(text: str) -> str:
    """Help text with each paragraph on one line: Typer's Rich help keeps a docstring's own
    line breaks past the first paragraph, and wrapping those again at 80 columns leaves
    ragged half-lines (``\b`` paragraphs, which Click never rewraps, stay as written)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _metavar(param: Any) -> str:
    """What an option's value is called in help: nothing for a flag (Typer would print
    ``<bool>``), the option's name for the others (``--since SINCE``: the help says what it
    takes), so no ``<running|paused|...>`` has to fold in the middle of a word."""
    if getattr(param, "is_flag", False):
        return ""
    return str(param.name or "value").upper()


def _plain_help(command: Any) -> None:
    """A command's help as it reads best at 80 columns and wider: paragraphs reflowed, the
    command's example last, no ``<type>`` placeholders, and an option's choices listed in
    its help (words Rich can wrap between)."""
    example = EXAMPLES.get(command.name or "")
    text = _reflowed(command.help or "")
    command.help = text + (f"\n\nExample: {example}" if example else "")
    for param in command.params:
        if param.param_type_name == "argument":
            # Its name is in its column already; its help says what it takes (no <str>).
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None or param.metavar.startswith("<"):
            param.metavar = _metavar(param)
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is not None and descriptor.is_choice and param.help:
            choices = ", ".join(str(c) for c in descriptor.choices or ())
            if choices not in param.help:
                param.help = f"{_reflowed(param.help)} One of: {choices}."
        elif param.help:
            param.help = _reflowed(param.help)


class _Command(TyperCommand):
    """Every command of the app (set below, after they are all declared): plain help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag
        return option


app = typer.Typer(
    cls=_OneLineErrors,
    name="journal",
    help="Inspect, follow, resume, signal, cancel, export and prune workflow executions, "
    "and serve them (wake timers, deliver signals, recover); check open executions against "
    "new code before a deploy, fork and retry them, diff two runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Url = Annotated[
    str,
    typer.Option("--url", envvar="JOURNAL_URL", show_envvar=True,
                 help="Journal database: sqlite:///path.db or postgresql://user@host/db."),
]
# Literal choices give help and validation; the tests check they match projections'.
StatusName = Literal[
    "queued", "running", "paused", "waiting", "completed", "failed", "cancelled"]
CostDimension = Literal["workflow", "step", "model", "day"]

Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]


# -- plumbing (printing, failing and the session live in runner.cli.plumbing) ------------------


def _run_line(run: Run) -> str:
    line = f"execution {run.id} ({run.workflow}): {run.status}"
    if run.status == "paused" and run.pause is not None:
        line += f", waiting for {run.pause.reason} payload={preview(run.pause.payload, 80)}"
        if run.pause.until is not None:
            line += f" until {format_utc(run.pause.until)}"
    elif run.status == "waiting" and run.wait is not None:
        line += f", waiting for {waits_for(run.wait.kind, run.wait.name, run.wait.until)}"
    elif run.status == "completed":
        line += f", output={preview(run.output, 80)}"
    elif run.error is not None:
        line += f", {run.error.type}: {run.error.message}"
    return line


# -- reading -------------------------------------------------------------------------------------


LsSort = Literal["started", "duration", "cost"]


@app.command("ls")
def ls_command(
    url: Url = DEFAULT_URL,
    status: Annotated[StatusName | None, typer.Option(
        help="Only executions in this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only executions started since: a duration (2h, 7d) or an ISO date/time.")] = None,
    before: Annotated[str | None, typer.Option(
        help="Only executions started before: a duration (2h, 7d) or an ISO date/time (the "
        "next page: the start of the last one listed).")] = None,
    error_type: Annotated[str | None, typer.Option(
        help="Only executions that failed with this error type, or whose failed step did "
        "(TimeoutError, or its qualified name myapp.errors.RateLimited).")] = None,
    error_contains: Annotated[str | None, typer.Option(
        help="Only executions whose error message (or their failed step's) contains this "
        "text, case ignored.")] = None,
    sort: Annotated[LsSort, typer.Option(
        help="started: newest first; duration: longest first (open ones after the ended "
        "ones); cost: most expensive first.")] = "started",
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
    as_json: Json = False,
) -> None:
    """List executions, newest first (or by --sort): id, workflow, status, started, ended,
    duration, last step, cost."""
    reads.ls(url=url, status=status, workflow=workflow, since=since, before=before,
             error_type=error_type, error_contains=error_contains, sort=sort, offset=offset,
             limit=limit, as_json=as_json)


@app.command("show")
def show_command(
    execution: Annotated[str, typer.Argument(help="Execution id, or a unique prefix of one.")],
    url: Url = DEFAULT_URL,
    as_json: Json = False,
    html: Annotated[Path | None, typer.Option(
        "--html", dir_okay=False,
        help="Write the timeline as a self-contained HTML page to this file instead.")
    ] = None,
) -> None:
    """Show one execution's timeline: steps, attempts, errors, logs, pause or wait, calls,
    children (or its parent), signals, costs."""
    if html is not None:
        from runner.cli.html import write_page

        write_page(url=url, execution=execution, path=html)
        return
    reads.show(execution=execution, url=url, as_json=as_json)


@app.command("ui")
def ui_command(
    url: Url = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Address to listen on (local only by default).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")
                    ] = 8765,
) -> None:
    """Serve the timeline pages of every execution, read-only, until Ctrl-C."""
    from runner.cli.ui import serve_ui

    serve_ui(url=url, host=host, port=port)


@app.command("tail")
def tail_command(
    execution: Annotated[str | None, typer.Argument(
        help="Follow only this execution (id or unique prefix); default: all.")] = None,
    url: Url = DEFAULT_URL,
    as_json: Json = False,
    max_events: Annotated[int | None, typer.Option(hidden=True)] = None,
    timeout: Annotated[float | None, typer.Option(hidden=True)] = None,
) -> None:
    """Follow new events live until Ctrl-C (one execution: its history first, until it ends)."""
    from runner.cli import render
    from runner.cli.queries import follow

    out = render.console()
    with _session(url, read_only=True) as (journal, views):
        eid = _resolve(journal, views, execution) if execution else None
        what = f"execution {eid}" if eid else f"all executions of {mask_url(journal.url)}"
        typer.echo(f"following {what} (Ctrl-C to stop)", err=True)
        # Step names by execution, to label completions; dropped when an execution ends.
        names: dict[UUID, dict[int, str]] = {}
        shown = 0
        try:
            for nid, event in follow(journal, execution_id=eid, history=eid is not None,
                                     timeout=timeout):
                own = names.setdefault(event.execution_id, {})
                if isinstance(event, StepStarted):
                    own[event.seq] = event.name
                if as_json:
                    typer.echo(json.dumps({"notification_id": nid or None,
                                           "type": type(event).__name__,
                                           **json.loads(dumps(event, indent=None))}))
                else:
                    out.print(render.event_line(nid, event, own))
                if isinstance(event, TERMINAL_EVENTS):
                    names.pop(event.execution_id, None)
                shown += 1
                if max_events is not None and shown >= max_events:
                    break
        except KeyboardInterrupt:
            pass


LogLevel = Literal["debug", "info", "warning", "error"]


@app.command("logs")
def logs_command(
    execution: Annotated[str | None, typer.Argument(
        help="Only this execution (id or unique prefix); default: all.")] = None,
    url: Url = DEFAULT_URL,
    grep: Annotated[str | None, typer.Option(
        help="Only lines with this text in their message or fields, case ignored.")] = None,
    level: Annotated[LogLevel | None, typer.Option(
        help="Only lines at this level or above (warning: warnings and errors).")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only executions of this workflow.")
                        ] = None,
    since: Annotated[str | None, typer.Option(
        help="Only lines logged since: a duration (1h, 2d) or an ISO date/time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The last this many lines.")] = 100,
    as_json: Json = False,
) -> None:
    """Log lines (ctx.log) of one execution or of all: the last --limit that match, oldest
    first, newest at the bottom.

    Each line: time (UTC), id, workflow, level, message, fields.
    """
    from runner.cli import render
    from runner.cli.queries import log_lines

    if execution is not None and workflow is not None:
        raise _UsageError("--workflow chooses among all executions: give it without an ID")
    with _session(url, read_only=True) as (journal, views):
        when = parse_since(since) if since else None
        _catch_up(views)
        eid = _resolve(journal, views, execution) if execution else None
        lines = log_lines(journal, views, execution_id=eid, workflow=workflow, since=when,
                          grep=grep, level=level, limit=limit)
    if as_json:
        _echo_json(lines)
    elif not lines:
        typer.echo("no log lines" + (" match" if grep or level or since else ""))
    else:
        out = render.console()
        for line in lines:
            out.print(render.log_line(line))


@app.command("stuck")
def stuck_command(
    url: Url = DEFAULT_URL,
    older_than: Annotated[str, typer.Option(
        help="List a live running execution once quiet this long, a waiting or paused one "
        "once it has waited this long (30s, 5m, 2h); orphans and waits past their deadline "
        "are listed at once.")] = "5m",
    as_json: Json = False,
) -> None:
    """Open executions that are not moving, and why, longest stalled first.

    One reason each: a human (the pause), a sleep, a signal or a child it waits for, a step
    in flight with its driver alive, a retry's back-off, or no live driver at all (orphaned:
    `journal recover` or `journal serve` takes it over).
    """
    from runner.cli import render

    with _session(url, read_only=True) as (_, views):
        quiet = parse_duration(older_than, option="--older-than")
        _catch_up(views)
        rows = views.stalled(older_than=quiet)
    if as_json:
        _echo_json([render.stall_document(r) for r in rows])
    elif not rows:
        typer.echo(f"nothing stuck: no orphan, and no execution quiet, waiting or paused for "
                   f"{older_than}")
    else:
        render.console().print(render.stuck_table(rows))


@app.command("errors")
def errors_command(
    url: Url = DEFAULT_URL,
    since: Annotated[str | None, typer.Option(
        help="Only failures that ended since: a duration (1h, 7d) or an ISO date/time.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Failed executions grouped by root cause, most frequent first.

    A cause is the error type of the step that failed and its message with numbers and ids
    left out ("timeout after <n>s"): each with its count, when it was last seen and an
    example id (`journal show ID` for its traceback, `journal ls --error-type TYPE` for all).
    """
    from runner.cli import render
    from runner.cli.triage import error_groups

    with _session(url, read_only=True) as (_, views):
        when = parse_since(since) if since else None
        _catch_up(views)
        groups = error_groups(views, since=when)
    if as_json:
        _echo_json(groups)
    elif not groups:
        typer.echo("no failed executions" + (f" since {since}" if since else ""))
    else:
        render.console().print(render.errors_table(groups))
        total = sum(g.count for g in groups)
        typer.echo(f"{total} failed execution(s), {len(groups)} cause(s)")


@app.command("costs")
def costs_command(
    url: Url = DEFAULT_URL,
    by: Annotated[CostDimension, typer.Option(
        help="Group by workflow, step, model or UTC day.")] = "workflow",
    since: Annotated[str | None, typer.Option(
        help="Only costs recorded since: a duration (24h, 7d) or an ISO date/time.")] = None,
    as_json: Json = False,
) -> None:
    """Cost totals (usd, tokens, calls) grouped by workflow, step, model or day."""
    from runner.cli import render

    with _session(url, read_only=True) as (_, views):
        when = parse_since(since) if since else None
        _catch_up(views)
        rows = views.costs(by, since=when)
    if as_json:
        _echo_json(rows)
    elif not rows:
        typer.echo("no costs recorded")
    else:
        render.console().print(render.costs_table(rows, by))


@app.command("stats")
def stats_command(
    url: Url = DEFAULT_URL,
    workflow: Annotated[str | None, typer.Option(
        help="Only the steps of this workflow's executions.")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="At most this many step names (the most failures first).")] = None,
    as_json: Json = False,
) -> None:
    """Step statistics: runs, failure rate, retries, p50/p95 duration per step name, the
    most failures first (then the most runs)."""
    from runner.cli import render

    with _session(url, read_only=True) as (_, views):
        _catch_up(views)
        rows = views.step_stats(workflow=workflow, limit=limit)
    if as_json:
        _echo_json(rows)
    elif not rows:
        typer.echo("no steps recorded" + (f" for workflow {workflow}" if workflow else ""))
    else:
        render.console().print(render.stats_table(rows))


@app.command("diff")
def diff_command(
    a: Annotated[str, typer.Argument(help="Execution A: an id, or a unique prefix of one.")],
    b: Annotated[str, typer.Argument(help="Execution B, compared with A.")],
    url: Url = DEFAULT_URL,
    as_json: Json = False,
) -> None:
    """Compare two runs call by call: what differs at each seq, and where they diverged.

    For a fork and its source, a retry and the failure, or any two runs: the calls both made
    with other inputs, outputs, attempts, durations or costs, the calls only one made, the
    first seq where they took different paths, and how the runs differ as a whole (in the B
    column, "=" is the same call as A's).
    """
    from runner.cli import deploys
    from runner.diff import diff_runs

    with _session(url, read_only=True) as (journal, views):
        first, second = (_resolve(journal, views, text) for text in (a, b))
        sa, sb = journal.state(first), journal.state(second)
    diff = diff_runs(sa, sb)
    if as_json:
        _echo_json(deploys.diff_document(sa, sb, diff))
    else:
        from runner.cli import render

        render.diff_view(render.console(), sa, sb, diff)


# -- acting --------------------------------------------------------------------------------------

AppSpec = Annotated[str, typer.Option(
    "--app", help="The service's Runner, as module:attribute (e.g. myservice.jobs:runner).")]


@contextlib.contextmanager
def _app_runner(spec: str, url: str) -> Iterator[Runner]:
    with _reported(url):
        runner = load_runner(spec, url=url)
        try:
            mismatch = describe_mismatch(runner, url)
            if mismatch:
                # Resuming or recovering through another journal than the one named would
                # act on executions the user did not look at: refuse, naming both.
                _fail(mismatch, url)
            yield runner
        finally:
            # The CLI process ends here: flush the app's log lines and release its database.
            runner.close()
            runner.journal.close()


@app.command("resume")
def resume_command(
    app_spec: AppSpec,
    execution: Annotated[str | None, typer.Argument(
        help="Paused execution id, or a unique prefix; or choose them with --status, "
        "--workflow, --since, --reason.")] = None,
    url: Url = DEFAULT_URL,
    value: Annotated[str | None, typer.Option(
        help='The answer to the pause (to each, in bulk), as JSON (e.g. \'{"approved": '
        'true}\').')] = None,
    status: Annotated[StatusName | None, typer.Option(
        help="paused: the only status an execution is resumed from.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only those started since: a duration (1h, 2d) or an ISO date/time.")] = None,
    reason: Annotated[str | None, typer.Option(
        help="Only those paused for this reason (ctx.pause's, e.g. human_review).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would be resumed; write nothing.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Resume without asking (needed when stdin is not a terminal).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Answer a paused execution, or every one a filter chooses, and continue each through
    the service's Runner until it ends or pauses again.

    In bulk it lists what it chose and asks first (--yes: without asking; refused when stdin
    is not a terminal), prints how each run ended and a summary; Ctrl-C stops after saying
    what was done.
    """
    filters = (status, workflow, since, reason)
    if execution is not None and any(f is not None for f in filters):
        raise _UsageError("--status, --workflow, --since and --reason choose executions to "
                          "resume in bulk: give them without an ID")
    if execution is None and all(f is None for f in filters):
        raise _UsageError("give an execution ID, or choose paused executions with --status "
                          "paused, --workflow, --since or --reason")
    if status is not None and status != "paused":
        raise _UsageError(f"--status {status}: only paused executions are resumed (a failed "
                          "or cancelled one is retried: `journal retry`)")
    try:
        answer = json.loads(value) if value is not None else None
    except ValueError as e:
        _fail(f"invalid --value: not JSON ({e}); nothing was resumed")
    with _reported(url):
        started = parse_since(since) if since else None
    if execution is None:
        _resume_many(app_spec, url=url, workflow=workflow, since=started, reason=reason,
                     answer=answer, dry_run=dry_run, yes=yes, as_json=as_json)
        return
    with _app_runner(app_spec, url) as runner:
        with Projections(runner.journal) as views:
            eid = _resolve(runner.journal, views, execution)
            if dry_run:
                _act_on_many([_chosen(views, eid, ("paused",), "resume")], verb="resume",
                             past="resumed", url=url, dry_run=True, yes=yes,
                             act=lambda r: _Done(""), note=_resume_note(runner))
                return
        run = runner.resume(eid, answer)
    if as_json:
        _echo_json(run)
    else:
        typer.echo(_run_line(run))


def _chosen(views: Projections, eid: UUID, statuses: Sequence[str], verb: str
            ) -> ExecutionSummary:
    """The view row of one execution a dry run lists as a bulk one would; one that is not
    in ``statuses`` is refused as acting on it would be (nothing is written either way)."""
    from journal.errors import InvalidTransition

    _catch_up(views)
    row = views.execution(eid)
    status = row.status if row is not None else "not in the views yet"
    if row is None or row.status not in statuses:
        raise InvalidTransition(eid, status, verb, f"only {' or '.join(statuses)} executions "
                                f"are {verb}d here, and this one is {status}")
    return row


def _resume_note(runner: Runner) -> Callable[[ExecutionSummary], str]:
    """What a listed paused execution waits for and since when, and whether this app can
    resume it at all (its workflow registered)."""
    def note(r: ExecutionSummary) -> str:
        text = f": {r.pause_reason}" if r.pause_reason else ""
        if r.paused_at is not None:
            text += f" since {format_utc(r.paused_at)}"
        if r.workflow not in runner.workflows:
            text += f"; its workflow {r.workflow!r} is not in the app: it cannot be resumed"
        return text
    return note


def _resume_many(app_spec: str, *, url: str, workflow: str | None, since: Any,
                 reason: str | None, answer: Any, dry_run: bool, yes: bool,
                 as_json: bool) -> None:
    from runner.cli import deploys

    say: Callable[[str], None] = (
        (lambda line: typer.echo(line, err=True)) if as_json else typer.echo)
    with _app_runner(app_spec, url) as runner:
        with Projections(runner.journal) as views:
            _catch_up(views)  # what paused a moment ago is chosen too
            rows = deploys.resume_candidates(views, workflow=workflow, since=since,
                                             reason=reason)

        def resume(r: ExecutionSummary) -> _Done:
            run = runner.resume(r.execution_id, answer)
            return _Done("resumed " + _run_line(run), run.status, {"run": run})

        entries = _act_on_many(
            rows, verb="resume", past="resumed", url=url, dry_run=dry_run, yes=yes,
            act=resume, say=say, note=_resume_note(runner),
            under_way=" (Ctrl-C stopped it mid-run: it is left running for `journal "
            "recover` or `journal serve` to continue)")
    if as_json:
        _echo_json(entries)


@app.command("recover")
def recover_command(
    app_spec: AppSpec,
    url: Url = DEFAULT_URL,
    stale_after: Annotated[str, typer.Option(
        help="Recover running executions quiet for this long (their runner died).")] = "5m",
    as_json: Json = False,
) -> None:
    """Continue running executions whose runner died, through the service's Runner.

    Prints each execution as it takes it over (where it continues) and how it ended, and
    what it left running and why: a live process holds it, its step is in a retry back-off,
    it cannot be replayed here, it is not quiet for --stale-after yet. Ctrl-C stops after
    saying what was done (exit 130).
    """
    from runner.cli.recovery import Recovery

    with _reported(url):
        stale = parse_duration(stale_after, option="--stale-after")
    say = (lambda line: None) if as_json else typer.echo
    with _app_runner(app_spec, url) as runner:
        recovery = Recovery(runner=runner, stale_after=stale, say=say)
        try:
            recovery.run()
            with Projections(runner.journal) as views:
                recovery.report_not_stale(views)
        except KeyboardInterrupt:
            typer.echo(recovery.summary(interrupted=True), err=as_json)
            raise CommandExit(130) from None
    runs = recovery.recovered
    errors = [s for s in recovery.skipped if s.error]
    if as_json:
        _echo_json(runs)
    # Skipped executions stay running: say which and why, and fail, so nothing looks done.
    for s in errors:
        typer.echo(f"error: execution {s.execution_id} not recovered: "
                   f"{_one_line(_scrub(s.reason, url))}", err=True)
    if not as_json:
        typer.echo(recovery.summary() if runs or recovery.skipped else "nothing to recover")
    if errors:
        _fail(f"{len(errors)} execution(s) could not be recovered and are still running",
              url)


@app.command("check")
def check_command(
    app_spec: AppSpec,
    url: Url = DEFAULT_URL,
    workflow: Annotated[str | None, typer.Option(help="Only executions of this workflow.")] = None,
    status: Annotated[list[str] | None, typer.Option(
        help="Only executions in this status (repeatable; default: running, paused and "
        "waiting, the ones a deploy may strand).")] = None,
    as_json: Json = False,
) -> None:
    """Before a deploy: would every open execution replay with the code the app imports now?

    Replays them in memory, writing nothing and running no step code (safe against the
    production database). Prints each execution that would not replay (where it diverges,
    what the journal recorded, what the code calls now, what would fix it), then the counts
    and the code versions seen. Exit code 1 when any diverges, cannot be decoded, or has no
    workflow registered in the app; 0 when all replay cleanly.
    """
    from journal.journal import Journal
    from runner.cli import deploys

    choices = get_args(StatusName)
    for name in status or ():
        if name not in choices:  # (Typer takes no list of Literal choices)
            raise _UsageError(f"invalid value for '--status': {name!r} is not one of "
                              + ", ".join(repr(c) for c in choices))
    with _reported(url):
        # Never a new empty journal where --url was mistyped (the app's own open would make
        # one): it must exist, and is looked at before the app is imported.
        Journal.open(url, create=False).close()
    with _app_runner(app_spec, url) as runner:
        # The runner's journal only: the views are not opened (a catch-up writes them).
        results = runner.check(status=status, workflow=workflow)
    bad = [r for r in results if not r.ok]
    if as_json:
        _echo_json(deploys.check_document(results))
    else:
        for r in bad:
            typer.echo(deploys.check_line(r))
        which = ", ".join(status) if status else "running, paused, waiting"
        if not results:
            typer.echo(f"no execution to check ({which}"
                       + (f", workflow {workflow}" if workflow else "") + ")")
        else:
            counts = deploys.check_counts(results)
            typer.echo(f"checked {len(results)} execution(s) ({which}) against {app_spec}: "
                       + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
            for name, seen in deploys.versions_seen(results).items():
                typer.echo(deploys.versions_line(name, seen))
    if bad:
        _fail(f"{len(bad)} of {len(results)} execution(s) would not replay with this code "
              "(listed above): deploying it would strand them", url)


RetryStatus = Literal["failed", "cancelled"]


def _input_option(text: str | None) -> Any:
    """``--input``: the workflow's arguments by name, as a JSON object."""
    from runner.fork import UNCHANGED

    if text is None:
        return UNCHANGED
    try:
        value = json.loads(text)
    except ValueError as e:
        _fail(f"invalid --input: not JSON ({e}); nothing was written")
    if not isinstance(value, dict):
        _fail("invalid --input: give the workflow's arguments by name, as a JSON object "
              f"(e.g. '{{\"doc\": \"contract-7\"}}'), not {type(value).__name__}; nothing "
              "was written")
    return value


@app.command("fork")
def fork_command(
    execution: Annotated[str, typer.Argument(help="Execution id, or a unique prefix.")],
    from_step: Annotated[str, typer.Option(
        "--from-step", help="Where the fork runs live from: a seq, or a step's name (its "
        "first call). What the execution recorded before it is copied, not run again.")],
    app_spec: AppSpec,
    url: Url = DEFAULT_URL,
    input_: Annotated[str | None, typer.Option(
        "--input", help="The workflow's arguments by name, as a JSON object (default: "
        "the ones the execution started with).")] = None,
    as_json: Json = False,
) -> None:
    """Copy an execution up to a step and run it live from there, with the code now.

    The new execution starts with the source's recorded outcomes before the step (not run
    again) and runs that step and the rest with the code the app imports now; the source is
    left as it is.
    """
    from runner.cli import deploys

    given = _input_option(input_)
    with _app_runner(app_spec, url) as runner:
        with Projections(runner.journal) as views:
            eid = _resolve(runner.journal, views, execution)
        source = runner.journal.state(eid)
        seq = deploys.step_seq(source, from_step)
        try:
            run = runner.fork(eid, from_seq=seq, input=given)
        except TypeError as e:  # arguments the workflow cannot take: refused before writing
            _fail(f"invalid --input: {e}; nothing was written", url)
    if as_json:
        _echo_json({**json.loads(dumps(run)), "forked_from": str(eid), "forked_seq": seq})
    else:
        typer.echo(f"forked {eid} at seq {seq} -> {_run_line(run)}")


@app.command("retry")
def retry_command(
    app_spec: AppSpec,
    execution: Annotated[str | None, typer.Argument(
        help="A failed or cancelled execution (id or unique prefix); or choose them with "
        "--status.")] = None,
    url: Url = DEFAULT_URL,
    status: Annotated[RetryStatus | None, typer.Option(
        help="Retry every execution in this status (with --error-type, --since).")] = None,
    error_type: Annotated[str | None, typer.Option(
        help="Only those that failed with this error type, or whose failed step did "
        "(RateLimited, or its qualified name myapp.errors.RateLimited).")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only those that ended since: a duration (1h, 2d) or an ISO date/time.")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="At most this many, oldest end first.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only say what would be retried, from which seq; start nothing.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Run a failed or cancelled execution again from the step that failed, with the code now.

    A new execution forked from it at its failed step (a cancelled one: its first unfinished
    call): the steps before are copied, not run again. In bulk (--status), one that has a
    fork already (retried before) is skipped: its retry is the one to retry now, or give its
    id to retry it again.
    """
    if execution is not None:
        if status is not None or error_type is not None or since is not None or limit:
            raise _UsageError("--status, --error-type, --since and --limit choose executions "
                              "to retry in bulk: give them without an ID")
        _retry_one(app_spec, execution, url=url, dry_run=dry_run, as_json=as_json)
        return
    if status is None:
        raise _UsageError("give an execution ID, or --status failed (or cancelled) to retry "
                          "in bulk")
    with _reported(url):
        when = parse_since(since) if since else None
    _retry_many(app_spec, url=url, status=status, error_type=error_type, since=when,
                limit=limit, dry_run=dry_run, as_json=as_json)


def _registered(runner: Runner, workflow: str, eid: UUID) -> None:
    """What a retry would raise first: the execution's workflow is not in the app."""
    from runner.errors import WorkflowNotFound

    if workflow not in runner.workflows:
        raise WorkflowNotFound(workflow, execution_id=eid)


def _retry_one(app_spec: str, execution: str, *, url: str, dry_run: bool, as_json: bool) -> None:
    from journal.errors import InvalidTransition
    from runner.cli import deploys
    from runner.fork import retry_seq

    with _app_runner(app_spec, url) as runner:
        with Projections(runner.journal) as views:
            eid = _resolve(runner.journal, views, execution)
        state = runner.journal.state(eid)
        ended = deploys.failure_text(state)
        if dry_run:
            if state.status not in deploys.RETRYABLE:
                raise InvalidTransition(
                    eid, state.status, "retry", f"only a failed or cancelled execution is "
                    f"retried (this one is {state.status}); `journal fork` copies any")
            _registered(runner, state.workflow, eid)
            seq = retry_seq(state)
        else:
            run = runner.retry(eid)
            seq = runner.journal.state(run.id).forked_seq
    if dry_run:
        if as_json:
            _echo_json({"execution_id": eid, "workflow": state.workflow,
                        "status": state.status, "ended": ended, "from_seq": seq,
                        "action": "would retry"})
        else:
            typer.echo(f"would retry {eid} ({state.workflow}, {ended}) from seq {seq}; "
                       "nothing was started")
        return
    if as_json:
        _echo_json({**json.loads(dumps(run)), "retried": str(eid), "ended": ended,
                    "from_seq": seq})
    else:
        typer.echo(f"retried {eid} ({ended}) from seq {seq} -> {_run_line(run)}")


def _retry_many(
    app_spec: str, *, url: str, status: str, error_type: str | None, since: Any,
    limit: int | None, dry_run: bool, as_json: bool,
) -> None:
    from journal.errors import JournalError
    from runner.cli import deploys
    from runner.fork import retry_seq

    entries: list[dict[str, Any]] = []
    failed: list[tuple[UUID, str]] = []
    with _app_runner(app_spec, url) as runner:
        with Projections(runner.journal) as views:
            _catch_up(views)  # the failures of the last minutes are chosen too
            plans = deploys.plan_retries(views, status=status, error_type=error_type,
                                         since=since, limit=limit)
        for plan in plans:
            entry: dict[str, Any] = {
                "execution_id": plan.execution_id, "workflow": plan.workflow,
                "status": plan.status, "error_type": plan.error_type,
                "ended_at": plan.ended_at, "retried_as": plan.retried_as,
            }
            entries.append(entry)
            if plan.skipped:
                entry["action"] = "skipped"
                if not as_json:
                    typer.echo(f"skipped {plan.execution_id}: retried before, as "
                               + ", ".join(str(i) for i in plan.retried_as))
                continue
            try:
                state = runner.journal.state(plan.execution_id)
                entry["ended"] = ended = deploys.failure_text(state)
                if dry_run:
                    _registered(runner, state.workflow, state.execution_id)
                    entry.update(action="would retry", from_seq=retry_seq(state))
                    if not as_json:
                        typer.echo(f"would retry {plan.execution_id} ({plan.workflow}, "
                                   f"{ended}) from seq {entry['from_seq']}")
                    continue
                run = runner.retry(plan.execution_id)
            except JournalError as e:  # this one cannot be retried here: the others can
                entry.update(action="error", error=_one_line(_scrub(str(e), url)))
                failed.append((plan.execution_id, entry["error"]))
                continue
            seq = runner.journal.state(run.id).forked_seq
            entry.update(action="retried", from_seq=seq, run=run)
            if not as_json:
                typer.echo(f"retried {plan.execution_id} ({ended}) from seq {seq} -> "
                           f"{_run_line(run)}")
    if as_json:
        _echo_json(entries)
    for eid, message in failed:
        typer.echo(f"error: execution {eid} not retried: {message}", err=True)
    if not as_json:
        done = [e for e in entries if e["action"] in ("retried", "would retry")]
        skipped = sum(e["action"] == "skipped" for e in entries)
        verb = "would retry" if dry_run else "retried"
        line = f"{verb} {len(done)} execution(s)" if done else "nothing to retry"
        if skipped:
            line += f"; skipped {skipped} retried before"
        typer.echo(line + ("; nothing was started" if dry_run else ""))
    if failed:
        _fail(f"{len(failed)} execution(s) could not be retried", url)


@app.command("signal")
def signal_command(
    execution: Annotated[str, typer.Argument(help="Execution id, or a unique prefix.")],
    name: Annotated[str, typer.Argument(help="The signal's name (what ctx.wait_for waits for).")],
    url: Url = DEFAULT_URL,
    value: Annotated[str | None, typer.Option(
        help="The signal's value, as JSON (e.g. '{\"paid\": 12.5}').")] = None,
    as_json: Json = False,
) -> None:
    """Send a signal to an execution: recorded in its stream at once, for the first
    ctx.wait_for(NAME) not yet answered (a waiting execution is resumed by `journal serve`)."""
    from journal.errors import InvalidTransition

    try:
        payload = json.loads(value) if value is not None else None
    except ValueError as e:
        _fail(f"invalid --value: not JSON ({e}); nothing was sent")
    # read_only: open without creating a journal (a mistyped --url is an error, not a new
    # empty journal); the signal itself is written through the journal as usual.
    with _session(url, read_only=True) as (journal, views):
        eid = _resolve(journal, views, execution)
        try:
            position = journal.signal(eid, name, payload)
        except InvalidTransition as e:
            _fail(f"execution {eid} has already ended ({e.status}): it takes no more signals; "
                  "nothing was sent", url)
    if as_json:
        _echo_json({"execution_id": eid, "name": name, "position": position})
    else:
        typer.echo(f"signal {name!r} recorded for execution {eid} at position {position}")


@app.command("serve")
def serve_command(
    app_spec: AppSpec,
    url: Url = DEFAULT_URL,
    workers: Annotated[int, typer.Option(
        min=1, help="Executions driven at once.")] = 4,
    poll_interval: Annotated[float, typer.Option(
        help="Seconds between looks for new work where the database cannot notify (SQLite).",
    )] = 0.5,
    grace: Annotated[float, typer.Option(
        help="Seconds what is being driven gets to finish on SIGTERM or Ctrl-C.")] = 30.0,
    recover_after: Annotated[str, typer.Option(
        help="Recover running executions quiet for this long whose driver died.")] = "1m",
) -> None:
    """Serve the journal until SIGTERM or Ctrl-C: wake due timers, timeouts and pauses,
    resume executions whose signal came, recover those whose runner died (many `journal
    serve` may run on one database), through the service's Runner."""
    import logging

    with _reported(url):
        stale = parse_duration(recover_after, option="--recover-after")
        if poll_interval <= 0 or grace < 0:
            raise ValueError(f"--poll-interval must be above 0 (not {poll_interval}) and "
                             f"--grace at least 0 (not {grace})")
    # What serve() drove, and why it could not drive something, on stderr (unless the
    # service set up its own logging on import).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with _app_runner(app_spec, url) as runner:
        where = mask_url(runner.journal.url)
        typer.echo(f"serving {where} with {workers} worker(s) "
                   f"(pid {os.getpid()}; SIGTERM or Ctrl-C to stop)")
        runner.serve(workers=workers, poll_interval=poll_interval, recover_after=stale,
                     grace=grace)
        typer.echo(f"stopped serving {where}")


CancelStatus = Literal["queued", "running", "paused", "waiting"]


@app.command("cancel")
def cancel_command(
    execution: Annotated[str | None, typer.Argument(
        help="Execution id, or a unique prefix; or choose them with --status, --workflow, "
        "--since, --error-type.")] = None,
    url: Url = DEFAULT_URL,
    reason: Annotated[str, typer.Option(help="Why (recorded in the journal).")] = "",
    status: Annotated[CancelStatus | None, typer.Option(
        help="Cancel the open executions in this status (else queued, running, paused "
        "and waiting ones).")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only those started since: a duration (1h, 2d) or an ISO date/time.")] = None,
    error_type: Annotated[str | None, typer.Option(
        help="Only those whose error (a step's, while retrying) is of this type.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would be cancelled; write nothing.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Cancel without asking (needed when stdin is not a terminal).")] = False,
) -> None:
    """Cancel an execution, or every open one a filter chooses; a runner driving one stops
    at its next call (a step in flight finishes).

    In bulk it lists what it chose and asks before cancelling (--yes: without asking;
    refused when stdin is not a terminal).
    """
    from runner._runner import Runner
    from runner.cli import deploys

    filters = (status, workflow, since, error_type)
    if execution is not None:
        if any(f is not None for f in filters):
            raise _UsageError("--status, --workflow, --since and --error-type choose "
                              "executions to cancel in bulk: give them without an ID")
        with _session(url) as (journal, views):
            eid = _resolve(journal, views, execution)
            if dry_run:
                _act_on_many([_chosen(views, eid, deploys.CANCELLABLE, "cancel")],
                             verb="cancel", past="cancelled", url=url, dry_run=True, yes=yes,
                             act=lambda r: _Done(""),
                             note=lambda r: deploys.driver_note(journal.lease_holder(eid)))
                return
            holder = journal.lease_holder(eid)
            with Runner(journal) as runner:
                run = runner.cancel(eid, reason=reason)
        typer.echo(_run_line(run) + (f" ({reason})" if reason else "")
                   + deploys.driver_note(holder))
        return
    if all(f is None for f in filters):
        raise _UsageError("give an execution ID, or choose executions with --status, "
                          "--workflow, --since or --error-type")
    with _reported(url):
        started = parse_since(since) if since else None
    _cancel_many(url, status=status, workflow=workflow, since=started,
                 error_type=error_type, reason=reason, dry_run=dry_run, yes=yes)


def _cancel_many(url: str, *, status: str | None, workflow: str | None, since: Any,
                 error_type: str | None, reason: str, dry_run: bool, yes: bool) -> None:
    from runner._runner import Runner
    from runner.cli import deploys

    with _session(url) as (journal, views):
        _catch_up(views)  # what started a moment ago is chosen too
        rows = deploys.cancel_candidates(views, status=status, workflow=workflow,
                                         since=since, error_type=error_type)
        with Runner(journal) as runner:

            def cancel(r: ExecutionSummary) -> _Done:
                holder = journal.lease_holder(r.execution_id)
                runner.cancel(r.execution_id, reason=reason)
                return _Done(f"cancelled {r.execution_id} ({r.workflow}, was {r.status})"
                             + deploys.driver_note(holder))

            _act_on_many(
                rows, verb="cancel", past="cancelled", url=url, dry_run=dry_run, yes=yes,
                note=lambda r: deploys.driver_note(journal.lease_holder(r.execution_id)),
                act=cancel, suffix=f" ({reason})" if reason else "")


@dataclasses.dataclass(frozen=True)
class _Done:
    """What acting on one execution of a bulk command did: the line that says so, and how
    the execution ended (counted in the summary line; None: not counted)."""

    line: str
    status: str | None = None
    entry: dict[str, Any] = dataclasses.field(default_factory=dict)


def _act_on_many(
    rows: Sequence[ExecutionSummary], *, verb: str, past: str, url: str, dry_run: bool,
    yes: bool, act: Callable[[ExecutionSummary], _Done],
    note: Callable[[ExecutionSummary], str] = lambda r: "", suffix: str = "",
    under_way: str = "", say: Callable[[str], None] = typer.echo,
) -> list[dict[str, Any]]:
    """A bulk command's one shape (``cancel``, ``resume`` by filter): list what the filter
    chose, ask (``--yes``: do not; refused without a terminal to ask on; ``--dry-run``:
    only list), act on each in turn saying how it ended, then one summary line; a Ctrl-C
    says what was done, what was under way (``under_way``) and what was not (exit 130).

    ``act`` raises ``InvalidTransition``/``ExecutionNotFound`` for one that ended (or was
    answered) meanwhile: skipped; another ``JournalError`` leaves that one alone and the
    others go on (exit 1 at the end). Returns one entry per execution (``--json``)."""
    from journal.errors import ExecutionNotFound, InvalidTransition, JournalError

    def entry(r: ExecutionSummary, action: str, **more: Any) -> dict[str, Any]:
        return {"execution_id": r.execution_id, "workflow": r.workflow, "status": r.status,
                "action": action, **more}

    if not rows:
        say(f"nothing to {verb}")
        return []
    if dry_run or not yes:
        for r in rows:
            say(f"would {verb} {r.execution_id} ({r.workflow}, {r.status}){note(r)}")
    if dry_run:
        say(f"would {verb} {len(rows)} execution(s); nothing was {past}")
        return [entry(r, f"would {verb}") for r in rows]
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"refusing to {verb} {len(rows)} execution(s) without --yes: stdin is not "
                  f"a terminal to confirm on; nothing was {past}", url)
        typer.confirm(f"{verb} these {len(rows)} execution(s)?", abort=True)
    entries: list[dict[str, Any]] = []
    ended: dict[str, int] = {}
    skipped = 0
    failed: list[tuple[UUID, str]] = []

    def summary() -> str:
        done = len(entries) - skipped - len(failed)
        line = f"{past} {done} execution(s)" + suffix
        if ended:
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(ended.items())) + ")"
        if skipped:
            line += f"; skipped {skipped} that ended meanwhile"
        if failed:
            line += f"; {len(failed)} could not be {past}"
        return line

    for i, r in enumerate(rows):
        try:
            done = act(r)
        except KeyboardInterrupt:
            left = len(rows) - i - 1
            say(f"interrupted: {summary()}; {r.execution_id} was under way{under_way}"
                + (f"; {left} not {past}" if left else ""))
            raise CommandExit(130) from None
        except (InvalidTransition, ExecutionNotFound) as e:
            skipped += 1
            entries.append(entry(r, "skipped", reason=_one_line(str(e))))
            say(f"skipped {r.execution_id} ({r.workflow}): {_one_line(str(e))}")
            continue
        except JournalError as e:  # this one cannot be acted on here: the others can
            message = _one_line(_scrub(str(e), url))
            failed.append((r.execution_id, message))
            entries.append(entry(r, "error", error=message))
            continue
        if done.status is not None:
            ended[done.status] = ended.get(done.status, 0) + 1
        entries.append(entry(r, past, **done.entry))
        say(done.line)
    for eid, message in failed:
        typer.echo(f"error: execution {eid} not {past}: {message}", err=True)
    say(summary())
    if failed:
        raise CommandExit(1)
    return entries


# -- export, retention ---------------------------------------------------------------------------


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", file_okay=False,
                                      help="Directory for the <id>.json files.")],
    execution: Annotated[str | None, typer.Argument(
        help="Execution id or unique prefix (or use --all / --status).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Export every execution.")] = False,
    status: Annotated[StatusName | None, typer.Option(
        help="Export executions in this status.")] = None,
    url: Url = DEFAULT_URL,
    as_json: Json = False,
) -> None:
    """Write one JSON file per execution (events and summary), atomically.

    Re-running overwrites nothing silently: the same content is skipped, changed content
    is replaced and reported.
    """
    from runner.cli.retention import export_execution, iter_executions, without_output

    if sum((execution is not None, all_, status is not None)) != 1:
        raise _UsageError("give exactly one of ID, --all or --status")
    outcomes = []
    with _session(url, read_only=True) as (journal, views):
        _catch_up(views)
        if execution is not None:
            ids = [_resolve(journal, views, execution)]
        else:
            ids = [r.execution_id for r in iter_executions(views, status=status)]
        for eid in ids:
            outcome = export_execution(journal, eid, out)
            outcomes.append(outcome)
            if not as_json and outcome.action != "unchanged":
                typer.echo(f"{outcome.action:<9} {outcome.path}"
                           + (" (content changed)" if outcome.action == "replaced" else ""))
    missing = without_output(outcomes)
    if missing:
        typer.echo(f"warning: {missing}", err=True)
    if as_json:
        _echo_json(outcomes)
        return
    counts = {a: sum(o.action == a for o in outcomes) for a in ("written", "replaced", "unchanged")}
    typer.echo(f"exported {len(outcomes)} execution(s) to {out}: {counts['written']} written, "
               f"{counts['replaced']} replaced, {counts['unchanged']} unchanged")


@app.command("prune")
def prune_command(
    older_than: Annotated[str, typer.Option(
        help="Delete executions that ended before this: a duration (30d) or ISO date/time.")],
    archive: Annotated[Path | None, typer.Option(
        file_okay=False, help="Archive each execution here (JSON, like export) first.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    url: Url = DEFAULT_URL,
    as_json: Json = False,
) -> None:
    """Delete executions that ended before a cutoff (never running or paused ones).

    Their streams and view rows go, and what they cost leaves the totals of `journal costs`
    (it says by how much); with --archive each is first written (like export) and read
    back.
    """
    from runner.cli.retention import prune

    with _session(url) as (journal, views):
        cutoff = parse_since(older_than, option="--older-than")
        verb = "would prune" if dry_run else "pruned"

        def report(p: Any) -> None:
            if not as_json:
                where = f" -> {p.archive}" if p.archive else ""
                typer.echo(f"{verb} {p.execution_id} {p.workflow} {p.status} "
                           f"ended {p.ended_at:%Y-%m-%d %H:%M:%S} ({p.events} events){where}")

        result = prune(journal, views, before=cutoff, archive_dir=archive, dry_run=dry_run,
                       on_pruned=report)
    if as_json:
        _echo_json(result)
        return
    from runner.cli.render import usd

    drop = ""
    if result.usd_removed:
        drop = (f"; cost totals {'would drop' if dry_run else 'drop'} by "
                f"{usd(result.usd_removed)} with them"
                + (" (costs view rebuilt)" if result.costs_rebuilt else ""))
    typer.echo(f"{verb} {len(result.pruned)} execution(s) that ended before "
               f"{result.cutoff:%Y-%m-%d %H:%M:%S} UTC"
               + ("" if dry_run else f" ({result.events_removed} events)") + drop)


@app.command("import")
def import_command(
    files: Annotated[list[Path], typer.Argument(
        exists=True, dir_okay=False, help="Export/archive files to put back.")],
    url: Url = DEFAULT_URL,
) -> None:
    """Put archived executions back into the journal (from export or prune --archive)."""
    from runner.cli.retention import import_archive

    with _session(url) as (journal, _):
        for path in files:
            outcome = import_archive(journal, path)
            if outcome.action == "imported":
                typer.echo(f"imported {outcome.execution_id} ({outcome.events} events)")
            else:
                typer.echo(f"skipped {outcome.execution_id}: already in the journal")


@app.command("rebuild")
def rebuild_command(
    url: Url = DEFAULT_URL,
    only: Annotated[list[str] | None, typer.Option(
        help="Rebuild only this view (repeatable): executions, steps or costs.")] = None,
    as_json: Json = False,
) -> None:
    """Drop and rebuild the projections from the log, with a progress bar."""
    from projections import rebuild as rebuild_views
    from runner.cli import render

    with _reported(url):
        result = rebuild_views(url, only=only or None, show_progress=not as_json,
                               console=render.console(stderr=True))
    if as_json:
        _echo_json({**json.loads(dumps(result)), "events_per_second": result.events_per_second})


@app.command("demo")
def demo_command(
    url: Url = DEFAULT_URL,
    doc: Annotated[str, typer.Option(help="Document id to review.")] = "contract-7",
) -> None:
    """Run the runner's demo (a document review: steps, retry, pause, resume) on the journal."""
    # As its own process (`python -m runner.demo`), as documented: the demo keeps module
    # state (its output stream) that must not outlive one run inside a longer-lived process.
    with _reported(url):
        # The URL goes by environment, not argv: a password on a command line is visible
        # to every user of the machine (ps, /proc/*/cmdline).
        done = subprocess.run(
            [sys.executable, "-m", "runner.demo", "--doc", doc],
            env={**os.environ, "JOURNAL_URL": url},
            capture_output=True, text=True, check=False,
        )
    typer.echo(_scrub(done.stdout, url), nl=False)
    if done.returncode:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        _fail(f"the demo failed (exit {done.returncode}): {lines[-1] if lines else ''}", url)


# Every command declared above gets the plain help (declared last: whoever adds a command
# above gets it too, without a cls= of their own; a command class of its own is kept).
for _info in app.registered_commands:
    if _info.cls in (None, TyperCommand):
        _info.cls = _Command


def main() -> None:
    """Run the Typer app on ``sys.argv`` (the console script, :func:`runner.cli.main`, comes
    here for every command line but the plain ``ls`` and ``show`` it runs itself)."""
    app()


