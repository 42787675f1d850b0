"""A small service for the CLI tests: its workflows, and the Runner ``--app`` imports.

``journal resume/recover --app tests.cli.app:runner`` reads the module attribute
``runner``; it is built on each access from ``$JOURNAL_URL`` (the CLI exports its --url
there), because tests run many journals in one process. The CLI closes it when done.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

from journal import Journal
from runner import Context, Retry, Runner, add_cost

_tries: dict[str, int] = {}


def fetch(doc: str) -> dict[str, Any]:
    add_cost(usd=Decimal("0.0125"), input_tokens=100, output_tokens=20, model="sim-1")
    return {"doc": doc, "words": 4}


def publish(doc: str, decision: dict[str, Any]) -> str:
    add_cost(usd=Decimal("0.001"), input_tokens=10, output_tokens=5, model="sim-2")
    return f"{doc}:{'approved' if decision.get('approved') else 'rejected'}"


def explode(doc: str) -> int:
    raise ValueError(f"cannot parse {doc}")


def flaky(key: str) -> str:
    _tries[key] = _tries.get(key, 0) + 1
    add_cost(usd=Decimal("0.002"), model="sim-1")
    if _tries[key] == 1:
        raise ConnectionError(f"rate limited on {key}")
    return "ok"


def work() -> str:
    return "worked"


def review(ctx: Context, doc: str) -> dict[str, Any]:
    """Fetch, pause for a human, publish."""
    fetched = ctx.step("fetch", fetch, doc)
    ctx.log("fetched", words=fetched["words"])
    decision = ctx.pause("human_review", payload={"doc": doc, "words": fetched["words"]})
    return {"published": ctx.step("publish", publish, doc, decision)}


def broken(ctx: Context, doc: str) -> int:
    """Fails for good in its step."""
    out: int = ctx.step("explode", explode, doc)
    return out


def retried(ctx: Context, key: str) -> str:
    """One failed try, then success."""
    out: str = ctx.step("flaky", flaky, key, retry=Retry(attempts=3, backoff=0.001))
    return out


def slow(ctx: Context) -> str:
    """Used to leave a running execution behind, as a dead runner would."""
    out: str = ctx.step("work", work)
    return out


def nap() -> str:
    time.sleep(60)  # long enough to be interrupted in (recover's Ctrl-C test)
    return "rested"


def drowsy(ctx: Context) -> str:
    """A step that takes a minute: a recover busy with it is interrupted."""
    out: str = ctx.step("nap", nap)
    return out


WORKFLOWS = (review, broken, retried, slow, drowsy)


def make_runner(journal: Journal) -> Runner:
    """A runner with this service's workflows registered."""
    r = Runner(journal)
    for wf in WORKFLOWS:
        r.register(wf)
    return r


def stall(journal: Journal, execution_id: UUID | None = None) -> UUID:
    """What a runner killed inside ``slow``'s step leaves: running, step started, no end."""
    handle = journal.start("slow", {}, execution_id=execution_id)
    handle.step_started("work")
    return handle.id


def elsewhere() -> Runner:
    """A runner on another journal than the CLI's (``$OTHER_JOURNAL_URL``)."""
    return make_runner(Journal.open(os.environ["OTHER_JOURNAL_URL"]))


def __getattr__(name: str) -> Any:
    if name == "runner":
        return make_runner(Journal.open(os.environ["JOURNAL_URL"]))
    raise AttributeError(name)
