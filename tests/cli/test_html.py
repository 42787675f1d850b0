"""The timeline page: ``journal show ID --html FILE`` and ``journal ui`` (SQLite, PostgreSQL).

A real run with everything a page draws (a step retried after a failure, a log line, a
durable sleep, a pause for a human, a child, a step with a hostile name), a failed run,
one left running mid-step and one still waiting. The page is parsed (a lane per step, a
bar per attempt, the gaps with their reasons, the costs, nothing loaded from a network,
every user value escaped), drawn by a real headless Chromium (a screenshot, and the DOM
after its script ran under the page's Content-Security-Policy), and served by ``journal
ui`` as a real process (to a SELECT-only PostgreSQL role too). The layout's pure
functions are checked on their own.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import pytest

from journal import Journal
from projections import Projections
from runner import Context, Retry, Runner, add_cost
from runner.cli import html as pages
from runner.cli.timeline import Entry
from runner.cli.ui import allowed_host
from tests.cli.app import stall
from tests.cli.conftest import Invoke
from tests.cli.processes import journal_cli
from tests.cli.test_waits import serving, until
from tests.conftest import select_only_role

#: A step name and values a page must show as text, never run or load.
HOSTILE_STEP = "<img src=x onerror=alert(1)>"
HOSTILE_LOG = "fetched <script>alert('log')</script>"

_tries: dict[str, int] = {}


def fetch(doc: str) -> dict[str, Any]:
    add_cost(usd=Decimal("0.0125"), input_tokens=100, output_tokens=20, model="sim-1")
    return {"doc": doc, "words": 4}


def analyze(doc: str) -> str:
    _tries[doc] = _tries.get(doc, 0) + 1
    add_cost(usd=Decimal("0.002"), model="sim-1")
    if _tries[doc] == 1:
        raise ConnectionError(f"rate limited on {doc}")
    return "ok"


def publish(doc: str, decision: Any) -> str:
    add_cost(usd=Decimal("0.001"), model="sim-2")
    return f"{doc}: {decision}"


def note(text: str) -> str:
    return text


def explode(doc: str) -> int:
    raise ValueError(f"<script>alert('{doc}')</script>")


def kid(ctx: Context, doc: str) -> str:
    """A child: one step."""
    out: str = ctx.step("kid step", note, doc)
    return out


def pipeline(ctx: Context, doc: str) -> str:
    """Fetch, log, analyze (retried), sleep, pause, a child, a hostile step, publish."""
    ctx.step("fetch", fetch, doc)
    ctx.log(HOSTILE_LOG, words=4)
    ctx.step("analyze", analyze, doc, retry=Retry(attempts=3, backoff=0.001))
    ctx.sleep(0.05)
    decision = ctx.pause("human_review", payload={"doc": doc})
    ctx.child(kid, doc)
    ctx.step(HOSTILE_STEP, note, doc)
    out: str = ctx.step("publish", publish, doc, decision)
    return out


def broken(ctx: Context, doc: str) -> int:
    """Fails for good in its step, with markup in the error."""
    out: int = ctx.step("explode", explode, doc)
    return out


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The journal's URL and the executions the fixture recorded."""

    url: str
    run: UUID
    child: UUID
    failed: UUID
    waiting: UUID
    stalled: UUID
    forked: UUID
    cancelled: UUID

    @property
    def all(self) -> list[UUID]:
        return [self.run, self.child, self.failed, self.waiting, self.stalled, self.forked,
                self.cancelled]


def _runner(journal: Journal) -> Runner:
    runner = Runner(journal)
    for wf in (pipeline, kid, broken):
        runner.register(wf)
    return runner


