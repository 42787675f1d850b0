"""A document review, end to end: ``python -m runner.demo [--url URL]``.

Runs on the embedded SQLite default (``./journal.db``, or ``$JOURNAL_URL``): fetch a document,
analyse it with a simulated LLM (tokens and dollars recorded with ``add_cost``; the first call
hits a simulated rate limit and is retried), validate its structure, pause for human review,
resume with the reviewer's decision, then print the journal's timeline of the run and the
projections' view of it. Nothing waits for input.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

import msgspec

from journal import (
    Event,
    Journal,
    StepStarted,
)
from journal.errors import mask_url
from runner import Context, Retry, Run, Runner, add_cost, current_step
from runner.cli.timeline import describe

__all__ = ["main", "make_runner", "print_timeline"]

PRICE_PER_1K_INPUT = Decimal("0.003")
PRICE_PER_1K_OUTPUT = Decimal("0.015")
MODEL = "sim-llm-1"


@dataclasses.dataclass(frozen=True)
class Document:
    """A document to review."""

    id: str
    title: str
    sections: dict[str, str]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the (simulated) model noticed."""

    section: str
    severity: str
    note: str


class Analysis(msgspec.Struct, frozen=True, kw_only=True):
    """What the analysis step returns: a summary and its findings."""

    summary: str
    findings: list[Finding]


class Validation(msgspec.Struct, frozen=True, kw_only=True):
    """The structure check's verdict."""

    ok: bool
    missing: list[str]


class RateLimited(Exception):
    """The simulated model's transient error."""


def fetch_document(doc_id: str) -> Document:
    """Fetch the document (simulated storage read)."""
    time.sleep(0.01)
    return Document(
        id=doc_id,
        title="Supplier agreement, 2025 renewal",
        sections={
            "scope": "The supplier provides document processing services for the buyer.",
            "pricing": "Fees are invoiced monthly; late payment accrues 2% interest.",
            "liability": "Liability is unlimited for the supplier in all cases.",
            "termination": "Either party may terminate with 30 days notice.",
        },
    )


