"""``journal demo`` runs the runner's demo against the journal it is given."""

from __future__ import annotations

import json

from tests.cli.conftest import Invoke


def test_demo_runs_and_its_execution_is_listed(cli: Invoke, journal_url: str) -> None:
    r = cli("demo", url=journal_url)
    assert r.exit_code == 0, r.output
    assert "completed" in r.stdout
    rows = json.loads(cli("ls", "--json", url=journal_url).stdout)
    assert [(row["workflow"], row["status"]) for row in rows] == [
        ("document_review", "completed")
    ]
    shown = cli("show", rows[0]["execution_id"][:8], url=journal_url)
    assert "execution resumed" in shown.stdout and "human_review" in shown.stdout
