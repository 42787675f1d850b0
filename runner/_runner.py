"""The Runner: registers workflows by name, runs them, resumes them by replay, recovers them.

``run()``/``resume()`` return at completion, pause, failure or cancellation with everything
that happened committed. They raise only when the run could not go on and the journal says
so: ``JournalUnavailable`` (database down: the execution stays ``running``, ``recover()``
finishes it later; any other error a commit raises stops the run the same way),
``ConcurrencyConflict`` (another runner owns it) and ``NonDeterministicWorkflow`` (the code
no longer matches the record; nothing written). ``run()`` also refuses, with ``SecretInput``
and before writing anything, an input the journal would record redacted: resume could not
call the workflow with it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec

from journal import (
    ConcurrencyConflict,
    DecodingError,
    ErrorInfo,
    ExecutionHandle,
    ExecutionNotFound,
    ExecutionState,
    InvalidTransition,
    Journal,
    JournalError,
    JournalUnavailable,
    apply,
)
from journal.encoding import as_uuid
from journal.events import WAIT_CHILD, child_signal
from journal.journal import LOG_FLUSH_SECONDS
from journal.state import (
    CALL_DONE,
    CANCELLED,
    CHILD_RECHECK,
    FAILED,
    PAUSED,
    QUEUED,
    RUNNING,
    TERMINAL_STATUSES,
    WAITING,
    PauseState,
    WaitState,
)
from journal.storage.leases import process_started
from journal.values import find_unresolved, is_immutable, own_copy
from runner._engine import (
    HOLD_SECONDS,
    SNAPSHOT_EVENTS,
    UNSET,
    Cancelled,
    Engine,
    Released,
    Suspended,
    _signature,
    child_id,
)
from runner.context import AsyncContext, Context
from runner.errors import (
    AlreadyResumed,
    ExecutionBusy,
    NonDeterministicWorkflow,
    RunnerError,
    SecretInput,
    ValueClassMissing,
    WorkflowNotFound,
)
from runner.fork import UNCHANGED, forked_history, retry_seq
from runner.versions import fingerprint

if TYPE_CHECKING:
    from runner.check import CheckResult

__all__ = ["OnRecoveryError", "Run", "Runner"]

_HOST = socket.gethostname()
#: How long resume() waits, by default, for a lease held elsewhere before ExecutionBusy.
CLAIM_TIMEOUT_SECONDS = 5.0

logger = logging.getLogger("runner")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: ``recover(on_error=...)``: called with each execution skipped because it cannot be replayed.
OnRecoveryError = Callable[[UUID, RunnerError], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Run:
    """Where an execution stands when ``run()``/``resume()``/``cancel()`` returns."""

    id: UUID
    workflow: str
    status: str
    output: Any = None
    error: ErrorInfo | None = None
    pause: PauseState | None = None
    #: True when the execution is running and a live process other than this call drives
    #: it (``run()`` with an idempotency key already in use): nothing ran here.
    held_elsewhere: bool = False
    #: What a ``waiting`` execution waits for (a timer, a signal), since and until when.
    wait: WaitState | None = None

    @classmethod
    def of(cls, state: ExecutionState, *, held_elsewhere: bool = False) -> Run:
        """The run as an execution state describes it."""
        pause = state.pause
        if pause is not None and not is_immutable(pause.payload):  # the caller's own copy
            pause = msgspec.structs.replace(pause, payload=own_copy(pause.payload))
        return cls(
            id=state.execution_id, workflow=state.workflow, status=state.status,
            output=state.output, error=state.error, pause=pause,
            held_elsewhere=held_elsewhere, wait=state.wait,
        )


@dataclasses.dataclass(frozen=True)
class _Workflow:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    #: The version given at registration; else the code's fingerprint (worked out once).
    explicit_version: str | None = None

    @functools.cached_property
    def version(self) -> str:
        return self.explicit_version or fingerprint(self.fn)


class Runner:
    """Runs registered workflows on a journal; stateless between calls, safe to run many of.

    ``Runner(journal)`` does not own the journal: close the journal yourself. ``close()``
    (or ``with Runner(...)``) stops the runner's background flusher.
    """

    def __init__(self, journal: Journal, *, claim_timeout: float = CLAIM_TIMEOUT_SECONDS) -> None:
        self.journal = journal
        #: This runner, as the ExecutionClaimed events of the runs it drives name it.
        self.id = uuid.uuid4().hex
        #: How long resume() waits for a lease another process holds for a moment (as
        #: recover() does while it looks at a candidate) before ExecutionBusy.
        self.claim_timeout = claim_timeout
        self._workflows: dict[str, _Workflow] = {}
        self._names: dict[Callable[..., Any], str] = {}
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._engines_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- registry ------------------------------------------------------------------------------

    def workflow(
        self, name: str | None = None, *, version: str | None = None
    ) -> Callable[[F], F]:
        """Register a workflow under ``name`` (default: the function's name).

        Resume and recovery find workflows by the name recorded in ExecutionStarted, so
        every process that may resume an execution must register the same name. Each
        execution records the ``version`` of the code it started with: by default a
        fingerprint of the workflow function and the application functions it names
        (changed by any edit of them; see ``runner.versions``).
        """

        def register(fn: F) -> F:
            self.register(fn, name=name, version=version)
            return fn

        return register

    def register(
        self, fn: Callable[..., Any], *, name: str | None = None, version: str | None = None
    ) -> None:
        """Register ``fn`` (the non-decorator form of :meth:`workflow`)."""
        key = name or fn.__name__
        known = self._workflows.get(key)
        if known is not None and known.fn is not fn and (
            known.fn.__module__, known.fn.__qualname__
        ) != (fn.__module__, fn.__qualname__):
            raise ValueError(
                f"workflow name {key!r} is already registered for "
                f"{known.fn.__module__}.{known.fn.__qualname__}: pass another name="
            )
        if version is not None and (not isinstance(version, str) or not version):
            raise ValueError(f"workflow {key!r}: a version must be a non-empty str, not "
                             f"{version!r}")
        self._workflows[key] = _Workflow(key, fn, inspect.iscoroutinefunction(fn), version)
        self._names[fn] = key

    def _lookup(self, workflow: Callable[..., Any] | str, eid: UUID | None = None) -> _Workflow:
        name = workflow if isinstance(workflow, str) else self._names.get(workflow)
        if name is None:
            name = getattr(workflow, "__name__", repr(workflow))
            raise WorkflowNotFound(name, execution_id=eid)
        found = self._workflows.get(name)
        if found is None:
            raise WorkflowNotFound(name, execution_id=eid)
        return found

    @property
    def workflows(self) -> list[str]:
        """Names of the registered workflows."""
        return sorted(self._workflows)

    # -- starting ------------------------------------------------------------------------------

    def run(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        idempotency_key: str | None = None,
        execution_id: UUID | str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start a new execution and drive it until it completes, pauses, fails or is cancelled.

        The execution's lease is taken before its ExecutionStarted is written, and held
        while it is driven. With an ``idempotency_key`` already used (a redelivered task):
        an ended or paused execution is returned as it is; a running one whose driver died
        (its lease is free) is continued by replay, as ``recover()`` would; one a live
        process drives is returned with ``held_elsewhere=True`` and nothing runs.
        """
        return self._run_workflow(self._lookup(workflow), args, kwargs, idempotency_key,
                                  execution_id)

    def _run_workflow(
        self,
        wf: _Workflow,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        execution_id: UUID | str | None,
        parent: tuple[UUID, int] | None = None,
    ) -> Run:
        if wf.is_async:
            return _run_coroutine(
                self._astart(wf, args, kwargs, idempotency_key, execution_id, parent))
        engine, found = self._start(wf, args, kwargs, idempotency_key, execution_id, parent)
        if engine is None:
            assert found is not None
            return found
        if found is not None:  # an orphan of the same key: continue it by replay
            return self._drive_claimed(engine, self._lookup(engine.state.workflow, engine.id))
        return self._drive(engine, wf, args, kwargs)

    async def arun(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        idempotency_key: str | None = None,
        execution_id: UUID | str | None = None,
        **kwargs: Any,
    ) -> Run:
        """``run()`` for ``async def`` workflows (a synchronous one runs in a worker thread)."""
        wf = self._lookup(workflow)
        if not wf.is_async:
            return await asyncio.to_thread(
                self.run, wf.name, *args, idempotency_key=idempotency_key,
                execution_id=execution_id, **kwargs,
            )
        return await self._astart(wf, args, kwargs, idempotency_key, execution_id)

    async def _astart(
        self,
        wf: _Workflow,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        execution_id: UUID | str | None,
        parent: tuple[UUID, int] | None = None,
    ) -> Run:
        engine, found = await asyncio.to_thread(
            self._start, wf, args, kwargs, idempotency_key, execution_id, parent
        )
        if engine is None:
            assert found is not None
            return found
        if found is not None:
            loaded = self._lookup(engine.state.workflow, engine.id)
            if not loaded.is_async:
                return await asyncio.to_thread(self._drive_loaded, engine, loaded)
            return await self._adrive_loaded(engine, loaded)
        return await self._adrive(engine, wf, args, kwargs)

    def _start(
        self,
        wf: _Workflow,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        execution_id: UUID | str | None,
        parent: tuple[UUID, int] | None = None,
    ) -> tuple[Engine | None, Run | None]:
        """Claim and start: (engine to drive, None) for a new execution; (engine, the run
        found) for an orphan to continue by replay; (None, the run) when nothing runs."""
        recorded = self._checked_input(wf, args, kwargs)
        eid = self.journal.new_execution_id(
            execution_id=execution_id, idempotency_key=idempotency_key
        )
        # Before ExecutionStarted: no recover() slips in between.
        lease = self.journal.lease(eid, wait=self._grace() if idempotency_key else 0.0)
        if lease is None:
            return None, self._held_run(eid)
        try:
            # Under the lease, a stream known to be new gets its ExecutionStarted with the
            # first commit (the first step's start): a run costs no commit for its start.
            new = (execution_id is None and idempotency_key is None) or not (
                self.journal.storage.read_stream(eid))
            handle = self.journal.start(
                wf.name, recorded, idempotency_key=idempotency_key, execution_id=eid,
                deferred=new, parent=None if parent is None else parent[0],
                parent_seq=0 if parent is None else parent[1], version=wf.version,
            )
            if handle.created:
                engine = Engine(self.journal, handle, workflow=wf.name, is_async=wf.is_async)
                engine.lease = lease
                return engine, None
            state = handle.state
            if state.status not in (RUNNING, QUEUED):  # ended, or paused: returned as it is
                lease.release()
                return None, Run.of(state)
            # Running with its lease free: its driver died. Continue where it stopped. (Or
            # enqueued and not taken yet: run it here.)
            engine, _ = self._load(eid, UNSET, for_resume=False)
        except BaseException:
            lease.release()
            raise
        engine.lease = lease
        engine.claim_reason = "dequeue" if state.status == QUEUED else "continue"
        return engine, Run.of(state)

    def _held_run(self, eid: UUID) -> Run:
        """The run another process holds the lease of, as soon as its start is in the log
        (a driver commits a deferred ExecutionStarted within LOG_FLUSH_SECONDS)."""
        deadline = time.monotonic() + LOG_FLUSH_SECONDS
        while True:
            try:
                state = self.journal.state(eid)
                break
            except ExecutionNotFound:  # another process is starting it this very moment
                if time.monotonic() >= deadline:
                    raise ExecutionBusy(eid, holder=self.journal.lease_holder(eid),
                                        waited=0.0) from None
                time.sleep(0.05)
        return Run.of(state, held_elsewhere=state.status in (RUNNING, QUEUED))

    def _checked_input(
        self, wf: _Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The workflow's arguments as recorded; a secret among them is refused before
        anything is written (resume would replay "[REDACTED]")."""
        recorded = _bind_input(wf, args, kwargs)
        secret = _redacted_at(recorded, self.journal.capture.redact(recorded), "")
        if secret is not None:
            raise SecretInput(workflow=wf.name, parameter=secret)
        return recorded

    # -- the queue -----------------------------------------------------------------------------

    def enqueue(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        idempotency_key: str | None = None,
        execution_id: UUID | str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Record a new execution and return at once, status ``queued``: the first
        ``serve()`` process (of any service with the workflow registered) to look runs it,
        as ``run()`` would. One commit, made under the execution's lease (let go at once),
        and nothing runs here: for a request handler that must answer before the work is
        done.

        With an ``idempotency_key`` already used, the execution it named is returned as it
        is (queued, running, ended...). ``run()`` with the key of a queued execution runs
        it at once, in the calling process.
        """
        wf = self._lookup(workflow)
        recorded = self._checked_input(wf, args, kwargs)
        if not self.journal.storage.keeps_wakeups():
            raise JournalError(
                f"cannot enqueue {wf.name!r} in {self.journal.storage.where}: it has no "
                "journal_wakeups table (an older journal opened without create), so no "
                "serve() would find the run; open it once with Journal.open(url) (create)")
        eid = self.journal.new_execution_id(
            execution_id=execution_id, idempotency_key=idempotency_key)
        # Under the lease, as run() starts one: a run() of the same key that is starting it
        # this very moment (its ExecutionStarted deferred) is not raced.
        lease = self.journal.lease(eid, wait=self._grace() if idempotency_key else 0.0)
        if lease is None:
            return self._held_run(eid)
        try:
            handle = self.journal.start(
                wf.name, recorded, idempotency_key=idempotency_key, execution_id=eid,
                version=wf.version, queued=True,
            )
            return Run.of(handle.state)
        finally:
            lease.release()

    def versions(self) -> dict[str, str]:
        """The registered workflows, by name, with the version of each one's code (what a
        ``serve()`` process says it runs, for ``journal stuck``)."""
        return {name: wf.version for name, wf in self._workflows.items()}

    # -- resuming ------------------------------------------------------------------------------

    def resume(self, execution_id: UUID | str, value: Any = None) -> Run:
        """Answer the open pause with ``value`` and continue the execution by replay.

        Raises ``InvalidTransition`` for an execution that has ended or never paused, and
        :class:`AlreadyResumed` (a ``ConcurrencyConflict``) when the pause was answered
        already, by another runner say; nothing is written in either case.
        """
        engine, wf = self._claim_for_resume(execution_id, value)
        return self._drive_claimed(engine, wf)

    def _drive_claimed(self, engine: Engine, wf: _Workflow) -> Run:
        """Drive a loaded execution whose lease this call holds, sync or async; if the drive
        never got going (an async workflow called from inside an event loop, say), the
        lease is let go."""
        if not wf.is_async:
            return self._drive_loaded(engine, wf)
        try:
            return _run_coroutine(self._adrive_loaded(engine, wf))
        except BaseException:
            _release(engine)
            raise

    async def aresume(self, execution_id: UUID | str, value: Any = None) -> Run:
        """``resume()`` for ``async def`` workflows."""
        engine, wf = await asyncio.to_thread(self._claim_for_resume, execution_id, value)
        if not wf.is_async:
            return await asyncio.to_thread(self._drive_loaded, engine, wf)
        return await self._adrive_loaded(engine, wf)

    def _claim_for_resume(self, execution_id: UUID | str, value: Any) -> tuple[Engine, _Workflow]:
        """Take the lease (waiting up to ``claim_timeout`` for a holder that only looks, as
        recover() does), then load. A pause answered meanwhile is AlreadyResumed; a lease
        that stays held is ExecutionBusy: no resume ever proceeds without the lease."""
        eid = as_uuid(execution_id)
        deadline = time.monotonic() + self.claim_timeout
        start = time.monotonic()
        seen: int | None = None  # the pause this call set out to answer
        while True:
            lease = self.journal.lease(eid)
            if lease is not None:
                break
            state = self._check_resumable(self.journal.state(eid))
            if seen is None and state.pause is not None:
                seen = state.pause.position
            if time.monotonic() >= deadline:
                raise ExecutionBusy(eid, holder=self.journal.lease_holder(eid),
                                    waited=time.monotonic() - start)
            time.sleep(0.02)
        try:
            engine, wf = self._load(eid, value, for_resume=True)
            pause = engine.state.pause
            if seen is not None and (pause is None or pause.position != seen):
                # Answered while we waited, and paused again since: not ours to answer.
                answered = next((p.answered_at for p in engine.state.pauses
                                 if p.position == seen and p.answered_at), seen + 1)
                raise AlreadyResumed(eid, answered, status=engine.state.status)
        except BaseException:
            lease.release()
            raise
        engine.lease = lease
        engine.claim_reason = "resume"
        return engine, wf

    @staticmethod
    def _check_resumable(state: ExecutionState) -> ExecutionState:
        eid = state.execution_id
        if state.status == PAUSED:
            return state
        if state.status == WAITING and state.wait is not None:
            wait = state.wait
            what = (f"a signal {wait.name!r}: send it with runner.signal()"
                    if wait.kind == "signal" else f"its timer (until {wait.until})")
            raise InvalidTransition(
                eid, state.status, "ExecutionResumed",
                f"the execution is waiting for {what}; serve() resumes it then",
            )
        answered = [p.answered_at for p in state.pauses if p.answered_at]
        if answered:  # every loser of a resume race hears the same: answered, and where
            raise AlreadyResumed(eid, answered[-1], status=state.status)
        if state.status in TERMINAL_STATUSES:
            raise InvalidTransition(
                eid, state.status, "ExecutionResumed",
                f"the execution already {state.status}; nothing can follow",
            )
        if state.status != PAUSED:
            raise InvalidTransition(
                eid, state.status, "ExecutionResumed",
                "the execution is not paused; use recover() to continue an execution whose "
                "runner died",
            )
        return state

    def _load(
        self, execution_id: UUID | str, value: Any, *, for_resume: bool
    ) -> tuple[Engine, _Workflow]:
        eid = as_uuid(execution_id)
        state, snapshot_at = self.journal.load_state(eid, kept=True)
        if not snapshot_at and state.position >= SNAPSHOT_EVENTS:
            # A long stream with no snapshot (written before snapshots, or imported): keep
            # one now, while the state is exactly the log's (before replay hands its values
            # to the workflow), so neither the next pause nor the next resume reads it all.
            try:
                if self.journal.snapshot(state):
                    snapshot_at = state.position
            except JournalError as e:
                logger.warning("runner: no snapshot of %s: %s", eid, e)
        if for_resume:
            state = self._check_resumable(state)
        else:
            if state.status in TERMINAL_STATUSES:
                raise InvalidTransition(
                    eid, state.status, "ExecutionResumed",
                    f"the execution already {state.status}; nothing can follow",
                )
        wf = self._lookup(state.workflow, eid)
        missing = find_unresolved(state.input)
        if missing is not None:
            raise ValueClassMissing(
                execution_id=eid, step="workflow input", seq=0, topic=missing.topic
            )
        handle = ExecutionHandle(self.journal, state)
        engine = Engine(
            self.journal, handle, workflow=wf.name,
            resume_value=value if for_resume else UNSET, is_async=wf.is_async,
            snapshot_at=snapshot_at,
        )
        return engine, wf

    def _drive_loaded(self, engine: Engine, wf: _Workflow) -> Run:
        args, kwargs = _unbind_input(wf, engine.state.input)
        return self._drive(engine, wf, args, kwargs)

    async def _adrive_loaded(self, engine: Engine, wf: _Workflow) -> Run:
        args, kwargs = _unbind_input(wf, engine.state.input)
        return await self._adrive(engine, wf, args, kwargs)

    # -- serving -------------------------------------------------------------------------------

    def serve(
        self,
        *,
        workers: int = 4,
        poll_interval: float = 0.5,
        recover_after: timedelta = timedelta(minutes=1),
        grace: float = 30.0,
        stop: threading.Event | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Run until stopped: wake due timers, timeouts and pause deadlines, resume
        executions whose awaited signal came, and recover executions whose driver died
        (running, lease free, quiet for ``recover_after``); up to ``workers`` at once.

        Many processes may serve one database: each due execution is driven by exactly one
        (its lease). Stops when ``stop`` is set or (called from the main thread, with
        ``handle_signals``) on SIGTERM/SIGINT, then drains: what it drives gets ``grace``
        seconds, then is let go at its next call (left running, for another to recover).
        Start it in a thread of a service, or ``journal serve --app module:runner``.
        """
        from runner.serve import Server

        Server(self, workers=workers, poll_interval=poll_interval, recover_after=recover_after,
               grace=grace, stop=stop).run(handle_signals=handle_signals)

    async def aserve(
        self,
        *,
        workers: int = 4,
        poll_interval: float = 0.5,
        recover_after: timedelta = timedelta(minutes=1),
        grace: float = 30.0,
    ) -> None:
        """:meth:`serve` from an event loop (e.g. a FastAPI lifespan task): runs until the
        task is cancelled, then drains within ``grace`` before the cancellation goes on.
        (The loop runs in a worker thread; async workflows it wakes run on their own loop
        there.)"""
        from runner.serve import Server

        server = Server(self, workers=workers, poll_interval=poll_interval,
                        recover_after=recover_after, grace=grace)
        task = asyncio.ensure_future(asyncio.to_thread(server.run, handle_signals=False))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            server.stop()
            await task
            raise

    def _wake(self, eid: UUID, position: int | None, *, stale_after: timedelta) -> Run | None:
        """Drive one execution ``serve()`` found due (at wake-up ``position``; None: found
        stale), if no live process holds it and it is due still; None if not driven."""
        lease = self.journal.lease(eid)
        if lease is None:
            return None
        drive = False
        try:
            try:
                engine, wf = self._load(eid, UNSET, for_resume=False)
            except InvalidTransition:  # ended: it wakes no more
                if position is not None:
                    self.journal.storage.settle_wake((eid, None, position))
                raise
            state = engine.state
            if state.status == QUEUED:  # enqueued: nobody drives it yet
                drive = True
                engine.claim_reason = "dequeue"
            elif state.status == RUNNING:
                cutoff = datetime.now(UTC) - stale_after
                # Running with its lease free: its driver died. Found by its wake-up (a
                # signal came), it is taken at once; found stale, only if still stale.
                drive = position is not None or (
                    state.updated_at is not None and state.updated_at <= cutoff)
                engine.claim_reason = "recover"
            else:
                due = state.wakes_at
                drive = due is not None and due.timestamp() <= time.time()
                if not drive and position is not None:
                    self.journal.storage.settle_wake(
                        (eid, None if due is None else due.timestamp(), position))
                engine.claim_reason = "wake"
        finally:
            if not drive:
                lease.release()
        engine.lease = lease
        run = self._drive_claimed(engine, wf)
        if position is not None and run.status in (WAITING, PAUSED):
            due = engine.state.wakes_at
            if due is not None and due.timestamp() <= time.time():
                # Driven and waiting on at the same wait (a child still running): look again
                # in a while, not at every round. (A new wait wrote its own wake-up.)
                self.journal.storage.settle_wake(
                    (eid, time.time() + CHILD_RECHECK.total_seconds(), position))
        return run

    def _release_all(self) -> int:
        """Let every execution this runner drives go at its next call (``serve()`` drain)."""
        with self._engines_lock:
            engines = list(self._engines)
        for engine in engines:
            if engine.halt is None:
                engine.halt = Released()
        return len(engines)

    # -- signals -------------------------------------------------------------------------------

    def signal(self, execution_id: UUID | str, name: str, value: Any = None) -> int:
        """Send signal ``name`` (with ``value``) to an execution: recorded in its stream at
        once, whatever it is doing; the first ``ctx.wait_for(name)`` not yet answered gets
        it (a waiting execution is resumed by ``serve()``). Returns its position.

        ``ExecutionNotFound`` for an unknown execution and ``InvalidTransition`` for one
        that has ended; nothing is written then.
        """
        return self.journal.signal(execution_id, name, value)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self, execution_id: UUID | str, *, reason: str = "") -> Run:
        """Record ExecutionCancelled. A runner driving it stops at its next transition
        (the event names it: who held the lease as it was cancelled).

        Raises ``InvalidTransition`` if the execution has already ended.
        """
        for _ in range(10):
            handle = self.journal.execution(execution_id)
            holder = ""
            if handle.state.status in (RUNNING, QUEUED):  # paused, waiting: nobody holds it
                holder = self.journal.lease_holder(handle.id) or ""
            try:
                handle.cancelled(reason, holder=holder)
            except ConcurrencyConflict:
                continue  # a runner appended meanwhile: cancel after what it wrote
            state = handle.state
            for call in state.calls.values():  # its open children go with it
                if call.kind == WAIT_CHILD and call.status != CALL_DONE:
                    with contextlib.suppress(InvalidTransition, ExecutionNotFound):
                        self.cancel(child_id(state.execution_id, call.seq),
                                    reason=f"parent {state.execution_id} cancelled")
            if state.parent is not None:
                self._notify_parent(state)
            return Run.of(state)
        raise ConcurrencyConflict(as_uuid(execution_id), self.journal.state(execution_id).position)

    # -- children ------------------------------------------------------------------------------

    def _run_child(
        self, workflow: Callable[..., Any] | str, args: tuple[Any, ...],
        kwargs: dict[str, Any], parent: UUID, seq: int,
    ) -> Run:
        """Start (once: the id comes from the parent and the call) and drive the child of
        call ``seq``; one that exists already is continued if its driver died, else left
        as it is. If it ended without telling its parent (killed in between), it does now."""
        wf = self._lookup(workflow)
        run = self._run_workflow(wf, args, kwargs, f"child {parent} {seq}",
                                 child_id(parent, seq), (parent, seq))
        if run.status in TERMINAL_STATUSES:
            self._notify_parent(self.journal.state(run.id), only_if_missing=True)
        return run

    async def _arun_child(
        self, workflow: Callable[..., Any] | str, args: tuple[Any, ...],
        kwargs: dict[str, Any], parent: UUID, seq: int,
    ) -> Run:
        wf = self._lookup(workflow)
        key, eid = f"child {parent} {seq}", child_id(parent, seq)
        if not wf.is_async:
            return await asyncio.to_thread(self._run_child, wf.name, args, kwargs, parent, seq)
        run = await self._astart(wf, args, kwargs, key, eid, (parent, seq))
        if run.status in TERMINAL_STATUSES:
            state = await asyncio.to_thread(self.journal.state, run.id)
            await asyncio.to_thread(self._notify_parent, state, only_if_missing=True)
        return run

    def workflow_name(self, workflow: Callable[..., Any] | str) -> str:
        """The registered name of ``workflow`` (a function or a name)."""
        return self._lookup(workflow).name

    def _notify_parent(self, child: ExecutionState, *, only_if_missing: bool = False) -> None:
        """Tell the parent its child ended: the signal its wait at the child's call consumes."""
        parent, seq = child.parent, child.parent_seq
        if parent is None:
            return
        name = child_signal(seq)
        try:
            if only_if_missing and any(
                    s.name == name for s in self.journal.state(parent).signals):
                return
            error = None if child.error is None else {
                "type": child.error.type, "message": child.error.message}
            self.journal.signal(parent, name, {
                "status": child.status, "execution_id": str(child.execution_id),
                "output": child.output if child.status == "completed" else None,
                "error": error,
            })
        except (InvalidTransition, ExecutionNotFound) as e:  # the parent has ended
            logger.info("runner: the end of child %s not sent to %s: %s",
                        child.execution_id, parent, e)

    # -- recovering ----------------------------------------------------------------------------

    def recover(
        self,
        *,
        stale_after: timedelta = timedelta(minutes=5),
        on_error: OnRecoveryError | None = None,
    ) -> list[Run]:
        """Continue every ``running`` execution whose last event is older than ``stale_after``.

        These are runs whose runner died (or lost its database). Each is replayed and its
        in-flight step re-run as a new attempt; completed steps do not run again. Returns
        the recovered runs.

        An execution that cannot be replayed here (its workflow is not registered, or its
        code no longer matches the record: a :class:`RunnerError`) stays running and is
        skipped: ``on_error(execution_id, error)`` is called for it, so a caller can report
        it. One another runner claims first (``ConcurrencyConflict``) is being recovered
        there, and is skipped with a log line only.
        """
        return [r for r in (self._recover_one(eid, stale_after, on_error) for eid in
                            self.stale_executions(stale_after)) if r is not None]

    async def arecover(
        self,
        *,
        stale_after: timedelta = timedelta(minutes=5),
        on_error: OnRecoveryError | None = None,
    ) -> list[Run]:
        """``recover()`` from inside an event loop."""
        runs = []
        for eid in await asyncio.to_thread(self.stale_executions, stale_after):
            loaded = await asyncio.to_thread(self._load_stale, eid, stale_after, on_error)
            if loaded is None:
                continue
            engine, wf = loaded
            try:
                run = await self._guard(
                    eid, self._adrive_loaded(engine, wf) if wf.is_async
                    else asyncio.to_thread(self._drive_loaded, engine, wf), on_error,
                )
            finally:
                _release(engine)
            if run is not None:
                runs.append(run)
        return runs

    def _recover_one(
        self, eid: UUID, stale_after: timedelta, on_error: OnRecoveryError | None
    ) -> Run | None:
        loaded = self._load_stale(eid, stale_after, on_error)
        if loaded is None:
            return None
        engine, wf = loaded
        try:
            if wf.is_async:
                return _run_coroutine(
                    self._guard(eid, self._adrive_loaded(engine, wf), on_error)
                )
            try:
                return self._drive_loaded(engine, wf)
            except (ConcurrencyConflict, RunnerError) as e:
                _skipped(eid, e, on_error)
                return None
        finally:
            _release(engine)  # a no-op after a drive; frees the lease if none started

    async def _guard(
        self, eid: UUID, coro: Awaitable[Run], on_error: OnRecoveryError | None
    ) -> Run | None:
        try:
            run = await coro
        except (ConcurrencyConflict, RunnerError) as e:
            _skipped(eid, e, on_error)
            return None
        return run

    def _load_stale(
        self, eid: UUID, stale_after: timedelta, on_error: OnRecoveryError | None
    ) -> tuple[Engine, _Workflow] | None:
        """Load an execution for recovery, if it is (still) running, stale and driven by no
        live process (its lease is free: a step may simply be taking long)."""
        try:
            # A holder that died just now is told from one whose session is only coming
            # back by waiting out the grace period (PostgreSQL; none on SQLite).
            lease = self.journal.lease(eid, wait=self._grace())
        except JournalError as e:
            _skipped(eid, e, on_error)  # cannot tell whether a live process drives it
            return None
        if lease is None:
            logger.info("runner: %s is driven by a live process; not recovered", eid)
            return None
        try:
            engine, wf = self._load(eid, UNSET, for_resume=False)
        except (WorkflowNotFound, ValueClassMissing, DecodingError) as e:
            lease.release()
            _skipped(eid, e, on_error)
            return None
        except InvalidTransition:
            lease.release()
            return None  # ended meanwhile
        except BaseException:
            lease.release()
            raise
        state = engine.state
        cutoff = datetime.now(UTC) - stale_after
        if state.status != RUNNING or (state.updated_at is not None and state.updated_at > cutoff):
            lease.release()
            return None
        engine.lease = lease  # released when the drive ends, or by the caller if it never starts
        engine.claim_reason = "recover"
        return engine, wf

    def stale_executions(self, older_than: timedelta) -> list[UUID]:
        """Ids of ``running`` executions whose last event is older than ``older_than``.

        Asked of the projections when the ``projections`` package is there (an indexed
        query); otherwise found by folding the journal's notification log.
        """
        try:
            from projections import Projections
        except ImportError:
            return self._scan_stale(older_than)
        try:
            with Projections(self.journal) as views:
                views.catch_up()
                return [s.execution_id for s in views.stuck(older_than=older_than)]
        except (ImportError, JournalUnavailable) as e:
            # The log is the truth and the views only a shortcut to it: fall back to the log
            # (which raises JournalUnavailable itself if the database is really down). Any
            # other error is a bug in the views, and is raised rather than papered over.
            logger.warning("runner: projections unusable (%s); scanning the journal", e)
            return self._scan_stale(older_than)

    def _scan_stale(self, older_than: timedelta) -> list[UUID]:
        cutoff = datetime.now(UTC) - older_than
        return [
            eid for eid, s in self._fold_log().items()
            if s.status == RUNNING and s.updated_at is not None and s.updated_at <= cutoff
        ]

    def _fold_log(self) -> dict[UUID, ExecutionState]:
        """Every execution's state, folded from the whole log in one pass (read only)."""
        states: dict[UUID, ExecutionState] = {}
        after = 0
        while True:
            page = self.journal.notifications(after=after, limit=5000)
            if not page:
                return states
            for nid, event in page:
                after = nid
                state = states.get(event.execution_id)
                if state is None:
                    state = states[event.execution_id] = ExecutionState(
                        execution_id=event.execution_id
                    )
                try:
                    apply(state, event)
                except JournalError:
                    continue

    # -- forks -----------------------------------------------------------------------------------

    def fork(self, execution_id: UUID | str, *, from_seq: int, input: Any = UNCHANGED) -> Run:
        """A new execution that starts with ``execution_id``'s recorded outcomes before
        ``from_seq`` (copied, not run again) and runs live from there with the code
        registered now (with ``input``: the workflow's arguments by name, as recorded,
        instead of the source's). It records ``forked_from`` (id, seq). Returns where it
        stands, as ``run()`` does; the source is left as it is."""
        source = self.journal.state(execution_id)
        wf = self._lookup(source.workflow, source.execution_id)
        if not isinstance(from_seq, int) or not 1 <= from_seq <= source.max_seq + 1:
            raise ValueError(
                f"execution {source.execution_id} has calls at seq 1..{source.max_seq}: a "
                f"fork starts at one of them or right after the last, not at {from_seq!r}")
        if input is not UNCHANGED:
            if not isinstance(input, dict):
                raise TypeError("fork(input=...) takes the workflow's arguments by name (a "
                                f"dict, as the journal records them), not {type(input).__name__}")
            try:  # arguments the workflow cannot take: refused now, nothing written
                (_signature(wf.fn) or inspect.signature(wf.fn)).bind(None, **input)
            except TypeError as e:
                raise TypeError(f"fork(input=...) of workflow {wf.name!r}: {e}") from None
            secret = _redacted_at(input, self.journal.capture.redact(input), "")
            if secret is not None:
                raise SecretInput(workflow=wf.name, parameter=secret)
        fork_id = uuid.uuid4()
        history = forked_history(self.journal.events(source.execution_id), fork_id, from_seq,
                                 input=input, version=wf.version)
        lease = self.journal.lease(fork_id)
        if lease is None:  # pragma: no cover - a fresh random id nobody else knows
            raise ExecutionBusy(fork_id, holder=self.journal.lease_holder(fork_id), waited=0.0)
        try:
            self.journal.restore(history)
            engine, loaded = self._load(fork_id, UNSET, for_resume=False)
        except BaseException:
            lease.release()
            raise
        engine.lease = lease
        engine.claim_reason = "fork"
        return self._drive_claimed(engine, loaded)

    def retry(self, execution_id: UUID | str) -> Run:
        """Fork a failed or cancelled execution from the step that failed (a cancelled one:
        from its first unfinished step), so it runs again from there with today's code."""
        state = self.journal.state(execution_id)
        if state.status not in (FAILED, CANCELLED):
            raise InvalidTransition(
                state.execution_id, state.status, "retry",
                f"only a failed or cancelled execution is retried (this one is "
                f"{state.status}); fork(id, from_seq=...) makes a copy of any execution")
        return self.fork(state.execution_id, from_seq=retry_seq(state))

    # -- deploy safety ---------------------------------------------------------------------------

    def check(
        self, *, status: str | Iterable[str] | None = None, workflow: str | None = None
    ) -> list[CheckResult]:
        """Replay every open execution (running, paused, waiting; or those of ``status``,
        of ``workflow``) against the code registered now, in memory: **nothing is written
        and no step code runs**, so it is safe against the production database before a
        deploy. Each result says: replays cleanly (``ok``), ``diverged`` at seq k (what was
        recorded, what the code calls now, a hint), ``undecodable``, or ``missing`` (its
        workflow is not registered here). ``journal check --app module:runner`` prints it.
        """
        from runner.check import OPEN_STATUSES, dry_replay

        wanted = (OPEN_STATUSES if status is None
                  else (status,) if isinstance(status, str) else tuple(status))
        return [dry_replay(self, state) for state in self._fold_log().values()
                if state.status in wanted and (workflow is None or state.workflow == workflow)]

    # -- driving -------------------------------------------------------------------------------

    def _drive(
        self, engine: Engine, wf: _Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Run:
        self._track(engine)
        try:
            try:
                output = wf.fn(Context(engine), *args, **kwargs)
            except BaseException as e:
                return self._settle(engine, None, e)
            return self._settle(engine, output, None)
        finally:
            self._untrack(engine)

    async def _adrive(
        self, engine: Engine, wf: _Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Run:
        self._track(engine)
        try:
            try:
                output = await wf.fn(AsyncContext(engine), *args, **kwargs)
            except BaseException as e:
                await engine.wait_idle()
                return await engine.io(functools.partial(self._settle, engine, None, e))
            await engine.wait_idle()
            return await engine.io(functools.partial(self._settle, engine, output, None))
        finally:
            try:
                await engine.io(functools.partial(self._untrack, engine))
            except asyncio.CancelledError:  # cancelled again: the lease is let go all the same
                self._untrack(engine)
                raise

    def _settle(self, engine: Engine, output: Any, error: BaseException | None) -> Run:
        """Record how the workflow function ended, and say where the execution stands; a
        child that ended tells its parent."""
        run = self._settle_run(engine, output, error)
        if run.status in TERMINAL_STATUSES and engine.state.parent is not None:
            # From the log (a cancellation came from elsewhere: this engine's state is not
            # the end), and once: cancel() may have told the parent already.
            self._notify_parent(self.journal.state(run.id), only_if_missing=True)
        return run

    def _settle_run(self, engine: Engine, output: Any, error: BaseException | None) -> Run:
        try:
            halt = engine.halt
            if isinstance(halt, Suspended):
                engine.halt = None
                engine.flush()
                engine.keep_state()
                return Run.of(engine.state)
            if isinstance(halt, Released):
                engine.halt = None
                engine.flush()
                return Run.of(engine.state)
            if halt is not None:
                raise halt
            if error is not None:
                if not isinstance(error, Exception):
                    _flush_quietly(engine, error)
                    raise error  # KeyboardInterrupt and the like: left running, recoverable
                engine.fail(error)
                return Run.of(engine.state)
            try:
                engine.complete(output)
            except JournalError as e:
                if engine.halt is not None or not isinstance(e, TypeError):
                    raise
                engine.fail(e)  # an output the journal cannot keep fails the execution
            return Run.of(engine.state)
        except Cancelled:
            return Run.of(self.journal.state(engine.id))
        except NonDeterministicWorkflow as e:  # at a call, or returned before the last one
            self._record_divergence(engine, e)
            raise

    def _record_divergence(self, engine: Engine, error: NonDeterministicWorkflow) -> None:
        """Say in the log that this code cannot replay the execution (``ReplayDiverged``),
        so that ``journal stuck`` tells why it does not move; once per seq and code version
        (a serve() loop that tries again writes nothing more). A dry replay (``check``)
        writes nothing; a failure to write is logged, and the divergence raised anyway."""
        if engine.dry or not engine.may_write():
            return
        version = self._lookup(engine.workflow, engine.id).version
        known = engine.handle.state.diverged
        if known is not None and (known.seq, known.version) == (error.seq, version):
            return
        try:
            engine.handle.diverged(
                seq=error.seq, version=version,
                recorded=_call_text(error.recorded_kind, error.recorded),
                called=_call_text(error.called_kind, error.called),
                message=str(error), host=_HOST, pid=os.getpid(),
            )
        except JournalError as e:
            logger.warning("runner: the divergence of %s was not recorded: %s", engine.id, e)

    # -- background flushing -------------------------------------------------------------------

    def _track(self, engine: Engine) -> None:
        if engine.lease is None:
            # Never drive without the lease: no step code runs in two processes at once.
            # (Lease I/O happens outside the runner's lock: a slow database must not stall
            # the flusher.)
            engine.lease = self.journal.lease(engine.id)
            if engine.lease is None:
                raise ExecutionBusy(engine.id, holder=self.journal.lease_holder(engine.id),
                                    waited=0.0)
        engine.handle.writable = engine.may_write
        engine.children = self
        self._claim(engine)
        with self._engines_lock:
            self._engines.add(engine)
            if self._flusher is None and not self._closed.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="runner-flusher", daemon=True
                )
                self._flusher.start()

    def _grace(self) -> float:
        return self.journal.storage.leases.grace + 0.25

    def _claim(self, engine: Engine) -> None:
        """Say in the log who drives the execution now; it rides with the next commit."""
        state = engine.handle.state
        quiet = None
        if engine.claim_reason in ("recover", "continue") and state.updated_at is not None:
            quiet = round((datetime.now(UTC) - state.updated_at).total_seconds(), 3)
        engine.claim(
            host=_HOST, pid=os.getpid(), runner=self.id, reason=engine.claim_reason,
            process_started=process_started(), quiet_for=quiet,
        )

    def _untrack(self, engine: Engine) -> None:
        with self._engines_lock:
            self._engines.discard(engine)
        if engine.handle._pending and engine.may_write():
            try:  # log lines still buffered: written while the lease is still ours
                engine.handle.flush()
            except JournalError as e:
                logger.error("runner: buffered log lines of %s not written: %s", engine.id, e)
        _release(engine)

    def _flush_loop(self) -> None:
        ticks = 0
        while not self._closed.wait(HOLD_SECONDS / 4):
            with self._engines_lock:
                engines = list(self._engines)
            if engines:
                # Renewals of the runs' leases first (the keeper says when one is due): a
                # slow flush below must not delay them.
                try:
                    self.journal.storage.leases.check()
                except Exception as e:
                    logger.warning("runner: lease check failed: %s", e)
            for engine in engines:
                engine.flush_if_older(HOLD_SECONDS)
            ticks += 1

    def close(self) -> None:
        """Stop the background flusher (runs in progress still commit what they hold)."""
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(engine: Engine) -> None:
    """Let go of the engine's liveness lease, once."""
    lease, engine.lease = engine.lease, None
    if lease is not None:
        lease.release()


def _flush_quietly(engine: Engine, error: BaseException) -> None:
    """Commit what the run holds (and its buffered log lines) before ``error`` propagates.

    ``error`` (KeyboardInterrupt, SystemExit) is what the caller needs to see, so a failed
    flush does not replace it: it is logged at error level and noted on ``error``.
    """
    for flush in (engine.flush, engine.handle.flush):
        try:
            flush()
        except BaseException as e:
            logger.error("runner: could not flush execution %s before %s: %s",
                         engine.id, type(error).__name__, e, exc_info=True)
            error.add_note(
                f"runner: execution {engine.id} could not commit what it held "
                f"({type(e).__name__}: {e}); it stays running, and recover() re-runs its "
                "step in flight"
            )
            return


def _call_text(kind: str | None, name: str | None) -> str:
    """``step 'charge'``: a call of a divergence, as ReplayDiverged keeps it ("" for none:
    the workflow returned there)."""
    return "" if name is None else f"{kind or 'call'} {name!r}"


def _skipped(eid: UUID, error: Exception, on_error: OnRecoveryError | None) -> None:
    """An execution recover() leaves alone: logged, and reported if it stays stuck."""
    if isinstance(error, RunnerError):
        logger.warning("runner: cannot recover execution %s: %s", eid, error)
        if on_error is not None:
            on_error(eid, error)
    else:  # ConcurrencyConflict: another runner is recovering it
        logger.info("runner: execution %s is being recovered elsewhere: %s", eid, error)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async workflow from synchronous code (not from inside a running loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError(
        "an async workflow was run from inside an event loop with a synchronous call: "
        "use await runner.arun(...) / aresume(...) / arecover(...)"
    )


def _bind_input(wf: _Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The workflow's arguments by parameter name (what ExecutionStarted records)."""
    sig = _signature(wf.fn) or inspect.signature(wf.fn)  # computed once per function
    try:
        bound = sig.bind(None, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"workflow {wf.name!r}: {e}") from None
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(sig.parameters)))  # the context
    return arguments


def _redacted_at(original: Any, redacted: Any, path: str) -> str | None:
    """Where redaction changed ``original`` (``creds.password``), or None if it did not."""
    if redacted is original:
        return None
    fields: Any
    if type(original) is dict:
        fields = original.items()
    elif isinstance(original, msgspec.Struct):
        fields = ((f, getattr(original, f)) for f in original.__struct_fields__)
    elif dataclasses.is_dataclass(original) and not isinstance(original, type):
        fields = ((f.name, getattr(original, f.name))
                  for f in dataclasses.fields(original) if f.init)
    elif type(original) in (list, tuple) and type(redacted) is type(original):
        fields = ((f"[{i}]", v) for i, v in enumerate(original))
        redacted = {f"[{i}]": v for i, v in enumerate(redacted)}
    else:
        try:
            return None if bool(original == redacted) else path or "input"
        except Exception:
            return path or "input"
    if isinstance(redacted, msgspec.Struct):
        redacted = {f: getattr(redacted, f) for f in redacted.__struct_fields__}
    if not isinstance(redacted, dict):
        return path or "input"
    for key, value in fields:
        where = f"{path}{key}" if str(key).startswith("[") else (
            f"{path}.{key}" if path else str(key))
        if key not in redacted:
            return where
        found = _redacted_at(value, redacted[key], where)
        if found is not None:
            return found
    return None


def _unbind_input(wf: _Workflow, recorded: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call the workflow with again, from what ExecutionStarted recorded."""
    sig = _signature(wf.fn) or inspect.signature(wf.fn)
    context = next(iter(sig.parameters))
    recorded = own_copy(recorded, "workflow input")  # the state's own stays the log's
    bound = inspect.BoundArguments(sig, {context: None, **(recorded or {})})  # type: ignore[arg-type]
    return bound.args[1:], bound.kwargs
