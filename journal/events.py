"""The journal's event types: immutable facts about one execution, in the order they happened.

Evolution rules (the stored bytes of every release must keep decoding; the golden streams in
tests/journal/golden check it):

* Events are msgpack arrays (``array_like``): fields are stored by position. New fields get
  defaults and go last; nothing is renamed, reordered, retyped or removed. The base
  :class:`Event` gets no new field ever (its fields come first in every subclass).
* Rows since v3 (``journal.encoding``) store a short code per event type as their topic and
  leave the first two fields, ``execution_id`` and ``position``, out of the body: they are
  the row's stream id and position. The code of a type never changes once released; a new
  type gets a new code in ``journal.encoding.CODES``.
* Rows of v1/v2 store ``module:qualname`` as their topic and the whole event: they are
  still read, so where a class lives stays part of the format. Every event type and every
  value type stored inside events is defined here and only here, and never moves.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import msgspec

__all__ = [
    "CHILD_SIGNAL",
    "EVENT_TYPES",
    "TERMINAL_EVENTS",
    "WAIT_CHILD",
    "WAIT_SIGNAL",
    "WAIT_TIMER",
    "Cost",
    "ErrorInfo",
    "Event",
    "ExecutionCancelled",
    "ExecutionClaimed",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionPaused",
    "ExecutionResumed",
    "ExecutionStarted",
    "LogRecorded",
    "OutOfLine",
    "ReplayDiverged",
    "SignalReceived",
    "StepCompleted",
    "StepFailed",
    "StepStarted",
    "Truncated",
    "ValueRecorded",
    "WaitEnded",
    "WaitStarted",
    "child_signal",
]


class Cost(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """What one call cost: money as an exact Decimal, and tokens, per model."""

    usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """An exception as data: it must outlive the process that raised it."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, *, traceback: str = "") -> ErrorInfo:
        """Describe ``exc`` by its qualified type name and message."""
        t = type(exc)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        return cls(type=name, message=str(exc), traceback=traceback)


