"""Workflows for the queue tests: ``journal serve --app tests.runner.queued:runner`` reads
``runner``, built on each access from ``$JOURNAL_URL`` (the CLI exports its --url there).

``work`` appends a line to the file ``$QUEUE_LEDGER`` names each time its step really runs,
so a test in another process can count how often it ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from journal import Journal
from runner import Context, Runner


def record(n: int) -> int:
    ledger = os.environ.get("QUEUE_LEDGER")
    if ledger:
        with Path(ledger).open("a") as f:
            f.write(f"{n} {os.getpid()}\n")
    return n * 2


def work(ctx: Context, n: int) -> int:
    doubled: int = ctx.step("record", record, n)
    return doubled


def call(ctx: Context, request: dict[str, str]) -> str:
    """Takes a request: one with a secret in it is refused before anything is written."""
    return ",".join(sorted(request))


def make_runner(journal: Journal) -> Runner:
    r = Runner(journal)
    r.register(work)
    r.register(call)
    return r


def __getattr__(name: str) -> Any:
    if name == "runner":
        return make_runner(Journal.open(os.environ["JOURNAL_URL"]))
    raise AttributeError(name)
