"""A follower in a process of its own, checking that the views it reads are never half built.

    python follower_proc.py URL STOP_FILE

Follows the journal (``Projections.follow`` in a thread) and, until STOP_FILE exists, reads
in one statement each view's position and its row count, and compares the count with what
the log says a view at that position holds: one row per execution started, one per step
started. Prints ``ready`` once following, a ``HALF ...`` line for each mismatch, and
``checked N`` at the end.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from pathlib import Path

from journal import Journal
from journal.encoding import decode_event, topics_of
from journal.events import ExecutionStarted, StepStarted
from projections import Projections
from projections.tables import EXECUTIONS, STEPS, TRACKING

SNAPSHOT = (
    f"SELECT (SELECT position FROM {TRACKING.name} WHERE name = 'executions'), "
    f"(SELECT count(*) FROM {EXECUTIONS.name}), "
    f"(SELECT position FROM {TRACKING.name} WHERE name = 'steps'), "
    f"(SELECT count(*) FROM {STEPS.name})"
)


def main() -> int:
    url, stop_file = sys.argv[1], Path(sys.argv[2])
    starts: list[int] = []  # notification ids of executions' first events
    steps: list[int] = []  # ... of steps' first attempts
    start_topics = set(topics_of(ExecutionStarted))
    step_topics = set(topics_of(StepStarted))
    read_upto = 0
    with (Journal.open(url) as journal, Projections(journal, page_size=5) as follower,
          Projections(journal) as reader):
        stop = threading.Event()
        t = threading.Thread(target=follower.follow, kwargs={"stop": stop, "poll_interval": 0.01})
        t.start()
        print("ready", flush=True)
        checked = 0
        try:
            while not stop_file.exists():
                ((pe, ce, ps, cs),) = reader.views.query(SNAPSHOT)
                while read_upto < max(pe, ps):
                    rows = journal.storage.read_log(read_upto, 1000)
                    if not rows:
                        break
                    for nid, eid, position, topic, data in rows:
                        if topic in start_topics:
                            starts.append(nid)
                        elif topic in step_topics:
                            event = decode_event(topic, data, lean=True, execution_id=eid,
                                                 position=position)
                            if event.attempt == 1:  # type: ignore[attr-defined]
                                steps.append(nid)
                    read_upto = rows[-1][0]
                want_e, want_s = bisect.bisect_right(starts, pe), bisect.bisect_right(steps, ps)
                if (ce, cs) != (want_e, want_s):
                    print(f"HALF executions at {pe}: {ce} rows of {want_e}; "
                          f"steps at {ps}: {cs} rows of {want_s}", flush=True)
                checked += 1
                time.sleep(0.001)
        finally:
            stop.set()
            t.join()
        print(f"checked {checked}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
