"""Values stored out of line (blobs) under retention: shared, pruned, exported and imported.

Step outputs and workflow outputs above ``Capture.max_inline_bytes`` (256 KiB) are kept whole
in ``journal_blobs`` (content-addressed by sha256), and ``journal_blob_refs`` says which
stream references which blob. Deleting streams removes the blobs no remaining stream
references, in the same transaction. The tables are counted with raw SQL (sqlite3 /
psycopg, in the URL's schema on PostgreSQL), not through the library under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner, Result

from journal import (
    ExecutionCompleted,
    ExecutionNotFound,
    Journal,
    OutOfLine,
    StepCompleted,
)
from journal.encoding import decode_event
from runner import Context, Runner
from runner.cli import app
from runner.cli.retention import read_archive

INLINE_LIMIT = 256 * 1024  # Capture.max_inline_bytes, the default
BIG = INLINE_LIMIT + 64 * 1024  # stored out of line, whatever the encoding adds


def _text(tag: str, size: int) -> str:
    """A ``size``-character string, distinct per tag, that does not compress to nothing."""
    chunks = (hashlib.sha256(f"{tag}:{i}".encode()).hexdigest() for i in range(size // 64 + 1))
    return "".join(chunks)[:size]


SHARED = _text("shared", BIG)
OWN_A = _text("own-a", BIG)
OWN_B = _text("own-b", BIG)
MEGABYTE = _text("megabyte", 1_000_000)


# -- raw SQL on the journal's tables -----------------------------------------------------------


def _fetch(url: str, query: str) -> tuple[Any, ...]:
    """The first row of ``query`` on the database of ``url``; ``{t}`` qualifies a table."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            row: tuple[Any, ...] = conn.execute(query.format(t="")).fetchone()
            return row
    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", ["public"])[-1]
    with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as pg:
        statement = sql.SQL(query.format(t="{schema}.")).format(  # type: ignore[arg-type]
            schema=sql.Identifier(schema)
        )
        found = pg.execute(statement).fetchone()
        assert found is not None
        return tuple(found)


def _rows(url: str, table: str) -> int:
    return int(_fetch(url, f"SELECT count(*) FROM {{t}}{table}")[0])


def _blob_counts(url: str) -> tuple[int, int]:
    """(rows in journal_blobs, rows in journal_blob_refs)."""
    return _rows(url, "journal_blobs"), _rows(url, "journal_blob_refs")


def _largest_event(url: str) -> int:
    """The size in bytes of the largest event in journal_events."""
    length = "length" if url.startswith("sqlite:") else "octet_length"
    return int(_fetch(url, f"SELECT max({length}(state)) FROM {{t}}journal_events")[0])


def _refs(journal: Journal, execution_id: UUID) -> set[str]:
    """The sha256 of every out-of-line reference in the stored events of one execution."""
    digests = set()
    for position, topic, data in journal.storage.read_stream(execution_id):
        event = decode_event(topic, data, execution_id=execution_id, position=position)
        for name in type(event).payload_fields:
            value = getattr(event, name)
            if isinstance(value, OutOfLine):
                digests.add(value.sha256)
    return digests


# -- recording ---------------------------------------------------------------------------------


def _record(journal: Journal, step_output: str, output: str) -> UUID:
    """An execution with one step: both its step output and its output above the limit."""
    run = journal.start("blobs")
    seq = run.step_started("big")
    run.step_completed(seq, step_output)
    run.completed(output)
    return run.id


def _outputs(journal: Journal, execution_id: UUID) -> tuple[Any, Any]:
    state = journal.state(execution_id)
    return state.steps[1].output, state.output


# -- (a) delete_streams and shared blobs -------------------------------------------------------


