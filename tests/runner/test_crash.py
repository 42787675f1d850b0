"""kill -9 at a point hypothesis chooses, then recover() in a new process.

The child runs a five-step workflow whose steps each append one line to an effects file.
It is killed with SIGKILL either by itself, just before or after its k-th side effect, or by
this process a few milliseconds after the k-th effect appeared (so between steps, inside a
commit, anywhere). A second child then calls recover(). The run must complete; every step
the journal held as completed at the kill ran exactly once; the one in flight at least once;
nothing else more than once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import Journal
from journal.state import STEP_COMPLETED
from tests.runner.workflows import STEPS, effects

ROOT = Path(__file__).resolve().parents[2]


def child(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runner.workflows", *args],
        cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def output(proc: subprocess.Popen[str], timeout: float = 60) -> Any:
    """The child's last line of output, as JSON; fails with its stderr if it failed."""
    return outputs([proc], timeout)[0]


def outputs(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[Any]:
    """Wait for every child (so none is left running), then read each one's result."""
    done = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, done, strict=True):
        assert p.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in done]


kill_points = st.one_of(
    st.tuples(st.just("self"), st.integers(1, STEPS), st.sampled_from(["before", "after"])),
    st.tuples(st.just("parent"), st.integers(1, STEPS), st.integers(0, 12)),
)


# Each example costs two interpreter start-ups: few examples, more under the "long" profile.
EXAMPLES = 40 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 5


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point=kill_points)
def test_kill_at_any_point_then_recover(journal_url: str, tmp_path_factory: Any,
                                        point: tuple[str, int, Any]) -> None:
    work = tmp_path_factory.mktemp("crash")
    path = work / "effects.txt"
    url = journal_url if journal_url.startswith("postgresql") else f"sqlite:///{work}/j.db"
    if "schema=" in url:  # a fresh schema per example
        url = re.sub(r"schema=(\w+)", rf"schema=\1_{work.name.replace('-', '_')}", url)
    how, k, detail = point
    if how == "self":
        proc = child("run", url, str(path), env={"KILL_AT": f"{k}:{detail}"})
        proc.communicate(timeout=60)
    else:
        proc = child("run", url, str(path), env={"STEP_SLEEP": "0.01"})
        deadline = time.monotonic() + 30
        while len(effects(path)) < k and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(detail / 1000)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)

    with Journal.open(url) as journal:
        ids = {e.execution_id for _, e in journal.notifications()}
        if not ids:
            return  # killed before ExecutionStarted was committed: nothing to recover
        [eid] = ids
        at_kill = journal.state(eid)
    completed_at_kill = {
        s.name for s in at_kill.steps.values() if s.status == STEP_COMPLETED
    }
    in_flight = {s.name for s in at_kill.running_steps}
    assert len(in_flight) <= 1
    before = effects(path)

    recovered = output(child("recover", url, "0"))["recovered"]
    with Journal.open(url) as journal:
        state = journal.state(eid)
    if at_kill.status == "completed":
        assert recovered == []
    else:
        assert recovered == [[str(eid), "completed"]]
    assert state.status == "completed"
    assert state.output == [f"s{i}" for i in range(STEPS)]

    counts = {f"s{i}": effects(path).count(f"s{i}") for i in range(STEPS)}
    for name, n in counts.items():
        if name in completed_at_kill:
            assert n == 1, (name, counts, point)
        elif name in in_flight:
            assert n >= 1, (name, counts, point)
            assert n == before.count(name) + 1, (name, counts, point)  # re-run once
        else:
            assert n == 1, (name, counts, point)
