"""The writer of ``tests/test_cross_process.py``: ``python worker.py URL``.

The test copies this file into a directory of its own and runs it there as a script, so
``Report`` and ``Verdict`` live in ``__main__`` (topics ``__main__:Report`` and
``__main__:Verdict``): no other process can import them. It records, through the Runner and
through the recording API:

- ``completed``: steps returning a Report, a Verdict (holding a Report) and a Report too big
  to store inline (kept beside the log), a log line with a Report field, costs;
- ``paused``: a pause whose payload holds a Report, a log line with a Report field;
- ``failed``: a step returning a Report, then the workflow raises;
- ``stalled``, ``shared``, ``converted``: left ``running`` as by a runner that died inside
  step ``work``, after step ``prepare`` completed with a Report output and a ``journal.Cost``.
  The reader registers no ``stalled`` workflow, a ``shared`` one whose ``prepare`` has no
  return annotation, and a ``converted`` one whose ``prepare`` is annotated with its own class.

Its last line of output is ``{"name": "execution id", ...}`` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from decimal import Decimal
from uuid import UUID

import msgspec

from journal import Cost, Journal
from runner import Context, Runner, add_cost

BIG = 300_000  # characters: above the 256 KiB beyond which outputs are stored out of line


@dataclasses.dataclass
class Report:
    title: str
    pages: int
    score: Decimal
    tags: list[str]
    body: str = ""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    approved: bool
    reason: str
    report: Report | None = None


def report_for(doc: str) -> Report:
    return Report(title=f"report on {doc}", pages=3, score=Decimal("0.75"), tags=["draft", doc])


# -- step functions ------------------------------------------------------------------------------


def analyse_doc(doc: str) -> Report:
    add_cost(usd="0.0125", input_tokens=100, output_tokens=20, model="sim-1")
    return report_for(doc)


def judge(report: Report) -> Verdict:
    add_cost(usd="0.002", input_tokens=10, output_tokens=5, model="sim-2")
    return Verdict(approved=True, reason=f"{report.pages} pages", report=report)


def archive(report: Report) -> Report:
    return dataclasses.replace(report, body="x" * BIG)


# -- workflows -----------------------------------------------------------------------------------


def analyse(ctx: Context, doc: str) -> dict[str, object]:
    report = ctx.step("analyse", analyse_doc, doc)
    verdict = ctx.step("judge", judge, report)
    archived = ctx.step("archive", archive, report)
    ctx.log("judged", report=report, approved=verdict.approved)
    return {"report": report, "verdict": verdict, "archived": len(archived.body)}


def review(ctx: Context, doc: str) -> object:
    report = ctx.step("analyse", analyse_doc, doc)
    ctx.log("analysed", report=report)
    return ctx.pause("human_review", payload={"report": report, "question": "publish?"})


def audit(ctx: Context, doc: str) -> None:
    report = ctx.step("analyse", analyse_doc, doc)
    raise ValueError(f"audit of {report.title} failed")


def stall(journal: Journal, workflow: str, doc: str) -> UUID:
    """What a runner killed inside step ``work`` leaves behind: running, step started."""
    handle = journal.start(workflow, {"doc": doc})
    seq = handle.step_started("prepare", {"doc": doc})
    handle.log("prepared", seq=seq, report=report_for(doc))
    handle.step_completed(
        seq, report_for(doc),
        costs=[Cost(usd=Decimal("0.5"), input_tokens=7, output_tokens=3, model="sim-3")],
    )
    handle.step_started("work", {"report": report_for(doc)})
    return handle.id


def main(url: str) -> int:
    ids: dict[str, UUID] = {}
    with Journal.open(url) as journal, Runner(journal) as runner:
        for wf in (analyse, review, audit):
            runner.register(wf)
        ids["completed"] = runner.run(analyse, "doc-1").id
        ids["paused"] = runner.run(review, "doc-2").id
        ids["failed"] = runner.run(audit, "doc-3").id
        for name in ("stalled", "shared", "converted"):
            ids[name] = stall(journal, name, f"doc-{name}")
    print(json.dumps({name: str(eid) for name, eid in ids.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
