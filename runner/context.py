"""What workflow code calls: the context (step, pause, log), retries, costs, the current step.

A workflow is a plain function whose first parameter is the context::

    @runner.workflow()
    def review(ctx: Context, doc_id: str) -> dict:
        text = ctx.step("fetch", fetch_doc, doc_id)
        decision = ctx.pause("human_review", payload={"chars": len(text)})
        return {"approved": decision["approved"]}

The context hands every call to the engine (``runner._engine``), which decides whether it is
replayed from the journal or runs live. Workflow code must be deterministic between steps:
anything that talks to the world, reads the clock or draws random numbers goes in a step.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random as _random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, overload
from uuid import UUID

from journal.errors import JournalError
from journal.events import WAIT_CHILD, WAIT_SIGNAL, WAIT_TIMER, Cost
from journal.state import CALL_DONE
from journal.values import aware_utc
from runner.errors import OutsideStep

if TYPE_CHECKING:
    from runner._engine import Engine


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    """A duration in seconds, or a clear error naming ``what``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"a {what} must be seconds >= 0 or a timedelta, not {value!r}")
    return float(value)


def _child_trouble(engine: Engine, workflow: str, seq: int, error: JournalError) -> None:
    """A child that could not be driven here (its driver busy, its code diverged, the
    database away) is not a failure of the parent: the parent waits for the child's end,
    and serve() looks again. (The parent's own halt, if it is stopped, still stops it.)"""
    engine.check_halt()
    logger.warning("runner: child %r (seq %d) of %s not driven here: %s", workflow, seq,
                   engine.id, error)


def _signal_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a signal name must be a non-empty string, not {name!r}")
    return name

__all__ = ["AsyncContext", "Context", "Retry", "StepInfo", "add_cost", "current_step"]

T = TypeVar("T")
logger = logging.getLogger("runner")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Retry:
    """How often a step is tried and how long to wait between tries.

    ``attempts`` counts tries in all (``Retry(attempts=3)``: the first and two retries). The
    wait before retry ``n`` is ``backoff * multiplier ** (n - 1)`` seconds, capped at
    ``max_backoff``. Only exceptions that are instances of ``retry_on`` are retried.
    A try abandoned by a crash is not a failure: it does not use up an attempt.
    """

    attempts: int = 3
    backoff: float = 0.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry(attempts={self.attempts}): attempts must be at least 1")
        if self.backoff < 0 or self.multiplier < 1 or self.max_backoff < 0:
            raise ValueError(f"{self!r}: backoffs must be >= 0 and multiplier >= 1")

    def should_retry(self, error: BaseException, failures: int) -> bool:
        """Whether another try follows the ``failures``-th failure, which raised ``error``."""
        return failures < self.attempts and isinstance(error, self.retry_on)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure."""
        return float(min(self.backoff * self.multiplier ** (failures - 1), self.max_backoff))


NO_RETRY = Retry(attempts=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepInfo:
    """The step whose code is running: what ``current_step()`` returns."""

    execution_id: UUID
    name: str
    seq: int
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and recoveries of this step: pass it to external APIs."""
        return f"{self.execution_id}:{self.seq}"


def _scope_or_raise(what: str) -> Any:
    from runner._engine import current_scope

    scope = current_scope()
    if scope is None:
        raise OutsideStep(what)
    return scope


def add_cost(
    *,
    usd: Decimal | float | int | str = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    model: str = "",
) -> None:
    """Attach a cost to the running step; recorded with its completion or its failure.

    ``usd`` is kept as an exact Decimal (a float is converted through its shortest repr).
    """
    scope = _scope_or_raise("add_cost")
    amount = usd if isinstance(usd, Decimal) else Decimal(str(usd))
    scope.costs.append(
        Cost(usd=amount, input_tokens=input_tokens, output_tokens=output_tokens, model=model)
    )


def current_step() -> StepInfo:
    """The running step's name, seq, attempt and idempotency key; raises OutsideStep outside."""
    scope = _scope_or_raise("current_step")
    info: StepInfo = scope.info
    return info


