"""The library under the CLI, without a database: parsing, JSON, formatting; the wiring."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import get_args
from uuid import UUID

import msgspec
import pytest

from journal import Journal
from journal.events import Cost, StepCompleted
from projections import COST_DIMENSIONS, STATUSES
from projections.api import _dashed
from runner.cli import commands as app_module
from runner.cli.jsonout import dumps, preview, to_jsonable
from runner.cli.render import usd
from runner.cli.retention import ArchiveError, read_archive, write_atomic
from runner.cli.timeparse import format_seconds, parse_duration, parse_since

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("1h30m", timedelta(minutes=90)),
    ("0s", timedelta(0)), (" 1.5h ", timedelta(minutes=90)), ("2H", timedelta(hours=2)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_since(text, now=NOW) == NOW - expected


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-5m", "5 minutes", "yesterday", "2h-"])
def test_malformed_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="use a duration like"):
        parse_since(text, now=NOW)


def test_since_accepts_iso_dates_and_times_in_utc() -> None:
    assert parse_since("2024-04-30", now=NOW) == datetime(2024, 4, 30, tzinfo=UTC)
    assert parse_since("2024-04-30T10:00:00Z") == datetime(2024, 4, 30, 10, tzinfo=UTC)
    assert parse_since("2024-04-30T12:00:00+02:00") == datetime(2024, 4, 30, 10, tzinfo=UTC)


def test_json_is_machine_readable() -> None:
    @dataclasses.dataclass
    class Point:
        x: Decimal

    event = StepCompleted(
        execution_id=UUID(int=1), position=3, timestamp=NOW, seq=1, output=(1, b"\x00"),
        costs=(Cost(usd=Decimal("0.10"), model="m"),), duration=0.5,
    )
    data = json.loads(dumps(
        {"event": event, "point": Point(Decimal("1.5")), "day": date(2024, 1, 2)}
    ))
    assert data["event"]["execution_id"] == "00000000-0000-0000-0000-000000000001"
    assert data["event"]["timestamp"] == "2024-05-01T12:00:00+00:00"
    assert data["event"]["costs"] == [{"usd": "0.10", "input_tokens": 0, "output_tokens": 0,
                                       "model": "m"}]
    assert data["event"]["output"] == [1, "AA=="]
    assert data["point"] == {"x": "1.5"} and data["day"] == "2024-01-02"
    assert to_jsonable({UUID(int=2): {1, 2}}) == {"00000000-0000-0000-0000-000000000002": [1, 2]}
    assert preview({"a": "x" * 100}, 20) == '{"a": "xxxxxxxxxxxx…'
    assert len(preview(list(range(100)), 30)) == 30


def test_formatting() -> None:
    assert [format_seconds(s) for s in (None, 0.0042, 0.42, 4.2, 42, 185, 7800, 273600)] == [
        "-", "4.2ms", "420ms", "4.20s", "42.0s", "3m05s", "2h10m", "3d04h",
    ]
    assert usd(Decimal("0.00250")) == "$0.0025" and usd(Decimal(0)) == "$0"
    assert usd(Decimal("1E+1")) == "$10"
    assert _dashed("abcdef0112") == "abcdef01-12"


def test_choices_match_the_projections() -> None:
    assert get_args(app_module.StatusName) == STATUSES
    assert get_args(app_module.CostDimension) == COST_DIMENSIONS


def test_atomic_write_and_unreadable_archives(tmp_path: Path) -> None:
    target = tmp_path / "d" / "x.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["x.json"]
    with pytest.raises(ArchiveError, match="not a readable journal export"):
        read_archive(target)
    target.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ArchiveError, match="format"):
        read_archive(target)


def test_console_script_module_runs(tmp_path: Path) -> None:
    """``python -m journal`` reaches runner.cli.main (a real process, real exit codes)."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    missing = subprocess.run([sys.executable, "-m", "journal", "ls", "--url", url],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no journal at" in missing.stderr
    assert not (tmp_path / "j.db").exists()  # a read command creates nothing
    Journal.open(url).close()
    ok = subprocess.run([sys.executable, "-m", "journal", "ls", "--url", url],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "no executions" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "journal", "ls", "--since", "x", "--url", url],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid --since")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    help_ = subprocess.run([sys.executable, "-m", "journal"], capture_output=True, text=True,
                           timeout=60)
    assert help_.returncode == 0 and help_.stdout.count("Usage") == 1


def test_msgspec_structs_keep_field_names() -> None:
    class Row(msgspec.Struct, array_like=True):
        a: int
        b: str

    assert to_jsonable(Row(a=1, b="x")) == {"a": 1, "b": "x"}
