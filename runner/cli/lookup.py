"""Finding an execution from what a person types: a whole id, or a unique prefix of one.

People copy the first few characters of an id from ``journal ls`` (like git hashes). A prefix
is matched against the ``executions`` view (caught up first, so it knows every execution
the log holds); a whole id is checked against the log itself, the source of truth.
"""

from __future__ import annotations

import re
from uuid import UUID

from journal import Journal
from journal.errors import ExecutionNotFound, JournalError
from projections import Projections

__all__ = ["AmbiguousPrefix", "UnknownExecution", "resolve_id"]

_HEX = re.compile(r"^[0-9a-f-]+$")
#: How many candidates an ambiguity error lists.
_SHOW = 5


class UnknownExecution(ExecutionNotFound):
    """No execution id starts with what was typed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.args = (
            f"no execution matches {text!r}: check the id with `journal ls` "
            "(a unique prefix of an id is enough)",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class AmbiguousPrefix(JournalError, LookupError):
    """More than one execution id starts with what was typed."""

    def __init__(self, text: str, matches: list[UUID]) -> None:
        self.text = text
        self.matches = matches
        shown = ", ".join(str(m) for m in matches[:_SHOW])
        more = ", ..." if len(matches) > _SHOW else ""
        super().__init__(
            f"id prefix {text!r} is ambiguous: it matches {shown}{more}; type more characters"
        )


def resolve_id(journal: Journal, views: Projections, text: str) -> UUID:
    """The execution whose id is ``text`` or uniquely starts with it.

    Raises :class:`UnknownExecution` or :class:`AmbiguousPrefix` (both ``JournalError``).
    """
    raw = text.strip().lower()
    if not raw or not _HEX.match(raw):
        raise UnknownExecution(text)
    try:
        whole = UUID(raw)
    except ValueError:
        whole = None
    if whole is not None:
        try:
            journal.events(whole, after=0)
        except ExecutionNotFound:
            raise UnknownExecution(text) from None
        return whole
    views.catch_up()
    b = views.backend
    # Both backends render a UUID as lower-case 8-4-4-4-12 text; LIKE on that text matches
    # prefixes typed with or without the dashes of the first group(s).
    pattern = raw if "-" in raw else _dashed(raw)
    rows = b.query(
        "SELECT execution_id FROM proj_executions WHERE CAST(execution_id AS TEXT) LIKE ? "
        "ORDER BY execution_id LIMIT ?",
        (pattern + "%", _SHOW + 1),
    )
    matches = [b.to_uuid(r[0]) for r in rows]
    if not matches:
        raise UnknownExecution(text)
    if len(matches) > 1:
        raise AmbiguousPrefix(text, matches)
    return matches[0]


def _dashed(hex_prefix: str) -> str:
    """Insert the dashes of the UUID text form into a dash-less prefix."""
    out = []
    for i, ch in enumerate(hex_prefix[:32]):
        if i in (8, 12, 16, 20):
            out.append("-")
        out.append(ch)
    return "".join(out)
