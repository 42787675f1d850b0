"""A stateful test of the lifecycle: random valid and invalid transitions against a tiny model.

The machine drives several executions, each with two handles that compete for the same
stream, through the real journal on SQLite and PostgreSQL. Beside it runs a model written
from the design (not from ``journal.state``): for every execution, the model state after
each position. A handle's view is the model at the position it last saw, so the machine
predicts for every call whether it succeeds, is rejected (``InvalidTransition``: the view
forbids it) or loses the race (``ConcurrencyConflict``: the view is behind the log).
"""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from journal import (
    ConcurrencyConflict,
    Cost,
    ExecutionHandle,
    ExecutionStarted,
    InvalidTransition,
    Journal,
    StepCompleted,
    StepFailed,
    StepStarted,
    fold,
)
from journal.events import TERMINAL_EVENTS

NAMES = ("fetch", "summarise")
TERMINAL = {"completed", "failed", "cancelled"}
# Weighted so that runs live long enough to be interesting before they end.
KINDS = (
    "step_started", "step_started", "step_started", "step_completed", "step_completed",
    "step_completed", "retry", "step_failed", "log", "log", "paused", "resumed", "resumed",
    "completed", "failed", "cancelled",
)

costs_strategy = st.lists(
    st.builds(
        Cost,
        usd=st.decimals(min_value=0, max_value=50, places=6),
        input_tokens=st.integers(0, 10_000),
        output_tokens=st.integers(0, 10_000),
        model=st.sampled_from(["", "small", "large"]),
    ),
    max_size=2,
).map(tuple)


class Rejected(Exception):
    """The model says the journal must refuse this call."""


@dataclasses.dataclass
class MStep:
    name: str
    status: str  # running | retrying | completed | failed
    attempts: int


@dataclasses.dataclass
class Model:
    """What one execution's stream says, as far as this test cares."""

    status: str = "running"
    steps: dict[int, MStep] = dataclasses.field(default_factory=dict)
    last_started: int | None = None
    last_completed: int | None = None
    usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    logs: int = 0

    @property
    def next_seq(self) -> int:
        return max(self.steps, default=0) + 1


# An action is (kind, args); the model and the journal both interpret it.
Action = tuple[str, dict[str, Any]]


def model_apply(m: Model, action: Action) -> Model:
    """The model's transition: a new Model, or Rejected."""
    kind, a = action
    if m.status in TERMINAL:
        raise Rejected
    m = copy.deepcopy(m)
    if kind == "log":
        m.logs += 1
    elif kind == "step_started":
        if m.status != "running":
            raise Rejected
        seq = m.next_seq if a["seq"] is None else a["seq"]
        step = m.steps.get(seq)
        if step is None:
            if a["attempt"] != 1 or seq < 1:
                raise Rejected
            m.steps[seq] = MStep(a["name"], "running", 1)
        else:
            if step.name != a["name"] or step.status not in ("running", "retrying"):
                raise Rejected
            if a["attempt"] != step.attempts + 1:
                raise Rejected
            step.status, step.attempts = "running", a["attempt"]
        m.last_started = seq if m.last_started is None else max(m.last_started, seq)
    elif kind in ("step_completed", "step_failed"):
        step = m.steps.get(a["seq"])
        if m.status != "running" or step is None or step.status != "running":
            raise Rejected
        if kind == "step_completed":
            step.status = "completed"
            s = a["seq"]
            m.last_completed = s if m.last_completed is None else max(m.last_completed, s)
        else:
            step.status = "retrying" if a["will_retry"] else "failed"
        for c in a["costs"]:
            m.usd += c.usd
            m.input_tokens += c.input_tokens
            m.output_tokens += c.output_tokens
    elif kind == "paused":
        if m.status != "running":
            raise Rejected
        m.status = "paused"
    elif kind == "resumed":
        if m.status != "paused":
            raise Rejected
        m.status = "running"
    elif kind == "completed":
        if m.status != "running" or any(s.status == "running" for s in m.steps.values()):
            raise Rejected
        m.status = "completed"
    elif kind == "failed":
        m.status = "failed"
    elif kind == "cancelled":
        m.status = "cancelled"
    else:  # pragma: no cover - a typo in the machine
        raise AssertionError(kind)
    return m


