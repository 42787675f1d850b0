"""eventsourcing's ``ApplicationRecorder`` over any journal :class:`Storage`.

The journal does not record through eventsourcing's recorders (see ``journal.storage.postgres``
for why its write path differs), but it keeps their contract: eventsourcing 9.5's own recorder
test cases run against this class on every backend (``tests/journal/test_eventsourcing_contract``),
so an eventsourcing application or projection can read and write a journal's log directly.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import astuple
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    ListenNotifySubscription,
    Notification,
    StoredEvent,
    Subscription,
)

from journal.errors import ConcurrencyConflict
from journal.storage.base import Storage
from journal.storage.base import StoredEvent as Row

__all__ = ["StorageRecorder"]


class StorageRecorder(ApplicationRecorder):
    """The log of a journal as eventsourcing sees an application's: streams + notifications."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        events = [Row(*astuple(_with_uuid(s))) for s in stored_events]
        try:
            return self.storage.append(events)
        except ConcurrencyConflict as e:
            raise IntegrityError(str(e)) from e

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        eid = _uuid(originator_id)
        rows = self.storage.read_stream(eid, after=-(2**62) if gt is None else gt)
        if lte is not None:
            rows = [r for r in rows if r[0] <= lte]
        if desc:
            rows = rows[::-1]
        if limit is not None:
            rows = rows[:limit]
        return [
            StoredEvent(originator_id=originator_id, originator_version=p, topic=t,
                        state=bytes(s))
            for p, t, s in rows
        ]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        after = 0 if start is None else (start - 1 if inclusive_of_start else start)
        rows = self.storage.read_log(after, limit, topics=topics)
        return [
            Notification(id=nid, originator_id=eid, originator_version=pos, topic=topic,
                         state=bytes(state))
            for nid, eid, pos, topic, state in rows
            if stop is None or nid <= stop
        ]

    def max_notification_id(self) -> int | None:
        return self.storage.head() or None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return _StorageSubscription(self, gt=gt, topics=topics)


class _StorageSubscription(ListenNotifySubscription[StorageRecorder]):  # type: ignore[type-var]
    """eventsourcing's subscription loop, woken by the storage's own listener."""

    def __init__(
        self, recorder: StorageRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._listener = recorder.storage.listen()
        self._listen_thread = threading.Thread(target=self._listen, daemon=True)
        self._listen_thread.start()

    def _listen(self) -> None:
        try:
            while not self._has_been_stopped and not self._thread_error:
                self._listener.wait(0.1)
                self._has_been_notified.set()
        finally:
            self._listener.close()

    def stop(self) -> None:
        super().stop()


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _with_uuid(s: StoredEvent) -> StoredEvent:
    if isinstance(s.originator_id, UUID):
        return s
    return StoredEvent(originator_id=_uuid(s.originator_id),
                       originator_version=s.originator_version, topic=s.topic, state=s.state)
