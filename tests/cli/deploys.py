"""Two releases of a small service, for the CLI tests of ``journal check``, ``fork``, ``retry``
and ``diff``.

``--app tests.cli.deploys:runner`` reads the module attribute ``runner``, built on each access
from ``$JOURNAL_URL`` (the CLI exports its --url there) with the release ``$DEPLOY_RELEASE``
names: ``v1`` (the default), ``v2`` (a new step before the pause, unguarded: executions
paused by v1 no longer replay) or ``v2-patched`` (the new step behind ``ctx.patched``).
Every step appends its name to the ledger file ``$DEPLOY_LEDGER`` (when set), so that a test
can tell which step code ran, in this process or in a CLI subprocess; ``work`` fails at the
step ``$DEPLOY_FAIL_AT`` names (a release with a bug), with :class:`RateLimited`, and
returns one more at the step ``$DEPLOY_OFF_BY_ONE`` names. A subprocess needs the project
root on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from typing import Any

from journal import Journal
from runner import Context, Runner

RELEASES = ("v1", "v2", "v2-patched")


class RateLimited(Exception):
    """What ``work`` fails with at ``$DEPLOY_FAIL_AT``."""


def _ledger(name: str) -> None:
    path = os.environ.get("DEPLOY_LEDGER")
    if path:
        with open(path, "a") as f:
            f.write(f"{name}\n")


def fetch(n: int) -> int:
    _ledger(f"fetch {n}")
    return n * 2


def new_check(n: int) -> str:
    _ledger(f"check {n}")
    return "checked"


def work(i: int) -> int:
    _ledger(f"work{i}")
    if os.environ.get("DEPLOY_FAIL_AT") == str(i):
        raise RateLimited(f"step {i} was rate limited")
    return i * 10 + (1 if os.environ.get("DEPLOY_OFF_BY_ONE") == str(i) else 0)


def parse(text: str) -> int:
    _ledger(f"parse {text}")
    return int(text)


def review_v1(ctx: Context, n: int) -> dict[str, Any]:
    """Fetch, pause for a review."""
    value = ctx.step("fetch", fetch, n)
    return {"value": value, "answer": ctx.pause("review")}


def review_v2(ctx: Context, n: int) -> dict[str, Any]:
    """v1 with a new step before the pause, unguarded."""
    value = ctx.step("fetch", fetch, n)
    extra = ctx.step("new_check", new_check, n)
    return {"value": value, "extra": extra, "answer": ctx.pause("review")}


def review_v2_patched(ctx: Context, n: int) -> dict[str, Any]:
    """v1 with a new step before the pause, for executions that reach it with this code."""
    value = ctx.step("fetch", fetch, n)
    extra = ctx.step("new_check", new_check, n) if ctx.patched("add-check") else None
    return {"value": value, "extra": extra, "answer": ctx.pause("review")}


def five(ctx: Context, base: int) -> list[int]:
    """Five steps (s1..s5) around a plain value."""
    out = [ctx.step(f"s{i}", work, i) for i in range(1, 4)]
    out.append(base)
    out += [ctx.step(f"s{i}", work, i) for i in range(4, 6)]
    return out


def numbers(ctx: Context, text: str) -> int:
    """Fails with ValueError for a text that is not a number."""
    out: int = ctx.step("parse", parse, text)
    return out


_REVIEW = {"v1": review_v1, "v2": review_v2, "v2-patched": review_v2_patched}


def make_runner(journal: Journal, release: str = "v1") -> Runner:
    """A runner with the release's workflows registered (``review`` changes between them)."""
    r = Runner(journal)
    r.register(_REVIEW[release], name="review")
    r.register(five)
    r.register(numbers)
    return r


def __getattr__(name: str) -> Any:
    if name == "runner":
        return make_runner(Journal.open(os.environ["JOURNAL_URL"]),
                           os.environ.get("DEPLOY_RELEASE", "v1"))
    raise AttributeError(name)
