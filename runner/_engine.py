"""The engine that drives one execution: replays what the journal recorded, records the rest.

Commit pattern (one durable commit per step on the happy path):

* ``StepStarted`` is committed before the step's code runs; that append is also the claim
  that fences a second runner (it gets ``ConcurrencyConflict`` and runs nothing).
* A step's ``StepCompleted`` (and a final ``StepFailed``) is *held*, then committed in the
  same transaction as whatever comes next: the next ``StepStarted``, a pause, the end of the
  run. So it is durable before the next step starts and before ``run()`` returns. Log lines
  written while something is held join it, in order. A background thread of the runner
  commits anything held longer than ``HOLD_SECONDS`` (workflow code idling between steps).
* A crash loses at most the held completion: that step is the one in flight, and re-runs.

Replay walks the workflow from the top against an index of the stream built with the
journal's own fold (``journal.state.fold``): the step at each seq, its outcome, the pauses
and their answers. Calls are matched by seq (assigned in call order, synchronously, so
``asyncio.gather`` is deterministic); the first unrecorded call runs live.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import threading
import time
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid5

import msgspec

from journal import (
    ConcurrencyConflict,
    ErrorInfo,
    ExecutionHandle,
    ExecutionState,
    Journal,
    JournalError,
    UnsupportedValue,
)
from journal.capture import Capture
from journal.events import WAIT_CHILD, WAIT_SIGNAL, WAIT_TIMER, child_signal
from journal.state import (
    CALL_DONE,
    CANCELLED,
    STEP_COMPLETED,
    STEP_FAILED,
    CallRecord,
    SignalRecord,
    StepState,
)
from journal.storage.leases import Lease
from journal.values import IMMUTABLE, find_unresolved, is_immutable, own_copy, plain, to_wire
from runner.context import NO_RETRY, Retry, StepInfo
from runner.errors import (
    ChildFailed,
    IncompatibleOutput,
    LeaseLost,
    NonDeterministicWorkflow,
    RunnerError,
    StepFailedError,
    ValueClassMissing,
    WaitTimedOut,
)

__all__ = ["Cancelled", "DryEnd", "Engine", "Halt", "Released", "Suspended", "current_scope"]

logger = logging.getLogger("runner")

#: Held completions older than this are committed by the runner's background flusher.
HOLD_SECONDS = 0.5
#: A pause keeps a snapshot of the execution's state once its stream has grown by this many
#: events since the last one: a resume then folds at most about this many events.
SNAPSHOT_EVENTS = 100
#: An async workflow replaying recorded steps (no I/O, so no suspension) gives the event
#: loop a turn at least this often.
YIELD_SECONDS = 0.002

T = TypeVar("T")


class Halt(BaseException):
    """Unwinds the workflow; a BaseException so ``except Exception`` in workflow code passes it."""


class Suspended(Halt):
    """The execution paused: the workflow stops here until resumed."""


class Cancelled(Halt):
    """Someone cancelled the execution while this runner was driving it."""


class DryEnd(Halt):
    """A dry replay (``check``) reached the first call that would write or run live."""


class Released(Halt):
    """The runner let the execution go (``serve()`` draining): it stops at this call and
    stays running, for any process to recover."""


@dataclasses.dataclass(slots=True)
class StepScope:
    """What code inside a running step can see through ``current_step()`` and ``add_cost()``."""

    engine: Engine
    info: StepInfo
    costs: list[Any]


_scope: contextvars.ContextVar[StepScope | None] = contextvars.ContextVar(
    "runner_step", default=None
)


def current_scope() -> StepScope | None:
    """The step running in this context, if any."""
    return _scope.get()


@dataclasses.dataclass(slots=True)
class _RecordedPause:
    reason: str
    steps_before: int
    answered: bool = False
    value: Any = None
    timed_out: bool = False


class _ReplayIndex:
    """What replay needs, from the fold alone: steps by seq, pauses in order. (The state
    carries it, so a resume from a snapshot needs no events before the snapshot.)"""

    def __init__(self, state: ExecutionState) -> None:
        # The state's own steps, not a copy (a long history is not copied at each resume):
        # only seqs up to max_seq are recorded ones; later ones are this run's live writes.
        self.steps: dict[int, StepState] = state.steps
        self.calls: dict[int, CallRecord] = state.calls
        self.max_seq = state.max_seq
        self.pauses = [
            _RecordedPause(p.reason, p.steps_before, p.answered_at > 0, p.value, p.timed_out)
            for p in state.pauses
        ]
        self.workflow_logs = state.workflow_logs


class _Unset:
    pass


UNSET: Any = _Unset()
_LIVE = object()


#: ``CallRecord.kind`` of a drawn value, and the name of a patch marker's.
CALL_VALUE = "value"
PATCH = "patch"


def _call_name(kind: str, name: str) -> str:
    """A call as the workflow wrote it, for messages: ``sleep()``, ``wait_for('paid')``."""
    if kind == WAIT_TIMER:
        return "sleep()"
    if kind == WAIT_SIGNAL:
        return f"wait_for({name!r})"
    if kind == WAIT_CHILD:
        return f"child({name!r})"
    return f"{name}()"


def root_cause(error: BaseException) -> ErrorInfo:
    """How an execution's failure is recorded: a StepFailedError or ChildFailed by the error
    of the step (or child) it wraps; anything else as it is."""
    import traceback

    tb = "".join(traceback.format_exception(error)) if error.__traceback__ else ""
    if isinstance(error, StepFailedError | ChildFailed) and error.error_type:
        return ErrorInfo(type=error.error_type, message=error.error_message or "",
                         traceback=tb)
    return ErrorInfo.from_exception(error, traceback=tb)


def child_id(parent: UUID, seq: int) -> UUID:
    """The id of the child execution that call ``seq`` of ``parent`` starts (so replay finds
    the same child, and a retried start finds it started)."""
    return uuid5(parent, f"child {seq}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _cached(compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Memoise per step function; functions that cannot be hashed are computed each time."""
    cached = functools.lru_cache(maxsize=4096)(compute)

    def lookup(fn: Any) -> Any:
        try:
            return cached(fn)
        except TypeError:  # e.g. a bound method of an unhashable object
            return compute(fn)

    return lookup