@pytest.fixture
def recorded(journal_url: str) -> Recorded:
    """A pipeline run to its end (woken from its sleep by serve(), resumed from its pause),
    a failed run, a pipeline left waiting on its sleep, a run left mid-step, a fork of the
    failed run (which fails again), a pipeline cancelled in its sleep."""
    doc = uuid.uuid4().hex[:8]
    with Journal.open(journal_url) as journal, _runner(journal) as runner:
        run = runner.run(pipeline, doc).id
        with serving(runner):
            until(lambda: journal.state(run).status == "paused", what="the sleep to end")
        runner.resume(run, {"approved": True})
        assert journal.state(run).status == "completed"
        failed = runner.run(broken, doc).id
        waiting = runner.run(pipeline, doc + "-2").id
        stalled = stall(journal)
        forked = runner.fork(failed, from_seq=1).id
        cancelled = runner.run(pipeline, doc + "-3").id
        runner.cancel(cancelled)
        call = next(c for c in journal.state(run).calls.values() if c.kind == "child")
    return Recorded(url=journal_url, run=run, child=UUID(call.value["execution_id"]),
                    failed=failed, waiting=waiting, stalled=stalled, forked=forked,
                    cancelled=cancelled)


# -- reading a page ---------------------------------------------------------------------------


@dataclasses.dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Every element of a page with its attributes and the text inside it."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """The elements of ``tag`` whose attributes have these values (``class_``: classes
        it has; a trailing ``_`` is dropped, and ``_`` is ``-``)."""
        found = []
        for e in self.elements:
            if tag is not None and e.tag != tag:
                continue
            ok = True
            for key, value in attrs.items():
                name = key.rstrip("_").replace("_", "-")
                if name == "class":
                    ok = ok and set(value.split()) <= set(e.attrs.get("class", "").split())
                else:
                    ok = ok and e.attrs.get(name) == value
            if ok:
                found.append(e)
        return found


def _write(cli: Invoke, url: str, eid: UUID, path: Path) -> Page:
    r = cli("show", str(eid)[:8], "--html", str(path), url=url)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().startswith(f"wrote {path} ("), r.stdout
    return Page(path.read_text(encoding="utf-8"))


def _no_network(markup: str, page: Page) -> None:
    """Nothing on the page comes from, or goes to, anywhere but the page itself."""
    assert "http://" not in markup and "https://" not in markup
    for e in page.elements:
        for name in ("src", "href", "action", "srcset", "poster", "data", "formaction"):
            value = e.attrs.get(name)
            assert value is None or not value.startswith("//"), (e.tag, name, value)
    assert not page.all("link") and not page.all("img") and not page.all("iframe")
    scripts = page.all("script")
    assert len(scripts) == 1 and "src" not in scripts[0].attrs
    csp = page.all("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0].attrs["content"]
    assert "@import" not in markup and "url(" not in markup


# -- journal show --html ------------------------------------------------------------------------


def test_show_html_draws_every_step_attempt_gap_and_cost(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    path = tmp_path / "run.html"
    page = _write(cli, recorded.url, recorded.run, path)
    markup = path.read_text(encoding="utf-8")
    with Journal.open(recorded.url) as journal:
        state = journal.state(recorded.run)

    lanes = {int(e.attrs["data-seq"]): e for e in page.all("div", class_="step")}
    assert {seq: e.attrs["data-step"] for seq, e in lanes.items()} == {
        seq: st.name for seq, st in state.steps.items()}
    assert all(e.attrs["data-status"] == "completed" for e in lanes.values())
    analyze_seq = next(seq for seq, st in state.steps.items() if st.name == "analyze")
    bars = page.all("div", class_="attempt", data_seq=str(analyze_seq))
    assert [(b.attrs["data-attempt"], b.attrs["data-status"]) for b in bars] == [
        ("1", "failed"), ("2", "completed")]
    assert "ConnectionError: rate limited on" in bars[0].attrs["title"]
    assert "(will retry)" in lanes[analyze_seq].text
    assert [len(page.all("div", class_="attempt", data_seq=str(s))) for s in sorted(lanes)] == [
        state.steps[s].attempts for s in sorted(lanes)]

    pause = page.all("div", class_="gap", data_kind="pause")
    assert len(pause) == 1 and "paused: human_review" in pause[0].text
    assert "resumed value={\"approved\": true}" in pause[0].text
    timer = page.all("div", class_="gap", data_kind="timer")
    assert len(timer) == 1 and "sleep until" in timer[0].text and "fired" in timer[0].text
    child = page.all("div", class_="gap", data_kind="child")
    assert len(child) == 1 and "child completed" in child[0].attrs["data-outcome"]
    # In a file on its own other executions are ids, not links.
    assert str(recorded.child)[:8] in child[0].text
    assert all(a.attrs["href"].startswith("#step-") for a in page.all("a"))
    assert str(recorded.child) in page.all("ul")[0].text  # the children

    assert page.all("span", class_="total")[0].text == "$0.0175"
    costs = [c.text for c in page.all("span", class_="cost")]
    assert "$0.0125" in costs and "$0.004" in costs and "$0.001" in costs
    assert costs[-1] == "$0.0175"  # the steps' total
    logs = page.all("tr", class_="log")
    assert len(logs) == 1 and HOSTILE_LOG in logs[0].text
    assert page.all("span", class_="mark", data_kind="log")
    assert page.all("span", class_="mark", data_kind="signal")  # the child's end
    summary = page.all("dl", class_="summary")[0].text
    for fact in (str(recorded.run), "pipeline", "completed", "code version", "started",
                 "ended", "duration"):
        assert fact in summary
    assert f"all {state.position} events" in page.all("details", class_="events")[0].text
    _no_network(markup, page)


def test_show_html_of_failed_waiting_and_running_executions(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    failed = _write(cli, recorded.url, recorded.failed, tmp_path / "failed.html")
    lane = failed.all("div", class_="step")[0]
    assert (lane.attrs["data-step"], lane.attrs["data-status"]) == ("explode", "failed")
    assert failed.all("div", class_="attempt")[0].attrs["data-status"] == "failed"
    tracebacks = failed.all("details", class_="traceback")
    assert tracebacks and "open" in tracebacks[0].attrs
    assert "Traceback (most recent call last)" in tracebacks[0].text
    assert "ValueError: <script>alert(" in failed.all("p", class_="error")[0].text
    forks = failed.all("li", class_="fork")
    assert len(forks) == 1 and str(recorded.forked) in forks[0].text
    fork = _write(cli, recorded.url, recorded.forked, tmp_path / "fork.html")
    assert f"{recorded.failed} at seq 1" in fork.all("dl", class_="summary")[0].text

    waiting = _write(cli, recorded.url, recorded.waiting, tmp_path / "waiting.html")
    timer = waiting.all("div", class_="gap", data_kind="timer")
    assert len(timer) == 1 and timer[0].attrs["data-outcome"] == "waiting"
    assert waiting.all("div", class_="wait open")  # drawn to the end of the chart
    assert "waiting for" in waiting.all("dl", class_="summary")[0].text

    cancelled = _write(cli, recorded.url, recorded.cancelled, tmp_path / "cancelled.html")
    timer = cancelled.all("div", class_="gap", data_kind="timer")
    assert timer[0].attrs["data-outcome"] == "execution cancelled"  # it waits no more
    assert not cancelled.all("div", class_="open")

    running = _write(cli, recorded.url, recorded.stalled, tmp_path / "running.html")
    assert running.all("div", class_="attempt")[0].attrs["data-status"] == "running"
    assert "running for" in running.all("dl", class_="summary")[0].text


def test_show_html_escapes_every_user_value(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    for eid in (recorded.run, recorded.failed):
        path = tmp_path / f"{eid}.html"
        page = _write(cli, recorded.url, eid, path)
        markup = path.read_text(encoding="utf-8")
        # The only elements are the page's own: no <img> from a step name, one <script>.
        assert not page.all("img") and len(page.all("script")) == 1
        assert "<img" not in markup and markup.count("<script") == 1
        assert not [e for e in page.elements if any(k.startswith("on") for k in e.attrs)]
    hostile = [e for e in Page((tmp_path / f"{recorded.run}.html").read_text()).all(
        "div", class_="step") if e.attrs["data-step"] == HOSTILE_STEP]
    assert len(hostile) == 1 and HOSTILE_STEP in hostile[0].text  # shown, as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in (tmp_path / f"{recorded.run}.html").read_text()


@pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)
def test_show_html_fails_in_one_line_and_writes_nothing(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "nothing.html"
    r = cli("show", "fffffff", "--html", str(out), url=recorded.url)
    assert r.exit_code == 1 and not out.exists()
    assert r.stderr.strip() == (
        "error: no execution matches 'fffffff': check the id with `journal ls` (a unique "
        "prefix of an id is enough)")
    nowhere = tmp_path / "missing" / "page.html"
    r = cli("show", str(recorded.run), "--html", str(nowhere), url=recorded.url)
    assert r.exit_code == 1 and not nowhere.parent.exists()
    assert r.stderr.strip() == f"error: cannot write {nowhere}: No such file or directory"
    assert r.stdout == ""


# -- a real browser ------------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: the timeline page is tested in a real "
                    "browser (.ci/run installs Debian's chromium)")
    return found


def _browse(chromium: str, tmp_path: Path, page: Path, png: Path) -> str:
    """Chromium's screenshot of ``page`` into ``png`` and its DOM after layout and script,
    both at once (two processes, each with a profile of its own)."""
    common = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--no-proxy-server", "--hide-scrollbars"]
    shot = subprocess.Popen(
        [chromium, *common, f"--user-data-dir={tmp_path / 'profile-shot'}",
         f"--screenshot={png}", "--window-size=1280,900", page.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dump = subprocess.run(
        [chromium, *common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=60, check=False)
    _, shot_err = shot.communicate(timeout=60)
    assert shot.returncode == 0, shot_err[-2000:]
    assert dump.returncode == 0, dump.stderr[-2000:]
    return dump.stdout


@pytest.mark.parametrize("journal_url", ["sqlite"], indirect=True)
def test_chromium_draws_the_page(cli: Invoke, recorded: Recorded, tmp_path: Path) -> None:
    """One backend: the page is the same markup on both (its making runs on both above)."""
    chromium = _chromium()
    path = tmp_path / "run.html"
    written = _write(cli, recorded.url, recorded.run, path)
    png = tmp_path / "run.png"
    dom = Page(_browse(chromium, tmp_path, path, png))

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, len(data)
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    steps = {e.attrs["data-seq"]: e.attrs["data-step"] for e in dom.all("div", class_="step")}
    assert steps == {e.attrs["data-seq"]: e.attrs["data-step"]
                     for e in written.all("div", class_="step")}
    assert HOSTILE_STEP in steps.values() and not dom.all("img")
    assert len(dom.all("div", class_="attempt")) == len(written.all("div", class_="attempt"))
    # The page's script ran under its Content-Security-Policy (allowed by its hash).
    times = dom.all("time")
    assert times and all(t.attrs.get("data-local") == "1" and t.attrs.get("title")
                         for t in times)


# -- journal ui ----------------------------------------------------------------------------------


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: str
    headers: dict[str, str]


def _request(base: str, path: str, method: str = "GET") -> Reply:
    req = urllib.request.Request(base + path, method=method)
    try:
        with _DIRECT.open(req, timeout=10) as r:
            return Reply(r.status, r.read().decode("utf-8"), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read().decode("utf-8"), dict(e.headers))


class _Lines:
    """A stream's lines, read to its end by a thread of their own: a ``select`` on the pipe
    before each ``readline`` would wait for more while lines already read into the stream's
    buffer (two that came together) are waiting there."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: the end
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        finally:
            self._lines.put(None)

    def next(self, timeout: float) -> str:
        """The next line; "" at the end, or when none came within ``timeout`` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return ""
        if line is None:
            self._lines.put(None)  # the end stays the end
        return line or ""

    def ended(self, timeout: float) -> bool:
        """Whether the stream ended (waiting up to ``timeout`` seconds for it to)."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def rest(self, timeout: float) -> str:
        """Every line not taken yet, to the end (the process has exited, or will soon)."""
        assert self.ended(timeout), f"the stream did not end within {timeout}s"
        rest = []
        while (line := self._lines.get_nowait()) is not None:
            rest.append(line)
        self._lines.put(None)
        return "".join(rest)


