"""What the benchmark scripts share, so that every one of them measures alike.

* which checkout is measured (:func:`use_checkout`, :func:`revision`);
* the PostgreSQL database each run makes for itself and drops (:func:`postgres_database`);
* the raw-commit floor: one INSERT + commit of a 60-byte row into a bare table beside the
  journal (:class:`RawFloor`);
* the trivial step and the median (:func:`trivial`, :func:`med`), and the parser.

Imported as ``from benchlib import ...``: a script run as ``python scripts/bench_x.py`` has
its own directory first on ``sys.path`` wherever it is run from (and so do its spawned
children), so this module always comes from the scripts' own checkout, while
:func:`use_checkout` puts the checkout being measured (``$JOURNAL_BENCH_ROOT``) before it for
``journal`` and ``runner``. For that reason nothing here imports ``journal`` or ``psycopg``
at import time: they are imported when called, after the script has set up ``sys.path``
(and a script that never touches PostgreSQL never imports ``psycopg``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The repository these scripts are in: the code measured unless told otherwise.
REPO = Path(__file__).resolve().parent.parent
#: The server on which each run creates (and drops) a database of its own.
ADMIN = os.environ.get("JOURNAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: About what one trivial event weighs: the body of every raw floor row.
ROW = os.urandom(60)

_SQLITE_FLOOR = ("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY "
                 "AUTOINCREMENT, stream TEXT, position INTEGER, body BLOB)")
_POSTGRES_FLOOR = ("CREATE TABLE IF NOT EXISTS public.bench_floor (id bigserial "
                   "PRIMARY KEY, stream uuid, position int, body bytea)")


def use_checkout(root: Path | None = None, *, export: bool = False) -> Path:
    """Put the checkout to measure first on ``sys.path`` and return it: ``root``, else
    ``$JOURNAL_BENCH_ROOT``, else this repository (so the same script measures an older
    checkout). ``export``: also set ``$JOURNAL_BENCH_ROOT``, so that child processes
    (spawned, or run as subprocesses) import the same code."""
    if root is None:
        root = Path(os.environ.get("JOURNAL_BENCH_ROOT") or REPO)
    sys.path.insert(0, str(root))
    if export:
        os.environ["JOURNAL_BENCH_ROOT"] = str(root)
    return root


def revision(root: Path) -> str:
    """``root`` and its last commit, with a warning when ``journal`` was imported from
    elsewhere: a figure is worth nothing without the code it measured."""
    try:
        out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        out = ""
    import journal

    where = Path(journal.__file__).resolve().parent.parent
    warning = "" if where == root.resolve() else f"; WARNING: journal imported from {where}"
    return f"{root} ({out[:70] or 'not a git checkout'}){warning}"


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def trivial() -> None:
    """The step: nothing, so what is measured is the machinery around it."""


def med(values: list[float]) -> float:
    """The median: the machines these run on drift, and a mean follows the outliers."""
    return statistics.median(values)


# -- PostgreSQL database of our own ----------------------------------------------------------------


def conninfo(url: str) -> str:
    """A libpq conninfo string for a journal PostgreSQL URL (psycopg does not take the
    journal's query options, e.g. ``?schema=``)."""
    from journal.storage.postgres import parse_postgres_url

    p = parse_postgres_url(url)
    return (f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
            + (f" password={p['password']}" if p["password"] else ""))


@contextmanager
def postgres_database(prefix: str, admin: str = ADMIN, width: int = 10) -> Iterator[str]:
    """A fresh database ``<prefix>_<random hex>`` on ``admin``'s server, its URL yielded and
    the database dropped afterwards: runs never see each other's tables or leftovers."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:width]}"
    with psycopg.connect(conninfo(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(conninfo(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the floor -------------------------------------------------------------------------------------


class RawFloor:
    """One INSERT + commit (autocommit) of one :data:`ROW` into a bare table ``bench_floor``
    beside a journal URL: the SQLite file it names (WAL, its ``synchronous`` setting), or the
    PostgreSQL database it names (schema ``public``). What any journal committing the same
    bytes one by one cannot go below, measured with the same settings and in the same run.

    ``create=False``: the table exists already (made by a parent before its children race).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.sqlite = url.startswith("sqlite")
        self.conn: Any
        if self.sqlite:
            path, _, query = url.removeprefix("sqlite:///").partition("?")
            sync = "NORMAL" if "synchronous=normal" in query.lower() else "FULL"
            # check_same_thread=False: closed by whichever thread owns the benchmark.
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={sync}")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.sql = "INSERT INTO bench_floor (stream, position, body) VALUES (?, ?, ?)"
            ddl = _SQLITE_FLOOR
        else:
            import psycopg

            self.conn = psycopg.connect(conninfo(url.partition("?")[0]), autocommit=True)
            self.sql = ("INSERT INTO public.bench_floor (stream, position, body) "
                        "VALUES (%s, %s, %s)")
            ddl = _POSTGRES_FLOOR
        if create:
            self.conn.execute(ddl)

    def key(self, stream: uuid.UUID) -> uuid.UUID | str:
        """The driver's value for the stream column: hex text on SQLite, a uuid otherwise."""
        return stream.hex if self.sqlite else stream

    def commit(self, stream: uuid.UUID | str, position: int) -> None:
        """One commit of one row; ``stream`` as :meth:`key` gives it."""
        if self.sqlite:
            self.conn.execute(self.sql, (stream, position, ROW))
        else:
            self.conn.execute(self.sql, (stream, position, ROW), prepare=True)

    def commits(self, n: int, stream: uuid.UUID | None = None, start: int = 0) -> float:
        """Seconds for ``n`` commits of one row each, at positions ``start``... of
        ``stream`` (a fresh one if not given)."""
        key = self.key(stream or uuid.uuid4())
        conn, sql = self.conn, self.sql
        t = time.perf_counter()
        if self.sqlite:
            for i in range(start, start + n):
                conn.execute(sql, (key, i, ROW))
        else:
            for i in range(start, start + n):
                conn.execute(sql, (key, i, ROW), prepare=True)
        return time.perf_counter() - t

    def close(self) -> None:
        self.conn.close()
