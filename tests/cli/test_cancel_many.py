"""``journal cancel`` by filter (--dry-run, --yes, the confirmation) and of a run a live
process drives, on both backends."""

from __future__ import annotations

from uuid import UUID

from journal import Journal
from tests.cli import app as service
from tests.cli.conftest import Invoke
from tests.cli.processes import hold, journal_cli, stop


def _statuses(url: str, ids: list[UUID]) -> list[str]:
    with Journal.open(url) as journal:
        return [journal.state(eid).status for eid in ids]


def _positions(url: str, ids: list[UUID]) -> list[int]:
    with Journal.open(url) as journal:
        return [journal.state(eid).position for eid in ids]


def test_cancel_by_filter(cli: Invoke, journal_url: str) -> None:
    with Journal.open(journal_url) as journal, service.make_runner(journal) as runner:
        a = runner.run(service.review, "doc-a").id
        b = runner.run(service.review, "doc-b").id
        done = runner.run(service.review, "doc-c").id
        runner.resume(done, {"approved": True})
        stalled = service.stall(journal)  # running, another workflow
    ids = [a, b, done, stalled]
    before = _positions(journal_url, ids)

    dry = cli("cancel", "--workflow", "review", "--dry-run", url=journal_url)
    assert dry.exit_code == 0, dry.output
    assert sorted(ln.split()[2] for ln in dry.stdout.splitlines()[:-1]) == sorted(
        str(e) for e in (a, b))
    assert f"would cancel {a} (review, paused)" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "would cancel 2 execution(s); nothing was cancelled"
    assert _positions(journal_url, ids) == before

    refused = cli("cancel", "--workflow", "review", url=journal_url)  # stdin not a terminal
    assert refused.exit_code == 1
    assert "refusing to cancel 2 execution(s) without --yes" in refused.stderr
    assert _positions(journal_url, ids) == before

    usage = cli("cancel", str(a), "--status", "paused", url=journal_url)
    assert usage.exit_code == 2 and "without an ID" in usage.stderr

    yes = journal_cli(journal_url, "cancel", "--status", "paused", "--workflow", "review",
                      "--reason", "bulk", "--yes")
    out, err = yes.communicate(timeout=60)
    assert yes.returncode == 0, err
    assert out.splitlines()[-1] == "cancelled 2 execution(s) (bulk)"
    assert _statuses(journal_url, ids) == ["cancelled", "cancelled", "completed", "running"]
    assert "nothing to cancel" in cli("cancel", "--status", "paused", url=journal_url).stdout


def test_cancel_of_a_live_held_run_names_its_driver(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        busy = service.stall(journal)
    holder = hold(journal_url, busy)
    try:
        done = journal_cli(journal_url, "cancel", str(busy)[:8])
        out, err = done.communicate(timeout=60)
    finally:
        stop(holder)
    assert done.returncode == 0, err
    line = out.strip()
    assert line.startswith(f"execution {busy} (slow): cancelled; its driver "), line
    assert f":{holder.pid}" in line
    assert line.endswith("stops at its next call (a step in flight finishes)")
    assert _statuses(journal_url, [busy]) == ["cancelled"]
