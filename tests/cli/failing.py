"""Workflows that fail in a few ways, for ``journal errors``, ``ls --error-type`` and
``--error-contains`` and the tracebacks of ``journal show``."""

from __future__ import annotations

from journal import Journal
from runner import Context, Runner


class Unparseable(Exception):
    """A failure of this module's own type (recorded by its qualified name)."""


def call(kind: str, n: int) -> str:
    if kind == "timeout":
        raise TimeoutError(f"upstream timeout after {n}s")
    if kind == "key":
        raise KeyError(f"doc-{n}")
    raise Unparseable(f"cannot parse page {n} of 3f9a1c07e2")


def fetch(ctx: Context, kind: str, n: int) -> str:
    """One step that fails for good, letting its failure through."""
    out: str = ctx.step("call", call, kind, n)
    return out


def make_runner(journal: Journal) -> Runner:
    """A runner with ``fetch`` registered."""
    r = Runner(journal)
    r.register(fetch)
    return r
