"""Shared fixtures: every storage test runs on SQLite and on a real PostgreSQL server.

PostgreSQL comes from ``$JOURNAL_TEST_POSTGRES_URL`` (default: the local server, database
``test``). If it is installed but stopped, it is started; if it cannot be reached the run
fails with a message that says so: PostgreSQL tests are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from journal.storage.postgres import parse_postgres_url

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Seconds a PostgreSQL lease outlives a lost session in the tests (see AdvisoryLeases).
TEST_LEASE_GRACE = 2.0

ADMIN_URL = os.environ.get(
    "JOURNAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin_conninfo() -> str:
    p = parse_postgres_url(ADMIN_URL)
    return (
        f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
        + (f" password={p['password']}" if p["password"] else "")
    )


def _reachable() -> str | None:
    try:
        with psycopg.connect(_admin_conninfo(), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e)


def _start_local_postgres() -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return
    for version in os.listdir("/etc/postgresql"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False, capture_output=True, timeout=60,
        )


#: Test processes for ``-n auto`` (pyproject's addopts): most tests wait (for the processes
#: they start, timers, the database), so three beat two even on two cores.
WORKERS = 3


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """(pytest-xdist) ``WORKERS``; none (this process) for the tests of one file, which
    ``--dist loadfile`` would run in one worker anyway. $PYTEST_XDIST_AUTO_NUM_WORKERS
    decides where it is set; ``-n N`` on the command line is not asked about."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    files = {arg.split("::")[0] for arg in config.args}
    if len(files) == 1 and (config.invocation_params.dir / files.pop()).is_file():
        return 0
    return WORKERS


#: Set in a pytest process by GNU readline (which pytest imports) in the C environment only:
#: a serial run's ``os.environ`` does not have them, but pytest-xdist's workers inherit them
#: (``COLUMNS=80``), and so would every ``journal`` command a test runs with that environment.
_READLINE_VARIABLES = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, in the controller) Tell each worker which of them the run really has."""
    node.workerinput["journal_test_environ"] = {
        name: os.environ.get(name) for name in _READLINE_VARIABLES
    }


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker: the same ``os.environ`` as a serial run would have."""
    wanted = getattr(config, "workerinput", {}).get("journal_test_environ", {})
    for name, value in wanted.items():
        if value is None and name in os.environ:
            # As in the controller: gone from os.environ (what tests pass on explicitly),
            # still in the C environment (what a subprocess started with env=None inherits).
            os.putenv(name, os.environ.pop(name))
        elif value is not None:
            os.environ[name] = value


def pytest_sessionstart(session: pytest.Session) -> None:
    error = _reachable()
    if error is not None:
        _start_local_postgres()
        error = _reachable()
    if error is not None:
        pytest.exit(
            f"PostgreSQL is required for the storage tests and could not be reached at "
            f"{ADMIN_URL} ({error}). Start it, or set JOURNAL_TEST_POSTGRES_URL.",
            returncode=3,
        )


def postgres_url_for(dbname: str) -> str:
    """The admin URL pointed at another database."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    name = f"journal_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url_for(name)
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty journal: a new SQLite file, or a new schema in a fresh database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    db_url: str = request.getfixturevalue("pg_database")
    schema = f"s_{uuid.uuid4().hex[:12]}"
    # A short lease grace: tests kill drivers and recover at once (the default is 10 s).
    return f"{db_url}?schema={schema}&lease_grace={TEST_LEASE_GRACE}"


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``journal_url``, plus ``memory:`` (in-process: only for tests that open it once)."""
    if request.param == "memory":
        return "memory:"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    db_url: str = request.getfixturevalue("pg_database")
    return f"{db_url}?schema=s_{uuid.uuid4().hex[:12]}&lease_grace={TEST_LEASE_GRACE}"


@contextmanager
def select_only_role(journal_url: str) -> Iterator[str]:
    """A URL of the PostgreSQL journal at ``journal_url`` (``?schema=`` given) for a new role
    that may only SELECT its tables; the role is dropped afterwards."""
    db_url, _, query = journal_url.partition("?")
    schema = parse_qs(query)["schema"][0]
    parts = urlsplit(db_url)
    dbname = parts.path.lstrip("/")
    role = f"ro_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident(role)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            ident(dbname), ident(role)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            ident(schema), ident(role)))
    try:
        yield f"postgresql://{role}@{parts.hostname}:{parts.port or 5432}/{dbname}?schema={schema}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE usename = %s", (role,))
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(ident(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(ident(role)))
