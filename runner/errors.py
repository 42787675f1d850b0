"""Errors the runner raises, under the journal's one root.

::

    JournalError                      (journal.errors: the root of everything here)
     ├── JournalUnavailable           the database failed a write: the run stopped, recover() later
     ├── ConcurrencyConflict          another runner wrote first: this one stopped, ran no step code
     │    └── AlreadyResumed          resume() of a pause another runner has already answered
     ├── InvalidTransition            e.g. resume() of a cancelled execution; nothing written
     └── RunnerError                  raised by the runner itself
          ├── StepFailedError         a step failed for good (live, or as recorded on replay)
          ├── NonDeterministicWorkflow  replay called something other than what was recorded
          ├── IncompatibleOutput  a recorded output no longer fits the step's return annotation
          ├── ValueClassMissing   a recorded value's class cannot be imported in this process
          ├── ExecutionBusy       a live process drives the execution (holds its lease)
          ├── LeaseLost           this process could not confirm its lease: it stopped first
          ├── WorkflowNotFound        no workflow registered under the recorded name
          ├── SecretInput             run() given a secret the journal would redact; nothing written
          ├── OutsideStep             add_cost()/current_step() called outside a step
          ├── WaitTimedOut            wait_for()/pause() reached its timeout (code may catch it)
          └── ChildFailed             a child execution failed or was cancelled

Every error names the execution and what to do; the runner's own are raised before anything
is written, except ``StepFailedError``, whose failure is in the journal by the time the
workflow sees it.
"""

from __future__ import annotations

from uuid import UUID

from journal.errors import ConcurrencyConflict, InvalidTransition, JournalError

__all__ = [
    "AlreadyResumed",
    "ChildFailed",
    "ExecutionBusy",
    "IncompatibleOutput",
    "LeaseLost",
    "NonDeterministicWorkflow",
    "OutsideStep",
    "RunnerError",
    "SecretInput",
    "StepFailedError",
    "ValueClassMissing",
    "WaitTimedOut",
    "WorkflowNotFound",
]


class RunnerError(JournalError):
    """Root of the errors raised by the runner itself."""