def valid_actions(m: Model) -> list[Action]:
    """Calls the model allows in state ``m`` (step calls weighted over the others)."""
    if m.status in TERMINAL:
        return []
    out: list[Action] = [("log", {"n": 0}), ("failed", {}), ("cancelled", {})]
    if m.status == "paused":
        return [*out, ("resumed", {}), ("resumed", {}), ("resumed", {})]
    out.append(("paused", {}))
    out += 3 * [("step_started", {"name": n, "seq": None, "attempt": 1}) for n in NAMES]
    for seq, step in m.steps.items():
        if step.status in ("running", "retrying"):
            out.append(("step_started", {"name": step.name, "seq": seq,
                                         "attempt": step.attempts + 1}))
        if step.status == "running":
            out += 3 * [("step_completed", {"seq": seq})]
            out += [("step_failed", {"seq": seq, "will_retry": r}) for r in (True, False)]
    if not any(s.status == "running" for s in m.steps.values()):
        out.append(("completed", {}))
    return out


def perform(h: ExecutionHandle, action: Action) -> Any:
    """Make the journal call the action names; log lines are flushed to make them durable."""
    kind, a = action
    if kind == "log":
        h.log("note", level="debug", n=a["n"])
        if h._batch is None:  # outside atomic(): commit it now so the count is exact
            h.flush()
        return None
    if kind == "step_started":
        if a["seq"] is None:
            return h.step_started(a["name"], {"n": 1})
        return h.step_started(a["name"], attempt=a["attempt"], seq=a["seq"])
    if kind == "step_completed":
        return h.step_completed(a["seq"], {"ok": a["seq"]}, costs=a["costs"])
    if kind == "step_failed":
        return h.step_failed(
            a["seq"], ValueError("boom"), will_retry=a["will_retry"], costs=a["costs"]
        )
    if kind == "paused":
        return h.paused("human_review", {"q": "ok?"})
    if kind == "resumed":
        return h.resumed("yes")
    if kind == "completed":
        return h.completed({"done": True})
    if kind == "failed":
        return h.failed(RuntimeError("gave up"))
    return h.cancelled("operator")