@dataclasses.dataclass(frozen=True)
class Served:
    """A ``journal ui`` process, and its stderr from the line after its address."""

    process: subprocess.Popen[str]
    stderr: _Lines


@contextmanager
def _ui(url: str) -> Iterator[tuple[str, Served]]:
    """``journal ui --url URL --port 0`` as its own process; its address from stderr (after
    any warning that the views are behind)."""
    process = journal_cli(url, "ui", "--url", url, "--port", "0")
    assert process.stderr is not None and process.stdout is not None
    stderr = _Lines(process.stderr)
    try:
        line = "warning:"
        while line.startswith("warning:"):
            line = stderr.next(timeout=20)
        found = re.fullmatch(r"serving (http://127\.0\.0\.1:(\d+)/) \(Ctrl-C to stop\)\n", line)
        assert found and int(found[2]) > 0, (line, process.poll())
        yield found[1].rstrip("/"), Served(process, stderr)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if stderr.ended(timeout=10):  # closed under a reader, it could raise there
            process.stderr.close()
        process.stdout.close()


def _stop(ui: Served) -> None:
    """Ctrl-C: it stops at once, cleanly."""
    started = time.monotonic()
    ui.process.send_signal(signal.SIGINT)
    ui.process.wait(timeout=10)
    err = ui.stderr.rest(timeout=10)
    assert ui.process.returncode in (0, 130), err
    assert time.monotonic() - started < 5
    assert "Traceback" not in err and err.strip().endswith("stopped"), err