class Truncated(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Stands in for a captured value larger than the capture limit."""

    size: int
    sha256: str
    preview: str


class OutOfLine(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Reference to a large value stored whole beside the log (resume needs it intact)."""

    size: int
    sha256: str


class Event(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Base of every journal event: which execution, where in its stream, and when (UTC)."""

    execution_id: UUID
    position: int
    timestamp: datetime

    #: Names of fields that hold user values (encoded self-describingly, see journal.values).
    payload_fields: ClassVar[tuple[str, ...]] = ()


class ExecutionStarted(Event, frozen=True, kw_only=True, array_like=True):
    """An execution of ``workflow`` began with ``input`` (as the child that call
    ``parent_seq`` of execution ``parent`` started, if ``parent`` is set)."""

    workflow: str
    input: Any = None
    idempotency_key: str | None = None
    parent: UUID | None = None
    parent_seq: int = 0
    #: The version of the workflow code it started with (a fingerprint, or the app's own).
    version: str = ""
    #: The execution (and the seq) it was forked from: its outcomes before that seq were
    #: copied, and it runs live from there.
    forked_from: UUID | None = None
    forked_seq: int = 0
    #: Enqueued (``Runner.enqueue``): no process drives it yet; the first ``serve()`` to
    #: claim it runs it (status ``queued`` until its ExecutionClaimed).
    queued: bool = False
    payload_fields: ClassVar[tuple[str, ...]] = ("input",)


class StepStarted(Event, frozen=True, kw_only=True, array_like=True):
    """Attempt ``attempt`` of step ``seq`` (named ``name``) began; durable before it runs."""

    name: str
    seq: int
    attempt: int = 1
    input: Any = None
    payload_fields: ClassVar[tuple[str, ...]] = ("input",)


class StepCompleted(Event, frozen=True, kw_only=True, array_like=True):
    """Step ``seq`` returned ``output``; ``duration`` in seconds."""

    seq: int
    attempt: int = 1
    output: Any = None
    costs: tuple[Cost, ...] = ()
    duration: float = 0.0
    payload_fields: ClassVar[tuple[str, ...]] = ("output",)


class StepFailed(Event, frozen=True, kw_only=True, array_like=True):
    """Attempt ``attempt`` of step ``seq`` raised; ``will_retry`` says whether another follows."""

    seq: int
    attempt: int
    error: ErrorInfo
    will_retry: bool = False
    costs: tuple[Cost, ...] = ()
    duration: float = 0.0
    #: When the next attempt starts (a retry's back-off), and how many attempts the step's
    #: retry policy allows in all (0: not recorded).
    retry_at: datetime | None = None
    max_attempts: int = 0


class LogRecorded(Event, frozen=True, kw_only=True, array_like=True):
    """A log line of the execution, optionally inside step ``seq``."""

    level: str
    message: str
    seq: int | None = None
    fields: dict[str, Any] = {}
    payload_fields: ClassVar[tuple[str, ...]] = ("fields",)


class ExecutionPaused(Event, frozen=True, kw_only=True, array_like=True):
    """The execution waits for something outside it (e.g. ``human_review``), until
    ``until`` at the latest if given (then it resumes by itself, timed out)."""

    reason: str
    payload: Any = None
    until: datetime | None = None
    payload_fields: ClassVar[tuple[str, ...]] = ("payload",)


class ExecutionResumed(Event, frozen=True, kw_only=True, array_like=True):
    """The pause was answered with ``value``, or ended by its deadline (``timed_out``)."""

    value: Any = None
    timed_out: bool = False
    payload_fields: ClassVar[tuple[str, ...]] = ("value",)


class ExecutionCompleted(Event, frozen=True, kw_only=True, array_like=True):
    """The workflow returned ``output``. Terminal."""

    output: Any = None
    payload_fields: ClassVar[tuple[str, ...]] = ("output",)


class ExecutionFailed(Event, frozen=True, kw_only=True, array_like=True):
    """The workflow raised ``error``. Terminal."""

    error: ErrorInfo


class ExecutionCancelled(Event, frozen=True, kw_only=True, array_like=True):
    """Someone cancelled the execution. Terminal."""

    reason: str = ""
    #: Who held its lease when it was cancelled (a live driver stops at its next call; a
    #: step in flight finishes first), as the journal names them; "" if nobody did.
    holder: str = ""


class ExecutionClaimed(Event, frozen=True, kw_only=True, array_like=True):
    """A process took the execution's lease and drives it from here: at its start, a
    resume, a recovery, or a re-run of the same idempotency key. Who it is, so a takeover is
    visible in the log and a live holder can be named."""

    host: str
    pid: int
    #: The id of the ``Runner`` (one per Runner object, unique across processes).
    runner: str
    #: start, resume, recover or continue (an idempotent run() that found an orphan).
    reason: str = "start"
    #: When the claiming process started (UTC).
    process_started: datetime | None = None
    #: On a takeover: seconds since the execution's previous event.
    quiet_for: float | None = None


#: What a wait waits for (``WaitStarted.kind``).
WAIT_TIMER = "timer"
WAIT_SIGNAL = "signal"
WAIT_CHILD = "child"

#: The signal a child execution's end sends its parent (the parent's call ``seq``).
CHILD_SIGNAL = "journal.child:"


def child_signal(seq: int) -> str:
    """The name of the signal that tells a parent its child of call ``seq`` ended."""
    return f"{CHILD_SIGNAL}{seq}"


class WaitStarted(Event, frozen=True, kw_only=True, array_like=True):
    """The workflow waits at call ``seq``: for time (``timer``: until ``until``), for a
    signal named ``name`` (``signal``; ``until`` is its timeout, if any), or for the end of
    the child execution it started there (``child``: ``name`` is the child's workflow; its
    end arrives as the signal :func:`child_signal` of ``seq``). Committed before the
    workflow stops; the execution holds nothing while it waits."""

    seq: int
    kind: str
    name: str = ""
    until: datetime | None = None


class WaitEnded(Event, frozen=True, kw_only=True, array_like=True):
    """The wait at ``seq`` is over: it consumed the signal at position ``signal`` (> 0),
    or timed out (``timed_out``), or its timer fired (neither)."""

    seq: int
    signal: int = 0
    timed_out: bool = False


class SignalReceived(Event, frozen=True, kw_only=True, array_like=True):
    """A signal ``name`` with ``value`` arrived from outside (``runner.signal``), whatever
    the execution was doing; the first wait for ``name`` not yet answered consumes it."""

    name: str
    value: Any = None
    payload_fields: ClassVar[tuple[str, ...]] = ("value",)


class ValueRecorded(Event, frozen=True, kw_only=True, array_like=True):
    """A value the workflow drew at call ``seq`` (``now``, ``random``, ``uuid4``): replay
    returns it instead of drawing again. Kind ``patch``: the marker ``ctx.patched(id)``
    leaves where code with patch ``value`` first ran."""

    seq: int
    kind: str
    value: Any = None
    payload_fields: ClassVar[tuple[str, ...]] = ("value",)


class ReplayDiverged(Event, frozen=True, kw_only=True, array_like=True):
    """A process could not replay the execution with its code: at call ``seq`` the journal
    recorded ``recorded`` and the code (``version``) called ``called``. Nothing else was
    written and the execution stays where it was (running, paused or waiting), so that
    ``journal stuck`` can say why it is not moving and which code to deploy. A later claim
    (code that replays it) clears it."""

    seq: int
    version: str = ""
    recorded: str = ""
    called: str = ""
    message: str = ""
    host: str = ""
    pid: int = 0


EVENT_TYPES: tuple[type[Event], ...] = (
    ExecutionStarted,
    StepStarted,
    StepCompleted,
    StepFailed,
    LogRecorded,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCancelled,
    ExecutionClaimed,
    WaitStarted,
    WaitEnded,
    SignalReceived,
    ValueRecorded,
    ReplayDiverged,
)

TERMINAL_EVENTS: tuple[type[Event], ...] = (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCancelled,
)