def _llm(prompt: str) -> str:
    """A deterministic stand-in for a model call that records its cost like a real one."""
    time.sleep(0.02)
    input_tokens = max(1, len(prompt) // 4)
    answer = "unlimited liability is unusual" if "unlimited" in prompt else "looks standard"
    output_tokens = max(1, len(answer) // 4) + 20
    add_cost(
        usd=PRICE_PER_1K_INPUT * input_tokens / 1000 + PRICE_PER_1K_OUTPUT * output_tokens / 1000,
        input_tokens=input_tokens, output_tokens=output_tokens, model=MODEL,
    )
    return answer


def analyze(doc: Document) -> Analysis:
    """Ask the (simulated) model about every section; the first attempt is rate limited."""
    if current_step().attempt == 1:
        _llm("warm-up")  # the failed call still costs money, and the journal says so
        raise RateLimited("429 Too Many Requests (simulated): retry in 50 ms")
    findings = []
    for name, text in doc.sections.items():
        verdict = _llm(f"Review section {name!r} of {doc.title!r}: {text}")
        severity = "high" if "unusual" in verdict else "info"
        findings.append(Finding(section=name, severity=severity, note=verdict))
    high = sum(f.severity == "high" for f in findings)
    return Analysis(summary=f"{len(findings)} sections reviewed, {high} need attention",
                    findings=findings)


def structure_validation(doc: Document, required: list[str]) -> Validation:
    """Check that the document has every required section."""
    missing = [s for s in required if s not in doc.sections]
    return Validation(ok=not missing, missing=missing)


def publish(doc_id: str, decision: dict[str, Any]) -> str:
    """Record the decision where the rest of the company will see it (simulated)."""
    time.sleep(0.005)
    return f"review/{doc_id}/{'approved' if decision['approved'] else 'rejected'}"


def document_review(ctx: Context, doc_id: str) -> dict[str, Any]:
    """The workflow: fetch, analyse, validate, wait for a person, publish."""
    doc = ctx.step("fetch", fetch_document, doc_id)
    ctx.log("fetched", title=doc.title, sections=len(doc.sections))
    analysis = ctx.step("analyze", analyze, doc, retry=Retry(attempts=3, backoff=0.05))
    ctx.log("analysed", summary=analysis.summary)
    validation = ctx.step(
        "structure_validation", structure_validation, doc,
        ["scope", "pricing", "liability", "termination"],
    )
    ctx.log("structure validated", ok=validation.ok, missing=validation.missing)
    decision = ctx.pause(
        "human_review",
        payload={
            "doc_id": doc.id, "summary": analysis.summary,
            "high": [f.section for f in analysis.findings if f.severity == "high"],
        },
    )
    ctx.log("review decided", approved=decision["approved"], reviewer=decision["reviewer"])
    where = ctx.step("publish", publish, doc.id, decision)
    return {"approved": decision["approved"], "published": where}


def make_runner(journal: Journal) -> Runner:
    """A runner with the demo workflow registered."""
    runner = Runner(journal)
    runner.register(document_review)
    return runner


def _line(event: Event, names: dict[int, str]) -> str:
    """What the event means, in the words of ``journal show`` (one source for both)."""
    if isinstance(event, StepStarted):
        names[event.seq] = event.name
    entry = describe(event, names)
    parts = []
    if entry.step is not None:
        parts.append(f"{entry.step} (seq {entry.seq}, attempt {entry.attempt})")
    if entry.level is not None:
        parts.append(f"[{entry.level}]")
    parts.append(entry.detail)
    if entry.duration is not None:
        parts.append(f"in {entry.duration * 1000:.0f} ms")
    if entry.cost_usd is not None:
        parts.append(f"cost ${entry.cost_usd.quantize(Decimal('0.000001'))}")
    return " ".join(p for p in parts if p)


def print_timeline(journal: Journal, run: Run, out: TextIO | None = None) -> None:
    """Print every event of the run with its offset from the start."""
    events = journal.events(run.id)
    start: datetime = events[0].timestamp
    names: dict[int, str] = {}
    print(f"\nTimeline of execution {run.id} ({len(events)} events):", file=out)
    for e in events:
        ms = (e.timestamp - start).total_seconds() * 1000
        print(f"  {e.position:>3} +{ms:8.1f} ms  {type(e).__name__:<19} {_line(e, names)}",
              file=out)
    state = journal.state(run.id)
    print(f"  cost: ${state.cost.usd.quantize(Decimal('0.000001'))}, "
          f"{state.cost.input_tokens} input + {state.cost.output_tokens} output tokens", file=out)


def print_projections(journal: Journal, run: Run, out: TextIO | None = None) -> None:
    """Print the projections' view of the run, if the projections package is installed."""
    try:
        from projections import Projections
    except ImportError:
        print("\n(projections not installed: no view to show)", file=out)
        return
    with Projections(journal) as views:
        applied = views.catch_up()
        view = views.execution(run.id)
        steps = views.steps(run.id)
    print(f"\nProjections ({applied} new events applied):", file=out)
    if view is None:
        print("  execution not in the view", file=out)
        return
    last_started = view.last_started_step.name if view.last_started_step else None
    last_completed = view.last_completed_step.name if view.last_completed_step else None
    print(f"  status={view.status} finalization_path={view.finalization_path} "
          f"duration={view.duration if view.duration is None else round(view.duration, 3)}s",
          file=out)
    print(f"  last_started_step={last_started} last_completed_step={last_completed} "
          f"steps_completed={view.steps_completed} retries={view.retries} "
          f"events={view.event_count} logs={view.log_count}", file=out)
    print(f"  cost_usd={view.cost_usd} input_tokens={view.input_tokens} "
          f"output_tokens={view.output_tokens}", file=out)
    for s in steps:
        print(f"    seq {s.seq} {s.name:<22} {s.status:<10} attempts={s.attempts} "
              f"cost=${s.cost_usd}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m runner.demo", description=__doc__)
    parser.add_argument("--url", default=None,
                        help="journal URL (default: $JOURNAL_URL, else sqlite:///journal.db)")
    parser.add_argument("--doc", default="contract-7", help="document id to review")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("JOURNAL_URL") or "sqlite:///journal.db"
    with Journal.open(url) as journal, make_runner(journal) as runner:
        print(f"journal: {mask_url(url)}")
        t0 = time.perf_counter()
        run = runner.run(document_review, args.doc)
        took = (time.perf_counter() - t0) * 1000
        assert run.pause is not None
        print(f"run {run.id}: {run.status} after {took:.0f} ms, waiting for "
              f"{run.pause.reason}: {run.pause.payload}")

        # A reviewer answers later, perhaps from another process: resume replays the record.
        decision = {"approved": True, "reviewer": "ana@example.com",
                    "comment": "liability clause accepted with a cap"}
        run = runner.resume(run.id, decision)
        print(f"resumed with {decision}: {run.status}, output={run.output}")
        print_timeline(journal, run)
        print_projections(journal, run)
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    # Import ourselves by name, so the demo's types are stored as runner.demo:..., not
    # __main__:..., and any other process can read them back.
    from runner.demo import main as _main

    sys.exit(_main())
