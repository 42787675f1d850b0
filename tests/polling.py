"""Waiting in tests for what another thread or process does: poll, with a deadline that
names what was awaited when it passes (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(check: Callable[[], object], what: str, timeout: float = 30.0,
          every: float = 0.02) -> None:
    """Return once ``check()`` is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
