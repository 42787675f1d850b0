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
    views.refresh()  # views behind a read-only role: look among what they hold
    matches = views.find(raw, limit=_SHOW + 1)
    if not matches:
        raise UnknownExecution(text)
    if len(matches) > 1:
        raise AmbiguousPrefix(text, matches)
    return matches[0]
