"""Values whose classes only the writer can import, read by processes that cannot import them.

A writer (``tests/crossproc/worker.py``, run as a script from a directory of its own, so its
``Report`` dataclass and ``Verdict`` Struct live in its ``__main__``) records completed,
paused, failed and running executions whose step outputs, pause payload and log fields
hold those values. Other processes, started elsewhere with only the project on their path,
must read all of it: ``journal.state/events/notifications`` give ``journal.Unresolved``
stand-ins (type name and fields), the projections never need the classes, ``recover()``
reports or converts what it cannot import instead of crashing, and every read command of
the CLI shows the values readably.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from journal import Journal, Unresolved

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
SCRIPTS = TESTS / "crossproc"
BIG = 300_000  # worker.BIG: the archived Report's body, stored out of line
STUCK = ("stalled", "shared", "converted")
NAMES = ("completed", "paused", "failed", *STUCK)


# -- processes ------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JOURNAL_URL")}
    env.update(PYTHONPATH=str(PROJECT), COLUMNS="250", PYTHONDONTWRITEBYTECODE="1")
    return env


def _start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[str], what: str, timeout: float = 60) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, f"{what} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, f"{what}:\n{err}"
    return out


def _script(name: str, where: Path, *args: str) -> Any:
    """Run ``crossproc/<name>`` as a script from a copy in ``where``; its last line, as JSON."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCRIPTS / name, where / name)
    out = _finish(_start([sys.executable, name, *args], where), name)
    return json.loads(out.strip().splitlines()[-1])


def write(url: str, tmp_path: Path) -> dict[str, str]:
    ids: dict[str, str] = _script("worker.py", tmp_path / "writer", url)
    assert sorted(ids) == sorted(NAMES)
    return ids


# -- what the writer stored, as reader.describe() shows it -----------------------------------------


def report(doc: str, body: str = "") -> dict[str, Any]:
    return {"unresolved": "Report", "topic": "__main__:Report",
            "fields": {"title": f"report on {doc}", "pages": 3, "score": "Decimal(0.75)",
                       "tags": ["draft", doc], "body": body}}


def verdict(doc: str) -> dict[str, Any]:
    return {"unresolved": "Verdict", "topic": "__main__:Verdict",
            "fields": {"approved": True, "reason": "3 pages", "report": report(doc)}}


def step(name: str, status: str, input: Any, output: Any = None) -> dict[str, Any]:
    return {"name": name, "status": status, "input": input, "output": output}


def expected_states() -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {
        "completed": {
            "status": "completed", "workflow": "analyse", "input": {"doc": "doc-1"},
            "output": {"report": report("doc-1"), "verdict": verdict("doc-1"), "archived": BIG},
            "pause": None, "error": None, "cost_usd": "0.0145",
            "steps": {
                "1": step("analyse", "completed", {"doc": "doc-1"}, report("doc-1")),
                "2": step("judge", "completed", {"report": report("doc-1")}, verdict("doc-1")),
                "3": step("archive", "completed", {"report": report("doc-1")},
                          report("doc-1", body=f"str[{BIG}]")),
            },
        },
        "paused": {
            "status": "paused", "workflow": "review", "input": {"doc": "doc-2"}, "output": None,
            "pause": {"report": report("doc-2"), "question": "publish?"}, "error": None,
            "cost_usd": "0.0125",
            "steps": {"1": step("analyse", "completed", {"doc": "doc-2"}, report("doc-2"))},
        },
        "failed": {
            "status": "failed", "workflow": "audit", "input": {"doc": "doc-3"}, "output": None,
            "pause": None, "error": "audit of report on doc-3 failed", "cost_usd": "0.0125",
            "steps": {"1": step("analyse", "completed", {"doc": "doc-3"}, report("doc-3"))},
        },
    }
    for name in STUCK:
        doc = f"doc-{name}"
        states[name] = {
            "status": "running", "workflow": name, "input": {"doc": doc}, "output": None,
            "pause": None, "error": None, "cost_usd": "0.5",
            "steps": {"1": step("prepare", "completed", {"doc": doc}, report(doc)),
                      "2": step("work", "running", {"report": report(doc)})},
        }
    return states


def _logs(events: list[dict[str, Any]]) -> list[Any]:
    return [e["fields"] for e in events if e["type"] == "LogRecorded"]


def _failures(summary: dict[str, Any]) -> str:
    return "\n".join(f"--- {where}:\n{tb}" for where, tb in summary.get("failures", {}).items())


# -- the library -----------------------------------------------------------------------------------


