"""eventsourcing 9.5's own recorder contract, run against the journal's storage.

``journal.storage.recorder.StorageRecorder(open_storage(url))`` claims to be an
``eventsourcing.persistence.ApplicationRecorder`` over any storage. The TestCases shipped in
``eventsourcing.tests.persistence`` are run here, unchanged, on SQLite (a new file in a
temporary directory), PostgreSQL (a fresh database per class, a fresh ``?schema=`` per
recorder) and ``memory:``. Each recorder a test creates is a new, empty storage, closed when
the test ends.

Which of that module's TestCases apply, and why:

* ``ApplicationRecorderTestCase`` applies as is: insert/select of streams and of the
  notification log (``start``/``stop``/``topics``/``inclusive_of_start``/``limit``),
  ``max_notification_id``, ``IntegrityError`` on a duplicate, the performance and the two
  concurrency tests (10 writers x 100 writes x 100 events with two readers polling; 4
  workers writing 50-event batches). ``optional_test_insert_subscribe`` is run as
  ``test_insert_subscribe`` because ``StorageRecorder`` implements ``subscribe``.
* ``NonInterleavingNotificationIDsBaseCase`` applies where the storage serializes appends:
  SQLite (one writer at a time) and memory (one lock). On PostgreSQL it is the one
  deliberate deviation: its ``test`` is replaced, with the reason in its docstring (appends
  take no table lock, so the notification ids of two concurrent batches interleave by
  design; followers stay complete because reads never pass a gap an in-flight writer can
  still fill). The replacement checks what PostgreSQL does promise for the same race (every
  event of both batches in the log exactly once, in stream order). It is replaced, not
  skipped, because a CI run must never skip a PostgreSQL test.
* ``AggregateRecorderTestCase`` does not apply to an application recorder as such: its
  ``test_insert_and_select`` asserts that ``insert_events`` returns None, while an
  application recorder returns the notification ids (which ``ApplicationRecorderTestCase``
  checks). It is still the only case that exercises ``select_events`` with
  ``desc``/``limit``/``lte``/``gt`` and the atomicity of a batch that holds a duplicate, so
  it is run through :class:`_AsAggregateRecorder`, which delegates to the same
  ``StorageRecorder`` and only drops the return value of ``insert_events``.
* ``TrackingRecorderTestCase`` and ``ProcessRecorderTestCase`` need a ``TrackingRecorder``
  (``insert_tracking``/``max_tracking_id``/``wait``) and a ``ProcessRecorder``; the project
  offers neither (projections keep their own positions in their view tables), so they do
  not apply.
* ``InfrastructureFactoryTestCase`` tests an eventsourcing ``InfrastructureFactory``
  selected through ``PERSISTENCE_MODULE`` that builds aggregate, application, tracking and
  process recorders; the project has no such factory (it opens storage by URL), so it does
  not apply. ``TranscoderTestCase`` tests eventsourcing's ``JSONTranscoder``, not anything
  of the project (which encodes events with msgspec), so it does not apply either.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import unittest
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

import psycopg
from eventsourcing.persistence import AggregateRecorder, StoredEvent

# (It imports eventsourcing's AES cipher, hence pycryptodome in the test extra.)
from eventsourcing.tests import persistence as contract

from journal.storage import Storage, open_storage
from journal.storage.recorder import StorageRecorder
from tests.conftest import ADMIN_URL, postgres_url_for

if TYPE_CHECKING:

    class _Mixin(unittest.TestCase, ABC):
        """What type checkers see: the TestCase the mixins below end up in."""

else:
    _Mixin = ABC  # at run time a plain mixin: pytest collects no TestCase of its own


class _Storages(_Mixin):
    """Each recorder a test opens is a new, empty storage; all are closed at tearDown."""

    def setUp(self) -> None:
        super().setUp()
        self._opened: list[Storage] = []

    def tearDown(self) -> None:
        try:
            for storage in reversed(self._opened):
                storage.close()
        finally:
            super().tearDown()

    @abstractmethod
    def storage_url(self) -> str:
        """The URL of a new, empty storage on this backend."""

    def open_recorder(self) -> StorageRecorder:
        storage = open_storage(self.storage_url())
        self._opened.append(storage)
        return StorageRecorder(storage)


class _SQLite(_Storages):
    """A new SQLite file in a temporary directory, removed after the test."""

    def setUp(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="journal-contract-")
        super().setUp()

    def tearDown(self) -> None:
        try:
            super().tearDown()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def storage_url(self) -> str:
        return f"sqlite:///{self._dir}/{uuid.uuid4().hex[:8]}.db"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(urlsplit(ADMIN_URL)._replace(query="").geturl(), autocommit=True)


class _Postgres(_Storages):
    """A fresh database for the class, dropped after it; a fresh schema for every recorder."""

    database: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.database = f"journal_contract_{uuid.uuid4().hex[:12]}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{cls.database}"')

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            with _admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{cls.database}" WITH (FORCE)')
        finally:
            super().tearDownClass()

    def storage_url(self) -> str:
        return f"{postgres_url_for(self.database)}?schema=s_{uuid.uuid4().hex[:12]}"


class _Memory(_Storages):
    def storage_url(self) -> str:
        return "memory:"


# -- ApplicationRecorderTestCase -----------------------------------------------------------------


class _ApplicationRecorderCase(_Storages, contract.ApplicationRecorderTestCase[StorageRecorder]):
    def create_recorder(self) -> StorageRecorder:
        return self.open_recorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestSQLiteApplicationRecorder(_SQLite, _ApplicationRecorderCase):
    pass


class TestPostgresApplicationRecorder(_Postgres, _ApplicationRecorderCase):
    pass


class TestMemoryApplicationRecorder(_Memory, _ApplicationRecorderCase):
    pass


# -- NonInterleavingNotificationIDsBaseCase ------------------------------------------------------


class _NonInterleavingCase(_Storages, contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> StorageRecorder:
        return self.open_recorder()


class TestSQLiteNonInterleavingNotificationIDs(_SQLite, _NonInterleavingCase):
    pass


class TestMemoryNonInterleavingNotificationIDs(_Memory, _NonInterleavingCase):
    pass


class TestPostgresNonInterleavingNotificationIDs(_Postgres, _NonInterleavingCase):
    def test(self) -> None:
        """THE DELIBERATE DEVIATION from eventsourcing's contract, in place of its ``test``.

        PostgreSQL appends take no table lock (a lock would serialize every commit and
        forbid group commit), so the notification ids of two concurrent batches may
        interleave. What followers need still holds, and is what this asserts on the same
        race: both batches whole in the log, each in stream order, ids increasing; readers
        never pass a gap an in-flight writer can still fill (tests/journal/
        test_follow_ordering.py). Replaced rather than skipped: a skipped PostgreSQL test
        would hide a regression here.
        """
        recorder = self.create_recorder()
        start = recorder.max_notification_id()
        ids = (self.new_originator_id(), self.new_originator_id())
        stacks = [self.create_stack(i) for i in ids]
        go = threading.Event()
        errors: list[BaseException] = []

        def insert(stack: Sequence[StoredEvent]) -> None:
            try:
                go.wait()
                recorder.insert_events(stack)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=insert, args=(s,), daemon=True) for s in stacks]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(timeout=60)
        if errors:
            raise errors[0]

        notifications = recorder.select_notifications(
            start=start, limit=3 * self.insert_num, inclusive_of_start=False
        )
        self.assertEqual(len(notifications), 2 * self.insert_num)
        got = [n.id for n in notifications]
        self.assertEqual(got, sorted(set(got)))
        for originator_id in ids:
            versions = [
                n.originator_version for n in notifications if n.originator_id == originator_id
            ]
            self.assertEqual(versions, list(range(self.insert_num)))


# -- AggregateRecorderTestCase, through the AggregateRecorder interface ----------------------------


class _AsAggregateRecorder(AggregateRecorder):
    """The same StorageRecorder seen as a plain AggregateRecorder: insert returns None."""

    def __init__(self, recorder: StorageRecorder) -> None:
        self.recorder = recorder

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        self.recorder.insert_events(stored_events, **kwargs)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return self.recorder.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)


class _AggregateRecorderCase(_Storages, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return _AsAggregateRecorder(self.open_recorder())


class TestSQLiteAggregateRecorder(_SQLite, _AggregateRecorderCase):
    pass


class TestPostgresAggregateRecorder(_Postgres, _AggregateRecorderCase):
    pass


class TestMemoryAggregateRecorder(_Memory, _AggregateRecorderCase):
    pass
