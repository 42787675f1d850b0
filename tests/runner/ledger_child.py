"""A driver process for the interleaving test: ``MODE URL LEDGER KEY`` (run | recover).

Each step appends ``<step> <pid> start|end <time>`` to an fsync'd ledger around its work, so
the test can tell whether two processes ever ran the same step at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

from journal import Journal, JournalError
from runner import Context, Runner

STEPS = 3


def _write(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def ledger_step(ledger: str, name: str) -> str:
    _write(ledger, f"{name} {os.getpid()} start {time.time():.6f}")
    time.sleep(0.12)
    _write(ledger, f"{name} {os.getpid()} end {time.time():.6f}")
    return name


def ledgered(ctx: Context, ledger: str) -> list[str]:
    return [ctx.step(f"w{i}", ledger_step, ledger, f"w{i}") for i in range(STEPS)]


def main(argv: list[str]) -> int:
    mode, url, ledger, key = argv
    with Journal.open(url) as journal, Runner(journal) as runner:
        runner.register(ledgered)
        try:
            if mode == "run":
                run = runner.run(ledgered, ledger, idempotency_key=key)
                print(json.dumps({"status": run.status, "elsewhere": run.held_elsewhere}))
            else:
                runs = runner.recover(stale_after=timedelta(0))
                print(json.dumps({"recovered": [r.status for r in runs]}))
        except JournalError as e:  # a lost claim, a lost lease: named, and nothing ran
            print(json.dumps({"error": type(e).__name__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