def test_reader_process_reads_writer_classes_through_every_library_surface(
    journal_url: str, tmp_path: Path
) -> None:
    ids = write(journal_url, tmp_path)
    summary: dict[str, Any] = _script("reader.py", tmp_path / "reader", journal_url,
                                      json.dumps(ids))
    assert summary["failures"] == {}, _failures(summary)
    assert summary["defined_here"] == []  # the reader really cannot import the classes

    # Journal.state(): Unresolved stand-ins with the type name and the plain field data,
    # nested ones (Verdict.report) too, an out-of-line one (the big Report) too.
    states = summary["states"]
    for name, want in expected_states().items():
        got = {k: v for k, v in states[name].items() if k != "position"}
        assert got == want, name
    assert all(summary["same_when_read_again"].values()), summary["same_when_read_again"]
    probe = summary["probe"]
    assert probe is not None and probe["equal_to_rebuilt"]
    assert "Report" in probe["repr"] and "report on doc-1" in probe["repr"], probe["repr"]

    # Journal.events(): the same values in the events, log fields included.
    events = summary["events"]
    assert _logs(events["completed"]) == [{"report": report("doc-1"), "approved": True}]
    assert _logs(events["paused"]) == [{"report": report("doc-2")}]
    for name in STUCK:
        assert _logs(events[name]) == [{"report": report(f"doc-{name}")}]
    [paused_event] = [e for e in events["paused"] if e["type"] == "ExecutionPaused"]
    assert paused_event["payload"] == {"report": report("doc-2"), "question": "publish?"}
    outputs = [e["output"] for e in events["completed"] if e["type"] == "StepCompleted"]
    assert outputs == [report("doc-1"), verdict("doc-1"), report("doc-1", f"str[{BIG}]")]
    [done] = [e for e in events["completed"] if e["type"] == "ExecutionCompleted"]
    assert done["output"] == expected_states()["completed"]["output"]

    # Journal.notifications(): every event, in stream order, decoded the same way (values
    # stored out of line may stay references there: compare the inline ones).
    notes = summary["notifications"]
    for name in NAMES:
        assert [e["type"] for e in notes[name]] == [e["type"] for e in events[name]], name
        assert _logs(notes[name]) == _logs(events[name]), name
        pauses = [e for e in notes[name] if e["type"] == "ExecutionPaused"]
        assert pauses == [e for e in events[name] if e["type"] == "ExecutionPaused"], name
    assert [e["output"] for e in notes["paused"] if e["type"] == "StepCompleted"] == [
        report("doc-2")
    ]

    # Projections: caught up, rebuilt, every execution with the right status.
    assert summary["applied"] == sum(len(evs) for evs in events.values())
    assert summary["rebuilt"] == summary["applied"]
    listed = summary["executions"]
    assert sorted(listed) == sorted(NAMES)
    assert {n: r["status"] for n, r in listed.items()} == {
        "completed": "completed", "paused": "paused", "failed": "failed",
        "stalled": "running", "shared": "running", "converted": "running",
    }
    assert listed["completed"]["steps_completed"] == 3
    assert listed["completed"]["log_count"] == 1
    assert listed["paused"]["pause_reason"] == "human_review"
    assert listed["failed"]["error_type"] == "ValueError"
    for name in STUCK:
        assert listed[name]["last_started_step"] == "work"
        assert Decimal(listed[name]["cost_usd"]) == Decimal("0.5")
    assert Decimal(listed["completed"]["cost_usd"]) == Decimal("0.0145")
    assert summary["executions_after_rebuild"] == listed
    assert summary["steps"]["completed"] == [
        ["analyse", "completed"], ["judge", "completed"], ["archive", "completed"]
    ]
    assert summary["steps"]["stalled"] == [["prepare", "completed"], ["work", "running"]]
    costs = {k: [Decimal(v[0]), *v[1:]] for k, v in summary["costs_by_model"].items()}
    assert costs == {
        "sim-1": [Decimal("0.0375"), 300, 60, 3],
        "sim-2": [Decimal("0.002"), 10, 5, 1],
        "sim-3": [Decimal("1.5"), 21, 9, 3],
    }
    assert summary["stats"] == {
        "analyse": [3, 0], "judge": [1, 0], "archive": [1, 0], "prepare": [3, 0], "work": [0, 3],
    }
    assert summary["stuck"] == sorted(STUCK)

    # And in this process (which cannot import them either): equal to stand-ins built here.
    with Journal.open(journal_url, create=False) as journal:
        state = journal.state(ids["completed"])
    fields = {"title": "report on doc-1", "pages": 3, "score": Decimal("0.75"),
              "tags": ["draft", "doc-1"], "body": ""}
    assert state.steps[1].output == Unresolved(topic="__main__:Report", fields=fields)
    assert state.steps[1].output.type_name == "Report"
    assert state.output["verdict"] == Unresolved(
        topic="__main__:Verdict",
        fields={"approved": True, "reason": "3 pages",
                "report": Unresolved(topic="__main__:Report", fields=fields)},
    )

    # recover() in a runner of another program: no crash; the execution of a workflow it
    # does not register and the one whose recorded Report it cannot rebuild (no return
    # annotation) are reported through on_error and left untouched; the one whose step is
    # annotated with the reader's own class is converted and finished. No recorded step ran.
    errors = summary["recover_errors"]
    assert [e[:2] for e in errors] == [["shared", "ValueClassMissing"],
                                       ["stalled", "WorkflowNotFound"]], errors
    assert "Report" in errors[0][2], errors[0][2]
    draft = {"title": "report on doc-converted", "pages": 3, "score": "Decimal(0.75)",
             "tags": ["draft", "doc-converted"], "body": ""}
    assert summary["recovered"] == {"converted": ["completed", {
        "prepared": "Draft", "fields": draft,
        "work": {"type": "Draft", "title": "report on doc-converted"},
    }]}
    assert summary["ran"] == ["work"]
    after = summary["after_recover"]
    for name in ("stalled", "shared"):
        assert after[name] == ["running", states[name]["position"]], name  # nothing written
    assert after["converted"][0] == "completed"
    assert summary["executions_after_recover"]["converted"] == "completed"