def test_ui_serves_the_index_and_the_pages(recorded: Recorded) -> None:
    with _ui(recorded.url) as (base, ui):
        index = _request(base, "/")
        assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in index.headers["Content-Security-Policy"]
        page = Page(index.body)
        rows = page.all("tr", class_="execution")
        assert [r.attrs["data-id"] for r in rows] == [
            str(e) for e in (recorded.cancelled, recorded.forked, recorded.stalled,
                             recorded.waiting, recorded.failed, recorded.child, recorded.run)]
        assert {a.attrs["href"] for a in page.all("a") if a.attrs["href"].startswith("/e/")} == {
            f"/e/{e}" for e in recorded.all}
        assert "$0.0175" in rows[-1].text and "completed" in rows[-1].text
        assert "ValueError in explode #1" in rows[4].text  # newest first

        failed = Page(_request(base, "/?status=failed").body).all("tr", class_="execution")
        assert [r.attrs["data-id"] for r in failed] == [str(recorded.forked), str(recorded.failed)]
        first = Page(_request(base, "/?limit=4").body)
        assert len(first.all("tr", class_="execution")) == 4
        older = first.all("a", class_="older")[0].attrs["href"]
        second = Page(_request(base, older).body)
        assert [r.attrs["data-id"] for r in second.all("tr", class_="execution")] == [
            str(recorded.failed), str(recorded.child), str(recorded.run)]
        assert not second.all("a", class_="older")  # the last page
        assert _request(base, "/?status=lost").status == 400

        run = _request(base, f"/e/{str(recorded.run)[:8]}")
        assert run.status == 200
        page = Page(run.body)
        assert len(page.all("div", class_="step")) == 4
        links = {a.attrs["href"] for a in page.all("a")}
        assert f"/e/{recorded.child}" in links and "/" in links  # the child, the way back
        child = Page(_request(base, f"/e/{recorded.child}").body)
        assert f"/e/{recorded.run}" in {a.attrs["href"] for a in child.all("a")}  # its parent
        fork = Page(_request(base, f"/e/{recorded.forked}").body)
        assert f"/e/{recorded.failed}" in {a.attrs["href"] for a in fork.all("a")}
        source = Page(_request(base, f"/e/{recorded.failed}").body)
        assert f"/e/{recorded.forked}" in {a.attrs["href"] for a in source.all("a")}

        head = _request(base, f"/e/{recorded.run}", method="HEAD")
        assert head.status == 200 and head.body == "" and int(head.headers["Content-Length"]) > 0
        for method in ("POST", "PUT", "DELETE"):
            refused = _request(base, "/", method=method)
            assert refused.status == 405 and refused.headers["Allow"] == "GET, HEAD"
        unknown = _request(base, "/e/ffffffff")
        assert unknown.status == 404 and "no execution matches" in unknown.body
        hostile = _request(base, "/e/%3Cscript%3Ealert(1)%3C/script%3E")
        assert hostile.status == 404 and hostile.body.count("<script") == 1
        assert "&lt;script&gt;alert(1)" in hostile.body
        assert _request(base, "/nowhere").status == 404
        _stop(ui)


