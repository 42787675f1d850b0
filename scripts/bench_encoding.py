"""Micro benchmark of the event encoding: µs per event to encode and decode, and bytes.

For each case (StepStarted / StepCompleted with trivial None, int and str values, and with a
dict value) it prints:

* ``enc``: :func:`journal.encoding.encode_event` (what the recording API calls once per
  event: body, topic and StoredEvent), and ``base``, one plain ``msgspec.msgpack.encode`` of
  the same event struct, with their ratio;
* ``dec`` / ``lean``: :func:`journal.encoding.decode_event` of the row ``encode_event``
  wrote, whole and lean (projections), given the row's id and position as storage does;
* ``bytes``: body + topic of that row;
* and the same for a v2 (legacy) row of the event, as this release still reads them.

Medians are no good on a shared machine: every figure is the best of ``--repeat`` batches,
the functions measured in turn within each round. ``--against REV`` runs the same cases on
the journal package of git revision ``REV`` (extracted to a temporary directory) in a
subprocess, and prints both side by side::

    .venv/bin/python scripts/bench_encoding.py --against 22c39d5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent


def cases() -> dict[str, Any]:
    from journal.events import StepCompleted, StepStarted

    eid, now = uuid4(), datetime.now(UTC)
    started = {"execution_id": eid, "position": 41, "timestamp": now, "name": "fetch", "seq": 7}
    done = {"execution_id": eid, "position": 42, "timestamp": now, "seq": 7,
            "duration": 0.0123}
    payload = {"url": "https://example.com/a", "status": 200, "tags": ["x", "y"],
               "meta": {"ok": True, "ms": 12.5}}
    return {
        "StepStarted None": StepStarted(**started),
        "StepStarted int": StepStarted(**started, input=3),
        "StepStarted str": StepStarted(**started, input="hello"),
        "StepStarted dict": StepStarted(**started, input=payload),
        "StepCompleted None": StepCompleted(**done),
        "StepCompleted int": StepCompleted(**done, output=3),
        "StepCompleted str": StepCompleted(**done, output="hello"),
        "StepCompleted dict": StepCompleted(**done, output=payload),
    }


def best(fns: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """µs per call of each function: the best of ``repeat`` batches, taken in turn."""
    out = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(number):
                fn()
            out[name] = min(out[name], (time.perf_counter() - t) / number * 1e6)
    return out


def measure(number: int, repeat: int) -> dict[str, dict[str, float]]:
    import msgspec

    from journal import encoding

    legacy = getattr(encoding, "_encode_legacy", None)  # absent before the compact format
    results = {}
    for name, event in cases().items():
        eid, pos = event.execution_id, event.position
        row = encoding.encode_event(event)
        fns: dict[str, Callable[[], Any]] = {
            "base": lambda e=event: msgspec.msgpack.encode(e),
            "enc": lambda e=event: encoding.encode_event(e),
            "dec": lambda r=row, i=eid, p=pos: encoding.decode_event(
                r.topic, r.state, execution_id=i, position=p),
            "lean": lambda r=row, i=eid, p=pos: encoding.decode_event(
                r.topic, r.state, lean=True, execution_id=i, position=p),
        }
        old = legacy(event) if legacy is not None else row
        if legacy is not None:
            fns["enc_v2"] = lambda e=event: legacy(e)
            fns["dec_v2"] = lambda r=old, i=eid, p=pos: encoding.decode_event(
                r.topic, r.state, execution_id=i, position=p)
        got = best(fns, number, repeat)
        assert encoding.decode_event(row.topic, row.state, execution_id=eid,
                                     position=pos) == event
        got["bytes"] = len(row.state) + len(row.topic)
        got["bytes_v2"] = len(old.state) + len(old.topic)
        results[name] = got
    return results


def against(rev: str, number: int, repeat: int) -> dict[str, dict[str, float]]:
    """:func:`measure` on the journal package of ``rev``, in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "journal"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--json", "--number", str(number),
             "--repeat", str(repeat)],
            cwd=tmp, env=env, check=True, capture_output=True, text=True,
        ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per batch")
    parser.add_argument("--repeat", type=int, default=15, help="batches (best is kept)")
    parser.add_argument("--against", metavar="REV", help="also run the journal of git REV")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.number, args.repeat)))
        return
    sys.path.insert(0, str(ROOT))
    before = against(args.against, args.number, args.repeat) if args.against else None
    now = measure(args.number, args.repeat)
    print("µs per event (best of batches); bytes = body + topic of the row written")
    head = (f"{'case':20} {'base':>6} {'enc':>6} {'x base':>6} {'dec':>6} {'lean':>6} "
            f"{'bytes':>5} | v2 row: {'enc':>6} {'dec':>6} {'bytes':>5}")
    if before:
        head += f" | {args.against}: {'enc':>6} {'x base':>6} {'dec':>6} {'lean':>6} {'bytes':>5}"
    print(head)
    for name, r in now.items():
        line = (f"{name:20} {r['base']:6.2f} {r['enc']:6.2f} {r['enc'] / r['base']:6.2f} "
                f"{r['dec']:6.2f} {r['lean']:6.2f} {r['bytes']:5.0f} | "
                f"        {r.get('enc_v2', float('nan')):6.2f} "
                f"{r.get('dec_v2', float('nan')):6.2f} {r['bytes_v2']:5.0f}")
        if before:
            b = before[name]
            line += (f" | {'':{len(args.against) + 1}} {b['enc']:6.2f} "
                     f"{b['enc'] / b['base']:6.2f} {b['dec']:6.2f} {b['lean']:6.2f} "
                     f"{b['bytes']:5.0f}")
        print(line)


if __name__ == "__main__":
    main()