class LifecycleMachine(RuleBasedStateMachine):
    """The journal beside its model, over a few executions and two handles on each."""

    executions = Bundle("executions")

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.history: dict[UUID, list[Model | None]] = {}  # [position] -> model after it
        self.handles: dict[tuple[UUID, str], ExecutionHandle] = {}
        # The position each handle last saw; None: it reloads from the log at its next call.
        self.seen: dict[tuple[UUID, str], int | None] = {}
        self.keys: dict[UUID, str] = {}

    # -- helpers -----------------------------------------------------------------------------

    def count(self, eid: UUID) -> int:
        return len(self.journal.events(eid))

    def seen_by(self, eid: UUID, who: str) -> int:
        seen = self.seen[(eid, who)]
        return len(self.history[eid]) - 1 if seen is None else seen

    def view(self, eid: UUID, who: str) -> Model:
        m = self.history[eid][self.seen_by(eid, who)]
        assert m is not None
        return m

    def draw_action(self, data: st.DataObject, view: Model) -> Action:
        """Mostly a call the view allows; otherwise any call, valid or not."""
        if data.draw(st.integers(0, 3), label="pick a valid call") > 0:
            valid = valid_actions(view)
            if valid:
                kind, args = data.draw(st.sampled_from(valid), label="valid call")
                if kind in ("step_completed", "step_failed"):
                    args = {**args, "costs": data.draw(costs_strategy, label="costs")}
                return (kind, args)
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        running = [q for q, x in view.steps.items() if x.status == "running"]
        # Mostly open steps; sometimes any step, or one never started.
        seqs = [*running, *running, *running, *sorted(view.steps), view.next_seq + 2]
        if kind == "log":
            return ("log", {"n": data.draw(st.integers(0, 9))})
        if kind == "step_started":
            return ("step_started", {"name": data.draw(st.sampled_from(NAMES)), "seq": None,
                                     "attempt": 1})
        if kind == "retry":
            seq = data.draw(st.sampled_from(seqs), label="seq")
            step = view.steps.get(seq)
            same_name = step is not None and data.draw(st.integers(0, 4), label="name") > 0
            name = step.name if step is not None and same_name else "other"
            attempt = (step.attempts if step else 1) + data.draw(
                st.sampled_from([1, 1, 1, 2, 0]), label="attempt delta"
            )
            return ("step_started", {"name": name, "seq": seq, "attempt": attempt})
        if kind in ("step_completed", "step_failed"):
            args = {"seq": data.draw(st.sampled_from(seqs), label="seq"),
                    "costs": data.draw(costs_strategy, label="costs")}
            if kind == "step_failed":
                args["will_retry"] = data.draw(st.booleans(), label="will_retry")
            return (kind, args)
        return (kind, {})

    def attempt(self, eid: UUID, who: str, actions: list[Action]) -> None:
        """Run ``actions`` on one handle (two: in one atomic block) and check the outcome."""
        history = self.history[eid]
        current = len(history) - 1
        seen = self.seen[(eid, who)] = self.seen_by(eid, who)  # a stale handle reloads now
        m = self.view(eid, who)
        after: list[Model] = []
        expected: type[Exception] | None = None
        try:
            for action in actions:
                m = model_apply(m, action)
                after.append(m)
        except Rejected:
            expected = InvalidTransition
        else:
            if seen < current:
                expected = ConcurrencyConflict
        head = history[current]
        if (len(actions) == 1 and actions[0][0] == "log" and seen < current
                and head is not None and head.status not in TERMINAL):
            # An accepted log line that loses the race is appended at the new head.
            after, expected = [model_apply(head, actions[0])], None
        event(f"{len(actions)} call(s): {expected.__name__ if expected else 'recorded'}")
        before = self.count(eid)
        assert before == current
        h = self.handles[(eid, who)]
        results: list[Any] = []
        try:
            if len(actions) == 1:
                results.append(perform(h, actions[0]))
            else:
                with h.atomic():
                    results.extend(perform(h, a) for a in actions)
        except (InvalidTransition, ConcurrencyConflict) as e:
            assert type(e) is expected, f"{actions}: expected {expected}, got {e!r}"
            assert self.count(eid) == before, "a rejected transition wrote something"
            if isinstance(e, InvalidTransition):
                assert str(eid) in str(e)
            if isinstance(e, ConcurrencyConflict) or len(actions) > 1:
                self.seen[(eid, who)] = None  # the handle reloads from the log
            return
        assert expected is None, f"{actions}: expected {expected.__name__}, it was recorded"
        history.extend(after)
        self.seen[(eid, who)] = len(history) - 1
        assert self.count(eid) == len(history) - 1
        # step_started returns the seq its model gave the step.
        views = [self.history[eid][seen], *after]
        for i, (action, result) in enumerate(zip(actions, results, strict=True)):
            kind, a = action
            if kind == "step_started":
                v = views[i]
                assert v is not None
                assert result == (v.next_seq if a["seq"] is None else a["seq"])

    # -- rules -------------------------------------------------------------------------------

    @initialize(target=executions)
    def first_start(self) -> UUID:
        return self._start(None)

    @precondition(lambda self: len(self.history) < 3)
    @rule(target=executions, keyed=st.booleans())
    def start(self, keyed: bool) -> UUID:
        return self._start(f"key-{uuid4().hex}" if keyed else None)

    def _start(self, key: str | None) -> UUID:
        a = self.journal.start("machine", {"x": 1}, idempotency_key=key)
        eid = a.id
        self.history[eid] = [None, Model()]
        self.handles[(eid, "a")] = a
        self.handles[(eid, "b")] = self.journal.execution(eid)
        self.seen[(eid, "a")] = self.seen[(eid, "b")] = 1
        if key is not None:
            self.keys[eid] = key
        return eid

    @rule(eid=executions)
    def start_again(self, eid: UUID) -> None:
        before = self.count(eid)
        key = self.keys.get(eid)
        if key is not None:
            again = self.journal.start("machine", {"x": 1}, idempotency_key=key)
            assert again.id == eid
            assert again.position == before
        else:
            with pytest.raises(InvalidTransition, match="already started"):
                self.journal.start("machine", execution_id=eid)
        assert self.count(eid) == before

    @rule(eid=executions, who=st.sampled_from("ab"), data=st.data())
    def one_call(self, eid: UUID, who: str, data: st.DataObject) -> None:
        self.attempt(eid, who, [self.draw_action(data, self.view(eid, who))])

    @rule(eid=executions, who=st.sampled_from("ab"), data=st.data())
    def atomic_pair(self, eid: UUID, who: str, data: st.DataObject) -> None:
        first = self.draw_action(data, self.view(eid, who))
        try:
            mid = model_apply(self.view(eid, who), first)
        except Rejected:
            mid = self.view(eid, who)
        self.attempt(eid, who, [first, self.draw_action(data, mid)])

    @rule(eid=executions, who=st.sampled_from("ab"))
    def complete_and_start_next(self, eid: UUID, who: str) -> None:
        """The runner's one-commit-per-step pattern: finish the open step, start the next."""
        view = self.view(eid, who)
        running = [s for s, st_ in view.steps.items() if st_.status == "running"]
        seq = running[-1] if running else view.next_seq
        self.attempt(eid, who, [
            ("step_completed", {"seq": seq, "costs": (Cost(usd=Decimal("0.01")),)}),
            ("step_started", {"name": "fetch", "seq": None, "attempt": 1}),
        ])

    @rule(eid=executions, who=st.sampled_from("ab"))
    def atomic_block_raises(self, eid: UUID, who: str) -> None:
        before = self.count(eid)
        h = self.handles[(eid, who)]
        with pytest.raises(KeyError), h.atomic():
            raise KeyError("user code failed inside the block")
        assert self.count(eid) == before
        self.seen[(eid, who)] = None  # reloads from the log at its next call

    @rule(eid=executions, who=st.sampled_from("ab"))
    def reopen(self, eid: UUID, who: str) -> None:
        self.handles[(eid, who)] = self.journal.execution(eid)
        self.seen[(eid, who)] = len(self.history[eid]) - 1

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def streams_are_well_formed(self) -> None:
        for eid, history in self.history.items():
            events = self.journal.events(eid)
            assert [e.position for e in events] == list(range(1, len(events) + 1))
            assert len(events) == len(history) - 1
            assert all(e.execution_id == eid for e in events)
            assert isinstance(events[0], ExecutionStarted)
            assert not any(isinstance(e, ExecutionStarted) for e in events[1:])
            terminal = [i for i, e in enumerate(events) if isinstance(e, TERMINAL_EVENTS)]
            assert terminal in ([], [len(events) - 1])
            open_attempts: dict[int, int] = {}
            for e in events:
                if isinstance(e, StepStarted):
                    open_attempts[e.seq] = e.attempt
                elif isinstance(e, StepCompleted | StepFailed):
                    assert open_attempts.pop(e.seq, None) == e.attempt
            for k in range(1, len(events) + 1):  # every prefix is a valid state (resumable)
                fold(eid, events[:k])

    @invariant()
    def state_matches_model(self) -> None:
        for eid, history in self.history.items():
            m = history[-1]
            assert m is not None
            s = self.journal.state(eid)
            assert s.position == len(history) - 1
            assert s.status == m.status
            assert {q: (x.name, x.status, x.attempts) for q, x in s.steps.items()} == {
                q: (x.name, x.status, x.attempts) for q, x in m.steps.items()
            }
            started = s.last_started_step.seq if s.last_started_step else None
            completed = s.last_completed_step.seq if s.last_completed_step else None
            assert (started, completed) == (m.last_started, m.last_completed)
            assert type(s.cost.usd) is Decimal
            assert (s.cost.usd, s.cost.input_tokens, s.cost.output_tokens) == (
                m.usd, m.input_tokens, m.output_tokens
            )
            assert s.log_count == m.logs


def test_lifecycle_machine(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run_state_machine_as_test(
            lambda: LifecycleMachine(journal), settings=settings(stateful_step_count=30)
        )
