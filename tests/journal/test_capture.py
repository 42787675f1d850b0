"""Payload policy: secrets redacted, captures truncated, resumable outputs kept whole."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from journal import Capture, ExecutionPaused, Journal, LogRecorded, OutOfLine, Truncated
from journal.capture import REDACTED
from journal.encoding import decode_event
from journal.values import encode_value

SECRETS = {
    "Authorization": "Bearer sk-live-123",
    "nested": {"API-Key": "key-456", "keep": "visible", "deeper": {"PassWord": "hunter2"}},
    "calls": [{"token": "tok-789", "id": 1}, {"x_access_token": "tok-000", "id": 2}],
    "input_tokens": 42,  # not a secret: ends in _tokens, not _token
    "client_secret": "cs-111",
}
REDACTED_SECRETS = {
    "Authorization": REDACTED,
    "nested": {"API-Key": REDACTED, "keep": "visible", "deeper": {"PassWord": REDACTED}},
    "calls": [{"token": REDACTED, "id": 1}, {"x_access_token": REDACTED, "id": 2}],
    "input_tokens": 42,
    "client_secret": REDACTED,
}
PLAIN_SECRETS = [b"sk-live-123", b"key-456", b"hunter2", b"tok-789", b"tok-000", b"cs-111"]


def _raw_bytes(journal: Journal, run_id: Any) -> bytes:
    return b"".join(s[2] for s in journal.storage.read_stream(run_id))


def test_secrets_are_redacted_everywhere_they_are_captured(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("redact", SECRETS)
        seq = run.step_started("call", SECRETS)
        run.log("calling", request=SECRETS, Token="log-secret")
        run.paused("review", SECRETS)
        state = journal.state(run.id)
        assert state.input == REDACTED_SECRETS
        assert state.steps[seq].input == REDACTED_SECRETS
        assert state.pause is not None and state.pause.payload == REDACTED_SECRETS
        log = next(e for e in journal.events(run.id) if isinstance(e, LogRecorded))
        assert log.fields == {"request": REDACTED_SECRETS, "Token": REDACTED}
        raw = _raw_bytes(journal, run.id)
        for secret in [*PLAIN_SECRETS, b"log-secret"]:
            assert secret not in raw


def test_custom_secret_keys(journal_url: str) -> None:
    capture = Capture(secret_keys=frozenset({"SSN"}))
    with Journal.open(journal_url, capture=capture) as journal:
        run = journal.start("redact", {"ssn": "123-45-6789", "patient_ssn": "1", "password": "p"})
        assert journal.state(run.id).input == {
            "ssn": REDACTED, "patient_ssn": REDACTED, "password": "p"
        }


def _truncated(value: Any, capture: Capture) -> Truncated:
    data = encode_value(value)
    return Truncated(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        preview=repr(value)[: capture.preview_chars],
    )


def test_large_captures_are_truncated_to_a_marker(journal_url: str) -> None:
    capture = Capture(max_capture_bytes=200, preview_chars=30)
    big = {"text": "x" * 1000, "password": "never-shown"}
    redacted_big = {"text": "x" * 1000, "password": REDACTED}
    small = {"text": "short"}
    with Journal.open(journal_url, capture=capture) as journal:
        run = journal.start("truncate")
        seq = run.step_started("s", big)
        small_seq = run.step_started("t", small)
        run.log("big fields", blob="y" * 1000)
        run.log("small fields", n=1)
        output = {"text": "z" * 1000}
        run.step_completed(seq, output)  # an output: resume needs it, never truncated
        run.paused("review", big)
        state = journal.state(run.id)

        marker = state.steps[seq].input
        assert marker == _truncated(redacted_big, capture)  # redacted before hashing
        assert marker.size > 200 and len(marker.preview) == 30
        assert "never-shown" not in marker.preview
        assert state.steps[small_seq].input == small
        assert state.steps[seq].output == output
        assert state.pause is not None
        assert state.pause.payload == _truncated(redacted_big, capture)

        logs = [e for e in journal.events(run.id) if isinstance(e, LogRecorded)]
        assert logs[0].fields == {"truncated": _truncated({"blob": "y" * 1000}, capture)}
        assert logs[1].fields == {"n": 1}
        assert b"never-shown" not in _raw_bytes(journal, run.id)


def test_large_outputs_are_stored_out_of_line_and_read_back_whole(journal_url: str) -> None:
    capture = Capture(max_inline_bytes=1000)
    output = {"rows": list(range(2000)), "blob": bytes(range(256)) * 20}
    with Journal.open(journal_url, capture=capture) as journal:
        run = journal.start("big", output)
        seq = run.step_started("s")
        run.step_completed(seq, output)
        run.paused("review")
        run.resumed(output)
        run.completed(output)
        run_id = run.id
        assert run.state.steps[seq].output == output  # the writer's own state holds the value

        stored = journal.storage.read_stream(run_id)
        assert all(len(s[2]) < 1000 for s in stored)  # the log holds references
        events = [decode_event(t, d, execution_id=run_id, position=p) for p, t, d in stored]
        refs = [getattr(e, f) for e in events for f in type(e).payload_fields]
        assert sum(isinstance(r, OutOfLine) for r in refs) == 4
        assert len({r.sha256 for r in refs if isinstance(r, OutOfLine)}) == 1  # stored once

        state = journal.state(run_id)
        assert state.input == output
        assert state.steps[seq].output == output
        assert state.output == output
        assert journal.events(run_id)[4].value == output  # type: ignore[attr-defined]

    with Journal.open(journal_url) as second:  # another connection, default capture
        state = second.state(run_id)
        assert state.steps[seq].output == output
        assert state.output == output
        assert state.input == output


def test_pause_payload_small_enough_is_kept(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("pause")
        run.paused("human_review", {"draft": "hello", "score": 0.5})
        paused = journal.events(run.id)[-1]
        assert isinstance(paused, ExecutionPaused)
        assert paused.reason == "human_review"
        assert paused.payload == {"draft": "hello", "score": 0.5}


@dataclasses.dataclass
class _Request:
    url: str
    headers: dict[str, str]


def test_secrets_nested_inside_a_dataclass_are_redacted(journal_url: str) -> None:
    with Journal.open(journal_url) as journal:
        run = journal.start("w")
        request = _Request(url="https://api", headers={"Authorization": "Bearer s3cr3t-value"})
        run.step_started("call", {"request": request})
        assert b"s3cr3t-value" not in _raw_bytes(journal, run.id)
        captured = journal.state(run.id).steps[1].input["request"]
        assert captured == {"url": "https://api", "headers": {"Authorization": REDACTED}}


def test_a_forged_topic_cannot_build_an_arbitrary_class(tmp_path: Any) -> None:
    """Stored data names the class to build: only value types are built from it; anything
    else stays inert data (a stand-in), and nothing is called."""
    import msgspec

    from journal.values import EXT_OBJECT, Unresolved, decode_value

    marker = tmp_path / "ran"
    payload = msgspec.msgpack.encode(["subprocess:Popen", {"args": f"touch {marker}",
                                                           "shell": True}])
    forged = msgspec.msgpack.encode(msgspec.msgpack.Ext(EXT_OBJECT, payload))
    value = decode_value(forged)
    assert isinstance(value, Unresolved) and value.topic == "subprocess:Popen"
    assert not marker.exists()
