"""The recording API: a Journal holds executions' streams; a handle appends to one of them.

Every lifecycle method of :class:`ExecutionHandle` returns only after its event is committed.
Log lines are the exception the design allows: they ride along with the next commit of their
execution and are durable no later than the next lifecycle event, ``flush()``/``close()``, or
one second after they were written (a background flusher sees to the last).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4, uuid5

from journal.capture import Capture
from journal.encoding import CODES, as_uuid, decode_event, encode_event
from journal.errors import (
    ConcurrencyConflict,
    DecodingError,
    ExecutionNotFound,
    InvalidTransition,
    JournalError,
    mask_url,
)
from journal.events import (
    WAIT_CHILD,
    WAIT_SIGNAL,
    WAIT_TIMER,
    Cost,
    ErrorInfo,
    Event,
    ExecutionCancelled,
    ExecutionClaimed,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionStarted,
    LogRecorded,
    OutOfLine,
    ReplayDiverged,
    SignalReceived,
    StepCompleted,
    StepFailed,
    StepStarted,
    ValueRecorded,
    WaitEnded,
    WaitStarted,
)
from journal.snapshots import decode_snapshot, encode_snapshot
from journal.state import ExecutionState, apply, fold
from journal.storage import Blob, Storage, forks, open_storage
from journal.storage.base import StoredEvent, Wake
from journal.storage.leases import Lease
from journal.values import aware_utc, decode_value, encode_value, is_immutable, own_copy

if TYPE_CHECKING:  # asyncio and the writer threads load only for async callers
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["IDEMPOTENCY_NAMESPACE", "ExecutionHandle", "Journal"]

logger = logging.getLogger("journal")

#: Executions started with an idempotency key (and no explicit id) get uuid5(this, key), so a
#: second start with the same key collides on position 1 of the same stream: no duplicate.
IDEMPOTENCY_NAMESPACE = UUID("6f1f7a1e-2b0c-4d59-9a55-5f0e3c2a9b11")

LOG_FLUSH_SECONDS = 1.0
#: Executions whose last driver's state a journal keeps in memory for the next resume here.
KEPT_STATES = 64
_SMALL = (type(None), bool, int, float)
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


class Journal:
    """An append-only journal of executions on one database (SQLite, PostgreSQL or memory)."""

    def __init__(self, storage: Storage, *, capture: Capture | None = None) -> None:
        self.storage = storage
        self.capture = capture or Capture()
        # Handles with buffered log lines, held strongly: a handle dropped by its caller must
        # still have its lines flushed (within a second, or at close()).
        self._handles: set[ExecutionHandle] = set()
        self._handles_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self._writers: ThreadPoolExecutor | None = None
        self._writers_lock = threading.Lock()
        #: States of executions a driver of this process left waiting (``keep``), with their
        #: snapshot positions: the next load here folds only what came after them.
        self._kept: OrderedDict[UUID, tuple[ExecutionState, int]] = OrderedDict()
        self._kept_lock = threading.Lock()
        forks.register(self)
        _OPEN.add(self)

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        create: bool = True,
        capture: Capture | None = None,
        **options: Any,
    ) -> Journal:
        """Open the journal at ``url`` (else ``$JOURNAL_URL``, else ``sqlite:///journal.db``).

        The tables are created on first open, unless ``create=False``: then nothing is ever
        created, and a journal that does not exist raises ``JournalNotFound`` (what read-only
        tools want: a typo in a path must not make an empty journal). PostgreSQL takes
        ``reconnect_timeout=`` (seconds a lost session is retried; default 10). Raises
        ``JournalUnavailable`` (URL password masked) when the database cannot be reached.
        """
        return cls(open_storage(url, create=create, **options), capture=capture)

    @property
    def url(self) -> str:
        """The URL this journal was opened with."""
        return self.storage.url

    def _after_fork(self) -> None:
        """In a forked child: a lock or event another parent thread held would never be
        released here, and the flusher thread did not come along. Lines the parent buffered
        are the parent's to write: this process drops them and re-reads those executions."""
        closed = self._closed.is_set()
        self._closed = threading.Event()
        if closed:
            self._closed.set()
        self._handles_lock = threading.Lock()
        self._flusher = None
        self._writers = None  # its threads stayed in the parent
        self._writers_lock = threading.Lock()
        self._kept = OrderedDict()
        self._kept_lock = threading.Lock()
        for handle in self._handles:
            handle._lock = threading.RLock()
            handle._pending = []
            handle._pending_logs = []
            handle._orphan_logs = []
            handle._pending_blobs = []
            handle._stale = True
        self._handles = set()

    # -- writing ---------------------------------------------------------------------------

    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        execution_id: UUID | str | None = None,
        idempotency_key: str | None = None,
        deferred: bool = False,
        parent: UUID | None = None,
        parent_seq: int = 0,
        version: str = "",
        queued: bool = False,
    ) -> ExecutionHandle:
        """Record ExecutionStarted and return a handle on the new execution.

        With an ``idempotency_key``, starting again returns the first execution instead of
        a duplicate (its id is derived from the key unless ``execution_id`` is given).

        ``deferred=True`` (for a driver that holds the execution's lease and knows the
        stream is new): ExecutionStarted is checked and encoded now but committed with the
        handle's next commit (its first step's start, say), or within a second like a log
        line; a start costs no commit of its own. A collision then surfaces at that commit
        as ``ConcurrencyConflict``. ``parent``/``parent_seq``: the execution (and its call)
        that starts this one as its child; ``version``: of the workflow code;
        ``queued``: no process drives it yet (status ``queued``, due at once for
        ``serve()``; never deferred: the start is all that is written).
        """
        if not isinstance(workflow, str) or not workflow:
            raise ValueError(f"workflow must be a non-empty str, not {workflow!r}")
        eid = self.new_execution_id(execution_id=execution_id, idempotency_key=idempotency_key)
        handle = ExecutionHandle(self, ExecutionState(execution_id=eid))
        if deferred and not queued:
            started = handle._resumable(self.capture.redact(input), "input")
            if type(started) is not _OutOfLineValue:  # blobs go with their own commit
                with handle._lock:
                    handle._buffer(ExecutionStarted(
                        execution_id=eid, position=1, timestamp=_now(), workflow=workflow,
                        input=started, idempotency_key=idempotency_key, parent=parent,
                        parent_seq=parent_seq, version=version,
                    ))
                handle.created = True
                return handle
        try:
            handle._record(
                ExecutionStarted,
                workflow=workflow,
                input=handle._resumable(self.capture.redact(input), "input"),
                idempotency_key=idempotency_key, parent=parent, parent_seq=parent_seq,
                version=version, queued=queued,
            )
        except ConcurrencyConflict:
            existing = self.execution(eid)
            if idempotency_key is not None and (
                existing.state.idempotency_key == idempotency_key
            ):
                existing.created = False
                return existing
            raise InvalidTransition(
                eid, existing.state.status, "ExecutionStarted",
                "the execution has already started",
            ) from None
        handle.created = True
        return handle

    @staticmethod
    def new_execution_id(
        *, execution_id: UUID | str | None = None, idempotency_key: str | None = None
    ) -> UUID:
        """The id :meth:`start` gives an execution: ``execution_id`` if given, else one
        derived from ``idempotency_key`` (the same key, the same id), else a new uuid4.

        A driver takes the execution's lease on this id *before* starting it."""
        if execution_id is not None:
            return as_uuid(execution_id)
        if idempotency_key is not None:
            return uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key)
        return uuid4()

    def execution(self, execution_id: UUID | str) -> ExecutionHandle:
        """A handle positioned at the end of an existing execution's stream."""
        return ExecutionHandle(self, self.state(execution_id))

    def signal(self, execution_id: UUID | str, name: str, value: Any = None) -> int:
        """Record signal ``name`` with ``value`` in the execution's stream now, whatever the
        execution is doing (a driver running it appends after it); returns its position.

        ``ExecutionNotFound`` for an unknown execution, ``InvalidTransition`` for one that
        has ended: nothing is written in either case.
        """
        for _ in range(20):
            handle = self.execution(execution_id)
            try:
                handle.signal_received(name, value)
            except ConcurrencyConflict:
                continue  # its driver appended meanwhile: after what it wrote
            return handle.position
        raise ConcurrencyConflict(as_uuid(execution_id), self.state(execution_id).position)

    def lease(self, execution_id: UUID | str, *, wait: float = 0.0) -> Lease | None:
        """Take the liveness lease of an execution, or None if a live process holds it.

        The process driving an execution holds its lease; it vanishes when that process
        dies. ``recover()`` only takes over executions whose lease it can take. With
        ``wait``, a lease refused only for its grace period (PostgreSQL: its holder's
        session is gone, but it renewed recently) is tried again for up to ``wait`` seconds.
        """
        eid = as_uuid(execution_id)
        keeper = self.storage.leases
        deadline = time.monotonic() + wait
        while True:
            lease = keeper.try_acquire(eid)
            if lease is not None or not keeper.in_grace(eid) or time.monotonic() >= deadline:
                return lease
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def restore(self, events: list[Event]) -> bool:
        """Append a whole archived stream (``journal import``) under the same policy as a
        live write: captured values redacted and truncated, big resumable values out of line.

        Returns False, writing nothing, if the execution is already in the journal.
        """
        if not events:
            raise ValueError("an archive with no events cannot be restored")
        eid = events[0].execution_id
        state = fold(eid, events)  # a stream that is not a valid history is refused first
        due = state.wakes_at  # a waiting history wakes like a live one
        wakes: list[Wake] = [] if due is None else [(eid, due.timestamp(), state.position)]
        handle = ExecutionHandle(self, ExecutionState(execution_id=eid))
        stored: list[StoredEvent] = []
        blobs: list[Blob] = []
        for event in events:
            changes: dict[str, Any] = {}
            for name in type(event).payload_fields:
                value = getattr(event, name)
                if name in _RESUMABLE.get(type(event), ()):
                    changes[name] = handle._resumable(value, name)
                else:
                    changes[name] = self.capture.captured(value, name)
            if changes:
                event = _replace(event, **changes)
                blobs += [(w.ref.sha256, w.data) for w in changes.values()
                          if type(w) is _OutOfLineValue]
                event = _unwrap(event, lambda w: w.ref)
            stored.append(encode_event(event))
        try:
            self.storage.append(stored, blobs, wakes)
        except ConcurrencyConflict:
            return False
        return True

    def lease_holder(self, execution_id: UUID | str) -> str | None:
        """Who holds the execution's lease now (``host:pid since ...``), if it can be told."""
        return self.storage.leases.holder(as_uuid(execution_id))

    def lease_holders(self, execution_ids: Iterable[UUID | str]) -> dict[UUID, str | None]:
        """:meth:`lease_holder` of many executions, in one round trip where it can be."""
        return self.storage.leases.holders([as_uuid(e) for e in execution_ids])

    # -- reading ---------------------------------------------------------------------------

    def events(self, execution_id: UUID | str, *, after: int = 0) -> list[Event]:
        """The execution's events in order (after position ``after``), values read whole."""
        eid = as_uuid(execution_id)
        events = []
        for position, topic, data in self.storage.read_stream(eid, after=after):
            events.append(self._decoded(topic, data, eid, position))
        if not events and after == 0:
            raise ExecutionNotFound(eid)
        return events

    def state(self, execution_id: UUID | str) -> ExecutionState:
        """The execution's state: its latest snapshot (if any) and the events after it
        folded on top, which is exactly what folding the whole stream gives."""
        return self.load_state(execution_id)[0]

    def load_state(
        self, execution_id: UUID | str, *, kept: bool = False
    ) -> tuple[ExecutionState, int]:
        """:meth:`state`, and the position of the snapshot it started from (0: none).

        ``kept=True`` (a driver about to replay it) takes the state a driver of this process
        left it in (:meth:`keep`), if any, instead of the snapshot: the caller owns it."""
        eid = as_uuid(execution_id)
        if kept:
            with self._kept_lock:
                left = self._kept.pop(eid, None)
            if left is not None and self._continued(left[0]):
                return left
        snap = self.storage.get_snapshot(eid)
        if snap is not None:
            state = decode_snapshot(snap[1])
            if (state is not None and state.execution_id == eid and state.position == snap[0]
                    and self._continued(state)):
                return state, snap[0]
            logger.info("journal: the snapshot of %s does not match its stream here; "
                        "folding the stream from the start", eid)
        return fold(eid, self.events(eid)), 0

    def _continued(self, state: ExecutionState) -> bool:
        """Fold the events after ``state`` onto it, if the log's event at its position is
        its own (not a stream deleted since and started again under the same id); False,
        changing nothing, if not."""
        position = state.position
        events = self.events(state.execution_id, after=position - 1) if position else []
        if not events or events[0].position != position or (
            events[0].timestamp != state.updated_at
        ):
            return False
        for event in events[1:]:
            apply(state, event)
        return True

    def keep(self, state: ExecutionState, snapshot_at: int = 0) -> None:
        """Keep ``state`` (a driver's, exactly what its commits wrote, nothing buffered) for
        the next :meth:`load_state` ``kept=True`` of its execution in this process: an agent
        loop resumed again and again replays from memory instead of reading and decoding its
        history at each turn. Checked against the log when taken; the oldest go first."""
        with self._kept_lock:
            self._kept[state.execution_id] = (state, snapshot_at)
            self._kept.move_to_end(state.execution_id)
            while len(self._kept) > KEPT_STATES:
                self._kept.popitem(last=False)

    def snapshot(self, state: ExecutionState) -> bool:
        """Store ``state`` as its execution's snapshot (a cache that spares later loads
        its history). False if this journal keeps no snapshots. Take the state from a
        handle of the execution's driver, or from :meth:`state`. False too (nothing is
        kept) if the state is not the log's: a handle's events still buffered, or lost."""
        eid, position = state.execution_id, state.position
        head = self.events(eid, after=position - 1)[:1] if position > 0 else []
        if not head or head[0].position != position or head[0].timestamp != state.updated_at:
            logger.warning("journal: no snapshot of %s at position %d: the log does not "
                           "hold that state (yet)", eid, position)
            return False
        return self.storage.put_snapshot(
            state.execution_id, state.position, encode_snapshot(state)
        )

    def notifications(
        self, *, after: int = 0, limit: int = 500
    ) -> list[tuple[int, Event]]:
        """Every execution's events in commit order: (notification id, event) after ``after``.

        Values are read whole, out-of-line ones included, exactly as :meth:`events` reads them.
        """
        out = []
        for nid, eid, position, topic, data in self.storage.read_log(after, limit):
            out.append((nid, self._decoded(topic, data, eid, position)))
        return out

    def _decoded(self, topic: str, data: bytes, eid: UUID, position: int) -> Event:
        """A stored event read whole: typed values, out-of-line ones fetched."""
        event = decode_event(topic, data, execution_id=eid, position=position)
        return self._resolve(event) if type(event).payload_fields else event

    def _resolve(self, event: Event, pending: dict[str, bytes] | None = None) -> Event:
        """Replace out-of-line references by the values they stand for (from ``pending``,
        blobs not committed yet, else from the blob table)."""
        for name in type(event).payload_fields:
            ref = getattr(event, name)
            if isinstance(ref, OutOfLine):
                try:
                    data = (pending[ref.sha256] if pending and ref.sha256 in pending
                            else self.storage.get_blob(ref.sha256))
                except KeyError:
                    raise DecodingError(
                        event.execution_id, event.position, type(event).__name__,
                        f"its {name} ({ref.size} bytes, sha256 {ref.sha256}) is stored out of "
                        "line and is missing from the blob table",
                    ) from None
                event = _replace(event, **{name: decode_value(data)})
        return event

    # -- log flushing and lifetime -----------------------------------------------------------

    def _track(self, handle: ExecutionHandle) -> None:
        with self._handles_lock:
            self._handles.add(handle)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="journal-log-flusher", daemon=True
                )
                self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(LOG_FLUSH_SECONDS / 10):
            with self._handles_lock:
                handles = list(self._handles)
            for h in handles:
                # Half the promise: leaves room for a busy handle and the commit itself.
                h._flush_if_older_than(LOG_FLUSH_SECONDS / 2)
            self._untrack_flushed(handles)

    def _untrack_flushed(self, handles: list[ExecutionHandle]) -> None:
        # Under the lock that log() takes to re-track, so a line buffered meanwhile is kept.
        with self._handles_lock:
            for h in handles:
                if not h._pending and not h._orphan_logs:
                    self._handles.discard(h)

    def flush(self) -> None:
        """Commit every buffered log line now."""
        with self._handles_lock:
            handles = list(self._handles)
        errors: list[JournalError] = []
        for h in handles:
            try:
                h.flush()
            except JournalError as e:  # flush the others first, then report
                errors.append(e)
        self._untrack_flushed(handles)
        if errors:
            raise errors[0]

    async def off_loop(self, call: Callable[[], T]) -> T:
        """Await ``call()`` (something that commits) without holding up the event loop.

        It runs in one of the journal's writer threads while other tasks could run, so a
        commit's round trip or fsync never stalls them (and concurrent commits share WAL
        flushes on PostgreSQL). It runs inline when the awaiting task is the loop's only one
        (a hand-off would add latency and hold up nobody) or when the storage never waits on
        I/O (``memory:``).
        """
        import asyncio  # loaded already: an event loop is running

        if self.storage.write_threads <= 0 or len(asyncio.all_tasks()) <= 1:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool(), call)

    def _writer_pool(self) -> ThreadPoolExecutor:
        pool = self._writers
        if pool is None:
            with self._writers_lock:
                if self._writers is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._writers = ThreadPoolExecutor(
                        self.storage.write_threads, thread_name_prefix="journal-writer"
                    )
                pool = self._writers
        return pool

    def close(self) -> None:
        """Flush buffered log lines and release the database."""
        try:
            self.flush()
        finally:
            self._closed.set()
            if self._flusher is not None:
                self._flusher.join(timeout=5)
            if self._writers is not None:
                self._writers.shutdown(wait=True)  # commits under way finish first
            self.storage.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: Values resume needs whole (never truncated; out of line when big); the other user values
