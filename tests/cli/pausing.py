"""A service for ``journal resume`` by filter: runs that pause for a person, then publish;
one of them (doc ``slow``) naps in its last step when told to (the answer ``"nap"``), so a
bulk resume can be interrupted there.

``--app tests.cli.pausing:runner`` builds the Runner from ``$JOURNAL_URL`` on each access,
as ``tests.cli.app`` does."""

from __future__ import annotations

import os
import time
from typing import Any

from journal import Journal
from runner import Context, Runner


def publish(doc: str, decision: Any) -> str:
    if doc == "slow" and decision == "nap":
        time.sleep(60)  # long enough to be interrupted in
    return f"{doc}:{decision}"


def approve(ctx: Context, doc: str) -> str:
    """Pause for a person, then publish what they decided."""
    decision = ctx.pause("approval", payload={"doc": doc})
    out: str = ctx.step("publish", publish, doc, decision)
    return out


def triage(ctx: Context, doc: str) -> str:
    """Another workflow and pause reason: left alone by --workflow approve or --reason."""
    decision = ctx.pause("triage", payload={"doc": doc})
    return f"{doc}:{decision}"


def make_runner(journal: Journal) -> Runner:
    runner = Runner(journal)
    runner.register(approve)
    runner.register(triage)
    return runner


def __getattr__(name: str) -> Any:
    if name == "runner":
        return make_runner(Journal.open(os.environ["JOURNAL_URL"]))
    raise AttributeError(name)
