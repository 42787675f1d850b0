"""``journal_workers``: the serving processes a journal knows of (SQLite, PostgreSQL and
the in-memory store), as ``serve()`` writes them and ``journal stuck`` reads them."""

from __future__ import annotations

from journal import Journal
from journal.storage.base import WORKER_FORGOTTEN_AFTER, WorkerRow


def _worker(runner: str, seen_at: float, **workflows: str) -> WorkerRow:
    return WorkerRow(runner=runner, host="box", pid=len(runner), started_at=1000.0,
                     seen_at=seen_at, workflows=workflows)


def test_workers_are_said_alive_renewed_signed_off_and_forgotten(storage_url: str) -> None:
    with Journal.open(storage_url) as journal:
        storage = journal.storage
        assert storage.workers(0.0) == []
        assert storage.put_worker(_worker("a", 5000.0, review="v1"))
        assert storage.put_worker(_worker("bb", 5000.0, review="v1", billing="b7"))
        # Renewed: seen later, with the code it runs now; when it started does not change.
        assert storage.put_worker(_worker("a", 6000.0, review="v2")._replace(started_at=1.0))
        assert storage.workers(5500.0) == [_worker("a", 6000.0, review="v2")]
        assert [w.runner for w in storage.workers(0.0)] == ["a", "bb"]
        assert storage.workers(0.0)[1].workflows == {"review": "v1", "billing": "b7"}
        storage.drop_worker("a")
        storage.drop_worker("nobody")  # a second sign-off is no error
        assert [w.runner for w in storage.workers(0.0)] == ["bb"]
        # One never signed off (killed): forgotten by the next that says it is alive.
        assert storage.put_worker(_worker("ccc", 5000.0 + WORKER_FORGOTTEN_AFTER + 1.0))
        assert [w.runner for w in storage.workers(0.0)] == ["ccc"]
