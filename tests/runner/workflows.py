"""Workflows, step functions and value types the runner tests share.

They live in an importable module (not in test functions) because the journal refuses values
whose class it could not import again, and because subprocesses must register the same
workflows by name. Side effects are counted in a file: one line per effect.

Run as ``python -m tests.runner.workflows COMMAND URL ...`` it is the child process of the
crash and fencing tests (see ``main``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from journal import ConcurrencyConflict, Journal
from runner import AsyncContext, Context, Retry, Runner, StepFailedError, add_cost, current_step

# -- side effects ----------------------------------------------------------------------------


def effect(path: str | Path, name: str) -> None:
    """Append one line naming the effect (O_APPEND: whole lines, even when killed)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)


def effects(path: str | Path) -> list[str]:
    """The effects recorded so far, in order."""
    p = Path(path)
    return p.read_text().split() if p.exists() else []


# -- value types -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Doc:
    id: str
    text: str


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    severity: str
    note: str = ""


@dataclasses.dataclass
class Summary:
    words: int
    cost: Decimal


# -- step functions --------------------------------------------------------------------------

COUNTER = ""  # set by tests: the side-effect file of in-process runs


def fetch(doc_id: str) -> Doc:
    effect(COUNTER, "fetch")
    return Doc(id=doc_id, text="alpha beta gamma delta")


def findings(doc: Doc) -> list[Finding]:
    effect(COUNTER, "findings")
    add_cost(usd="0.0021", input_tokens=120, output_tokens=40, model="sim-1")
    return [Finding(line=i, severity="low", note=w) for i, w in enumerate(doc.text.split())]


def summarise(doc: Doc) -> Summary:
    effect(COUNTER, "summarise")
    return Summary(words=len(doc.text.split()), cost=Decimal("0.5"))


def summaries(doc: Doc) -> list[Summary]:
    effect(COUNTER, "summaries")
    return [Summary(words=1, cost=Decimal("1.25")), Summary(words=2, cost=Decimal("0"))]


def pair() -> tuple[int, str]:
    effect(COUNTER, "pair")
    return (1, "one")


def boom(message: str) -> int:
    effect(COUNTER, "boom")
    add_cost(usd="0.01", model="sim-1")
    raise ValueError(message)


_flaky_calls: dict[str, int] = {}


def flaky(key: str, failures: int) -> str:
    """Fails ``failures`` times per key, then succeeds."""
    effect(COUNTER, "flaky")
    add_cost(usd="0.001")
    n = _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if n <= failures:
        raise ConnectionError(f"try {n} of {key} failed")
    info = current_step()
    return f"{info.name}:{info.seq}:{info.attempt}"


def noop() -> None:
    return None


# -- workflows ---------------------------------------------------------------------------------


def typed(ctx: Context, doc_id: str) -> dict[str, Any]:
    doc = ctx.step("fetch", fetch, doc_id)
    found = ctx.step("findings", findings, doc)
    summary = ctx.step("summarise", summarise, doc)
    many = ctx.step("summaries", summaries, doc)
    tup = ctx.step("pair", pair)
    ctx.log("analysed", findings=len(found))
    answer = ctx.pause("human_review", payload={"findings": len(found)})
    ctx.log("answered", answer=answer)
    return {
        "answer": answer,
        "types": [
            type(doc).__name__, type(found).__name__, type(found[0]).__name__,
            type(summary).__name__, type(summary.cost).__name__, type(many[0]).__name__,
            type(tup).__name__,
        ],
        "equal": [
            doc == Doc(id=doc_id, text="alpha beta gamma delta"),
            found[1] == Finding(line=1, severity="low", note="beta"),
            summary == Summary(words=4, cost=Decimal("0.5")),
            many == [Summary(words=1, cost=Decimal("1.25")), Summary(words=2, cost=Decimal(0))],
            tup == (1, "one"),
        ],
    }


def failing(ctx: Context, catch: bool) -> dict[str, Any]:
    try:
        ctx.step("boom", boom, "bad input")
    except StepFailedError as e:
        if not catch:
            raise
        caught = {"type": e.error_type, "message": e.error_message, "seq": e.seq}
    answer = ctx.pause("human_review")
    return {"caught": caught, "answer": answer}