# -- the command line ------------------------------------------------------------------------------


def test_cli_read_commands_show_writer_classes(journal_url: str, tmp_path: Path) -> None:
    ids = write(journal_url, tmp_path)
    where = tmp_path / "cli"
    where.mkdir()
    out_dir = tmp_path / "export"

    def journal_cmd(*args: str) -> subprocess.Popen[str]:
        return _start([sys.executable, "-m", "journal", *args, "--url", journal_url], where)

    # The first read applies the log to the views; the others then only read, side by side.
    table = _finish(journal_cmd("ls"), "journal ls")
    for workflow in ("analyse", "review", "audit", *STUCK):
        assert workflow in table, table
    commands = {
        "ls --json": ("ls", "--json"),
        "show completed": ("show", ids["completed"]),
        "show paused": ("show", ids["paused"]),
        "show stalled": ("show", ids["stalled"][:8]),
        "show --json completed": ("show", "--json", ids["completed"]),
        "stuck": ("stuck", "--older-than", "0s"),
        "stuck --json": ("stuck", "--older-than", "0s", "--json"),
        "costs": ("costs", "--by", "model"),
        "stats": ("stats",),
        "export": ("export", "--all", "--out", str(out_dir)),
        # With an id, tail shows the history first and ends at a terminal event; a paused
        # execution has none, so that one stops after its (hidden) --timeout.
        "tail completed": ("tail", ids["completed"]),
        "tail --json paused": ("tail", "--json", "--timeout", "1", ids["paused"]),
    }
    procs = {name: journal_cmd(*args) for name, args in commands.items()}
    out = {name: _finish(p, f"journal {' '.join(commands[name])}") for name, p in procs.items()}
    for name, text in out.items():
        assert "object at 0x" not in text, (name, text)

    statuses = {r["execution_id"]: r["status"] for r in json.loads(out["ls --json"])}
    assert statuses == {
        ids["completed"]: "completed", ids["paused"]: "paused", ids["failed"]: "failed",
        **{ids[n]: "running" for n in STUCK},
    }

    assert "Report" in out["show completed"] and "Verdict" in out["show completed"], (
        out["show completed"])
    assert "Report" in out["show paused"] and "human_review" in out["show paused"], (
        out["show paused"])
    assert "Report" in out["show stalled"], out["show stalled"]
    shown = out["show --json completed"]
    json.loads(shown)
    for text in ("Report", "Verdict", "report on doc-1", "0.75", "3 pages"):
        assert text in shown, (text, shown)

    stuck = {r["execution_id"]: r["kind"] for r in json.loads(out["stuck --json"])}
    assert stuck == {**{ids[n]: "orphaned" for n in STUCK}, ids["paused"]: "human"}
    for text in (*STUCK, "orphaned in step work"):
        assert text in out["stuck"], (text, out["stuck"])
    for model in ("sim-1", "sim-2", "sim-3"):
        assert model in out["costs"], out["costs"]
    for name in ("analyse", "judge", "archive", "prepare", "work"):
        assert name in out["stats"], out["stats"]

    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{i}.json" for i in ids.values())
    exported = {n: (out_dir / f"{i}.json").read_text() for n, i in ids.items()}
    for name, text in exported.items():
        json.loads(text)
        assert "Report" in text, name
    for text in ("report on doc-1", "Verdict", "3 pages", "x" * BIG):
        assert text in exported["completed"], text[:20]
    assert "publish?" in exported["paused"]

    assert "Report" in out["tail completed"], out["tail completed"]
    assert len(out["tail completed"].strip().splitlines()) >= 8, out["tail completed"]
    tailed = [json.loads(line) for line in out["tail --json paused"].strip().splitlines()]
    assert [e["type"] for e in tailed][-1] == "ExecutionPaused", tailed
    paused_line = json.dumps(tailed[-1])
    for text in ("Report", "report on doc-2", "publish?"):
        assert text in paused_line, (text, paused_line)
