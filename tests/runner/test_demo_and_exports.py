"""The demo runs end to end without input; the public API is what it says it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import runner
from journal import JournalError

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end(journal_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.demo"], cwd=tmp_path,
        env={**os.environ, "JOURNAL_URL": journal_url, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "paused after" in out and "human_review" in out
    for expected in ("StepFailed", "will retry", "structure_validation", "ExecutionPaused",
                     "ExecutionResumed", "ExecutionCompleted", "finalization_path=completed"):
        assert expected in out, expected


def test_public_exports_are_locked() -> None:
    assert sorted(runner.__all__) == [
        "AlreadyResumed", "AsyncContext", "ChildFailed", "Context", "ExecutionBusy",
        "IncompatibleOutput",
        "LeaseLost",
        "NonDeterministicWorkflow", "OutsideStep", "Retry", "Run", "Runner", "RunnerError",
        "SecretInput", "StepFailedError", "StepInfo", "ValueClassMissing", "WaitTimedOut",
        "WorkflowNotFound", "add_cost",
        "current_step",
    ]
    for name in runner.__all__:
        assert getattr(runner, name).__doc__, name
    for error in (runner.RunnerError, runner.AlreadyResumed, runner.StepFailedError,
                  runner.NonDeterministicWorkflow):
        assert issubclass(error, JournalError)


def test_the_demo_describes_events_with_the_clis_words_without_loading_the_cli() -> None:
    code = (
        "import sys, runner.demo, runner.cli.timeline as t; "
        "assert runner.demo.describe is t.describe; "
        "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
