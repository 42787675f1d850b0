"""``journal resume`` by filter (--status paused, --workflow, --since, --reason): --dry-run,
the confirmation (refused without a terminal), --yes, how each run ended, the summary, and a
Ctrl-C mid-run; and --dry-run of one execution (resume and cancel) writing nothing."""

from __future__ import annotations

import json
import signal
import time
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from tests.cli import pausing
from tests.cli.conftest import Invoke
from tests.cli.processes import journal_cli

APP = "tests.cli.pausing:runner"


@pytest.fixture
def paused(journal_url: str) -> dict[str, Any]:
    """Three ``approve`` runs paused for "approval" (a, slow, b, in this order) and one
    ``triage`` run paused for "triage"."""
    with Journal.open(journal_url) as journal, pausing.make_runner(journal) as runner:
        approve = [runner.run(pausing.approve, doc).id for doc in ("a", "slow", "b")]
        other = runner.run(pausing.triage, "t").id
    return {"url": journal_url, "approve": approve, "triage": other}


def _positions(url: str, ids: list[UUID]) -> list[int]:
    with Journal.open(url) as journal:
        return [journal.state(eid).position for eid in ids]


def _statuses(url: str, ids: list[UUID]) -> list[str]:
    with Journal.open(url) as journal:
        return [journal.state(eid).status for eid in ids]


def test_dry_run_and_the_confirmation_write_nothing(cli: Invoke, paused: dict[str, Any]
                                                    ) -> None:
    url, (a, slow, b), t = paused["url"], paused["approve"], paused["triage"]
    ids = [a, slow, b, t]
    before = _positions(url, ids)

    dry = cli("resume", "--app", APP, "--reason", "approval", "--dry-run", url=url)
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    # The longest waiting first, each with what it waits for.
    assert [ln.split()[2] for ln in lines[:-1]] == [str(a), str(slow), str(b)]
    assert lines[0].startswith(f"would resume {a} (approve, paused): approval since ")
    assert lines[-1] == "would resume 3 execution(s); nothing was resumed"
    only = cli("resume", "--app", APP, "--workflow", "triage", "--dry-run", url=url)
    assert only.stdout.splitlines()[0].startswith(f"would resume {t} (triage, paused)")
    assert "would resume 4 execution(s)" in cli(
        "resume", "--app", APP, "--status", "paused", "--since", "1h", "--dry-run",
        url=url).stdout
    assert cli("resume", "--app", APP, "--since", "2999-01-01", url=url
               ).stdout == "nothing to resume\n"

    refused = cli("resume", "--app", APP, "--status", "paused", url=url)  # not a terminal
    assert refused.exit_code == 1
    assert refused.stderr == ("error: refusing to resume 4 execution(s) without --yes: stdin "
                              "is not a terminal to confirm on; nothing was resumed\n")

    one = cli("resume", str(a)[:8], "--app", APP, "--dry-run", url=url)
    assert one.exit_code == 0, one.output
    assert one.stdout.splitlines()[-1] == "would resume 1 execution(s); nothing was resumed"
    cancel = cli("cancel", str(b)[:8], "--dry-run", url=url)
    assert cancel.exit_code == 0, cancel.output
    assert cancel.stdout.splitlines() == [f"would cancel {b} (approve, paused)",
                                          "would cancel 1 execution(s); nothing was cancelled"]
    assert _positions(url, ids) == before

    for args, needle in (
        (("--status", "failed"), "--status failed: only paused executions are resumed"),
        ((), "give an execution ID, or choose paused executions"),
        ((str(a), "--workflow", "approve"), "give them without an ID"),
    ):
        usage = cli("resume", "--app", APP, *args, url=url)
        assert usage.exit_code == 2 and needle in usage.stderr, (args, usage.stderr)
        assert usage.stderr.count("\n") == 1
    bad = cli("resume", "--app", APP, "--reason", "approval", "--value", "{nope", url=url)
    assert bad.exit_code == 1 and "invalid --value: not JSON" in bad.stderr
    assert _positions(url, ids) == before


def test_yes_resumes_each_with_the_value_and_says_how_it_ended(
    cli: Invoke, paused: dict[str, Any]
) -> None:
    url, (a, slow, b), t = paused["url"], paused["approve"], paused["triage"]
    r = cli("resume", "--app", APP, "--workflow", "triage", "--yes", "--value",
            '"ok"', url=url)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [f'resumed execution {t} (triage): completed, '
                                     'output="t:ok"', "resumed 1 execution(s) (1 completed)"]

    # Another app, that does not know the workflow: listed as such, then not resumed.
    with Journal.open(url) as journal, pausing.make_runner(journal) as runner:
        other = runner.run(pausing.triage, "u").id
    foreign = cli("resume", "--app", "tests.cli.app:runner", "--workflow", "triage",
                  "--dry-run", url=url)
    assert "its workflow 'triage' is not in the app: it cannot be resumed" in foreign.stdout
    failed = cli("resume", "--app", "tests.cli.app:runner", "--workflow", "triage", "--yes",
                 url=url)
    assert failed.exit_code == 1
    assert failed.stdout == "resumed 0 execution(s); 1 could not be resumed\n"
    assert failed.stderr.startswith(f"error: execution {other} not resumed: ")
    assert _statuses(url, [other]) == ["paused"]

    doc = json.loads(cli("resume", "--app", APP, "--reason", "approval", "--yes", "--json",
                         "--since", "1h", "--value", "1", "--workflow", "approve",
                         url=url).stdout)
    assert [(d["execution_id"], d["action"], d["run"]["status"]) for d in doc] == [
        (str(e), "resumed", "completed") for e in (a, slow, b)]
    assert _statuses(url, [a, slow, b]) == ["completed"] * 3


def test_ctrl_c_says_what_was_done(paused: dict[str, Any]) -> None:
    url, (a, slow, b) = paused["url"], paused["approve"]
    process = journal_cli(url, "resume", "--app", APP, "--reason", "approval", "--yes",
                          "--value", '"nap"')
    deadline = time.monotonic() + 60
    while _statuses(url, [slow]) != ["running"]:  # in its 60 s step
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = out.splitlines()
    assert lines[0] == f'resumed execution {a} (approve): completed, output="a:nap"'
    assert lines[-1] == (f"interrupted: resumed 1 execution(s) (1 completed); {slow} was under "
                         "way (Ctrl-C stopped it mid-run: it is left running for `journal "
                         "recover` or `journal serve` to continue); 1 not resumed")
    assert _statuses(url, [a, slow, b]) == ["completed", "running", "paused"]


def test_one_that_ended_meanwhile_is_skipped_and_the_others_go_on(
    paused: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from journal.errors import InvalidTransition
    from projections import ExecutionSummary, Projections
    from runner.cli import commands, deploys

    url, (a, slow, _) = paused["url"], paused["approve"]
    with Journal.open(url) as journal, Projections(journal) as views:
        views.catch_up()
        rows = deploys.resume_candidates(views, workflow="approve")

    def act(r: ExecutionSummary) -> Any:
        if r.execution_id == slow:
            raise InvalidTransition(slow, "completed", "resume", "answered by someone else")
        return commands._Done(f"did {r.execution_id}", "completed")

    entries = commands._act_on_many(rows, verb="resume", past="resumed", url=url,
                                    dry_run=False, yes=True, act=act)
    assert [e["action"] for e in entries] == ["resumed", "skipped", "resumed"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"did {a}" and lines[1].startswith(f"skipped {slow} (approve): ")
    assert lines[-1] == "resumed 2 execution(s) (2 completed); skipped 1 that ended meanwhile"