def test_shared_blob_is_kept_until_its_last_stream_is_deleted(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        a = _record(journal, SHARED, OWN_A)
        b = _record(journal, SHARED, OWN_B)
        refs_a, refs_b = _refs(journal, a), _refs(journal, b)
        assert len(refs_a) == len(refs_b) == 2  # both values of each are out of line
        [shared] = refs_a & refs_b  # the identical value is one blob, referenced by both
        assert _blob_counts(journal_url) == (3, 4)
        assert _largest_event(journal_url) < 10_000  # the events hold references only

        assert journal.storage.delete_streams([a]) == 4
        assert _blob_counts(journal_url) == (2, 2)  # own_a went; shared is still b's
        with pytest.raises(ExecutionNotFound):
            journal.events(a)
        assert journal.storage.get_blob(shared)
        assert _outputs(journal, b) == (SHARED, OWN_B)

        assert journal.storage.delete_streams([b]) == 4
        assert _blob_counts(journal_url) == (0, 0)
        with pytest.raises(KeyError):
            journal.storage.get_blob(shared)

    with Journal.open(journal_url) as again:  # committed, not only in one connection's view
        assert _blob_counts(journal_url) == (0, 0)
        with pytest.raises(ExecutionNotFound):
            again.events(b)


def test_streams_deleted_together_take_their_shared_blob(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        a = _record(journal, SHARED, OWN_A)
        b = _record(journal, SHARED, OWN_B)
        c = _record(journal, OWN_A, OWN_A)  # shares own_a with a
        assert _blob_counts(journal_url) == (3, 5)
        assert journal.storage.delete_streams([a, b]) == 8
        assert _blob_counts(journal_url) == (1, 1)  # own_a, still c's
        assert _outputs(journal, c) == (OWN_A, OWN_A)


def test_shared_blob_in_memory() -> None:
    """``memory:`` has no tables to count: the blob is there exactly while referenced."""
    with Journal.open("memory:") as journal:
        a = _record(journal, SHARED, OWN_A)
        b = _record(journal, SHARED, OWN_B)
        [shared] = _refs(journal, a) & _refs(journal, b)
        [own_a] = _refs(journal, a) - {shared}
        assert journal.storage.delete_streams([a]) == 4
        assert journal.storage.get_blob(shared)
        with pytest.raises(KeyError):
            journal.storage.get_blob(own_a)
        assert _outputs(journal, b) == (SHARED, OWN_B)
        assert journal.storage.delete_streams([b]) == 4
        with pytest.raises(KeyError):
            journal.storage.get_blob(shared)


# -- (b) journal export, prune and import of a 1 MB output ---------------------------------------


def produce() -> str:
    return MEGABYTE


def big_output(ctx: Context) -> str:
    """One step whose output (1 MB) is also the workflow's output."""
    out: str = ctx.step("produce", produce)
    return out


def _cli(*args: str, url: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"JOURNAL_URL": url, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result


def test_export_prune_import_round_trip_keeps_the_value_out_of_line(
    journal_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_URL", raising=False)
    with Journal.open(journal_url) as journal, Runner(journal) as runner:
        runner.register(big_output)
        eid = runner.run(big_output).id
        before = journal.events(eid)
    assert _blob_counts(journal_url) == (1, 1)  # step output and output: one value, one blob
    assert _largest_event(journal_url) < 10_000

    exported = tmp_path / "export"
    _cli("export", str(eid), "--out", str(exported), url=journal_url)
    doc = json.loads((exported / f"{eid}.json").read_text())
    assert doc["summary"]["output"] == MEGABYTE  # the export holds the value itself
    assert read_archive(exported / f"{eid}.json")[1] == before

    archive = tmp_path / "archive"
    pruned = _cli("prune", "--older-than", "0s", "--archive", str(archive), "--json",
                  url=journal_url)
    assert [p["execution_id"] for p in json.loads(pruned.stdout)["pruned"]] == [str(eid)]
    assert _blob_counts(journal_url) == (0, 0)
    assert _rows(journal_url, "journal_events") == 0
    assert read_archive(archive / f"{eid}.json")[1] == before

    imported = _cli("import", str(exported / f"{eid}.json"), url=journal_url)
    assert f"imported {eid}" in imported.stdout
    assert _blob_counts(journal_url) == (1, 1)  # back out of line, not inline
    assert _largest_event(journal_url) < 10_000
    with Journal.open(journal_url, create=False) as journal:
        assert journal.events(eid) == before
        assert _outputs(journal, eid) == (MEGABYTE, MEGABYTE)

    again = _cli("import", str(archive / f"{eid}.json"), url=journal_url)
    assert "already in the journal" in again.stdout
    assert _blob_counts(journal_url) == (1, 1)


# -- (c) notifications resolve out-of-line values like events() ---------------------------------


def _check_notifications(url: str) -> None:
    with Journal.open(url) as journal:
        eid = _record(journal, SHARED, OWN_A)
        events = journal.events(eid)
        notified = [event for _, event in journal.notifications(after=0, limit=100)]
    assert notified == events
    [step] = [e for e in notified if isinstance(e, StepCompleted)]
    [done] = [e for e in notified if isinstance(e, ExecutionCompleted)]
    assert not isinstance(step.output, OutOfLine) and step.output == SHARED
    assert not isinstance(done.output, OutOfLine) and done.output == OWN_A


def test_notifications_return_resolved_values(journal_url: str) -> None:
    _check_notifications(journal_url)


def test_notifications_return_resolved_values_in_memory() -> None:
    _check_notifications("memory:")