#: are captured evidence (redacted, truncated above the capture limit).
_RESUMABLE: dict[type[Event], tuple[str, ...]] = {
    ExecutionStarted: ("input",),
    StepCompleted: ("output",),
    ExecutionResumed: ("value",),
    ExecutionCompleted: ("output",),
    SignalReceived: ("value",),
}

#: Topics of the events after which an execution's wake-up may change (it waits, stops
#: waiting, is paused with a deadline, gets a signal, ends): their commit writes it.
_WAKE_TOPICS = frozenset(
    CODES[t] for t in (WaitStarted, WaitEnded, SignalReceived, ExecutionPaused,
                       ExecutionResumed, ExecutionCompleted, ExecutionFailed,
                       ExecutionCancelled, ExecutionStarted)
)


_CLAIM_TOPIC = CODES[ExecutionClaimed]

#: Journals not yet closed: their buffered log lines are written at interpreter exit too
#: (the flusher is a daemon thread, and a script may end without close()).
_OPEN: weakref.WeakSet[Journal] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for journal in list(_OPEN):
        if journal._closed.is_set():
            continue
        try:
            journal.flush()
        except Exception as e:  # nothing left to raise it to: say it loudly
            logger.error("journal: buffered log lines not written at exit: %s", e)


def _replace(event: Event, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(event, **changes)


class ExecutionHandle:
    """Appends one execution's events, checking each against the lifecycle first.

    A rejected transition raises ``InvalidTransition`` and writes nothing. Handles are
    thread-safe; two handles on one execution (in two processes, say) fence each other:
    the one that loses the race for a position gets ``ConcurrencyConflict``.
    """

    def __init__(self, journal: Journal, state: ExecutionState) -> None:
        self.journal = journal
        self._state = state
        self._lock = threading.RLock()
        self._pending: list[StoredEvent] = []
        #: The log lines behind ``_pending``, kept as events: a commit that loses a race
        #: re-appends them at the new head of the stream instead of dropping them.
        self._pending_logs: list[LogRecorded] = []
        self._orphan_logs: list[LogRecorded] = []
        self._pending_blobs: list[Blob] = []
        self._pending_since = 0.0
        self._batch: list[StoredEvent] | None = None
        #: The time of the transaction being built: its events share one clock read.
        self._batch_now: datetime | None = None
        self._stale = False
        self._flush_error: BaseException | None = None
        #: Whether ``journal.start`` wrote this execution's ExecutionStarted (False when an
        #: idempotency key found an existing execution): only the creator should drive it.
        self.created = False
        #: Set by a driver: whether this handle may still write (its driver's lease is
        #: confirmed). A handle whose driver lost the lease writes nothing more, not even
        #: a log line re-appended after a lost race: the stream is the new driver's now.
        self.writable: Callable[[], bool] | None = None

    @property
    def id(self) -> UUID:
        """The execution id (also the stream id)."""
        return self._state.execution_id

    @property
    def state(self) -> ExecutionState:
        """The execution's state as of the last event this handle recorded or loaded."""
        with self._lock:
            self._ensure_fresh()
            return self._state

    @property
    def position(self) -> int:
        """The position of the last event recorded (including buffered log lines)."""
        return self.state.position

    def catch_up(self) -> None:
        """Fold in what others appended since (signals: a driver learns of one sent while
        it runs without waiting for its next commit to collide with it)."""
        with self._lock:
            self._ensure_fresh()
            if self._pending or self._batch is not None:
                return  # the next commit absorbs them
            for event in self.journal.events(self.id, after=self._state.position):
                apply(self._state, event)

    def committed_state(self) -> ExecutionState | None:
        """The state, if everything this handle recorded is committed (nothing buffered, no
        failed write): then it is exactly the log's up to its position. Else None."""
        with self._lock:
            if (self._stale or self._pending or self._orphan_logs or self._batch is not None
                    or self._flush_error is not None):
                return None
            return self._state

    def __repr__(self) -> str:
        return f"<ExecutionHandle {self.id} {self._state.status} at {self._state.position}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def step_started(
        self, name: str, input: Any = None, *, attempt: int = 1, seq: int | None = None
    ) -> int:
        """Record StepStarted (committed before it returns) and return the step's seq.

        ``seq`` defaults to the next unused one for attempt 1, and to the latest step of
        that name for later attempts.
        """
        with self._lock:
            self._ensure_fresh()
            if seq is None:
                seq = self._state.next_seq if attempt == 1 else self._latest_seq(name)
            self._record(
                StepStarted, name=name, seq=seq, attempt=attempt,
                input=self.journal.capture.captured(input, "step input"),
            )
            return seq

    def step_completed(
        self,
        seq: int,
        output: Any = None,
        *,
        costs: Iterable[Cost] = (),
        duration: float | None = None,
        copied: bool = False,
    ) -> None:
        """Record StepCompleted with the step's output (kept whole) and costs. ``copied``:
        the output is the caller's own copy, held by nobody else (the runner's), so the
        handle's state keeps it without copying it again."""
        with self._lock:
            self._ensure_fresh()
            attempt, duration = self._attempt_of(seq, duration)
            self._record(
                StepCompleted, copied, seq=seq, attempt=attempt,
                output=self._resumable(output, "step output"),
                costs=_costs(costs) if costs else (), duration=duration,
            )

    def step_failed(
        self,
        seq: int,
        error: BaseException | ErrorInfo,
        *,
        will_retry: bool = False,
        costs: Iterable[Cost] = (),
        duration: float | None = None,
        retry_at: datetime | None = None,
        max_attempts: int = 0,
    ) -> None:
        """Record StepFailed; ``will_retry`` says another attempt follows (at ``retry_at``,
        of ``max_attempts`` in all, if the caller says)."""
        with self._lock:
            self._ensure_fresh()
            attempt, duration = self._attempt_of(seq, duration)
            self._record(
                StepFailed, seq=seq, attempt=attempt, error=_error(error),
                will_retry=will_retry, costs=_costs(costs), duration=duration,
                retry_at=_utc(retry_at, "retry time"), max_attempts=max_attempts,
            )

    def log(
        self, message: str, *, level: str = "info", seq: int | None = None, **fields: Any
    ) -> None:
        """Buffer a log line; durable with the next lifecycle event or within one second."""
        with self._lock:
            self._check_open()
            self._ensure_fresh()
            captured = self.journal.capture.captured(fields, "log fields") if fields else {}
            if not isinstance(captured, dict):
                captured = {"truncated": captured}
            event = LogRecorded(
                execution_id=self.id, position=self._state.position + 1, timestamp=_now(),
                level=level, message=str(message), seq=seq, fields=captured,
            )
            self._buffer(event)

    def claimed(
        self,
        *,
        host: str,
        pid: int,
        runner: str,
        reason: str = "start",
        process_started: datetime | None = None,
        quiet_for: float | None = None,
    ) -> None:
        """Record who drives the execution from here (``ExecutionClaimed``).

        Buffered like a log line: it rides with the next commit (the step start before any
        step code runs, or the pause), so a claim costs no commit of its own. Call it while
        holding the execution's lease.
        """
        with self._lock:
            self._check_open()
            self._ensure_fresh()
            self._buffer(ExecutionClaimed(  # the batch's time: not after what follows it
                execution_id=self.id, position=self._state.position + 1,
                timestamp=self._batch_now or _now(),
                host=host, pid=pid, runner=runner, reason=reason,
                process_started=process_started, quiet_for=quiet_for,
            ))

    def _buffer(self, event: LogRecorded | ExecutionClaimed | ExecutionStarted) -> None:
        """Hold an event for the next commit (or the flusher, within a second); under
        ``_lock``. Log lines are also kept as events: a lost race re-appends them."""
        stored = encode_event(event)
        apply(self._state, event)
        if self._batch is not None:
            self._batch.append(stored)
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(stored)
        if type(event) is LogRecorded:
            self._pending_logs.append(event)
        self.journal._track(self)

    def paused(
        self, reason: str, payload: Any = None, *, until: datetime | None = None
    ) -> None:
        """Record ExecutionPaused (e.g. ``human_review``) with what the reviewer needs, and
        the deadline after which it resumes by itself (timed out), if any."""
        self._record(
            ExecutionPaused, reason=reason,
            payload=self.journal.capture.captured(payload, "pause payload"),
            until=_utc(until, "pause deadline"),
        )

    def resumed(
        self, value: Any = None, *, timed_out: bool = False, copied: bool = False
    ) -> None:
        """Record ExecutionResumed with the answer to the pause (kept whole), or that its
        deadline passed. ``copied``: as for :meth:`step_completed`."""
        with self._lock:
            self._ensure_fresh()
            self._record(ExecutionResumed, copied,
                         value=self._resumable(value, "resume value"), timed_out=timed_out)

    def wait_started(
        self, seq: int, kind: str, name: str = "", *, until: datetime | None = None
    ) -> None:
        """Record WaitStarted: call ``seq`` waits for time or a signal (until ``until``)."""
        if kind not in (WAIT_TIMER, WAIT_SIGNAL, WAIT_CHILD):
            raise ValueError(f"a wait is for a {WAIT_TIMER}, a {WAIT_SIGNAL} or a "
                             f"{WAIT_CHILD}, not {kind!r}")
        self._record(WaitStarted, seq=seq, kind=kind, name=name,
                     until=_utc(until, "wait deadline"))

    def wait_ended(self, seq: int, *, signal: int = 0, timed_out: bool = False) -> None:
        """Record WaitEnded: the wait at ``seq`` consumed the signal at position ``signal``,
        timed out, or (neither) its timer fired."""
        self._record(WaitEnded, seq=seq, signal=signal, timed_out=timed_out)

    def signal_received(self, name: str, value: Any = None) -> None:
        """Record SignalReceived (kept whole: the workflow that waits for it gets it)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a signal needs a name (a non-empty string), not {name!r}")
        with self._lock:
            self._ensure_fresh()
            self._record(SignalReceived, name=name,
                         value=self._resumable(value, f"value of signal {name!r}"))

    def value_recorded(self, seq: int, kind: str, value: Any) -> None:
        """Record ValueRecorded: what ``now()``, ``random()`` or ``uuid4()`` gave at ``seq``."""
        self._record(ValueRecorded, seq=seq, kind=kind, value=value)

    def completed(self, output: Any = None) -> None:
        """Record ExecutionCompleted. Terminal."""
        with self._lock:
            self._ensure_fresh()
            self._record(ExecutionCompleted, output=self._resumable(output, "output"))

    def failed(self, error: BaseException | ErrorInfo) -> None:
        """Record ExecutionFailed. Terminal."""
        self._record(ExecutionFailed, error=_error(error))

    def cancelled(self, reason: str = "", *, holder: str = "") -> None:
        """Record ExecutionCancelled (``holder``: who drives it now, if anyone). Terminal."""
        self._record(ExecutionCancelled, reason=reason, holder=holder)

    def diverged(
        self, *, seq: int, version: str = "", recorded: str = "", called: str = "",
        message: str = "", host: str = "", pid: int = 0,
    ) -> None:
        """Record ReplayDiverged: code (``version``) could not replay the execution at
        call ``seq``. Its status does not change. Call it while holding the lease."""
        self._record(ReplayDiverged, seq=seq, version=version, recorded=recorded,
                     called=called, message=message, host=host, pid=pid)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[ExecutionHandle]:
        """Group the calls made inside the block into one transaction: all or none.

        ``with run.atomic(): run.step_completed(1, x); run.step_started("next")`` costs one
        commit. If the block raises, or the commit fails, nothing of it is written.
        """
        with self._lock:
            self._ensure_fresh()
            if self._batch is not None:
                yield self
                return
            self._batch = []
            self._batch_now = _now()
            try:
                yield self
            except BaseException:
                self._batch = None
                self._batch_now = None
                self._pending_blobs = []
                self._stale = True
                # Log lines buffered before the block are not part of it: keep them.
                try:
                    self._commit([])
                except JournalError as e:
                    self._flush_error = e
                raise
            batch, self._batch = self._batch, None
            self._batch_now = None
            self._commit(batch)

    def flush(self) -> None:
        """Commit buffered log lines now (also those a failed commit left behind)."""
        with self._lock:
            self._raise_flush_error()
            if self._orphan_logs and self._batch is None:
                self._ensure_fresh()
            if self._pending and self._batch is None:
                self._commit([])

    # -- internals ---------------------------------------------------------------------------

    def _record(self, cls: type[Event], copied: bool = False, **fields: Any) -> None:
        """Check, encode and record (or batch) one event. ``copied``: its values are copies
        only this handle holds, so the state takes them as they are."""
        with self._lock:
            if self.journal._closed.is_set():
                self._check_open()
            if self._stale or self._flush_error is not None:
                self._ensure_fresh()
            state = self._state
            event = cls(
                execution_id=state.execution_id, position=state.position + 1,
                timestamp=self._batch_now or _now(), **fields,
            )
            blobs: list[Blob] = []
            if cls in _RESUMABLE and _OutOfLineValue in map(type, fields.values()):
                # The stored event holds out-of-line references; the state holds the values.
                # The blobs are committed in the event's own transaction.
                stored = encode_event(_unwrap(event, lambda w: w.ref))
                event = _unwrap(event, lambda w: decode_value(w.data))
                blobs = [(w.ref.sha256, w.data) for w in fields.values()
                         if type(w) is _OutOfLineValue]
            else:
                stored = encode_event(event)  # refuses unsupported values before any change
                if not copied:
                    event = _owned(event)
            apply(state, event)
            if self._batch is not None:
                self._batch.append(stored)
                if blobs:
                    self._pending_blobs += blobs
            else:
                self._commit([stored], blobs)

    def _commit(
        self, stored: list[StoredEvent], blobs: list[Blob] | None = None, *, tries: int = 3
    ) -> None:
        if self.writable is not None and not self.writable():
            logger.error("journal: execution %s: %d event(s) not written: this process no "
                         "longer holds the execution's lease", self.id,
                         len(self._pending) + len(stored))
            raise JournalError(
                f"execution {self.id}: this process no longer holds the execution's lease "
                "(another process may drive it now); nothing was written"
            )
        events, self._pending = [*self._pending, *stored], []
        logs, self._pending_logs = self._pending_logs, []
        if blobs:
            self._pending_blobs += blobs
        blobs, self._pending_blobs = self._pending_blobs, []
        if not events:
            return
        try:
            try:
                self.journal.storage.append(events, blobs, self._wakes(events))
            except ConcurrencyConflict:
                if not self._after_signals(events, blobs, tries):
                    raise
        except BaseException as e:
            self._stale = True
            self._orphan_logs = logs + self._orphan_logs
            # The lifecycle events lost the race (the caller is told); the accepted log lines
            # are not the loser's to drop: they go at the new head of the stream.
            relogged = isinstance(e, ConcurrencyConflict) and logs and self._relog_now(e, tries)
            if relogged and not stored:
                return  # only log lines, and they are in: nothing was lost
            raise

    def _wakes(self, events: list[StoredEvent]) -> list[Wake]:
        """The execution's wake-up as of ``events`` (already in the state), when they may
        change it; else none (a step's commit writes nothing more)."""
        for s in events:
            # An execution's first claim takes it off the queue, if it was queued (a run's
            # start is claimed with its ExecutionStarted); later claims change no wake-up.
            if s.topic in _WAKE_TOPICS or (s.topic == _CLAIM_TOPIC and self._state.claims == 1):
                state = self._state
                due = state.wakes_at
                if due is None and not state.may_have_woken:
                    return []  # nothing ever made it due: no row to forget (one statement)
                return [(state.execution_id, None if due is None else due.timestamp(),
                         events[-1].originator_version)]
        return []

    def _after_signals(
        self, events: list[StoredEvent], blobs: list[Blob], tries: int
    ) -> bool:
        """Lost a race to signals only (``runner.signal`` appends at the head whatever the
        run does): append ``events`` after them, as their driver would have. False, changing
        nothing, if anything else came in between (a cancellation, another driver)."""
        for _ in range(tries):
            first = events[0].originator_version
            try:
                newer = self.journal.events(self.id, after=first - 1)
            except JournalError:
                return False
            if not newer or any(type(e) is not SignalReceived for e in newer):
                return False
            state, _ = self.journal.load_state(self.id)
            events = [s._replace(originator_version=s.originator_version + len(newer))
                      for s in events]
            pending = dict(blobs)  # not stored: the lost transaction stored none of them
            for s in events:
                event = decode_event(s.topic, s.state, execution_id=self.id,
                                     position=s.originator_version)
                apply(state, self.journal._resolve(event, pending))
            previous, self._state = self._state, state
            try:
                self.journal.storage.append(events, blobs, self._wakes(events))
            except ConcurrencyConflict:
                self._state = previous
                continue
            return True
        return False

    def _relog_now(self, lost: ConcurrencyConflict, tries: int) -> bool:
        n = len(self._orphan_logs)
        try:
            self._ensure_fresh()
            if self._pending and tries > 1:
                self._commit([], tries=tries - 1)
            return not self._pending and not self._orphan_logs
        except JournalError as e:
            logger.error("journal: %d log line(s) of %s not written after a lost race: %s",
                         n, self.id, e)
            lost.add_note(f"journal: {n} buffered log line(s) of execution {self.id} could "
                          f"not be re-appended after this conflict: {e}")
            return False

    def _flush_if_older_than(self, seconds: float) -> None:
        orphans = bool(self._orphan_logs)
        if not orphans and (
            not self._pending or time.monotonic() - self._pending_since < seconds
        ):
            return
        if not self._lock.acquire(timeout=LOG_FLUSH_SECONDS / 4):
            return
        try:
            if orphans and self._flush_error is None and self._batch is None:
                self._ensure_fresh()  # lines a failed commit left: at the head, again
            if self._pending and self._batch is None:
                self._commit([])
        except BaseException as e:  # raised again at this handle's next call
            logger.error("journal: buffered log lines of %s not written: %s", self.id, e)
            self._flush_error = e
        finally:
            self._lock.release()

    def _raise_flush_error(self) -> None:
        if self._flush_error is not None:
            e, self._flush_error = self._flush_error, None
            raise e

    def _check_open(self) -> None:
        if self.journal._closed.is_set():
            raise JournalError(
                f"journal {mask_url(self.journal.url)} is closed; execution {self.id} can "
                "record nothing more through it (open the journal again)"
            )

    def _ensure_fresh(self) -> None:
        self._raise_flush_error()
        if self._stale:
            # After a failed or abandoned write, believe the log, not this handle's memory;
            # log lines that were accepted but not written go again at the new head.
            self._pending = []
            self._pending_logs = []
            self._pending_blobs = []
            logs, self._orphan_logs = self._orphan_logs, []
            try:
                events = self.journal.events(self.id)
                self._state = fold(self.id, events)
            except ExecutionNotFound:
                self._state = ExecutionState(execution_id=self.id)
                events = []
            except BaseException:
                self._orphan_logs = logs
                raise
            self._stale = False
            if logs:
                # A commit whose outcome was unknown may have landed after all: lines the
                # log already holds are not written twice.
                there = {(e.timestamp, e.message, e.seq) for e in events
                         if type(e) is LogRecorded}
                logs = [line for line in logs if (line.timestamp, line.message, line.seq)
                        not in there]
            if logs:
                self._rebuffer(logs)

    def _rebuffer(self, logs: list[LogRecorded]) -> None:
        state = self._state
        if state.is_terminal or state.status == "new":
            logger.error("journal: %d log line(s) of %s cannot be recorded: it is %s",
                         len(logs), self.id, state.status)
            raise InvalidTransition(
                self.id, state.status, "LogRecorded",
                f"{len(logs)} accepted log line(s) could not be written before a commit "
                "failed, and nothing can be appended now",
            )
        for line in logs:
            event = _replace(line, position=state.position + 1)
            stored = encode_event(event)
            apply(state, event)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(stored)
            self._pending_logs.append(event)
        self.journal._track(self)

    def _resumable(self, value: Any, path: str) -> Any:
        """Keep ``value`` inline when small, else store it whole out of line."""
        if type(value) in _SMALL or (type(value) is str and len(value) < 4096):
            return value
        data = encode_value(value, path)
        if len(data) <= self.journal.capture.max_inline_bytes:
            return value
        digest = hashlib.sha256(data).hexdigest()
        return _OutOfLineValue(OutOfLine(size=len(data), sha256=digest), value, data)

    def _latest_seq(self, name: str) -> int:
        seqs = [s.seq for s in self._state.steps.values() if s.name == name]
        if not seqs:
            raise InvalidTransition(
                self.id, self._state.status, "StepStarted",
                f"no earlier attempt of step {name!r} to retry",
            )
        return max(seqs)

    def _attempt_of(self, seq: int, duration: float | None) -> tuple[int, float]:
        """The attempt a step's outcome answers, and its duration (measured if not given)."""
        step = self._state.steps.get(seq)
        if step is None or step.attempt_started_at is None:
            return 1, 0.0 if duration is None else duration
        if duration is None:
            now = self._batch_now or _now()
            duration = (now - step.attempt_started_at).total_seconds()
        return step.attempts, duration


class _OutOfLineValue:
    """An out-of-line reference that still carries the value, for the writer's own state."""

    __slots__ = ("data", "ref", "value")

    def __init__(self, ref: OutOfLine, value: Any, data: bytes) -> None:
        self.ref = ref
        self.value = value
        self.data = data


def _costs(costs: Iterable[Cost]) -> tuple[Cost, ...]:
    out = tuple(costs)
    for c in out:
        if not isinstance(c, Cost):
            raise TypeError(f"costs must be journal.Cost values, not {type(c).__name__}")
    return out


def _error(error: BaseException | ErrorInfo) -> ErrorInfo:
    if isinstance(error, ErrorInfo):
        return error
    if isinstance(error, BaseException):
        import traceback

        tb = "".join(traceback.format_exception(error)) if error.__traceback__ else ""
        return ErrorInfo.from_exception(error, traceback=tb)
    raise TypeError(f"error must be an exception or journal.ErrorInfo, not {type(error).__name__}")


def _utc(at: datetime | None, what: str) -> datetime | None:
    return None if at is None else aware_utc(at, what)


def _owned(event: Event) -> Event:
    """The event as the log will read it back, for the writer's own state: its values are
    copies, so the state stays the log's whatever the caller does to the objects it passed
    (a snapshot or a kept state is taken from it). Log lines are not kept in the state."""
    cls = type(event)
    if cls is LogRecorded:
        return event
    changes = {
        name: own_copy(value)
        for name in cls.payload_fields
        if not is_immutable(value := getattr(event, name))
    }
    return _replace(event, **changes) if changes else event


def _unwrap(event: Event, pick: Any) -> Event:
    changes = {
        name: pick(getattr(event, name))
        for name in type(event).payload_fields
        if isinstance(getattr(event, name), _OutOfLineValue)
    }
    return _replace(event, **changes) if changes else event
