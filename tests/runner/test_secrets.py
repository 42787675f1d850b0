"""Secrets never reach the journal's bytes, and never come back as "[REDACTED]" on resume."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from journal import Journal
from runner import Context, Runner, RunnerError
from runner.errors import SecretInput
from tests.runner.workflows import noop


@dataclasses.dataclass(frozen=True)
class Login:
    user: str
    password: str


class Creds:
    """A value the journal cannot encode, whose repr shows its secret."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password

    def __repr__(self) -> str:
        return f"Creds(user={self.user!r}, password={self.password!r})"


@dataclasses.dataclass(frozen=True)
class Connection:
    """Encodable but for one field: redaction must happen before the fallback."""

    password: str
    socket: object


def stored_bytes(journal: Journal, eid: Any) -> bytes:
    return b"".join(s[2] for s in journal.storage.read_stream(eid))


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((), {"api_key": "sk-live-123"}, "'api_key'"),
        ((Login("u", "sk-live-123"),), {}, "'config.password'"),
        (({"nested": [{"token": "sk-live-123"}]},), {}, "'config.nested[0].token'"),
    ],
)
def test_run_refuses_input_the_journal_would_redact(
    journal: Journal, args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    runner = Runner(journal)
    called = []

    @runner.workflow()
    def call_api(ctx: Context, config: Any = None, api_key: str = "") -> None:
        called.append(1)

    before = journal.storage.head()
    with runner, pytest.raises(SecretInput, match=re.escape(where)) as caught:
        runner.run(call_api, *args, **kwargs)
    assert isinstance(caught.value, RunnerError) and isinstance(caught.value, ValueError)
    assert "reference" in str(caught.value) and "sk-live-123" not in str(caught.value)
    assert journal.storage.head() == before  # nothing written
    assert not called


def test_arun_refuses_secret_input_too(journal: Journal) -> None:
    import asyncio

    runner = Runner(journal)

    @runner.workflow()
    async def call_api(ctx: Any, api_key: str) -> None:
        return None

    with runner, pytest.raises(SecretInput, match="'api_key'"):
        asyncio.run(runner.arun(call_api, api_key="sk-live-123"))
    assert journal.storage.head() == 0


def test_input_without_secrets_runs_and_resumes_equal(journal: Journal) -> None:
    runner = Runner(journal)

    @runner.workflow()
    def call_api(ctx: Context, key_name: str, login: dict[str, str]) -> list[Any]:
        ctx.pause("wait")
        return [key_name, login]

    with runner:
        run = runner.run(call_api, "vault/openai", {"user": "u", "password": "[REDACTED]"})
        done = runner.resume(run.id)
    assert done.output == ["vault/openai", {"user": "u", "password": "[REDACTED]"}]


def test_unencodable_step_input_and_log_fields_keep_no_secret(journal: Journal) -> None:
    runner = Runner(journal)

    def use(creds: Creds, conn: Connection) -> None:
        return None

    @runner.workflow()
    def login(ctx: Context) -> None:
        creds = Creds("u", "hunter2")
        conn = Connection(password="hunter2", socket=object())
        ctx.step("use", use, creds, conn)
        ctx.log("logged in", creds=creds, conn=conn)
        ctx.step("after", noop)

    with runner:
        run = runner.run(login)
    assert run.status == "completed"
    assert b"hunter2" not in stored_bytes(journal, run.id)
    started = journal.state(run.id).steps[1]
    assert started.name == "use"
    events = journal.events(run.id)
    inputs = [getattr(e, "input", None) for e in events if type(e).__name__ == "StepStarted"]
    assert inputs[0] == {"creds": "<unencodable Creds>", "conn": "<unencodable Connection>"}
    fields = [e.fields for e in events if type(e).__name__ == "LogRecorded"]
    assert fields == [{"creds": "<unencodable Creds>", "conn": "<unencodable Connection>"}]
