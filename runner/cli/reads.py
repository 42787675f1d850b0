"""``journal ls`` and ``journal show``, the commands people run most, without Typer.

:mod:`runner.cli.commands` declares them to Typer and calls these; :mod:`runner.cli.fast`
calls them straight from a command line it fully understands, so that the commands start
without Typer's parsing machinery. Rich is imported only when a table is printed.
"""

from __future__ import annotations

from runner.cli.plumbing import catch_up, echo, echo_json, resolve, session

__all__ = ["ls", "show"]


def ls(*, url: str, status: str | None = None, workflow: str | None = None,
       since: str | None = None, before: str | None = None, error_type: str | None = None,
       error_contains: str | None = None, sort: str = "started", offset: int = 0,
       limit: int = 50, as_json: bool = False) -> None:
    """List executions, newest first (``sort``: ``duration``, longest first; ``cost``, most
    expensive first): id, workflow, status, started, ended, duration, last step, cost
    (``error_type``, ``error_contains``: only failures of that type, or with that text in
    their message, the execution's or its failed step's; ``before``: started before that
    time, the next page of the default order; ``offset``: skip that many first)."""
    with session(url, read_only=True) as (_, views):
        when = started_before = None
        if since or before:
            from runner.cli.timeparse import parse_since

            when = parse_since(since) if since else None
            started_before = parse_since(before, option="--before") if before else None
        catch_up(views)
        rows = views.executions(status=status, workflow=workflow, since=when,
                                started_before=started_before, error_type=error_type,
                                error_contains=error_contains, sort=sort, offset=offset,
                                limit=limit)
    if as_json:
        echo_json(rows)
    elif not rows:
        echo("no executions")
    else:
        from runner.cli import render

        render.console().print(render.executions_table(rows))


def show(*, execution: str, url: str, as_json: bool = False) -> None:
    """Show one execution's timeline: steps, attempts, errors, logs, pause or wait, calls,
    children, signals, costs (and, for a child, its parent)."""
    from runner.cli.timeline import build_timeline, has_children

    with session(url, read_only=True) as (journal, views):
        eid = resolve(journal, views, execution)
        events = journal.events(eid)
        children = []
        if has_children(events):
            # Where children still running are comes from their own streams, as the views
            # have them: brought up to the log first.
            catch_up(views)
            children = views.children(eid, limit=None)
        timeline = build_timeline(eid, events, children=children)
    if as_json:
        echo_json({"summary": timeline.summary, "steps": timeline.steps,
                   "calls": timeline.calls, "children": timeline.children,
                   "signals": timeline.signals, "timeline": timeline.entries})
    else:
        from runner.cli import render

        render.timeline_view(render.console(), timeline)
