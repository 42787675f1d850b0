"""Followers never skip an event, however concurrent writers' commits interleave.

On PostgreSQL appends take no table lock, so notification ids can commit out of order; the
recorder's reads must not pass a gap that an in-flight writer may still fill, and must pass
gaps left by rolled-back writers (a lost race). Real processes write; a follower reads
concurrently with the same calls projections use; at the end it must have seen every row
exactly once, in increasing order.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from journal import Journal

WRITER = textwrap.dedent(
    """
    import sys, time
    from journal import Journal, ConcurrencyConflict
    url, seconds = sys.argv[1], float(sys.argv[2])
    with Journal.open(url) as j:
        run = j.start("ordering")
        rival = j.execution(run.id)
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            if n % 7 == 0:
                try:  # a stale handle loses the race: a rolled-back insert, a gap in the ids
                    rival.step_started("late")
                except ConcurrencyConflict:
                    rival = j.execution(run.id)
                continue
            if n % 5 == 0:
                with run.atomic():
                    s = run.step_started("batch")
                    run.step_completed(s)
            else:
                s = run.step_started("one")
                run.step_completed(s)
    """
)


def test_follower_sees_every_event_once_in_order(journal_url: str) -> None:
    with Journal.open(journal_url):
        pass  # create the schema before the writers race to
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, journal_url, "3"]) for _ in range(4)
    ]
    seen: list[int] = []
    with Journal.open(journal_url) as follower:
        while any(w.poll() is None for w in writers):
            page = follower.store.notifications(after=seen[-1] if seen else 0, limit=50)
            seen.extend(n.id for n in page)
            if not page:
                time.sleep(0.001)
        assert all(w.wait() == 0 for w in writers)
        while page := follower.store.notifications(after=seen[-1] if seen else 0, limit=500):
            seen.extend(n.id for n in page)
        everything = []
        while page := follower.store.notifications(
            after=everything[-1] if everything else 0, limit=1000
        ):
            everything.extend(n.id for n in page)
    assert len(everything) > 200
    assert seen == sorted(set(seen))
    assert seen == everything
