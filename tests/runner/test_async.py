"""Async workflows: await ctx.step, sync steps in threads, deterministic seqs under gather."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from journal import Journal, StepCompleted, StepStarted
from runner import AsyncContext, NonDeterministicWorkflow, Runner
from tests.runner import workflows
from tests.runner.workflows import effects, make_runner


def test_gather_gets_seqs_in_call_order_and_replays(journal: Journal, counter: Path) -> None:
    delays = [0.05, 0.0, 0.02]  # finish in another order than they were called

    async def scenario() -> None:
        with make_runner(journal) as runner:
            run = await runner.arun(workflows.gathered, delays)
            assert run.status == "paused"
            started = {e.seq: e.name for e in journal.events(run.id)
                       if isinstance(e, StepStarted)}
            assert started == {1: "sleep0", 2: "sleep1", 3: "sleep2", 4: "blocking"}
            completed = [e.seq for e in journal.events(run.id) if isinstance(e, StepCompleted)]
            assert sorted(completed) == [1, 2, 3, 4]
            costs = journal.state(run.id).steps[4].costs
            assert [c.model for c in costs] == ["thread"]  # add_cost from a worker thread
            ran = sorted(effects(counter))

        j2 = Journal.open(journal.url)
        with j2, make_runner(j2) as r2:
            done = await r2.aresume(run.id, "yes")
        assert done.status == "completed"
        assert done.output == {
            "results": [0, 10, 20, {"i": 7, "seq": 4}], "answer": "yes", "after": 990,
        }
        assert sorted(effects(counter)) == sorted([*ran, "sleeper99"])  # no step ran twice
        state = journal.state(run.id)
        assert state.steps[5].name == "after"
        assert state.cost.usd == Decimal("0.003") + Decimal("0.002") + Decimal("0.001")

    asyncio.run(scenario())


def test_async_non_determinism(journal: Journal) -> None:
    async def one(x: int) -> int:
        return x

    v1 = Runner(journal)

    @v1.workflow(name="fanout")
    async def first(ctx: AsyncContext) -> list[int]:
        out = await asyncio.gather(ctx.step("x", one, 1), ctx.step("y", one, 2))
        await ctx.pause("wait")
        return list(out)

    v2 = Runner(journal)

    @v2.workflow(name="fanout")
    async def swapped(ctx: AsyncContext) -> list[int]:
        out = await asyncio.gather(ctx.step("y", one, 2), ctx.step("x", one, 1))
        await ctx.pause("wait")
        return list(out)

    async def scenario() -> None:
        run = await v1.arun(first)
        position = journal.state(run.id).position
        try:
            await v2.aresume(run.id, None)
        except NonDeterministicWorkflow as e:
            assert (e.seq, e.recorded, e.called) == (1, "x", "y")
        else:
            raise AssertionError("expected NonDeterministicWorkflow")
        after = journal.state(run.id)  # no step ran; the divergence is recorded
        assert after.position == position + 1 and after.diverged is not None
        done = await v1.aresume(run.id, None)
        assert done.status == "completed" and done.output == [1, 2]

    asyncio.run(scenario())


def test_sync_api_runs_async_workflows_outside_a_loop(journal: Journal) -> None:
    runner = Runner(journal)

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    @runner.workflow()
    async def doubling(ctx: AsyncContext, x: int) -> int:
        y: int = await ctx.step("double", double, x)
        return y

    with runner:
        assert runner.run(doubling, 21).output == 42


def test_async_workflows_never_hold_the_event_loop(journal: Journal) -> None:
    """Steps that never suspend and their commits leave other tasks their turns: a task
    ticking every 2 ms sees the stream grow step by step, not only once it is whole."""
    runner = Runner(journal)

    async def instant() -> int:  # never suspends
        return 1

    @runner.workflow(name="instant_steps")
    async def instant_steps(ctx: AsyncContext, n: int) -> int:
        for _ in range(n):
            await ctx.step("instant", instant)
        return n

    eid = journal.new_execution_id()
    seen: list[int] = []

    async def watch(done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.sleep(0.002)
            seen.append(len(journal.storage.read_stream(eid)))

    async def scenario() -> None:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        with runner:
            run = await runner.arun(instant_steps, 300, execution_id=eid)
        done.set()
        await watcher
        assert run.status == "completed"
        total = len(journal.events(run.id))
        # Woken while the workflow was between its first and its last commit.
        assert any(2 < n < total - 2 for n in seen), (seen, total)

    asyncio.run(scenario())


def test_gathered_steps_commit_their_starts_in_seq_order(journal: Journal) -> None:
    """Commits go to writer threads, one at a time per execution, in call order."""
    runner = Runner(journal)

    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @runner.workflow(name="wide")
    async def wide(ctx: AsyncContext) -> list[int]:
        return list(await asyncio.gather(*(ctx.step(f"w{i}", work, i) for i in range(20))))

    async def scenario() -> None:
        ticker = asyncio.create_task(asyncio.sleep(1))  # another task: commits leave the loop
        with runner:
            run = await runner.arun(wide)
        ticker.cancel()
        assert run.status == "completed"
        assert run.output == list(range(20))
        starts = [e.seq for e in journal.events(run.id) if isinstance(e, StepStarted)]
        assert starts == list(range(1, 21))

    asyncio.run(scenario())