@pytest.mark.parametrize("journal_url", ["postgres"], indirect=True)
def test_ui_with_a_select_only_role(recorded: Recorded) -> None:
    with Journal.open(recorded.url) as journal, Projections(journal) as views:
        views.catch_up()  # the owner creates and fills the views' tables
        with _runner(journal) as runner:
            later = runner.run(broken, "after the views").id  # the views do not have it
    with select_only_role(recorded.url) as url, _ui(url) as (base, ui):
        index = _request(base, "/")
        assert index.status == 200 and "events behind the log" in index.body
        ids = [r.attrs["data-id"] for r in Page(index.body).all("tr", class_="execution")]
        assert str(recorded.run) in ids and str(later) not in ids
        page = _request(base, f"/e/{recorded.run}")
        assert page.status == 200 and len(Page(page.body).all("div", class_="step")) == 4
        new = _request(base, f"/e/{later}")  # a whole id: read from the log itself
        assert new.status == 200 and "explode" in new.body
        _stop(ui)


# -- the layout, on its own ----------------------------------------------------------------------

_T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _entry(position: int, offset: float, event: str, seq: int | None = None,
           attempt: int | None = None, detail: str = "") -> Entry:
    return Entry(position=position, at=_T0 + timedelta(seconds=offset), offset=offset,
                 event=event, seq=seq, attempt=attempt, detail=detail)


