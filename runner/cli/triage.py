"""``journal errors``: failed executions grouped by root cause, most frequent first.

A root cause is the error type the execution failed with (the failing step's own, as the
journal records it; for an execution recorded by an older release, which recorded the
runner's ``StepFailedError``, its failed step's) and its message with what varies from one
failure to the next (numbers, ids, hex digests) replaced: ``timeout after 31s`` and
``timeout after 29s`` are one cause, ``timeout after <n>s``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

import msgspec

from projections import ExecutionSummary, Projections

__all__ = ["ErrorGroup", "error_groups", "normalise", "root_cause"]

#: What the runner records where an older release did not keep the step's own error.
WRAPPER = "runner.errors.StepFailedError"

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\b")
# A run of hex of 8 or more with a digit in it (a digest, an id), not a word.
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACE = re.compile(r"\s+")
#: A normalised message is cut here (a cause is told by its beginning).
WIDTH = 200


def normalise(message: str) -> str:
    """``message`` with what varies between failures of one cause replaced: ids by ``<id>``,
    numbers by ``<n>``, on one line of at most ``WIDTH`` characters."""
    text = _UUID.sub("<id>", message)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


class ErrorGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Failed executions with one root cause."""

    error_type: str
    #: The message, normalised (see :func:`normalise`).
    message: str
    count: int
    #: The latest of them, and its message as it was.
    example_id: UUID
    example_message: str
    first_at: datetime
    last_at: datetime
    #: Their workflows, by name.
    workflows: tuple[str, ...]


def root_cause(views: Projections, e: ExecutionSummary) -> tuple[str, str]:
    """(error type, message) of what made ``e`` fail: its failed step's error where the
    execution has only the runner's wrapper."""
    error_type, message = e.error_type or "(unknown)", e.error_message or ""
    if error_type == WRAPPER and e.error_step_seq is not None:
        for step in views.steps(e.execution_id):
            if step.seq == e.error_step_seq and step.error_type:
                return step.error_type, step.error_message or ""
    return error_type, message


def _failures(views: Projections, since: datetime | None, page: int = 1000
              ) -> Iterator[ExecutionSummary]:
    before = None
    while True:
        rows = views.executions(status="failed", ended_since=since, before=before, limit=page)
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1]


def error_groups(views: Projections, *, since: datetime | None = None) -> list[ErrorGroup]:
    """Failed executions (those that ended ``since``, if given) by root cause, most
    frequent first (then the latest first)."""
    groups: dict[tuple[str, str], list[tuple[ExecutionSummary, str]]] = {}
    for e in _failures(views, since):
        error_type, message = root_cause(views, e)
        groups.setdefault((error_type, normalise(message)), []).append((e, message))
    out = []
    for (error_type, pattern), members in groups.items():
        ended = [e.ended_at or e.updated_at for e, _ in members]
        latest, latest_message = max(members, key=lambda m: m[0].ended_at or m[0].updated_at)
        out.append(ErrorGroup(
            error_type=error_type, message=pattern, count=len(members),
            example_id=latest.execution_id, example_message=latest_message,
            first_at=min(ended), last_at=max(ended),
            workflows=tuple(sorted({e.workflow for e, _ in members})),
        ))
    out.sort(key=lambda g: (-g.count, -g.last_at.timestamp(), g.error_type, g.message))
    return out
