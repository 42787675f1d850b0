"""Deploy safety: code versions, patches, the pre-deploy check and replay tests (on SQLite and
PostgreSQL). "v1" and "v2" are two runners registering different code under one workflow
name, as two releases of a service would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from journal import Journal
from runner import Context, NonDeterministicWorkflow, Runner
from runner.cli.retention import export_document
from runner.testing import replay
from runner.versions import fingerprint
from tests.runner.test_time_and_signals import Serving
from tests.runner.workflows import effect, effects

ROOT = Path(__file__).resolve().parents[2]
LEDGER: list[str] = []


def fetch(n: int) -> int:
    LEDGER.append(f"fetch {n}")
    return n * 2


def new_check(n: int) -> str:
    LEDGER.append(f"check {n}")
    return "checked"


def v1(journal: Journal) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="review")
    def review(ctx: Context, n: int) -> dict[str, Any]:
        value = ctx.step("fetch", fetch, n)
        answer = ctx.pause("review")
        return {"value": value, "answer": answer}

    return runner


def v2(journal: Journal, *, patched: bool) -> Runner:
    runner = Runner(journal)

    @runner.workflow(name="review")
    def review(ctx: Context, n: int) -> dict[str, Any]:
        value = ctx.step("fetch", fetch, n)
        extra = None
        if not patched or ctx.patched("add-check"):
            extra = ctx.step("new_check", new_check, n)
        answer = ctx.pause("review")
        return {"value": value, "answer": answer, "extra": extra}

    return runner


def rows(journal: Journal) -> int:
    return sum(1 for _ in iter_log(journal))


def iter_log(journal: Journal) -> Any:
    after = 0
    while page := journal.storage.read_log(after, 1000):
        yield from page
        after = page[-1][0]


def test_old_and_new_executions_both_complete_with_a_patch(journal: Journal) -> None:
    old = [v1(journal).run("review", n).id for n in range(3)]  # paused under v1
    patched = v2(journal, patched=True)
    new = patched.run("review", 7)
    assert new.status == "paused"
    assert [c.name for c in journal.state(new.id).calls.values()] == ["patch"]
    assert all(r.ok for r in patched.check())
    LEDGER.clear()
    for eid in old:
        done = patched.resume(eid, "yes")
        assert done.status == "completed" and done.output["extra"] is None  # the old path
    done = patched.resume(new.id, "yes")
    assert done.output == {"value": 14, "answer": "yes", "extra": "checked"}
    assert LEDGER == []  # nothing re-ran on replay


def test_without_the_patch_check_names_every_affected_execution(journal: Journal) -> None:
    old = sorted(str(v1(journal).run("review", n).id) for n in range(3))
    unpatched = v2(journal, patched=False)
    head = rows(journal)
    LEDGER.clear()
    results = unpatched.check()
    assert LEDGER == [] and rows(journal) == head  # nothing ran, nothing was written
    assert sorted(r.execution_id for r in results) == old
    for r in results:
        assert r.outcome == "diverged" and r.seq == 2
        assert r.recorded == "pause 'review'" and r.called == "step 'new_check'"
        assert "ctx.patched" in r.hint
        assert r.recorded_version and r.recorded_version != r.current_version
    with pytest.raises(NonDeterministicWorkflow, match="at seq 2"):
        unpatched.resume(old[0], "yes")  # as without check: refused, no step ran
    # Only the divergence is written (once, however often it is tried), for `journal stuck`.
    with pytest.raises(NonDeterministicWorkflow, match="at seq 2"):
        unpatched.resume(old[0], "yes")
    assert rows(journal) == head + 1
    state = journal.state(old[0])
    assert state.status == "paused" and state.diverged is not None
    assert state.diverged.seq == 2 and state.diverged.version == results[0].current_version


def test_a_marker_the_code_no_longer_has_is_named(journal: Journal) -> None:
    new = v2(journal, patched=True).run("review", 1)
    reverted = v1(journal)
    [result] = reverted.check()
    assert result.outcome == "diverged" and result.recorded == "patched('add-check')"
    assert "patch" in result.hint
    with pytest.raises(NonDeterministicWorkflow, match="add-check"):
        reverted.resume(new.id, "x")


def test_check_writes_nothing_and_runs_no_step_code_over_many_executions(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    runner = Runner(journal)

    def work(i: int) -> int:
        effect(ledger, f"work{i}")
        return i

    @runner.workflow(name="many")
    def many(ctx: Context, k: int) -> int:
        total = sum(ctx.step(f"s{i}", work, i) for i in range(k))
        ctx.log("summed", total=total)
        ctx.sleep(3600) if k % 2 else ctx.pause("look")
        return total + ctx.step("after", work, 99)

    for k in range(1, 41):
        runner.run(many, k)
    ran = len(effects(ledger))
    head, views = rows(journal), journal.storage.views()
    tables = views.query("SELECT count(*) FROM journal_wakeups")
    views.close()
    results = runner.check()
    assert len(results) == 40 and all(r.ok for r in results), [r for r in results if not r.ok]
    assert len(effects(ledger)) == ran and rows(journal) == head
    views = journal.storage.views()
    assert views.query("SELECT count(*) FROM journal_wakeups") == tables
    views.close()
    assert runner.check(status="paused", workflow="many") and all(
        journal.state(r.execution_id).status == "paused"
        for r in runner.check(status="paused"))


def test_replay_of_exported_histories_passes_and_fails(journal: Journal, tmp_path: Path) -> None:
    runner = v1(journal)
    run = runner.resume(runner.run("review", 3).id, "ok")
    path = tmp_path / "history.json"
    path.write_bytes(export_document(run.id, journal.events(run.id)))
    assert replay(runner, path).ok  # the code it was recorded with
    assert replay(v2(journal, patched=True), path).ok  # patched: old histories still replay
    with pytest.raises(NonDeterministicWorkflow) as caught:
        replay(v2(journal, patched=False), path)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "<-- diverges" in notes and "new_check" in notes and "pause 'review'" in notes

    def review(ctx: Context, n: int) -> dict[str, Any]:  # a bare function works too
        return {"value": ctx.step("fetch", fetch, n), "answer": ctx.pause("review")}

    assert replay(review, journal.events(run.id)).ok


def test_versions_are_recorded_stable_across_processes_and_change_with_the_code(
    journal: Journal,
) -> None:
    run = v1(journal).run("review", 1)
    recorded = journal.state(run.id).version
    assert recorded == fingerprint(v1(journal)._lookup("review").fn)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from journal import Journal\nfrom tests.runner.test_deploy import v1\n"
            "from runner.versions import fingerprint\n"
            "print(fingerprint(v1(Journal.open('memory:'))._lookup('review').fn))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, cwd="/")
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == recorded
    assert fingerprint(v2(journal, patched=True)._lookup("review").fn) != recorded
    explicit = Runner(journal)
    explicit.workflow(name="pinned", version="billing-7")(lambda ctx: None)
    assert journal.state(explicit.run("pinned").id).version == "billing-7"
    with pytest.raises(ValueError, match="version"):
        Runner(journal).workflow(name="bad", version="")(lambda ctx: None)


# -- forks and retries ---------------------------------------------------------------------------


def steps_runner(journal: Journal, ledger: Path, *, fail_at: int | None) -> Runner:
    runner = Runner(journal)

    def work(i: int) -> int:
        effect(ledger, f"work{i}")
        if i == fail_at:
            raise RuntimeError(f"step {i} broke")
        return i * 10

    @runner.workflow(name="five")
    def five(ctx: Context, base: int) -> list[int]:
        out = [ctx.step(f"s{i}", work, i) for i in range(1, 4)]
        out.append(ctx.wait_for("go", timeout=60) if base < 0 else base)
        out += [ctx.step(f"s{i}", work, i) for i in range(4, 6)]
        return out

    return runner


def test_a_fork_copies_the_steps_before_k_and_runs_the_rest(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    runner = steps_runner(journal, ledger, fail_at=None)
    source = runner.run("five", 7)
    assert source.status == "completed" and len(effects(ledger)) == 5
    ledger.unlink()
    fork = runner.fork(source.id, from_seq=3)
    assert fork.status == "completed" and fork.id != source.id
    assert fork.output == source.output
    assert effects(ledger) == ["work3", "work4", "work5"]  # 1 and 2 were copied, not re-run
    state = journal.state(fork.id)
    assert state.forked_from == source.id and state.forked_seq == 3
    assert state.steps[1].output == 10 and state.steps[3].attempts == 1
    assert journal.state(source.id).status == "completed"  # the source is left as it is
    changed = runner.fork(source.id, from_seq=1, input={"base": 8})
    assert changed.output == [10, 20, 30, 8, 40, 50]
    with pytest.raises(ValueError, match=r"seq 1\.\.5"):
        runner.fork(source.id, from_seq=9)
    with pytest.raises(TypeError):
        runner.fork(source.id, from_seq=1, input=[8])


def test_retry_of_a_failed_run_completes_it_from_the_failed_step(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    failed = steps_runner(journal, ledger, fail_at=4).run("five", 7)
    assert failed.status == "failed"
    ledger.unlink()
    fixed = steps_runner(journal, ledger, fail_at=None)  # the fix is deployed
    retried = fixed.retry(failed.id)
    assert retried.status == "completed" and retried.output == [10, 20, 30, 7, 40, 50]
    assert effects(ledger) == ["work4", "work5"]
    assert journal.state(retried.id).forked_seq == 4  # s4, the step that failed
    with pytest.raises(Exception, match="only a failed or cancelled"):
        fixed.retry(retried.id)


def test_a_fork_keeps_the_signals_its_copied_waits_consumed(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    runner = steps_runner(journal, ledger, fail_at=None)
    source = runner.run("five", -1)
    assert source.status == "waiting"
    runner.signal(source.id, "go", 99)
    with Serving(runner, poll_interval=0.1):
        for _ in range(100):
            if journal.state(source.id).status == "completed":
                break
            time.sleep(0.05)
    fork = runner.fork(source.id, from_seq=5)
    assert fork.status == "completed" and fork.output == [10, 20, 30, 99, 40, 50]
    [signal] = journal.state(fork.id).signals
    assert signal.consumed_by == 4


def test_diff_of_two_runs_differing_in_one_steps_output(journal: Journal, tmp_path: Path) -> None:
    from runner.diff import diff_runs

    ledger = tmp_path / "ledger.txt"
    runner = steps_runner(journal, ledger, fail_at=None)
    a = runner.run("five", 7)
    b = runner.fork(a.id, from_seq=1, input={"base": 8})
    same = diff_runs(journal.state(a.id), journal.state(a.id))
    assert same.same and same.diverged_at is None
    d = diff_runs(journal.state(a.id), journal.state(b.id))
    assert d.summary["output"] == (a.output, b.output) and d.diverged_at is None
    assert all(c.kind == "same" for c in d.calls)  # the steps agree; only the input differs
    failed = steps_runner(journal, ledger, fail_at=5).run("five", 7)
    d = diff_runs(journal.state(a.id), journal.state(failed.id))
    [changed] = [c for c in d.calls if c.kind != "same"]
    assert changed.seq == 5 and changed.changes["output"] == (50, None)
    assert changed.changes["status"] == ("completed", "failed")
    assert d.summary["status"] == ("completed", "failed")
