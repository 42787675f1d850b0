"""``journal check``, ``fork``, ``retry`` and ``diff``, and what ``show``/``ls`` say of code
versions and forks (SQLite, PostgreSQL).

The commands run as real processes from another directory than the project's, with the
service of :mod:`tests.cli.deploys` in the release a test names (``$DEPLOY_RELEASE``), as a
deploy would change it. Its steps write a ledger file, so a test sees which step code ran in
any process; "writes nothing" is every table of the database (journal and views) holding
the very rows it held before.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from journal import Journal
from projections import Projections
from runner.versions import fingerprint
from tests.cli import deploys
from tests.cli.conftest import Invoke
from tests.cli.test_fast import _fast
from tests.projections.helpers import fresh_url

PROJECT = Path(__file__).resolve().parents[2]
APP = "tests.cli.deploys:runner"
_NEW_ID = re.compile(r"-> execution ([0-9a-f-]{36}) ")


def journal_cli(args: list[str], *, cwd: Path, release: str = "v1",
                **env: str) -> subprocess.CompletedProcess[str]:
    """``journal ARGS`` as its own process, from ``cwd``, with the service at ``release``."""
    environ = {k: v for k, v in os.environ.items()
               if k != "JOURNAL_URL" and not k.startswith("DEPLOY_")}
    environ.update(PYTHONPATH=os.pathsep.join(filter(None, (str(PROJECT),
                                                            environ.get("PYTHONPATH")))),
                   DEPLOY_RELEASE=release, **env)
    return subprocess.run([sys.executable, "-m", "journal", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def tables(url: str) -> dict[str, list[str]]:
    """Every table of the journal's database (or schema) and its rows, in a stable order."""
    with Journal.open(url, create=False) as journal:
        v = journal.storage.views()
        try:
            if v.dialect.percentiles:  # PostgreSQL: the journal's schema
                names = [r[0] for r in v.query(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()")]
            else:
                names = [r[0] for r in v.query(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {n: sorted(repr(r) for r in v.query(f'SELECT * FROM "{n}"'))
                    for n in sorted(names)}
        finally:
            v.close()


def journal_tables(url: str) -> dict[str, list[str]]:
    """The journal's own tables (not the views, which read commands bring up to date)."""
    return {n: rows for n, rows in tables(url).items() if not n.startswith("proj_")}


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ledger the service's steps write, here and in the CLI processes."""
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("DEPLOY_LEDGER", str(path))
    for name in ("DEPLOY_FAIL_AT", "DEPLOY_OFF_BY_ONE", "DEPLOY_RELEASE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory that is not the project's, to run the CLI from."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


# -- check -----------------------------------------------------------------------------------


def test_check_names_what_a_deploy_would_strand_and_writes_nothing(
    journal_url: str, ledger: Path, elsewhere: Path, cli: Invoke, tmp_path: Path
) -> None:
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as v1:
        paused = [v1.run("review", n).id for n in range(3)]
        v1.resume(v1.run("review", 9).id, "ok")  # completed: not an open execution
        with Projections(journal) as views:
            views.catch_up()  # the views exist ...
        paused.append(v1.run("review", 4).id)  # ... and are behind the log
        gone = journal.start("gone", {}).id  # a workflow the service no longer has
        recorded = journal.state(paused[0]).version
    assert recorded == fingerprint(deploys.review_v1)
    before, ran = tables(journal_url), lines(ledger)
    base = ["check", "--app", APP, "--url", journal_url]

    out = journal_cli(base, cwd=elsewhere, release="v2", DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 1, out.stderr
    printed = out.stdout.splitlines()
    for eid in paused:
        [line] = [ln for ln in printed if ln.startswith(str(eid))]
        assert line == (
            f"{eid} review (paused): diverged at seq 2: recorded pause 'review' -> now calls "
            "step 'new_check'; hint: guard the new call with `if ctx.patched(\"<id>\"):` so "
            "that executions recorded before it (pause 'review' at seq 2) keep their path")
    [line] = [ln for ln in printed if ln.startswith(str(gone))]
    assert line.startswith(f"{gone} gone (running): missing: no workflow named 'gone'")
    assert (f"checked 5 execution(s) (running, paused, waiting) against {APP}: 0 ok, "
            "4 diverged, 0 undecodable, 1 missing") in printed
    assert (f"  review: recorded {recorded} (4); now {fingerprint(deploys.review_v2)}"
            in printed)
    assert "  gone: recorded (not recorded) (1); now not registered in the app" in printed
    assert out.stderr == ("error: 5 of 5 execution(s) would not replay with this code "
                          "(listed above): deploying it would strand them\n")

    out = journal_cli([*base, "--workflow", "review", "--status", "paused", "--json"],
                      cwd=elsewhere, release="v2", DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert doc["counts"] == {"ok": 0, "diverged": 4, "undecodable": 0, "missing": 0}
    assert doc["versions"] == {"review": {"recorded": {recorded: 4},
                                          "current": fingerprint(deploys.review_v2)}}
    assert sorted(r["execution_id"] for r in doc["results"]) == sorted(map(str, paused))
    assert {(r["outcome"], r["seq"], r["recorded"], r["called"], r["ok"])
            for r in doc["results"]} == {("diverged", 2, "pause 'review'", "step 'new_check'",
                                          False)}

    # The patch: every execution paused by v1 replays, and the exit code says so.
    out = journal_cli([*base, "--workflow", "review"], cwd=elsewhere, release="v2-patched",
                      DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == (
        f"checked 4 execution(s) (running, paused, waiting) against {APP}: 4 ok, 0 diverged, "
        "0 undecodable, 0 missing")

    assert tables(journal_url) == before  # no row of any table, journal or views, changed
    assert lines(ledger) == ran  # and no step code ran

    # A journal that is not there: an error, and none is created (nor the app imported).
    missing = fresh_url(journal_url, tmp_path)
    result = cli("check", "--app", "no.such.module:runner", "--url", missing)
    assert result.exit_code == 1 and "no journal" in result.stderr
    if missing.startswith("sqlite"):
        assert not Path(missing.removeprefix("sqlite:///")).exists()
    with pytest.raises(Exception, match="no journal"):
        Journal.open(missing, create=False)


def test_check_says_when_nothing_is_open(journal_url: str, cli: Invoke, ledger: Path) -> None:
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as v1:
        v1.run("numbers", "12")
    result = cli("check", "--app", APP, "--url", journal_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "no execution to check (running, paused, waiting)\n"
    result = cli("check", "--app", APP, "--url", journal_url, "--status", "done")
    assert result.exit_code == 2 and "'done' is not one of" in result.stderr


# -- fork and retry --------------------------------------------------------------------------


def test_retry_and_fork_run_from_a_step_with_the_code_deployed_now(
    journal_url: str, ledger: Path, elsewhere: Path, cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOY_FAIL_AT", "4")  # the release with the bug
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as buggy:
        failed = buggy.run("five", 7).id
    monkeypatch.delenv("DEPLOY_FAIL_AT")
    ledger.unlink()
    app = ["--app", APP, "--url", journal_url]

    # The fix is deployed: retry from the step that failed; the steps before are copied.
    out = journal_cli(["retry", str(failed)[:8], *app], cwd=elsewhere,
                      DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    retried = UUID(_NEW_ID.findall(out.stdout)[0])
    assert out.stdout == (
        f"retried {failed} (failed in step 's4' #4: tests.cli.deploys.RateLimited) from seq 4 "
        f"-> execution {retried} (five): completed, output=[10, 20, 30, 7, 40, 50]\n")
    assert lines(ledger) == ["work4", "work5"]

    # A fork from a step named, with other input: from there, everything runs again.
    ledger.unlink()
    out = journal_cli(["fork", str(failed), "--from-step", "s2", "--input", '{"base": 8}',
                       *app], cwd=elsewhere, DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    forked = UUID(_NEW_ID.findall(out.stdout)[0])
    assert out.stdout == (f"forked {failed} at seq 2 -> execution {forked} (five): completed, "
                          "output=[10, 20, 30, 8, 40, 50]\n")
    assert lines(ledger) == ["work2", "work3", "work4", "work5"]

    with Journal.open(journal_url) as journal:
        version = journal.state(failed).version
        for eid, seq in ((retried, 4), (forked, 2)):
            state = journal.state(eid)
            assert (state.forked_from, state.forked_seq, state.version) == (failed, seq, version)
        with Projections(journal) as views:
            views.catch_up()
            assert [f.execution_id for f in views.forks(failed)] == [retried, forked]
            row = views.execution(retried)
            assert row is not None
            assert (row.forked_from, row.forked_seq, row.code_version) == (failed, 4, version)

    # show and ls say where a fork comes from, and the code version of every execution.
    code, shown, _ = _fast("show", str(retried), url=journal_url)
    assert code == 0
    assert f"forked from {failed} at seq 4\nstarted " in shown
    assert f"; code version {version}\n" in shown  # at the end of the line of its start
    summary = json.loads(_fast("show", str(retried), "--json", url=journal_url)[1])["summary"]
    assert (summary["forked_from"], summary["forked_seq"], summary["code_version"]) == (
        str(failed), 4, version)
    source = json.loads(_fast("show", str(failed), "--json", url=journal_url)[1])["summary"]
    assert (source["forked_from"], source["forked_seq"], source["code_version"]) == (
        None, None, version)
    assert "forked from" not in _fast("show", str(failed), url=journal_url)[1]
    rows = {r["execution_id"]: r for r in json.loads(
        _fast("ls", "--json", url=journal_url)[1])}
    assert (rows[str(forked)]["forked_from"], rows[str(forked)]["forked_seq"]) == (
        str(failed), 2)
    assert rows[str(failed)]["forked_from"] is None
    assert {r["code_version"] for r in rows.values()} == {version}

    # What cannot be forked or retried is an error that writes nothing and runs nothing.
    before, ran = journal_tables(journal_url), lines(ledger)
    for args, message in [
        (["fork", str(failed), "--from-step", "nope"],
         f"execution {failed} has no step named 'nope' (its steps: s1 #1, s2 #2, s3 #3, "
         "s4 #4): give a step's name or a seq; nothing was written"),
        (["fork", str(failed), "--from-step", "9"],
         f"execution {failed} has calls at seq 1..4: --from-step takes one of them, one right "
         "after the last (5), or a step's name, not '9'; nothing was written"),
        (["fork", str(failed), "--from-step", "1", "--input", "[8]"],
         "invalid --input: give the workflow's arguments by name, as a JSON object"),
        (["fork", str(failed), "--from-step", "1", "--input", '{"bsae": 8}'],
         "invalid --input: fork(input=...) of workflow 'five': missing a required argument: "
         "'base'"),
        (["retry", str(retried)], "only a failed or cancelled execution is retried (this one "
         "is completed)"),
    ]:
        result = cli(*args, *app)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert journal_tables(journal_url) == before and lines(ledger) == ran
    result = cli("retry", str(failed), "--status", "failed", *app)
    assert result.exit_code == 2 and "give them without an ID" in result.stderr
    result = cli("retry", *app)
    assert result.exit_code == 2 and "--status failed" in result.stderr


def test_bulk_retry_chooses_by_status_error_type_and_end(
    journal_url: str, ledger: Path, elsewhere: Path, cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOY_FAIL_AT", "4")
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as buggy:
        old = buggy.run("five", 1).id
        ended = journal.state(old).ended_at
        assert ended is not None
        since = (ended + timedelta(microseconds=1)).isoformat()
        recent = [buggy.run("five", n).id for n in (2, 3)]
        bad_input = buggy.run("numbers", "x").id  # ValueError, in its step
    monkeypatch.delenv("DEPLOY_FAIL_AT")
    ledger.unlink()
    bulk = ["retry", "--app", APP, "--url", journal_url, "--status", "failed",
            "--error-type", "RateLimited", "--since", since]

    before = journal_tables(journal_url)
    out = journal_cli([*bulk, "--dry-run"], cwd=elsewhere, DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        *(f"would retry {eid} (five, failed in step 's4' #4: tests.cli.deploys.RateLimited) "
          "from seq 4" for eid in recent),
        "would retry 2 execution(s); nothing was started"]
    assert journal_tables(journal_url) == before and not ledger.exists()

    out = journal_cli([*bulk, "--json"], cwd=elsewhere, DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)
    assert [(e["execution_id"], e["action"], e["from_seq"], e["run"]["status"])
            for e in entries] == [(str(eid), "retried", 4, "completed") for eid in recent]
    assert lines(ledger) == ["work4", "work5"] * 2

    # Run again: what was retried already is skipped (its retry is what to retry now).
    out = journal_cli(bulk, cwd=elsewhere, DEPLOY_LEDGER=str(ledger))
    assert out.returncode == 0, out.stderr
    news = [e["run"]["id"] for e in entries]
    assert out.stdout.splitlines() == [
        *(f"skipped {eid}: retried before, as {new}" for eid, new in zip(recent, news,
                                                                           strict=True)),
        "nothing to retry; skipped 2 retried before"]
    assert lines(ledger) == ["work4", "work5"] * 2
    after = journal_tables(journal_url)

    # By the error's short or qualified name; without --since, the old failure too.
    def would(*args: str) -> list[Any]:
        result = cli("retry", "--app", APP, "--url", journal_url, "--status", "failed",
                     "--dry-run", "--json", *args)
        assert result.exit_code == 0, result.output
        return [(e["execution_id"], e["action"]) for e in json.loads(result.stdout)]

    assert would("--error-type", "ValueError") == [(str(bad_input), "would retry")]
    assert would("--error-type", "tests.cli.deploys.RateLimited") == [
        (str(old), "would retry"), *((str(eid), "skipped") for eid in recent)]
    assert would("--error-type", "Limited") == []  # a name's dotted parts, not any suffix
    assert would("--error-type", "ValueError", "--since", "1h", "--limit", "1") == [
        (str(bad_input), "would retry")]
    assert journal_tables(journal_url) == after and lines(ledger) == ["work4", "work5"] * 2


# -- diff ------------------------------------------------------------------------------------


def test_diff_of_two_runs_differing_in_one_steps_output(
    journal_url: str, ledger: Path, elsewhere: Path, cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as runner:
        a = runner.run("five", 7).id
        monkeypatch.setenv("DEPLOY_OFF_BY_ONE", "3")
        b = runner.run("five", 7).id
        version = journal.state(a).version
    out = journal_cli(["diff", str(a)[:8], str(b), "--url", journal_url], cwd=elsewhere,
                      COLUMNS="80")
    assert out.returncode == 0, out.stderr
    printed = [line.rstrip() for line in out.stdout.splitlines()]
    assert all(len(line) <= 80 for line in out.stdout.splitlines()), out.stdout
    assert printed[:6] == [
        f"A  {a}  five  completed", f"   code version {version}",
        f"B  {b}  five  completed", f"   code version {version}",
        "the same calls throughout", "5 seq(s): 4 same, 1 differs"]
    table = [line.split() for line in printed[7:13]]
    assert table[0] == ["seq", "A", "B", "difference"]
    assert table[1:] == [
        [str(seq), "step", f"'s{seq}'", "=",
         *(["output", "30", "→", "31"] if seq == 3 else ["same"])] for seq in range(1, 6)]
    assert printed[14:] == ["run:", "  output: [10, 20, 30, 7, 40, 50] → [10, 20, 31, 7, 40, 50]"]

    result = cli("diff", str(a), str(b), "--json", url=journal_url)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["a"]["execution_id"], doc["b"]["execution_id"]) == (str(a), str(b))
    assert (doc["same"], doc["diverged_at"]) == (False, None)
    assert [(c["seq"], c["kind"], c["changes"]) for c in doc["calls"]] == [
        (seq, "differs", {"output": [30, 31]}) if seq == 3 else (seq, "same", {})
        for seq in range(1, 6)]
    assert doc["summary"] == {"output": [[10, 20, 30, 7, 40, 50], [10, 20, 31, 7, 40, 50]]}

    # Runs that took other paths: where, and what only one of them did.
    with Journal.open(journal_url) as journal, deploys.make_runner(journal) as runner:
        monkeypatch.setenv("DEPLOY_FAIL_AT", "4")
        failed = runner.run("five", 7).id
    result = cli("diff", str(a), str(failed), url=journal_url)
    assert result.exit_code == 0, result.output
    assert "diverged at seq 5: A step 's5', B made no call" in result.stdout
    assert re.search(r"5  step 's5'  -\s+only in A", result.stdout)
    assert re.search(r"4  step 's4'  =\s+status completed → failed; output 40 → null",
                     result.stdout)
    assert "  status: completed → failed" in result.stdout
    result = cli("diff", str(a), "nope", url=journal_url)
    assert result.exit_code == 1 and "no execution matches 'nope'" in result.stderr
