"""scripts/rebuild_projections.py run as a real subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from journal import Journal
from projections import Projections
from tests.projections.helpers import assert_matches_state

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rebuild_projections.py"


def test_rebuild_script_rebuilds_and_reports(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        runs = []
        for i in range(30):
            run = journal.start("etl", i)
            seq = run.step_started("fetch")
            run.step_completed(seq, i)
            run.completed()
            runs.append(run)
        with Projections(journal) as views:
            views.catch_up()
        env = {**os.environ, "COLUMNS": "120"}
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--url", journal_url, "--page-size", "17"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert "events/s" in proc.stderr and "120 events" in proc.stderr
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--url", journal_url, "--pages", "--page-size", "9"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert "120 events" in proc.stderr
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--url", journal_url, "--only", "costs"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert "rebuilt costs" in proc.stderr
        with Projections(journal) as views:
            assert views.catch_up() == 0
            assert set(views.positions().values()) == {120}
            for run in runs:
                assert_matches_state(views, journal.state(run.id))


def test_rebuild_script_rejects_unknown_view() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", "memory:", "--only", "nope"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