class StepFailedError(RunnerError):
    """A step failed for good: its retries are exhausted (or it had none).

    ``error_type`` and ``error_message`` are the original exception's qualified type name and
    message; they are the same whether the failure happened just now or is being replayed
    from the journal. On a live failure the original exception is also ``__cause__``.
    """

    def __init__(
        self,
        *,
        execution_id: UUID,
        step: str,
        seq: int,
        attempts: int,
        error_type: str,
        error_message: str,
    ) -> None:
        self.execution_id = execution_id
        self.step = step
        self.seq = seq
        self.attempts = attempts
        self.error_type = error_type
        self.error_message = error_message
        super().__init__(
            f"step {step!r} (seq {seq}) of execution {execution_id} failed after "
            f"{attempts} attempt(s): {error_type}: {error_message}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_step_failed, (self.__dict__.copy(),))


def _rebuild_step_failed(facts: dict[str, object]) -> StepFailedError:
    keys = ("execution_id", "step", "seq", "attempts", "error_type", "error_message")
    return StepFailedError(**{k: facts[k] for k in keys})  # type: ignore[arg-type]


class NonDeterministicWorkflow(RunnerError):
    """Replay reached a call that differs from what the journal recorded; no step ran.

    ``recorded`` and ``called`` are the names of the two calls (a step's or a pause's name,
    as ``recorded_kind``/``called_kind`` say); ``called`` is ``None`` when the workflow
    returned (or paused for the first time) where the journal holds more calls.
    """

    def __init__(
        self,
        *,
        execution_id: UUID,
        workflow: str,
        seq: int,
        recorded: str | None,
        called: str | None,
        recorded_kind: str | None = "step",
        called_kind: str | None = "step",
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self.seq = seq
        self.recorded = recorded
        self.called = called
        self.recorded_kind = recorded_kind
        self.called_kind = called_kind
        rec = "nothing" if recorded is None else f"{recorded_kind} {recorded!r}"
        now = "nothing more (it returned)" if called is None else f"{called_kind} {called!r}"
        super().__init__(
            f"workflow {workflow!r}, execution {execution_id}: at seq {seq} the journal recorded "
            f"{rec} but the workflow now calls {now}; no step ran and its outcome is "
            "unchanged. The workflow code changed since this execution started: finish it "
            "with the code it started with, or cancel it and start a new execution."
        )


class IncompatibleOutput(RunnerError):
    """A recorded step output does not convert to the step function's return annotation."""

    def __init__(
        self, *, execution_id: UUID, step: str, seq: int, annotation: object, cause: str
    ) -> None:
        self.execution_id = execution_id
        self.step = step
        self.seq = seq
        self.annotation = annotation
        super().__init__(
            f"execution {execution_id}: the recorded output of step {step!r} (seq {seq}) does "
            f"not convert to its return annotation {annotation!r}: {cause}. Nothing was "
            "written. The step's return type changed since it ran: restore it to finish this "
            "execution."
        )


class ExecutionBusy(RunnerError):
    """Another live process drives the execution (it holds its lease); nothing was run or
    written. Every loser of a claim gets this, whatever it was trying to do."""

    def __init__(self, execution_id: UUID, *, holder: str | None, waited: float) -> None:
        self.execution_id = execution_id
        self.holder = holder
        self.waited = waited
        who = f" by {holder}" if holder else ""
        super().__init__(
            f"execution {execution_id} is being driven{who} (its lease stayed held for "
            f"{waited:.1f} s); nothing was run or written. Wait for that process, cancel the "
            "execution, or stop that process and recover() it."
        )


class LeaseLost(RunnerError):
    """The driver could not confirm its lease (taken over after its session dropped, or not
    renewable in time), so it stopped before starting step ``step``: no step runs in two
    processes at once. The execution stays running; its new driver (or recover()) goes on."""

    def __init__(
        self, *, execution_id: UUID, step: str | None = None, seq: int | None = None
    ) -> None:
        self.execution_id = execution_id
        self.step = step
        self.seq = seq
        where = f"step {step!r} (seq {seq})" if step is not None else "its next write"
        super().__init__(
            f"execution {execution_id}: this process could not confirm its lease before "
            f"{where} and stopped there, running and writing nothing more; another "
            "process may drive it now (see `journal show`), or recover() will."
        )


class ValueClassMissing(RunnerError):
    """Replay needs a recorded value as its own class, and this process cannot import it."""

    def __init__(self, *, execution_id: UUID, step: str, seq: int, topic: str) -> None:
        self.execution_id = execution_id
        self.step = step
        self.seq = seq
        self.topic = topic
        module, _, name = topic.partition(":")
        where = (
            "it was defined in the writing process's __main__ (a script run as "
            "`python script.py`); move it to an importable module"
            if module == "__main__" else f"module {module!r} is not importable here"
        )
        super().__init__(
            f"execution {execution_id}: the recorded {step} (seq {seq}) holds a {name} "
            f"({topic}) that this process cannot import: {where}, or annotate the step's "
            "return type so the value can be rebuilt from its fields. Nothing was written."
        )


class WorkflowNotFound(RunnerError, LookupError):
    """No workflow is registered under this name in this runner."""

    def __init__(self, name: str, *, execution_id: UUID | None = None) -> None:
        self.name = name
        self.execution_id = execution_id
        where = f" (needed by execution {execution_id})" if execution_id else ""
        super().__init__(
            f"no workflow named {name!r} is registered{where}: import the module that "
            "defines it with @runner.workflow() before running, resuming or recovering"
        )


class SecretInput(RunnerError, ValueError):
    """A workflow input the journal's capture policy would redact; nothing was written.

    The journal records the input with secrets replaced by ``[REDACTED]``, and resume and
    recovery call the workflow again with what was recorded: a secret passed as input would
    come back as the marker. ``parameter`` names where it is (``creds.password``).
    """

    def __init__(self, *, workflow: str, parameter: str) -> None:
        self.workflow = workflow
        self.parameter = parameter
        super().__init__(
            f"workflow {workflow!r}: input {parameter!r} is secret-named, so the journal "
            "records it as [REDACTED] and a resumed or recovered run would get that instead. "
            "Nothing was written. Pass a reference, such as the secret's name in your vault "
            "or environment, and read the secret inside a step, not the secret itself."
        )


class OutsideStep(RunnerError, RuntimeError):
    """A step-only call (``add_cost``, ``current_step``) was made outside a running step."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what}() was called outside a step: call it from code that runs inside "
            "ctx.step(...)"
        )


class AlreadyResumed(ConcurrencyConflict, InvalidTransition):
    """The pause was answered by another runner (or an earlier resume); nothing was written.

    Every loser of a resume race gets this one error, whether it lost while waiting for the
    lease or found the execution ended by the winner: it is both a ``ConcurrencyConflict``
    (another writer was first) and an ``InvalidTransition`` (nothing can resume it now).
    """

    def __init__(self, execution_id: UUID, position: int, *, status: str = "running") -> None:
        self.execution_id = execution_id
        self.position = position
        self.status = status
        self.event = "ExecutionResumed"
        self.reason = "its pause was answered"
        self.facts = {}
        where = (
            "use recover() if that runner died" if status == "running"
            else f"it has already {status}" if status in ("completed", "failed", "cancelled")
            else f"it is {status} again"
        )
        JournalError.__init__(
            self,
            f"execution {execution_id} is no longer paused: its pause was answered at "
            f"position {position}, by another runner or an earlier resume(); {where}. "
            "Nothing was written.",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class WaitTimedOut(RunnerError, TimeoutError):
    """A ``wait_for(name, timeout=...)`` or ``pause(..., timeout=...)`` reached its deadline
    with no signal or answer. Raised into the workflow (the same on replay), which may catch
    it: remind someone, escalate, cancel."""

    def __init__(self, *, execution_id: UUID, seq: int, waited_for: str, until: object) -> None:
        self.execution_id = execution_id
        self.seq = seq
        self.waited_for = waited_for
        self.until = until
        super().__init__(
            f"execution {execution_id}: the wait for {waited_for} at seq {seq} timed out "
            f"(deadline {until})"
        )


class ChildFailed(RunnerError):
    """The child execution ``ctx.child(...)`` started failed or was cancelled; raised into
    the parent at that call (the same on replay), which may catch it."""

    def __init__(
        self, *, execution_id: UUID, seq: int, child: UUID, workflow: str, status: str,
        error_type: str | None, error_message: str | None,
    ) -> None:
        self.execution_id = execution_id
        self.seq = seq
        self.child = child
        self.workflow = workflow
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        cause = f": {error_type}: {error_message}" if error_type else ""
        super().__init__(
            f"execution {execution_id}: its child {child} (workflow {workflow!r}, call seq "
            f"{seq}) {status}{cause}"
        )
