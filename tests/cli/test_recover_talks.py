"""``journal recover`` says what it does: takeovers and outcomes as they happen, what it
left running and why, and on Ctrl-C what it had done (real processes, both backends)."""

from __future__ import annotations

import signal

from journal import Journal
from tests.cli import app as service
from tests.cli.processes import hold, journal_cli, stop

APP = "tests.cli.app:runner"


def test_recover_prints_takeovers_outcomes_and_what_it_skipped(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        dead = service.stall(journal)
        live = service.stall(journal)
        gone = journal.start("retired", {}).id  # no workflow of that name any more
    holder = hold(journal_url, live)
    try:
        done = journal_cli(journal_url, "recover", "--app", APP, "--stale-after", "0s")
        out, err = done.communicate(timeout=60)
    finally:
        stop(holder)
    assert done.returncode == 1, err  # the unregistered one stays running: an error
    lines = out.splitlines()
    taking = next(i for i, ln in enumerate(lines)
                  if ln.startswith(f"taking over {dead} (slow) at step 'work' #1 (attempt 2)"))
    assert lines[taking + 1] == "  -> completed"
    assert any(ln.startswith(f"skipped {live} (slow): driven by a live process ")
               and f":{holder.pid}" in ln for ln in lines), out
    assert any(ln.startswith("  -> skipped: cannot be replayed here") and "'retired'" in ln
               for ln in lines), out
    assert f"taking over {gone} (retired)" in out
    assert lines[-1] == "recovered 1 execution(s) (1 completed); skipped 2"
    assert f"execution {gone} not recovered" in err
    with Journal.open(journal_url) as journal:
        assert journal.state(live).status == "running"  # left to its live driver
        assert journal.state(dead).status == "completed"


def test_recover_names_runs_not_stale_yet(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        young = service.stall(journal)
    done = journal_cli(journal_url, "recover", "--app", APP, "--stale-after", "1h")
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert f"skipped {young} (slow): not stale yet (last event " in out
    assert "--stale-after 1h" in out and out.splitlines()[-1].endswith("skipped 1")


def test_ctrl_c_says_what_recover_had_done(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        first = service.stall(journal)
        handle = journal.start("drowsy", {})
        handle.step_started("nap")
        sleepy = handle.id
    done = journal_cli(journal_url, "recover", "--app", APP, "--stale-after", "0s")
    try:
        assert done.stdout is not None
        seen = []
        while not any(f"taking over {sleepy}" in ln for ln in seen):
            line = done.stdout.readline()
            assert line, "recover ended before taking the slow run over"
            seen.append(line)
        done.send_signal(signal.SIGINT)
        rest, err = done.communicate(timeout=30)
    finally:
        if done.poll() is None:
            stop(done)
    assert done.returncode == 130, err
    out = "".join(seen) + rest
    assert f"taking over {first} (slow)" in out and "  -> completed" in out
    summary = rest.strip().splitlines()[-1]
    assert summary.startswith("interrupted after 1 of 2 stale execution(s): recovered 1 "
                              "execution(s) (1 completed)"), rest
    assert f"{sleepy} was being recovered and is still running" in summary
    with Journal.open(journal_url) as journal:
        assert journal.state(sleepy).status == "running"
