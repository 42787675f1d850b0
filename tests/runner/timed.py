"""Workflows that sleep, wait for signals and draw values, shared by the tests of durable time
and by their child processes (``python -m tests.runner.timed COMMAND URL ...``, see ``main``).
Side effects are lines in the file ``$TIMED_EFFECTS`` names."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from journal import Journal
from journal.state import TERMINAL_STATUSES
from runner import AsyncContext, ChildFailed, Context, Runner, WaitTimedOut
from tests.runner.workflows import effect


def mark(name: str) -> str:
    """A step's side effect: one line in the effects file (``$TIMED_EFFECTS``, if set)."""
    path = os.environ.get("TIMED_EFFECTS")
    if path:
        effect(path, name)
    return name


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="nap")
    def nap(ctx: Context, seconds: float) -> dict[str, Any]:
        """A step, a durable sleep, a step."""
        before = ctx.step("before", mark, "before")
        ctx.sleep(seconds)
        after = ctx.step("after", mark, "after")
        return {"before": before, "after": after}

    @runner.workflow(name="listen")
    def listen(ctx: Context, waits: int, timeout: float | None) -> list[Any]:
        """``waits`` waits for signal "s" (each may time out), a tiny sleep between them."""
        got: list[Any] = []
        for _ in range(waits):
            try:
                got.append(ctx.wait_for("s", timeout=timeout))
            except WaitTimedOut:
                got.append("timeout")
            ctx.sleep(0)
        return got

    @runner.workflow(name="draws")
    def draws(ctx: Context, order: str) -> list[str]:
        """Drawn values in the order given (n: now, r: random, u: uuid4), then a pause."""
        drawn: list[str] = []
        for c in order:
            value = {"n": ctx.now, "r": ctx.random, "u": ctx.uuid4}[c]()
            drawn.append(str(value))
        ctx.pause("look")
        return drawn

    @runner.workflow(name="kid")
    def kid(ctx: Context, n: int, seconds: float) -> str:
        """A child: a step, a sleep, a step (fails for n < 0)."""
        ctx.step("kid before", mark, "kid-before")
        ctx.sleep(seconds)
        if n < 0:
            raise ValueError(f"kid {n} broke")
        return ctx.step("kid after", mark, f"kid-{n}")

    @runner.workflow(name="family")
    def family(ctx: Context, seconds: float) -> list[Any]:
        """A parent: a step, then two children one after the other."""
        ctx.step("parent before", mark, "parent-before")
        out = [ctx.child("kid", 1, seconds)]
        try:
            out.append(ctx.child(kid, -1, 0))
        except ChildFailed as e:
            out.append(f"{e.status}: {e.error_type}")
        return out

    @runner.workflow(name="anap")
    async def anap(ctx: AsyncContext, seconds: float) -> str:
        """The async flavour: a sleep, then a wait for "go" with a deadline."""
        await ctx.sleep(seconds)
        try:
            value = await ctx.wait_for("go", timeout=30)
        except WaitTimedOut:
            value = "timeout"
        return f"{ctx.now().year}:{value}"

    return runner


def main(argv: list[str]) -> int:
    """``start URL N SECONDS``: start N naps, print their ids, then wait to be killed.
    ``serve URL SECONDS [ID ...]``: serve for SECONDS (with IDs: until nothing is due any
    more and each of those executions has ended, at most SECONDS), print the runs it drove."""
    command, url, *rest = argv
    journal = Journal.open(url)
    runner = make_runner(journal)
    if command in ("start", "family"):
        n, seconds = int(rest[0]), float(rest[1])
        workflow = "nap" if command == "start" else "family"
        ids = [str(runner.run(workflow, seconds).id) for _ in range(n)]
        print(json.dumps(ids), flush=True)
        time.sleep(600)  # killed during the sleep
        return 0
    if command == "serve":
        import threading

        from runner.serve import Server

        driven: list[str] = []
        stop = threading.Event()
        server = Server(runner, poll_interval=0.1, workers=4, stop=stop,
                        on_run=lambda run: driven.append(str(run.id)))
        timer = threading.Timer(float(rest[0]), stop.set)
        timer.start()
        watcher = threading.Thread(target=_stop_when_ended, args=(journal, rest[1:], stop))
        if rest[1:]:
            watcher.start()
        server.run(handle_signals=False)
        timer.cancel()
        if rest[1:]:
            watcher.join()
        print(json.dumps(driven), flush=True)
        journal.close()
        return 0
    raise SystemExit(f"unknown command {command!r}")


def _stop_when_ended(journal: Journal, ids: list[str], stop: Any) -> None:
    """Set ``stop`` once no wake-up is left and each of ``ids`` has ended (every 0.1 s)."""
    pending = set(ids)
    while not stop.wait(0.1):
        if journal.storage.next_due() is not None:
            continue
        pending = {eid for eid in pending
                   if journal.state(eid).status not in TERMINAL_STATUSES}
        if not pending:
            stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
