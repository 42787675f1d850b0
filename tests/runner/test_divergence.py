"""A replay that diverges is recorded (``ReplayDiverged``) wherever the code and the log
part: at a call, and where the code returns before the calls the log holds; once per seq
and code version however often it is tried (a slow replay included); a fork does not copy
it. And a parent waiting for its child is not driven again at every round of serve()
(a claim of a waiting run changes no wake-up). SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import journal.state
import runner._engine
import runner._runner
from journal import Journal
from journal.events import ExecutionClaimed
from runner import Context, NonDeterministicWorkflow, Runner


def noop(x: int = 0) -> int:
    return x


def _events(journal: Journal, eid: object) -> list[str]:
    return [type(e).__name__ for e in journal.events(eid)]  # type: ignore[arg-type]


def test_code_that_returns_before_the_recorded_calls_is_recorded(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        old = Runner(journal)

        @old.workflow(name="w", version="1")
        def longer(ctx: Context) -> object:
            ctx.step("a", noop)
            ctx.step("b", noop)
            return ctx.pause("wait")

        run = old.run("w")
        new = Runner(journal)

        @new.workflow(name="w", version="2")
        def shorter(ctx: Context) -> object:
            ctx.step("a", noop)
            return "done early"

        for _ in range(3):  # tried again and again: recorded once
            with pytest.raises(NonDeterministicWorkflow) as info:
                new.resume(run.id, "x")
            assert info.value.called is None and info.value.seq == 2
        state = journal.state(run.id)
        assert state.status == "paused" and state.diverged is not None
        assert (state.diverged.seq, state.diverged.version) == (2, "2")
        assert state.diverged.recorded == "step 'b'" and state.diverged.called == ""
        assert _events(journal, run.id).count("ReplayDiverged") == 1
        # A fork does not copy it: that code never tried to replay the fork.
        fork = old.fork(run.id, from_seq=2)
        assert "ReplayDiverged" not in _events(journal, fork.id)
        assert journal.state(fork.id).diverged is None
        old.close()
        new.close()


def test_a_slow_replay_that_diverges_is_recorded_once(journal_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The background flusher must not commit the claim of a replay still under way (it
    would clear the divergence, and each try write claim + divergence again)."""
    monkeypatch.setattr(runner._engine, "HOLD_SECONDS", 0.01)
    monkeypatch.setattr(runner._runner, "HOLD_SECONDS", 0.01)
    with Journal.open(journal_url) as journal:
        old = Runner(journal)

        @old.workflow(name="w")
        def first(ctx: Context) -> object:
            ctx.step("a", noop)
            ctx.step("b", noop)
            return ctx.pause("wait")

        run = old.run("w")
        new = Runner(journal)

        @new.workflow(name="w")
        def slow(ctx: Context) -> object:
            ctx.step("a", noop)
            time.sleep(0.3)  # the flusher runs meanwhile
            ctx.step("c", noop)
            return ctx.pause("wait")

        for _ in range(2):
            with pytest.raises(NonDeterministicWorkflow):
                new.resume(run.id, "x")
        names = _events(journal, run.id)
        assert names.count("ReplayDiverged") == 1 and names.count("ExecutionClaimed") == 1
        old.close()
        new.close()


def test_a_parent_waiting_for_its_child_is_looked_at_only_when_due(
    journal_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recheck = timedelta(seconds=1)
    monkeypatch.setattr(journal.state, "CHILD_RECHECK", recheck)
    monkeypatch.setattr(runner._runner, "CHILD_RECHECK", recheck)
    with Journal.open(journal_url) as j, Runner(j) as r:

        @r.workflow()
        def kid(ctx: Context) -> object:
            return ctx.wait_for("go")

        @r.workflow()
        def parent(ctx: Context) -> object:
            return ctx.child(kid)

        run = r.run(parent)
        assert run.status == "waiting"
        stop = threading.Event()
        serving = threading.Thread(target=r.serve, kwargs={
            "stop": stop, "poll_interval": 0.05, "handle_signals": False})
        serving.start()
        time.sleep(3.5)
        stop.set()
        serving.join(timeout=30)
        claims = [e for e in j.events(run.id) if isinstance(e, ExecutionClaimed)]
        # Started, then woken about once a second (the recheck), not at every round.
        assert 1 < len(claims) <= 6, [c.timestamp for c in claims]
