"""Workflows that sleep, wait for signals, pause with a deadline and start children, for the
CLI tests of ``journal show``/``ls`` on waiting executions and on parents and children,
``journal signal`` and ``journal serve``.

``journal serve --app tests.cli.waiting:runner`` reads the module attribute ``runner``,
built on each access from ``$JOURNAL_URL`` (the CLI exports its --url there), like
:mod:`tests.cli.app`. A serving subprocess needs the project root on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from typing import Any

from journal import Journal
from runner import ChildFailed, Context, Runner, WaitTimedOut


def note(text: str) -> str:
    return text


def nap(ctx: Context, seconds: float) -> dict[str, Any]:
    """A step, a durable sleep, a step."""
    before = ctx.step("before", note, "before")
    ctx.sleep(seconds)
    return {"before": before, "after": ctx.step("after", note, "after")}


def pay(ctx: Context, timeout: float | None) -> Any:
    """Draw the time, wait for signal "paid" (with a deadline, if given), draw an id."""
    ctx.now()
    try:
        value = ctx.wait_for("paid", timeout=timeout)
    except WaitTimedOut:
        value = "timed out"
    ctx.uuid4()
    return value


def approve(ctx: Context, timeout: float) -> Any:
    """A pause for a human with a deadline."""
    return ctx.pause("review", {"doc": "contract-7"}, timeout=timeout)


def kid(ctx: Context, n: int) -> Any:
    """A child: fails for n < 0, waits for signal "go" for n == 0, else one step."""
    if n < 0:
        raise ValueError(f"kid {n} broke")
    if n == 0:
        return ctx.wait_for("go")
    return ctx.step("kid step", note, f"kid-{n}")


def family(ctx: Context) -> list[Any]:
    """A parent: a child that completes, one that fails, one that waits for "go"."""
    out: list[Any] = [ctx.child(kid, 1)]
    for n in (-1, 0):
        try:
            out.append(ctx.child(kid, n))
        except ChildFailed as e:
            out.append(f"{e.status}: {e.error_type}")
    return out


WORKFLOWS = (nap, pay, approve, kid, family)


def make_runner(journal: Journal) -> Runner:
    """A runner with these workflows registered."""
    r = Runner(journal)
    for wf in WORKFLOWS:
        r.register(wf)
    return r


def __getattr__(name: str) -> Any:
    if name == "runner":
        return make_runner(Journal.open(os.environ["JOURNAL_URL"]))
    raise AttributeError(name)
