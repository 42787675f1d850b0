"""In-memory store for tests and experiments: eventsourcing's POPO recorder, nothing on disk."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from journal.lease import ProcessLeases
from journal.store import Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Streams and blobs in process memory; gone when the process ends."""

    def __init__(self, url: str = "memory:") -> None:
        self.url = url
        self.recorder = POPOApplicationRecorder()
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.leases = ProcessLeases()

    def _append(self, stored: Sequence[StoredEvent]) -> None:
        self.recorder.insert_events(stored)

    def put_blob(self, digest: str, data: bytes) -> None:
        with self._lock:
            self._blobs[digest] = data

    def get_blob(self, digest: str) -> bytes:
        with self._lock:
            return self._blobs[digest]

    def delete_streams(self, execution_ids: Sequence[UUID]) -> int:
        raise NotImplementedError("the in-memory store does not support retention")

    def close(self) -> None:
        pass