def retrying(ctx: Context, key: str, failures: int, attempts: int) -> str:
    out: str = ctx.step(
        "flaky", flaky, key, failures, retry=Retry(attempts=attempts, backoff=0.001)
    )
    return out


def two_pauses(ctx: Context) -> list[Any]:
    a = ctx.pause("first")
    ctx.step("fetch", fetch, "d")
    b = ctx.pause("second", payload={"a": a})
    return [a, b]


def steps_then_pause(ctx: Context) -> str:
    ctx.step("a", noop)
    ctx.step("b", noop)
    ctx.pause("wait")
    ctx.step("c", noop)
    return "done"


async def gathered(ctx: AsyncContext, delays: list[float]) -> dict[str, Any]:
    import asyncio

    async def sleeper(i: int, delay: float) -> int:
        effect(COUNTER, f"sleeper{i}")
        await asyncio.sleep(delay)
        add_cost(usd="0.001", model="async")
        return i * 10

    def blocking(i: int) -> dict[str, int]:
        effect(COUNTER, f"blocking{i}")
        time.sleep(0.01)
        add_cost(usd="0.002", model="thread")
        return {"i": i, "seq": current_step().seq}

    results = await asyncio.gather(
        *(ctx.step(f"sleep{i}", sleeper, i, d) for i, d in enumerate(delays)),
        ctx.step("blocking", blocking, 7),
    )
    answer = await ctx.pause("human_review", payload={"n": len(results)})
    after = await ctx.step("after", sleeper, 99, 0)
    return {"results": list(results), "answer": answer, "after": after}


WORKFLOWS = [typed, failing, retrying, two_pauses, steps_then_pause, gathered]


def make_runner(journal: Journal) -> Runner:
    """A runner with every test workflow registered."""
    runner = Runner(journal)
    for wf in WORKFLOWS:
        runner.register(wf)
    for wf in CHILD_WORKFLOWS:
        runner.register(wf)
    return runner


# -- the child process of the crash and fencing tests -----------------------------------------

STEPS = 5


def crash_step(path: str, name: str) -> dict[str, str]:
    """One side effect; the child kills itself with SIGKILL where $KILL_AT says."""
    kill_at = os.environ.get("KILL_AT", "")  # "<effect number>:before|after"
    n = len(effects(path)) + 1
    if kill_at == f"{n}:before":
        os.kill(os.getpid(), signal.SIGKILL)
    effect(path, name)
    if kill_at == f"{n}:after":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
    return {"step": name}


def crashable(ctx: Context, path: str) -> list[str]:
    done = []
    for i in range(STEPS):
        out = ctx.step(f"s{i}", crash_step, path, f"s{i}")
        ctx.log("step done", step=out["step"])
        done.append(out["step"])
    return done


def contested(ctx: Context, path: str) -> str:
    ctx.step("before", effect, path, "before")
    ctx.pause("go")
    ctx.step("after", effect, path, f"after-{os.getpid()}")
    return "done"


CHILD_WORKFLOWS = [crashable, contested]


def _barrier(directory: str, me: str) -> None:
    Path(directory, f"ready-{me}").touch()
    deadline = time.monotonic() + 30
    while not Path(directory, "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("barrier")
        time.sleep(0.001)


def main(argv: list[str]) -> int:
    """``run URL PATH [KEY]`` | ``recover URL STALE`` | ``resume URL ID BARRIER_DIR NAME``."""
    command, url = argv[0], argv[1]
    with Journal.open(url) as journal, make_runner(journal) as runner:
        if command == "run":  # run URL PATH [IDEMPOTENCY_KEY]
            key = argv[3] if len(argv) > 3 else None
            run = runner.run(crashable, argv[2], idempotency_key=key)
            print(json.dumps({"id": str(run.id), "status": run.status}))
        elif command == "recover":
            if len(argv) > 3:
                _barrier(argv[3], argv[4])
            runs = runner.recover(stale_after=timedelta(seconds=float(argv[2])))
            print(json.dumps({"recovered": [[str(r.id), r.status] for r in runs]}))
        elif command == "resume":
            _barrier(argv[3], argv[4])
            try:
                run = runner.resume(argv[2], "go")
            except ConcurrencyConflict as e:
                print(json.dumps({"error": type(e).__name__, "message": str(e)}))
            else:
                print(json.dumps({"status": run.status}))
        else:
            raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
