"""The one place driver errors become the journal's errors: by exception class and SQLSTATE
(PostgreSQL) or result code (SQLite), never by message text.

Most specific first, as httpx maps transport errors: a duplicate (stream, position) is a
:class:`ConcurrencyConflict`; a full disk, a read-only file system, a refused permission and a
file that is not a database each get their own named error; only "the server is not there"
is :class:`JournalUnavailable` proper, the one error that says to check the server.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any
from uuid import UUID

from journal.errors import (
    ConcurrencyConflict,
    JournalError,
    JournalNotFound,
    JournalUnavailable,
    NotAJournal,
    StorageFull,
    StoragePermissionDenied,
    StorageReadOnly,
)

__all__ = ["is_connection_lost", "path_problem", "translate", "translate_os_error"]

# SQLite primary result codes (the low byte of the extended code).
_SQLITE_ERROR, _SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 1, 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_CONSTRAINT, _SQLITE_AUTH, _SQLITE_NOTADB = 19, 23, 26
_SQLITE_UNIQUE = {2067, 1555}  # SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_UNIQUE = "23505"
_PG_LOST_CLASSES = ("08",)  # connection exception
_PG_LOST = {"57P01", "57P02", "57P03", "57P05", "53300"}  # admin/crash shutdown, cannot connect
_PG_PERMISSION = {"42501"}
_PG_READ_ONLY = {"25006"}
_PG_FULL = {"53100"}  # disk_full (53200 is out of memory: transient, not the disk)
_PG_MISSING = {"3D000", "42P01", "3F000"}  # no database, no table, no schema
_PG_AUTH = {"28000", "28P01"}


def _sqlite_code(e: BaseException) -> int:
    return int(getattr(e, "sqlite_errorcode", -1) or -1)


def _sqlstate(e: BaseException) -> str:
    return str(getattr(e, "sqlstate", "") or "")


def is_connection_lost(e: BaseException) -> bool:
    """Whether a PostgreSQL error means the session is gone (a retry on a new one may work)."""
    import psycopg

    if isinstance(e, psycopg.errors.UniqueViolation):
        return False
    state = _sqlstate(e)
    if state:
        return state.startswith(_PG_LOST_CLASSES) or state in _PG_LOST
    # No SQLSTATE: the socket broke, or the connection could not be made at all.
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)


def translate(
    e: BaseException,
    url: str,
    *,
    where: str | None = None,
    execution_id: UUID | str | None = None,
    position: int = 0,
) -> JournalError:
    """The journal error that stands for a driver error ``e`` (raise it ``from e``)."""
    if isinstance(e, JournalError):
        return e
    if isinstance(e, sqlite3.Error):
        return _translate_sqlite(e, url, where, execution_id, position)
    if isinstance(e, OSError):
        return translate_os_error(e, url, where=where)
    module = type(e).__module__
    if module.startswith(("psycopg", "psycopg_pool")):
        return _translate_postgres(e, url, where, execution_id, position)
    return JournalUnavailable(url, e, where=where)


def _translate_sqlite(
    e: sqlite3.Error, url: str, where: str | None, eid: UUID | str | None, position: int
) -> JournalError:
    code = _sqlite_code(e)
    primary = code & 0xFF if code >= 0 else -1
    reason = f"{e} ({getattr(e, 'sqlite_errorname', 'sqlite error')})"
    if code in _SQLITE_UNIQUE:
        return ConcurrencyConflict(eid or "?", position)
    if primary == _SQLITE_CONSTRAINT:
        return JournalError(f"the database refused the write: {e}")
    if primary == _SQLITE_FULL:
        return StorageFull(url, reason, where=where)
    if primary == _SQLITE_READONLY:
        return StorageReadOnly(url, reason, where=where)
    if primary in (_SQLITE_PERM, _SQLITE_AUTH):
        return StoragePermissionDenied(url, reason, where=where)
    if primary in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        return NotAJournal(url, reason, where=where)
    if primary == _SQLITE_CANTOPEN:
        return _cannot_open(url, where, reason)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return JournalUnavailable(
            url, f"{reason}: another process held the database locked for too long",
            where=where,
        )
    if primary == _SQLITE_IOERR:
        return JournalUnavailable(url, f"disk I/O error: {reason}", where=where)
    if primary == _SQLITE_ERROR or isinstance(
        e, sqlite3.ProgrammingError | sqlite3.InterfaceError
    ):
        # "no such table", a syntax error: a bug or a foreign file, not an outage.
        return JournalError(f"journal {where or url}: the database rejected a statement: {e}")
    return JournalUnavailable(url, reason, where=where)


def path_problem(url: str, path: str, *, must_exist: bool) -> JournalError | None:
    """What is wrong with a SQLite journal's path, if anything the file system can tell:
    a directory, a missing parent directory, or (``must_exist``) a missing file."""
    if os.path.isdir(path):
        return NotAJournal(url, "it is a directory", where=path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return JournalNotFound(url, f"directory {parent} does not exist", where=path)
    if must_exist and not os.path.exists(path):
        return JournalNotFound(url, "the file does not exist", where=path)
    return None


def _cannot_open(url: str, where: str | None, reason: str) -> JournalError:
    """SQLite says only "unable to open": ask the file system what is wrong with the path."""
    path = where or url
    problem = path_problem(url, path, must_exist=True)
    if problem is not None:
        return problem
    if not os.access(path, os.R_OK):
        return StoragePermissionDenied(url, reason, where=path)
    return JournalUnavailable(url, reason, where=path)


def translate_os_error(e: OSError, url: str, *, where: str | None = None) -> JournalError:
    """A file-system error (lease files, the journal's directory) as a journal error."""
    where = where or e.filename or url
    reason = f"{e.strerror or e}"
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return StorageFull(url, reason, where=where)
    if e.errno == errno.EROFS:
        return StorageReadOnly(url, reason, where=where)
    if e.errno in (errno.EACCES, errno.EPERM):
        return StoragePermissionDenied(url, reason, where=where)
    if e.errno == errno.ENOENT:
        return JournalNotFound(url, reason, where=where)
    if e.errno in (errno.EISDIR, errno.ENOTDIR):
        return NotAJournal(url, reason, where=where)
    return JournalUnavailable(url, reason, where=where)


def _translate_postgres(
    e: BaseException, url: str, where: str | None, eid: UUID | str | None, position: int
) -> JournalError:
    import psycopg

    state = _sqlstate(e)
    reason: Any = str(e).strip() or type(e).__name__
    if state == _PG_UNIQUE:
        return ConcurrencyConflict(eid or "?", position)
    if state in _PG_PERMISSION:
        return StoragePermissionDenied(url, reason, where=where)
    if state in _PG_READ_ONLY:
        return StorageReadOnly(url, reason, where=where)
    if state in _PG_FULL:
        return StorageFull(url, reason, where=where)
    if state in _PG_MISSING:
        return JournalNotFound(url, reason, where=where)
    if state.startswith("23"):
        return JournalError(f"the database refused the write: {reason}")
    if is_connection_lost(e) or isinstance(e, psycopg.OperationalError) or state in _PG_AUTH:
        return JournalUnavailable(url, reason, where=where)
    # A statement the server rejects (wrong type, bad syntax) is a bug here, not an outage.
    return JournalError(f"journal {where or url}: the database rejected a statement: {reason}")
