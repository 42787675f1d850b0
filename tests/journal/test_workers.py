"""``journal_workers``: the serving processes a journal knows of (SQLite, PostgreSQL and
the in-memory store), as ``serve()`` writes them and ``journal stuck`` reads them."""

from __future__ import annotations

import time

from journal import Journal
from journal.storage.base import WORKER_FORGOTTEN_AFTER, WorkerRow


def _worker(runner: str, seen_at: float, **workflows: str) -> WorkerRow:
    return WorkerRow(runner=runner, host="box", pid=len(runner), started_at=1000.0,
                     seen_at=seen_at, workflows=workflows)


def test_workers_are_said_alive_renewed_and_signed_off(storage_url: str) -> None:
    with Journal.open(storage_url) as journal:
        storage = journal.storage
        assert storage.workers() == []  # none: known to be nobody (not None: unknown)
        now = time.time()
        assert storage.put_worker(_worker("a", now, review="v1"))
        assert storage.put_worker(_worker("bb", now, review="v1", billing="b7"))
        # Renewed with the code it runs now; when it started does not change.
        assert storage.put_worker(_worker("a", time.time(), review="v2")._replace(
            started_at=1.0))
        alive = storage.workers(60.0)
        assert alive is not None and [w.runner for w in alive] == ["a", "bb"]
        assert alive[0].workflows == {"review": "v2"} and alive[0].started_at == 1000.0
        assert alive[1].workflows == {"review": "v1", "billing": "b7"}
        assert abs(alive[0].seen_at - time.time()) < 30  # by the database's clock, if any
        storage.drop_worker("a")
        storage.drop_worker("nobody")  # a second sign-off is no error
        assert [w.runner for w in storage.workers() or []] == ["bb"]


def test_a_worker_that_was_killed_ages_out_and_is_forgotten(storage_url: str) -> None:
    with Journal.open(storage_url) as journal:
        storage = journal.storage
        long_ago = time.time() - WORKER_FORGOTTEN_AFTER - 60.0
        assert storage.put_worker(_worker("old", long_ago, review="v1"))
        if storage_url.startswith("postgresql"):
            # The server's clock says when it was seen, not the writer's (hosts disagree).
            assert [w.runner for w in storage.workers(60.0) or []] == ["old"]
            return
        assert storage.workers(60.0) == [] and len(storage.workers() or []) == 1
        assert storage.put_worker(_worker("new", time.time(), review="v1"))
        assert [w.runner for w in storage.workers() or []] == ["new"]  # "old" forgotten


def test_a_journal_without_the_table_knows_no_workers(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with Journal.open(url) as journal:
        views = journal.storage.views()
        views.execute("DROP TABLE journal_workers")
        views.close()
    with Journal.open(url, create=False) as journal:
        assert journal.storage.workers() is None  # unknown, not "nobody"
        assert journal.storage.put_worker(_worker("a", time.time())) is False