class _ContextBase:
    """What both contexts tell about the execution they run in."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def execution_id(self) -> UUID:
        """The id of this execution (also its stream id in the journal)."""
        return self._engine.id

    @property
    def workflow(self) -> str:
        """The registered name of the running workflow."""
        return self._engine.workflow

    @property
    def is_replaying(self) -> bool:
        """True while the workflow is re-running calls the journal has already recorded."""
        return self._engine.is_replaying

    def now(self) -> datetime:
        """The current time (aware, UTC) as of this call's first execution; the same value
        on every replay (workflow code must not read the clock itself)."""
        value: datetime = self._engine.draw("now", lambda: datetime.now(UTC))
        return value

    def random(self) -> float:
        """A random float in [0, 1), drawn once and replayed."""
        value: float = self._engine.draw("random", _random.random)
        return value

    def uuid4(self) -> UUID:
        """A random UUID, drawn once and replayed."""
        value: UUID = self._engine.draw("uuid4", uuid.uuid4)
        return value

    def patched(self, patch_id: str) -> bool:
        """Whether this point runs with the code of patch ``patch_id``: True the first time
        an execution gets here with code that has the patch (a marker is recorded, and it
        stays True on replay); False on replay of an execution recorded before the patch
        existed. So old and new executions both continue::

            if ctx.patched("add-check"):
                ctx.step("new_check", check)

        A marker that disagrees with the code is a :class:`NonDeterministicWorkflow` that
        names the patch."""
        return self._engine.patched(patch_id)

    def deprecate_patch(self, patch_id: str) -> None:
        """The cleanup phase of a patch, once no execution takes the old path: the code no
        longer branches; executions recorded with the marker still replay."""
        self._engine.patched(patch_id, deprecated=True)


class Context(_ContextBase):
    """Handed to a synchronous workflow as its first argument."""

    __slots__ = ()

    def step(
        self,
        name: str,
        fn: Callable[..., T],
        /,
        *args: Any,
        retry: Retry | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` as step ``name``, or return its recorded outcome.

        StepStarted is committed before ``fn`` runs. On replay a completed step returns its
        recorded output (converted to ``fn``'s return annotation) without running; a step
        that failed for good raises :class:`StepFailedError` again.
        """
        output: T = self._engine.run_step(name, fn, args, kwargs, retry)
        return output

    def pause(
        self, reason: str, payload: Any = None, *, timeout: float | timedelta | None = None
    ) -> Any:
        """Pause the execution (e.g. ``"human_review"``); returns the value it is resumed with.

        The pause is committed, and ``run()``/``resume()`` return with status ``paused``.
        ``runner.resume(id, value)`` re-runs the workflow, and this call returns ``value``.
        With ``timeout``, a pause still open then is ended by ``serve()``: this call raises
        :class:`WaitTimedOut`.
        """
        return self._engine.pause(reason, payload, _seconds(timeout, "pause timeout"))

    def child(self, workflow: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``workflow(*args, **kwargs)`` as a child execution and return its output
        (:class:`ChildFailed` if it failed or was cancelled). Its id comes from this
        execution's and this call's, so replay finds the same child. It is driven here at
        once; if it pauses or waits, this execution waits for it (status ``waiting``) and
        its end resumes this one. Cancelling this execution cancels its open children."""
        engine = self._engine
        name = engine.children.workflow_name(workflow)
        seq, rec = engine.begin_call(WAIT_CHILD, name)
        if rec is None or rec.status != CALL_DONE:
            engine.child_wait(seq, rec, name)
            try:
                engine.children._run_child(name, args, kwargs, engine.id, seq)
            except JournalError as e:  # the child is not done: this one waits for it
                _child_trouble(engine, name, seq, e)
        return engine.child_outcome(seq, rec, name)

    def sleep(self, duration: float | timedelta) -> None:
        """Sleep durably: the wake-up time is committed, the run stops (``run()`` returns
        status ``waiting``), and ``serve()`` resumes it at that time in whatever process is
        alive; on replay a fired timer returns at once."""
        engine = self._engine
        seconds = _seconds(duration, "sleep duration")
        assert seconds is not None
        seq, rec = engine.begin_call(WAIT_TIMER, "")
        engine.timer(seq, rec, datetime.now(UTC) + timedelta(seconds=seconds))

    def sleep_until(self, when: datetime) -> None:
        """:meth:`sleep` until ``when`` (an aware datetime)."""
        engine = self._engine
        until = aware_utc(when, "sleep_until time")
        seq, rec = engine.begin_call(WAIT_TIMER, "")
        engine.timer(seq, rec, until)

    def wait_for(self, name: str, *, timeout: float | timedelta | None = None) -> Any:
        """The value of the first signal ``name`` not consumed yet (sent before or after this
        call, by ``runner.signal``); each signal is consumed once, in the order they came.
        Until one comes the run stops, status ``waiting``; at ``timeout`` this raises
        :class:`WaitTimedOut`."""
        engine = self._engine
        seq, rec = engine.begin_call(WAIT_SIGNAL, _signal_name(name))
        return engine.signal_wait(seq, rec, name, _seconds(timeout, "wait timeout"))

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """Record a log line (inside a step, tagged with its seq); not repeated on replay."""
        self._engine.log(message, level, fields)


class AsyncContext(_ContextBase):
    """Handed to an ``async def`` workflow: ``await ctx.step(...)``, ``await ctx.pause(...)``."""

    __slots__ = ()

    @overload
    def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        retry: Retry | None = None,
        **kwargs: Any,
    ) -> Awaitable[T]: ...

    @overload
    def step(
        self,
        name: str,
        fn: Callable[..., T],
        /,
        *args: Any,
        retry: Retry | None = None,
        **kwargs: Any,
    ) -> Awaitable[T]: ...

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        retry: Retry | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Run step ``name``: ``fn`` may be ``async def`` or plain (run in a worker thread).

        The seq is assigned when ``step`` is called, not when it is awaited, so steps
        started together with ``asyncio.gather`` get seqs in argument order, every time.
        """
        return self._engine.arun_step(name, fn, args, kwargs, retry)

    async def pause(
        self, reason: str, payload: Any = None, *, timeout: float | timedelta | None = None
    ) -> Any:
        """Pause once the steps in flight have finished; returns the resume value."""
        engine = self._engine
        seconds = _seconds(timeout, "pause timeout")
        await engine.wait_idle()
        if engine.pause_is_answered():  # replayed: nothing to write
            await engine.give_turn()
            return engine.pause(reason, payload, seconds)
        return await engine.io(functools.partial(engine.pause, reason, payload, seconds))

    def child(
        self, workflow: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        """``await ctx.child(...)``: :meth:`Context.child` (the seq is taken when called)."""
        engine = self._engine
        name = engine.children.workflow_name(workflow)
        seq, rec = engine.begin_call(WAIT_CHILD, name)

        async def child() -> Any:
            if rec is not None and rec.status == CALL_DONE:
                await engine.give_turn()
                return engine.child_outcome(seq, rec, name)
            engine.enter_wait(f"child({name!r})")
            try:
                await engine.wait_idle()
                await engine.io(functools.partial(engine.child_wait, seq, rec, name))
                try:
                    await engine.children._arun_child(name, args, kwargs, engine.id, seq)
                except JournalError as e:  # the child is not done: this one waits for it
                    _child_trouble(engine, name, seq, e)
                return await engine.io(functools.partial(engine.child_outcome, seq, rec, name))
            finally:
                engine.leave_wait()

        return child()

    def sleep(self, duration: float | timedelta) -> Awaitable[None]:
        """``await ctx.sleep(...)``: :meth:`Context.sleep` (the seq is taken when called)."""
        seconds = _seconds(duration, "sleep duration")
        assert seconds is not None
        return self._timer(datetime.now(UTC) + timedelta(seconds=seconds))

    def sleep_until(self, when: datetime) -> Awaitable[None]:
        """``await ctx.sleep_until(...)``: :meth:`Context.sleep_until`."""
        return self._timer(aware_utc(when, "sleep_until time"))

    def _timer(self, until: datetime) -> Awaitable[None]:
        engine = self._engine
        seq, rec = engine.begin_call(WAIT_TIMER, "")

        async def timer() -> None:
            if rec is None or rec.status != CALL_DONE:
                engine.enter_wait("sleep()")
                try:
                    await engine.wait_idle()
                    await engine.io(functools.partial(engine.timer, seq, rec, until))
                finally:
                    engine.leave_wait()
            else:
                await engine.give_turn()

        return timer()

    def wait_for(self, name: str, *, timeout: float | timedelta | None = None) -> Awaitable[Any]:
        """``await ctx.wait_for(...)``: :meth:`Context.wait_for`."""
        engine = self._engine
        seconds = _seconds(timeout, "wait timeout")
        seq, rec = engine.begin_call(WAIT_SIGNAL, _signal_name(name))

        async def wait() -> Any:
            if rec is not None and rec.status == CALL_DONE:
                await engine.give_turn()
                return engine.signal_wait(seq, rec, name, seconds)
            engine.enter_wait(f"wait_for({name!r})")
            try:
                await engine.wait_idle()
                return await engine.io(
                    functools.partial(engine.signal_wait, seq, rec, name, seconds))
            finally:
                engine.leave_wait()

        return wait()

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """Record a log line (inside a step, tagged with its seq); not repeated on replay."""
        self._engine.log(message, level, fields)
