"""User value types stored inside the golden streams.

Their topics (``tests.journal.golden.values:GoldenTag`` ...) are in the golden bytes:
do not move or rename them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec


class GoldenTag(msgspec.Struct, frozen=True):
    """A user's msgspec Struct."""

    name: str
    value: Any = None


@dataclasses.dataclass(frozen=True)
class GoldenPoint:
    """A user's dataclass."""

    x: int
    y: int
