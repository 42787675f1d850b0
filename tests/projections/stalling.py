"""Workflows that stall in each way ``journal stuck`` explains, for the stall-reason tests.

In an importable module because a subprocess registers the same workflows by name: run as
``python -m tests.projections.stalling hang URL MARKER`` it starts ``hang``, whose step
writes MARKER and then sleeps until the process is killed (a driver killed mid-step).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from journal import Journal
from runner import Context, Retry, Runner

#: Set by the tests: what ``block``'s step waits for, and what ``flaky`` fails on first.
GATE = threading.Event()
_failed: set[str] = set()


def sleep_forever(marker: str) -> str:
    Path(marker).write_text("in step")
    time.sleep(600)
    return "never"


def wait_gate() -> str:
    GATE.wait(30)
    return "released"


def fail_once(key: str) -> str:
    if key not in _failed:
        _failed.add(key)
        raise TimeoutError(f"upstream timeout after 31s ({key})")
    return "ok"


def hang(ctx: Context, marker: str) -> str:
    out: str = ctx.step("hang", sleep_forever, marker)
    return out


def block(ctx: Context) -> str:
    out: str = ctx.step("block", wait_gate)
    return out


def backoff(ctx: Context, key: str) -> str:
    out: str = ctx.step("flaky", fail_once, key, retry=Retry(attempts=3, backoff=30))
    return out


def approve(ctx: Context, timeout: float) -> object:
    return ctx.pause("review", {"doc": "contract-7"}, timeout=timeout)


def nap(ctx: Context, seconds: float) -> str:
    ctx.sleep(seconds)
    return "rested"


def pay(ctx: Context, timeout: float) -> object:
    return ctx.wait_for("paid", timeout=timeout)


def kid(ctx: Context) -> object:
    return ctx.wait_for("go")


def parent(ctx: Context) -> object:
    return ctx.child(kid)


def first(ctx: Context) -> object:
    ctx.step("draft", lambda: "draft")
    return ctx.pause("sign")


def renamed(ctx: Context) -> object:
    """``first`` after a deploy that renamed its step: its replay diverges at seq 1."""
    ctx.step("write", lambda: "draft")
    return ctx.pause("sign")


WORKFLOWS = (hang, block, backoff, approve, nap, pay, kid, parent)


def make_runner(journal: Journal) -> Runner:
    """A runner with these workflows registered."""
    r = Runner(journal)
    for wf in WORKFLOWS:
        r.register(wf)
    # Two workflows that change their code under an explicit version: "signing" keeps
    # its version across the change (a bug: its runs diverge where that version runs),
    # "contract" moves to v2 (its v1 runs are stranded once only v2 is deployed).
    r.register(first, name="signing", version="s1")
    r.register(first, name="contract", version="v1")
    return r


def deployed(journal: Journal) -> Runner:
    """The runner after the deploy that renamed the step of both."""
    r = Runner(journal)
    r.register(renamed, name="signing", version="s1")
    r.register(renamed, name="contract", version="v2")
    return r


def main(argv: list[str]) -> int:
    """``hang URL MARKER``: start ``hang`` and stay in its step until killed."""
    command, url = argv[0], argv[1]
    if command != "hang":
        raise SystemExit(f"unknown command {command}")
    with Journal.open(url) as journal, make_runner(journal) as runner:
        runner.run(hang, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