@_cached
def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(_unwrap(fn))
    except Exception:  # unresolvable annotations: the value is returned as recorded
        return None
    return hints.get("return")


@_cached
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _evidence(value: Any, capture: Capture) -> Any:
    """A value as the journal can keep it: redacted, else only its type if it won't encode.

    Never a repr: an object's repr may show exactly the secret redaction would hide.
    """
    redacted = capture.redact(value)
    try:
        to_wire(redacted)
    except (UnsupportedValue, TypeError, ValueError):
        return f"<unencodable {type(value).__qualname__}>"
    return redacted


def step_input(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], capture: Capture
) -> Any:
    """The step's arguments as evidence: by parameter name when the signature allows."""
    if not args and not kwargs:
        return None
    sig = _signature(fn)
    if sig is not None:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            pass
        else:
            return {k: _evidence(v, capture) for k, v in bound.arguments.items()}
    return {
        "args": [_evidence(a, capture) for a in args],
        "kwargs": {k: _evidence(v, capture) for k, v in kwargs.items()},
    }


class Engine:
    """Drives one execution of one workflow function against its journal stream."""

    def __init__(
        self,
        journal: Journal,
        handle: ExecutionHandle,
        *,
        workflow: str,
        resume_value: Any = UNSET,
        is_async: bool = False,
        snapshot_at: int = 0,
        dry: bool = False,
    ) -> None:
        self.journal = journal
        self.handle = handle
        self.id: UUID = handle.id
        self.workflow = workflow
        self.is_async = is_async
        self.index = _ReplayIndex(handle.state)
        #: Where the execution's latest snapshot is (a pause writes a new one when the
        #: stream has grown by SNAPSHOT_EVENTS since).
        self.snapshot_at = snapshot_at
        self.resume_value = resume_value
        #: A dry replay: every write is a stop (``DryEnd``); nothing is written, no step runs.
        self.dry = dry
        #: The liveness lease this engine holds while it drives the execution (if it got it).
        self.lease: Lease | None = None
        #: Why this engine drives the execution, as its ExecutionClaimed says.
        self.claim_reason = "start"
        self.halt: BaseException | None = None
        self._lock = threading.RLock()
        self._held: list[Callable[[], object]] = []
        self._held_since = 0.0
        self._seq = 0
        self._pauses_called = 0
        self._fast_until = self._fast_limit()
        #: Step functions whose immutable recorded outputs replay returns as they are.
        self._as_recorded: dict[Callable[..., Any], bool] = {}
        self._recorded = self.index.steps
        self._logs_called = 0
        #: Positions of signals this run consumed in records still held.
        self._consumed: set[int] = set()
        self._waits = 0  # an async workflow's waits in flight
        #: Who starts this execution's children (the runner driving it).
        self.children: Any = None
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._commits: asyncio.Lock | None = None
        self._turn = 0.0

    # -- replay bookkeeping ------------------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        """True while recorded calls remain ahead of the workflow."""
        return self._seq < self.index.max_seq or self._pauses_called < len(self.index.pauses)

    def _check(self) -> None:
        if self.halt is not None:
            raise self.halt

    def check_halt(self) -> None:
        """Raise why the run stops, if it does."""
        self._check()

    def _stop(self, error: BaseException) -> BaseException:
        """Remember why the run stops, so workflow code that swallows it cannot go on."""
        self.halt = error
        return error

    def _diverged(
        self, seq: int, recorded: tuple[str, str] | None, called: tuple[str, str] | None
    ) -> BaseException:
        return self._stop(
            NonDeterministicWorkflow(
                execution_id=self.id, workflow=self.workflow, seq=seq,
                recorded=None if recorded is None else recorded[1],
                called=None if called is None else called[1],
                recorded_kind=None if recorded is None else recorded[0],
                called_kind=None if called is None else called[0],
            )
        )

    def _next_pause_is_due(self) -> _RecordedPause | None:
        """The recorded pause that came right after the steps called so far, if any."""
        k = self._pauses_called
        if k < len(self.index.pauses) and not self.is_async:
            pause = self.index.pauses[k]
            if pause.steps_before == self._seq:
                return pause
        return None

    def check_all_replayed(self) -> None:
        """The workflow returned: it must have made every recorded call (else diverged)."""
        with self._lock:
            self._check_all_replayed()

    def _check_all_replayed(self) -> None:
        """Before a live pause or the end: the workflow must have made every recorded call."""
        if self.index.max_seq > self._seq:
            seq = self._seq + 1
            raise self._diverged(seq, self._recorded_at(seq), None)
        if self._pauses_called < len(self.index.pauses):
            pause = self.index.pauses[self._pauses_called]
            raise self._diverged(self._seq + 1, ("pause", pause.reason), None)

    # -- writing -----------------------------------------------------------------------------

    def may_write(self) -> bool:
        """Whether this engine still surely holds the execution's lease (no round trip)."""
        lease = self.lease
        return lease is not None and lease.confirmed()

    def _write(
        self, *calls: Callable[[], object], step: tuple[str, int] | None = None
    ) -> None:
        """Commit what is held plus ``calls`` in one transaction (only under the lease;
        ``step`` names the step about to start, for the error if it is not confirmed)."""
        with self._lock:
            self._check()
            if self.dry:
                raise self._stop(DryEnd())
            if not self.may_write():
                name, seq = step if step is not None else (None, None)
                raise self._stop(LeaseLost(execution_id=self.id, step=name, seq=seq))
            held, self._held = self._held, []
            todo = [*held, *calls]
            if not todo:
                return
            try:
                if len(todo) == 1:
                    todo[0]()
                else:
                    with self.handle.atomic():
                        for call in todo:
                            call()
            except BaseException as e:
                # Nothing of ``todo`` was committed. Keep what was held, and stop the run with
                # the error whatever it is, so run() raises it rather than going on without
                # (or writing a failure over) the completion it could not commit.
                self._held[:0] = held
                if isinstance(e, ConcurrencyConflict):
                    raise self._conflict(e) from None
                if isinstance(e, JournalError):
                    raise self._stop(e) from None
                self._stop(e)
                raise

    def _conflict(self, error: ConcurrencyConflict) -> BaseException:
        """Another writer got there first: stop quietly if it cancelled us, else fence."""
        try:
            state = self.journal.state(self.id)
        except JournalError:
            return self._stop(error)
        if state.status == CANCELLED:
            return self._stop(Cancelled())
        return self._stop(error)

    def claim(self, **identity: Any) -> None:
        """Record who drives the execution (ExecutionClaimed) with the next commit: the step
        start before any step code runs, or the pause. A drive that stops before writing
        anything (a non-deterministic replay) writes no claim either."""
        self._hold(lambda: self.handle.claimed(**identity))

    def _hold(self, call: Callable[[], object]) -> None:
        with self._lock:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append(call)

    def flush(self) -> None:
        """Commit anything held now."""
        self._write()

    def flush_if_older(self, seconds: float) -> None:
        """Commit held records older than ``seconds`` (from the background flusher). Not
        while replaying: what is held then is the claim alone, and code that turns out not
        to replay the execution must not have claimed it (a divergence is recorded once)."""
        if not self._held or time.monotonic() - self._held_since < seconds or (
                self.is_replaying):
            return
        if not self._lock.acquire(timeout=0.05):
            return
        try:
            if self.halt is None and self._held:
                self._write()
        except BaseException as e:  # kept in self.halt: the workflow's next call raises it
            logger.error(
                "runner: could not commit the held records of execution %s (the run stops "
                "and raises this at its next call): %s", self.id, e, exc_info=True,
            )
        finally:
            self._lock.release()

    # -- steps -------------------------------------------------------------------------------

    def begin_step(self, name: str) -> tuple[int, StepState | None]:
        """Assign the next seq (synchronously, in call order) and find its record."""
        with self._lock:
            self._check()
            scope = _scope.get()
            if scope is not None and scope.engine is self:
                raise RunnerError(
                    f"step {name!r} was called inside step {scope.info.name!r} of "
                    f"execution {self.id}: steps cannot be nested; call it from the "
                    "workflow function"
                )
            pause = self._next_pause_is_due()
            seq = self._seq + 1
            if pause is not None:
                raise self._diverged(seq, ("pause", pause.reason), ("step", name))
            self._seq = seq
            rec = self.index.steps.get(seq) if seq <= self.index.max_seq else None
            if rec is not None and rec.name != name:
                raise self._diverged(seq, ("step", rec.name), ("step", name))
            if rec is None and seq in self.index.calls:
                raise self._diverged(seq, self._recorded_at(seq), ("step", name))
            return seq, rec

    def _recorded_at(self, seq: int) -> tuple[str, str] | None:
        """What the journal recorded at ``seq`` (kind, name), for a divergence error."""
        step = self.index.steps.get(seq)
        if step is not None:
            return "step", step.name
        call = self.index.calls.get(seq)
        if call is not None:
            if call.kind == CALL_VALUE and call.name == PATCH:
                return "call", f"patched({call.value!r})"
            return "call", _call_name(call.kind, call.name)
        return None

    # -- calls that are not steps: waits and drawn values ------------------------------------

    def begin_call(self, kind: str, name: str) -> tuple[int, CallRecord | None]:
        """Assign the next seq to a wait or a drawn value, and find its record."""
        with self._lock:
            self._check()
            what = _call_name(kind, name)
            scope = _scope.get()
            if scope is not None and scope.engine is self:
                raise RunnerError(
                    f"{what} was called inside step {scope.info.name!r} of execution "
                    f"{self.id}: call it from the workflow function"
                )
            pause = self._next_pause_is_due()
            seq = self._seq + 1
            if pause is not None:
                raise self._diverged(seq, ("pause", pause.reason), ("call", what))
            self._seq = seq
            if seq > self.index.max_seq:
                return seq, None
            rec = self.index.calls.get(seq)
            if rec is None or rec.kind != kind or rec.name != name:
                raise self._diverged(seq, self._recorded_at(seq), ("call", what))
            return seq, rec

    def patched(self, patch_id: str, *, deprecated: bool = False) -> bool:
        """``ctx.patched``: True where code with the patch runs this point first (a marker
        is recorded) or ran it before (the marker is there); False on replay of history
        recorded before the patch (no marker here). ``deprecated``: the code no longer
        branches; a marker recorded earlier is consumed, none is recorded."""
        if not isinstance(patch_id, str) or not patch_id:
            raise ValueError(f"a patch id must be a non-empty string, not {patch_id!r}")
        with self._lock:
            self._check()
            seq = self._seq + 1
            call = self.index.calls.get(seq) if seq <= self.index.max_seq else None
            if call is not None and call.kind == CALL_VALUE and call.name == PATCH:
                if call.value != patch_id:
                    raise self._diverged(seq, ("call", f"patched({call.value!r})"),
                                         ("call", f"patched({patch_id!r})"))
                self._seq = seq
                return True
            if self.is_replaying:
                return False  # this point was recorded before the patch: the old path
            if deprecated:
                return True
            self._seq = seq
            self._hold(lambda: self.handle.value_recorded(seq, PATCH, patch_id))
            return True

    def draw(self, kind: str, make: Callable[[], Any]) -> Any:
        """``now()``/``random()``/``uuid4()``: the recorded value on replay; else a new one,
        recorded with the next commit (nothing outside the workflow has seen it before)."""
        seq, rec = self.begin_call(CALL_VALUE, kind)
        if rec is not None:
            return rec.value
        value = make()
        with self._lock:
            self._hold(lambda: self.handle.value_recorded(seq, kind, value))
        return value

    def timer(self, seq: int, rec: CallRecord | None, until: datetime) -> None:
        """A sleep until ``until``: returns once it is due, else the run stops waiting
        (the wake-up time committed first)."""
        with self._lock:
            self._check()
            if rec is not None and rec.status == CALL_DONE:
                return
            now = _utcnow()
            if rec is None:
                self._check_all_replayed()
                if until <= now:  # due already: on record, and on we go
                    self._hold(lambda: self.handle.wait_started(seq, WAIT_TIMER, until=until))
                    self._hold(lambda: self.handle.wait_ended(seq))
                    return
                self._write(lambda: self.handle.wait_started(seq, WAIT_TIMER, until=until))
                self._snapshot()
                raise self._stop(Suspended())
            assert rec.until is not None
            if rec.until <= now:
                self._hold(lambda: self.handle.wait_ended(seq))
                return
            raise self._stop(Suspended())  # looked at before its time: it waits on

    def signal_wait(
        self, seq: int, rec: CallRecord | None, name: str, timeout: float | None
    ) -> Any:
        """``wait_for(name)``: the first signal ``name`` not consumed yet, else the run
        stops waiting for one (until the timeout, then :class:`WaitTimedOut`)."""
        with self._lock:
            self._check()
            if rec is not None and rec.status == CALL_DONE:
                if rec.timed_out:
                    raise WaitTimedOut(execution_id=self.id, seq=seq,
                                       waited_for=f"signal {name!r}", until=rec.until)
                return own_copy(rec.value)
            now = _utcnow()
            if rec is None:
                self._check_all_replayed()
                until = None if timeout is None else now + timedelta(seconds=timeout)
                if not self.dry:
                    self.handle.catch_up()  # a signal sent since this run's last commit
                signal = self._unconsumed(name)
                if signal is None and (until is None or until > now):
                    self._write(lambda: self.handle.wait_started(
                        seq, WAIT_SIGNAL, name, until=until))
                    signal = self._unconsumed(name)  # come in during that commit?
                    if signal is None:
                        self._snapshot()
                        raise self._stop(Suspended())
                else:
                    self._hold(lambda: self.handle.wait_started(
                        seq, WAIT_SIGNAL, name, until=until))
            else:
                until = rec.until
                signal = self._unconsumed(name)
            if signal is not None:
                position = signal.position
                self._consumed.add(position)
                self._hold(lambda: self.handle.wait_ended(seq, signal=position))
                return own_copy(signal.value)
            if until is not None and until <= now:
                self._hold(lambda: self.handle.wait_ended(seq, timed_out=True))
                raise WaitTimedOut(execution_id=self.id, seq=seq,
                                   waited_for=f"signal {name!r}", until=until)
            raise self._stop(Suspended())

    # -- children ------------------------------------------------------------------------------

    def enter_wait(self, what: str) -> None:
        """An async workflow's wait (sleep, wait_for, child) begins: refused while another
        is in flight (``gather`` of waits): a wait stops the whole execution, so they are
        awaited one at a time."""
        with self._lock:
            if self._waits:  # raised into the workflow, which fails with it (or catches it)
                raise RunnerError(
                    f"execution {self.id}: {what} was called while another wait of it "
                    "(sleep, wait_for, child) is in flight; await them one at a time")
            self._waits += 1

    def leave_wait(self) -> None:
        with self._lock:
            self._waits -= 1

    def child_id(self, seq: int) -> UUID:
        """The id of the child call ``seq`` starts: the same on every replay."""
        return child_id(self.id, seq)

    def child_wait(self, seq: int, rec: CallRecord | None, workflow: str) -> None:
        """Before the child runs: the parent's wait for it is on record (once)."""
        with self._lock:
            self._check()
            if rec is None:
                self._check_all_replayed()
                self._write(lambda: self.handle.wait_started(seq, WAIT_CHILD, workflow))

    def child_outcome(self, seq: int, rec: CallRecord | None, workflow: str) -> Any:
        """The child's output once it has ended (:class:`ChildFailed` if it failed or was
        cancelled); until then the parent stops, waiting for it."""
        with self._lock:
            self._check()
            if rec is not None and rec.status == CALL_DONE:
                return self._child_result(seq, workflow, own_copy(rec.value))
            if not self.dry:
                self.handle.catch_up()  # the child's end, if it ended while driven here
            signal = self._unconsumed(child_signal(seq))
            if signal is None:
                self._snapshot()
                raise self._stop(Suspended())
            position = signal.position
            self._consumed.add(position)
            self._hold(lambda: self.handle.wait_ended(seq, signal=position))
            return self._child_result(seq, workflow, own_copy(signal.value))

    def _child_result(self, seq: int, workflow: str, ended: Any) -> Any:
        if not isinstance(ended, dict) or "status" not in ended:
            raise self._stop(RunnerError(
                f"execution {self.id}: the end of its child at seq {seq} was recorded in a "
                f"form this release cannot read ({ended!r})"))
        if ended["status"] == "completed":
            return ended.get("output")
        error = ended.get("error") or {}
        raise ChildFailed(
            execution_id=self.id, seq=seq, child=self.child_id(seq), workflow=workflow,
            status=ended["status"], error_type=error.get("type"),
            error_message=error.get("message"),
        )

    def _unconsumed(self, name: str) -> SignalRecord | None:
        """The first signal ``name`` no wait has consumed (nor one of this run's, held)."""
        for signal in self.handle.state.signals:
            if (signal.name == name and not signal.consumed_by
                    and signal.position not in self._consumed):
                return signal
        return None

    def _fast_limit(self) -> int:
        """The last seq replay may take without looking for a pause: the recorded steps
        before the next recorded pause (recomputed as each pause is called)."""
        k, pauses = self._pauses_called, self.index.pauses
        if k < len(pauses):
            return min(self.index.max_seq, pauses[k].steps_before)
        return self.index.max_seq

    def replayed(self, seq: int, rec: StepState, fn: Callable[..., Any]) -> Any:
        """The recorded outcome of a finished step, or ``_LIVE`` when it must run again."""
        if rec.status == STEP_COMPLETED:
            return self._convert(seq, rec, fn)
        if rec.status == STEP_FAILED:
            error = rec.error or ErrorInfo(type="Exception", message="")
            raise StepFailedError(
                execution_id=self.id, step=rec.name, seq=seq, attempts=rec.attempts,
                error_type=error.type, error_message=error.message,
            )
        return _LIVE  # in flight when the last runner stopped, or between retries

    def _convert(self, seq: int, rec: StepState, fn: Callable[..., Any]) -> Any:
        """The recorded output as the workflow gets it: through ``fn``'s return annotation,
        and a copy (what the workflow does to it must not change the state, which stays
        the log's: a snapshot or the next resume here is taken from it)."""
        annotation = _return_type(fn)
        output = rec.output
        untyped = annotation is None or annotation is Any or annotation is type(None)
        if untyped:
            with contextlib.suppress(TypeError):  # an unhashable callable: not remembered
                self._as_recorded[fn] = True  # an immutable output goes back as it is
        if is_immutable(output) and (untyped or type(output) is annotation):
            return output
        missing = find_unresolved(output)
        if untyped:
            if missing is not None:
                # The workflow would get a stand-in where it expects its own class.
                raise self._stop(ValueClassMissing(
                    execution_id=self.id, step=f"output of step {rec.name!r}", seq=seq,
                    topic=missing.topic,
                ))
            return own_copy(output)
        if missing is not None:
            output = plain(output)  # rebuilt from its fields, through the annotation
        elif type(output) is annotation:
            return own_copy(output)  # read back with its own type already
        else:
            output = own_copy(output)
        try:
            return msgspec.convert(output, annotation, from_attributes=True)
        except (msgspec.ValidationError, TypeError) as e:
            raise self._stop(
                IncompatibleOutput(
                    execution_id=self.id, step=rec.name, seq=seq, annotation=annotation,
                    cause=str(e),
                )
            ) from None

    def first_attempt(self, rec: StepState | None) -> tuple[int, int]:
        """(attempt number, failures so far) for the next try of a step."""
        if rec is None:
            return 1, 0
        return rec.attempts + 1, rec.failures

    def start_attempt(self, seq: int, name: str, attempt: int, input: Any) -> StepScope:
        """Commit StepStarted (with anything held): after this, the step's code may run.

        First the lease is confirmed (no round trip: the renewals do that): a driver that
        cannot confirm it stops here, before the step, not after it."""
        self._write(
            lambda: self.handle.step_started(name, input, attempt=attempt, seq=seq),
            step=(name, seq),
        )
        if not self.may_write():  # the commit itself took long (a reconnect): look again
            raise self._stop(LeaseLost(execution_id=self.id, step=name, seq=seq))
        info = StepInfo(execution_id=self.id, name=name, seq=seq, attempt=attempt)
        return StepScope(self, info, [])

    def completed(self, scope: StepScope, output: Any, duration: float) -> None:
        """Hold StepCompleted; it is committed with the next transition."""
        if not is_immutable(output):
            # Refused now, not at the commit; and a copy is recorded, so what the workflow
            # does to the value it got back before the next commit is not in the log.
            output = own_copy(output, f"output of step {scope.info.name!r}")
        seq, costs = scope.info.seq, tuple(scope.costs)
        self._hold(
            lambda: self.handle.step_completed(seq, output, costs=costs, duration=duration,
                                               copied=True)
        )

    def failed(
        self, scope: StepScope, error: BaseException, duration: float, *, will_retry: bool,
        delay: float = 0.0, max_attempts: int = 0,
    ) -> None:
        """Record StepFailed: a retry's at once (visible during the backoff, with when the
        next attempt starts), a final one held."""
        seq, costs = scope.info.seq, tuple(scope.costs)
        retry_at = _utcnow() + timedelta(seconds=delay) if will_retry else None

        def record() -> None:
            self.handle.step_failed(
                seq, error, will_retry=will_retry, costs=costs, duration=duration,
                retry_at=retry_at, max_attempts=max_attempts,
            )

        if will_retry:
            self._write(record)
        else:
            self._hold(record)

    def step_failed_error(self, scope: StepScope, error: BaseException) -> StepFailedError:
        """What the workflow sees when a step fails for good (the same on replay)."""
        info = ErrorInfo.from_exception(error)
        return StepFailedError(
            execution_id=self.id, step=scope.info.name, seq=scope.info.seq,
            attempts=scope.info.attempt, error_type=info.type, error_message=info.message,
        )

    def run_step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: Retry | None,
    ) -> Any:
        """A synchronous step: replayed, or run live with its retries."""
        # Most of a replay: a recorded completion, with no pause due before it.
        seq = self._seq + 1
        if seq <= self._fast_until and self.halt is None and _scope.get() is None:
            rec = self._recorded.get(seq)
            if rec is not None and rec.status == STEP_COMPLETED and rec.name == name:
                with self._lock:
                    if self._seq + 1 == seq:
                        self._seq = seq
                        output = rec.output
                        try:
                            as_is = type(output) in IMMUTABLE and self._as_recorded[fn]
                        except (KeyError, TypeError):
                            as_is = False
                        return output if as_is else self._convert(seq, rec, fn)
        seq, rec = self.begin_step(name)
        if rec is not None:
            outcome = self.replayed(seq, rec, fn)
            if outcome is not _LIVE:
                return outcome
        policy = retry or NO_RETRY
        attempt, failures = self.first_attempt(rec)
        captured = step_input(fn, args, kwargs, self.journal.capture)
        while True:
            scope = self.start_attempt(seq, name, attempt, captured)
            token = _scope.set(scope)
            t0 = time.perf_counter()
            try:
                output = fn(*args, **kwargs)
            except Exception as e:
                failures += 1
                time.sleep(self._attempt_failed(scope, e, t0, policy, failures))
                attempt += 1
                continue
            finally:
                _scope.reset(token)
            self._attempt_succeeded(scope, output, t0)
            return output

    def _attempt_failed(
        self, scope: StepScope, error: Exception, t0: float, policy: Retry, failures: int
    ) -> float:
        """Record a failed attempt; the delay before the next one, or raise if none follows."""
        will_retry = policy.should_retry(error, failures)
        delay = policy.delay(failures) if will_retry else 0.0
        self.failed(scope, error, time.perf_counter() - t0, will_retry=will_retry,
                    delay=delay, max_attempts=policy.attempts)
        if not will_retry:
            raise self.step_failed_error(scope, error) from error
        return delay

    def _attempt_succeeded(self, scope: StepScope, output: Any, t0: float) -> None:
        """Record the completion; an output the journal cannot store fails the step for good."""
        try:
            self.completed(scope, output, time.perf_counter() - t0)
        except UnsupportedValue as e:
            self.failed(scope, e, time.perf_counter() - t0, will_retry=False)
            raise self.step_failed_error(scope, e) from e

    def arun_step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: Retry | None,
    ) -> typing.Coroutine[Any, Any, Any]:
        """An async step: the seq is taken now; the coroutine replays it or runs it live."""
        seq, rec = self.begin_step(name)
        return self._arun_step(seq, rec, name, fn, args, kwargs, retry)

    async def _arun_step(
        self,
        seq: int,
        rec: StepState | None,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: Retry | None,
    ) -> Any:
        if rec is not None:
            outcome = self.replayed(seq, rec, fn)
            if outcome is not _LIVE:
                await self.give_turn()
                return outcome
        policy = retry or NO_RETRY
        attempt, failures = self.first_attempt(rec)
        captured = step_input(fn, args, kwargs, self.journal.capture)
        is_coroutine = inspect.iscoroutinefunction(_unwrap(fn))
        self._enter()
        try:
            while True:
                scope = await self.io(
                    functools.partial(self.start_attempt, seq, name, attempt, captured)
                )
                token = _scope.set(scope)
                t0 = time.perf_counter()
                try:
                    if is_coroutine:
                        output = await fn(*args, **kwargs)
                    else:
                        output = await asyncio.to_thread(fn, *args, **kwargs)
                        if inspect.isawaitable(output):
                            output = await output
                except Exception as e:
                    failures += 1
                    await asyncio.sleep(await self.io(functools.partial(
                        self._attempt_failed, scope, e, t0, policy, failures)))
                    attempt += 1
                    continue
                finally:
                    _scope.reset(token)
                self._attempt_succeeded(scope, output, t0)
                return output
        finally:
            self._leave()

    async def io(self, call: Callable[[], T]) -> T:
        """An async workflow's write: off the event loop (``Journal.off_loop``), one at a
        time and in the order the workflow made the calls (``asyncio.Lock`` is FIFO), so
        steps started together with ``gather`` commit their starts in seq order."""
        if self._commits is None:
            self._commits = asyncio.Lock()
        async with self._commits:
            result = await self.journal.off_loop(call)
        await self.give_turn()  # it may have run inline: no suspension then
        return result

    async def give_turn(self) -> None:
        """Let other tasks run if this workflow has kept the loop for a while: replaying
        recorded steps, steps that never suspend and inline commits suspend nowhere."""
        now = time.monotonic()
        if now - self._turn >= YIELD_SECONDS:
            self._turn = now
            await asyncio.sleep(0)

    def _enter(self) -> None:
        self._inflight += 1
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no live async step is running (before a pause or the end of the run)."""
        while self._inflight and self._idle is not None:
            await self._idle.wait()

    # -- pauses, logs, the end ---------------------------------------------------------------

    def pause_is_answered(self) -> bool:
        """Whether the next pause call replays a recorded, answered pause (writes nothing)."""
        k = self._pauses_called
        return k < len(self.index.pauses) and self.index.pauses[k].answered

    def pause(self, reason: str, payload: Any, timeout: float | None = None) -> Any:
        """Replay a recorded pause (its answer), answer the open one, or pause live (until
        ``timeout`` seconds at most: then :class:`WaitTimedOut`)."""
        with self._lock:
            self._check()
            k = self._pauses_called
            if k < len(self.index.pauses):
                rec = self.index.pauses[k]
                if rec.reason != reason:
                    raise self._diverged(self._seq + 1, ("pause", rec.reason), ("pause", reason))
                if not self.is_async and rec.steps_before > self._seq:
                    seq = self._seq + 1
                    raise self._diverged(seq, self._recorded_at(seq), ("pause", reason))
                self._pauses_called += 1
                self._fast_until = self._fast_limit()
                if rec.answered:
                    if rec.timed_out:
                        raise self._pause_timed_out(reason)
                    return own_copy(rec.value)  # the state's own stays the log's
                if self.resume_value is UNSET:
                    open_pause = self.handle.state.pause
                    if (open_pause is not None and open_pause.until is not None
                            and open_pause.until <= _utcnow()):
                        self._hold(lambda: self.handle.resumed(None, timed_out=True))
                        raise self._pause_timed_out(reason, open_pause.until)
                    raise self._stop(Suspended())
                value, self.resume_value = self.resume_value, UNSET
                # Refused now; recorded as it is now (a copy: the workflow may change what it
                # gets before the commit).
                recorded = own_copy(value, "resume value")
                # ExecutionResumed rides with the next commit (a step's start, before its
                # code runs; a pause; the end): a resume costs no commit of its own. Until
                # then the lease keeps any other resumer out.
                self._hold(lambda: self.handle.resumed(recorded, copied=True))
                return value
            self._check_all_replayed()
            self._pauses_called += 1
            self.journal.capture.captured(payload, "pause payload")  # refuse before writing
            until = None if timeout is None else _utcnow() + timedelta(seconds=timeout)
            self._write(lambda: self.handle.paused(reason, payload, until=until))
            self._snapshot()
            raise self._stop(Suspended())

    def _pause_timed_out(self, reason: str, until: datetime | None = None) -> WaitTimedOut:
        return WaitTimedOut(execution_id=self.id, seq=self._seq, waited_for=f"pause {reason!r}",
                            until=until)

    def _snapshot(self) -> None:
        """After a pause: keep a snapshot if the stream grew by SNAPSHOT_EVENTS since the
        last, so the resume reads one row and a short tail, whatever the history's length
        (this load reads at most the last snapshot and SNAPSHOT_EVENTS events after it).
        A snapshot is a cache: failing to write one loses nothing (the log is the truth)."""
        if self.handle.state.position - self.snapshot_at < SNAPSHOT_EVENTS:
            return
        # The handle's state is the log's (its values are copies of what it wrote, and
        # replay hands workflow code copies of what it holds), once nothing is buffered.
        state = self.handle.committed_state()
        if state is None:
            return
        try:
            if self.journal.snapshot(state):
                self.snapshot_at = state.position
        except JournalError as e:
            logger.warning("runner: no snapshot of %s at position %d (resumes fold its "
                           "stream instead): %s", self.id, self.handle.state.position, e)

    def log(self, message: str, level: str, fields: dict[str, Any]) -> None:
        """A log line; workflow-level lines already in the journal are not written again."""
        with self._lock:
            self._check()
            if self.dry:
                return
            scope = _scope.get()
            seq = scope.info.seq if scope is not None and scope.engine is self else None
            if seq is None:
                n = self._logs_called
                self._logs_called += 1
                if n < self.index.workflow_logs:
                    return
            fields = {k: _evidence(v, self.journal.capture) for k, v in fields.items()}

            def record() -> None:
                self.handle.log(message, level=level, seq=seq, **fields)

            if self._held:
                self._hold(record)
                return
            try:
                record()
            except JournalError as e:
                raise self._stop(e) from None

    def complete(self, output: Any) -> None:
        """Commit ExecutionCompleted (with anything held)."""
        with self._lock:
            self._check()
            self._check_all_replayed()
            if not is_immutable(output):
                to_wire(output, "workflow output")
            self._write(lambda: self.handle.completed(output))

    def fail(self, error: BaseException) -> None:
        """Commit ExecutionFailed (with anything held, e.g. the step failure that caused it).
        A step's (or a child's) failure the workflow let through is recorded as its root
        cause, the step's own error type and message (the wrapper's traceback, which chains
        the original, beside them): that is what on-call filters and groups failures by."""
        info = root_cause(error)
        self._write(lambda: self.handle.failed(info))

    def keep_state(self) -> None:
        """The drive is over and the execution waits: leave its state to the journal for
        the next resume in this process (only if all of it is committed)."""
        state = self.handle.committed_state()
        if state is not None:
            self.journal.keep(state, self.snapshot_at)

    @property
    def state(self) -> ExecutionState:
        """The execution's state as this engine last wrote or read it."""
        return self.handle.state
