"""Objects that must be re-made in a child process after ``os.fork()``.

A connection, a lock held by another thread, or a background thread does not survive a
fork: a child that used its parent's PostgreSQL socket interleaves protocol messages with the
parent's (``prepared statement "_pg3_0" already exists``), a lock taken by a thread that does
not exist in the child is never released, and the child has no flusher thread. Whatever owns
such a thing registers here; in the child, just after the fork, each owner's ``_after_fork()``
runs (Celery prefork, gunicorn ``--preload``, ``multiprocessing`` with ``fork``).

What the parent opened is *abandoned* in the child, never closed: closing a libpq connection
sends the server a Terminate for the parent's own session. :func:`abandon` keeps those
objects referenced for the child's lifetime so that no finalizer closes them either.

SQLite is the exception that must be handled *before* the fork: its per-process lock
bookkeeping is copied into the child with any open connection, and the child then takes no
real file lock (the parent, closing last, would checkpoint and delete the WAL under the
child). Owners with ``_before_fork()`` close such connections in the parent just before
the fork, so the child inherits none; they reopen on first use. One failing owner never
stops the others being reset.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Protocol

__all__ = ["ForkAware", "abandon", "register"]


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


logger = logging.getLogger("journal")
_owners: weakref.WeakSet[Any] = weakref.WeakSet()
_abandoned: list[Any] = []
_lock = threading.Lock()


def register(owner: ForkAware) -> None:
    """Call ``owner._after_fork()`` in every child forked while ``owner`` is alive."""
    with _lock:
        _owners.add(owner)


def abandon(*objects: Any) -> None:
    """Keep the parent's connections (or files) alive, unused, for the child's lifetime."""
    _abandoned.extend(o for o in objects if o is not None)


def _before() -> None:
    for owner in list(_owners):
        before = getattr(owner, "_before_fork", None)
        if before is not None:
            try:
                before()
            except Exception as e:  # the fork goes ahead; the child re-makes what it can
                logger.warning("journal: before fork, %r: %s", owner, e)


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another parent thread may have held it at the fork
    for owner in list(_owners):
        try:
            owner._after_fork()
        except Exception as e:  # the others must still be reset
            logger.error("journal: after fork, %r could not be reset: %s", owner, e)


os.register_at_fork(before=_before, after_in_child=_in_child)