def test_attempts_are_paired_by_step_and_marked() -> None:
    entries = [
        _entry(1, 0.0, "execution started"),
        _entry(2, 1.0, "step started", 1, 1),
        _entry(3, 2.0, "step failed", 1, 1, "ConnectionError: busy (will retry)"),
        _entry(4, 3.0, "step started", 1, 2),
        _entry(5, 4.0, "step completed", 1, 2),
        _entry(6, 5.0, "step started", 2, 1),
        _entry(7, 9.0, "step started", 2, 1),  # a crash, then recovery ran it again
        _entry(8, 9.5, "step completed", 3, 1),  # copied by a fork: no start
        _entry(9, 10.0, "step started", 4, 1),
    ]
    found = pages.attempts_of(entries)
    assert [(a.attempt, a.status, a.start, a.end, a.error) for a in found[1]] == [
        (1, "failed", 1.0, 2.0, "ConnectionError: busy (will retry)"),
        (2, "completed", 3.0, 4.0, None)]
    assert [(a.status, a.start, a.end) for a in found[2]] == [
        ("interrupted", 5.0, None), ("running", 9.0, None)]
    assert [(a.status, a.start, a.end) for a in found[3]] == [("completed", 9.5, 9.5)]
    assert pages.attempts_of(entries, ended=True)[4][0].status == "interrupted"


