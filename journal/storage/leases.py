"""Liveness leases: which executions a live process is driving right now.

The log says where an execution got to, not whether the process driving it is still alive:
a step that runs for ten minutes leaves no event for ten minutes. ``recover()`` must not
take over such a run (its step would then run twice, at once). A lease is held by the
process that drives an execution and vanishes with it: an ``flock`` on a file beside a
SQLite journal, a session-level advisory lock on PostgreSQL (released when the session's
connection closes, so when the process dies). Leases are only a liveness signal; two
writers are still fenced by the log's optimistic concurrency.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime
from uuid import UUID

__all__ = [
    "Lease", "LeaseKeeper", "ProcessLeases", "driver_name", "identity", "process_started",
]


_WHO = re.compile(r"^\S+:\d+")


def driver_name(holder: str) -> str:
    """``host:pid`` from a lease holder's description (``host:pid since ...``, as
    :func:`identity` gives it), else the description itself."""
    text = holder.removeprefix("this process (")
    found = _WHO.match(text)
    return found.group(0) if found else holder


def identity() -> str:
    """Who holds a lease, as other processes are told: ``host:pid since <UTC time>``."""
    return f"{socket.gethostname()}:{os.getpid()} since {_STARTED.isoformat(timespec='seconds')}"


def process_started() -> datetime:
    """When this process started (a forked child: when it was forked), UTC."""
    return _STARTED


_STARTED = datetime.now(UTC)


class Lease:
    """Held until ``release()``; the process driving the execution keeps it."""

    def __init__(self, keeper: LeaseKeeper, execution_id: UUID) -> None:
        self.keeper = keeper
        self.execution_id = execution_id
        self._released = False

    def confirmed(self) -> bool:
        """Whether this process may still count on the lease (cheap: no round trip). False
        once it was taken over, or when it could not be renewed in time: stop before the
        next step."""
        return not self._released and self.keeper.confirmed(self.execution_id)

    def release(self) -> None:
        """Let the lease go (idempotent)."""
        if not self._released:
            self._released = True
            self.keeper.release(self.execution_id)


class LeaseKeeper(ABC):
    """Takes and releases leases for one store; the same lease twice in-process is refused."""

    def __init__(self) -> None:
        self._held: set[UUID] = set()
        self._lock = threading.Lock()

    def try_acquire(self, execution_id: UUID) -> Lease | None:
        """The lease, or None when a live driver (in this process or another) holds it."""
        with self._lock:
            if execution_id in self._held:
                return None
            if not self._acquire(execution_id):
                return None
            self._held.add(execution_id)
        return Lease(self, execution_id)

    def release(self, execution_id: UUID) -> None:
        """Release a lease taken by :meth:`try_acquire`."""
        with self._lock:
            if execution_id in self._held:
                self._held.discard(execution_id)
                self._release(execution_id)

    #: Seconds a lease outlives its holder's lost session (PostgreSQL); 0 where the OS
    #: holds the lock and a lost session does not exist.
    grace: float = 0.0

    def in_grace(self, execution_id: UUID) -> bool:
        """Whether the last refusal was only a grace period: no live session holds the
        lease, but its holder renewed it recently (it died just now, or its session
        dropped and is coming back). Waiting ``grace`` seconds tells which."""
        return False

    def confirmed(self, execution_id: UUID) -> bool:
        """Whether a lease this process holds is still surely its own (see Lease)."""
        return True  # where the OS holds the lock (flock, in-process), it cannot be lost

    def holder(self, execution_id: UUID) -> str | None:
        """Who holds the lease of ``execution_id`` now, if this keeper can tell."""
        with self._lock:
            if execution_id in self._held:
                return f"this process ({identity()})"
        return self._holder(execution_id)

    def holders(self, execution_ids: Iterable[UUID]) -> dict[UUID, str | None]:
        """:meth:`holder` of each of ``execution_ids`` (one round trip where the keeper can
        ask for many at once: ``journal stuck`` over thousands of running executions)."""
        return {eid: self.holder(eid) for eid in execution_ids}

    def _holder(self, execution_id: UUID) -> str | None:
        return None

    def check(self) -> None:  # noqa: B027 - nothing to check where the OS keeps the locks
        """Make sure the leases this process holds are still held (a heartbeat; cheap)."""

    @abstractmethod
    def _acquire(self, execution_id: UUID) -> bool: ...

    @abstractmethod
    def _release(self, execution_id: UUID) -> None: ...

    def _after_fork(self) -> None:
        """In a forked child: the parent's leases are the parent's; this process holds none."""
        global _STARTED
        _STARTED = datetime.now(UTC)
        self._held = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release every lease this process holds."""
        with self._lock:
            for eid in list(self._held):
                self._release(eid)
            self._held.clear()


class ProcessLeases(LeaseKeeper):
    """Leases seen only inside this process (the in-memory journal)."""

    def _acquire(self, execution_id: UUID) -> bool:
        return True

    def _release(self, execution_id: UUID) -> None:
        pass
