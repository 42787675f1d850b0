"""The one storage layer of a journal's database: SQLite, PostgreSQL or memory.

``open_storage(url)`` chooses the backend by URL. A :class:`Storage` owns every table, SQL
statement, schema change, blob, lease and driver-error translation of that database;
projections reach the database only through its declared interface (:meth:`Storage.read_log`,
:meth:`Storage.head`, :meth:`Storage.listen` and a :class:`ViewStore` for their own tables,
declared as :class:`Table`). eventsourcing's recorder contract is met by
:class:`journal.storage.recorder.StorageRecorder` over any of them.
"""

from __future__ import annotations

import os
from typing import Any

from journal.storage.base import Blob, Listener, LogRow, Storage, StreamRow, ViewStore, Wake
from journal.storage.schema import Column, Dialect, Index, Table

__all__ = [
    "DEFAULT_URL",
    "Blob",
    "Column",
    "Dialect",
    "Index",
    "Listener",
    "LogRow",
    "Storage",
    "StreamRow",
    "Table",
    "ViewStore",
    "Wake",
    "open_storage",
]

DEFAULT_URL = "sqlite:///journal.db"
_POSTGRES_SCHEMES = ("postgresql:", "postgres:", "postgresql+psycopg:")


def open_storage(url: str | None = None, *, create: bool = True, **options: Any) -> Storage:
    """Open the storage named by ``url`` (else ``$JOURNAL_URL``, else ``sqlite:///journal.db``).

    With ``create=False`` nothing is created: a journal that does not exist raises
    :class:`journal.errors.JournalNotFound`. PostgreSQL takes ``reconnect_timeout`` (seconds a
    lost session is retried, default 10) and ``pool_size``/``max_overflow`` (together, the
    most sessions this process opens).
    """
    url = url or os.environ.get("JOURNAL_URL") or DEFAULT_URL
    if url == "memory:" or url.startswith("memory:"):
        from journal.storage.memory import MemoryStorage

        _no_options(url, options, ("reconnect_timeout",))
        return MemoryStorage(url, create=create)
    if url.startswith("sqlite:"):
        from journal.storage.sqlite import SQLiteStorage

        _no_options(url, options, ("reconnect_timeout",))
        return SQLiteStorage(url, create=create)
    if url.startswith(_POSTGRES_SCHEMES):
        from journal.storage.postgres import PostgresStorage

        _no_options(url, options, ("reconnect_timeout", "pool_size", "max_overflow"))
        return PostgresStorage(url, create=create, **options)
    raise ValueError(
        f"unsupported journal URL {url!r}: use sqlite:///path.db, "
        "postgresql://user@host:5432/db or memory:"
    )


def _no_options(url: str, options: dict[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"unknown option {', '.join(unknown)} for {url.split(':', 1)[0]} journals"
            + (f" (it takes {', '.join(accepted)})" if accepted else "")
        )