def test_the_scale_shortens_only_long_waits() -> None:
    straight = pages.make_scale(10.0, [(4.0, 5.0)])
    assert straight.shortened == () and straight.x(5.0) == 50.0
    # Two seconds of work around a three-hour pause: the pause gets its share, no more.
    scale = pages.make_scale(10_802.0, [(1.0, 10_801.0)])
    assert scale.shortened == ((1.0, 10_801.0),)
    assert scale.x(0) == 0 and scale.x(10_802.0) == 100
    assert scale.x(10_801.0) - scale.x(1.0) == pytest.approx(pages.GAP_SHARE * 100)
    assert scale.x(1.0) == pytest.approx(100 - scale.x(10_801.0))  # the work, to scale
    xs = [scale.x(t) for t in (0, 0.5, 1, 100, 5000, 10_801, 10_802)]
    assert xs == sorted(xs)
    many = pages.make_scale(100.0, [(i * 10.0 + 1, i * 10.0 + 9.9) for i in range(10)])
    assert sum(b - a for a, b in many.shortened) > 0
    widths = [many.x(b) - many.x(a) for a, b in many.shortened]
    assert sum(widths) <= pages.GAPS_SHARE * 100 + 1e-9
    assert pages.make_scale(5.0, [(0.0, 5.0)]).shortened == ()  # all waiting: to scale


def test_bars_and_captions_stay_on_the_chart() -> None:
    scale = pages.make_scale(100.0, [])
    assert pages.place(scale, 10.0, 30.0) == (10.0, 20.0)
    assert pages.place(scale, 50.0, 50.0) == (50.0, pages.MIN_WIDTH)  # an instant shows
    left, width = pages.place(scale, 100.0, 100.0)
    assert left + width == pytest.approx(100.0)
    assert pages.caption_at(10.0, 5.0) == ("after", 15.0, 85.0)
    assert pages.caption_at(80.0, 15.0) == ("before", 20.0, 80.0)
    assert pages.caption_at(5.0, 90.0) == ("inside", 5.0, 90.0)
    assert [text for _, text in pages.ticks(scale, 100.0)] == [
        "0", "+25.0s", "+50.0s", "+1m15s", "+1m40s"]
    long = pages.make_scale(10_802.0, [(1.0, 10_801.0)])
    # Where time jumps: the pause's ends (then the end, a second later).
    assert [text for _, text in pages.ticks(long, 10_802.0)] == [
        "0", "+1.00s", "+3h00m", "+3h00m"]


def test_the_ui_answers_only_loopback_names_when_it_listens_on_loopback() -> None:
    assert allowed_host("127.0.0.1:8765", "127.0.0.1")
    assert allowed_host("localhost:8765", "127.0.0.1")
    assert allowed_host("[::1]:8765", "::1")
    assert allowed_host(None, "127.0.0.1")
    assert not allowed_host("attacker.example:8765", "127.0.0.1")
    assert allowed_host("myhost.lan:8765", "0.0.0.0")  # listening everywhere: chosen


def test_an_id_is_a_link_only_where_there_are_pages() -> None:
    eid = "0b7b8eb1-8a7c-4418-8a5c-f48ac5da8b5b"
    assert pages.execution_ref(eid, lambda _: None) == f"<code>{eid}</code>"
    assert pages.execution_ref(eid, lambda e: f"/e/{e}", short=True) == (
        f"<a href=\"/e/{eid}\"><code title=\"{eid}\">0b7b8eb1</code></a>")
    assert pages.badge("<b>") == "<span class=\"badge s-&lt;b&gt;\">&lt;b&gt;</span>"
