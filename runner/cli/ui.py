"""``journal ui``: the timeline pages of every execution, served read-only on localhost.

``/`` lists executions newest first (``?status=``, ``?workflow=``, ``?limit=``; older ones
a page at a time with ``?before=ID``), ``/e/ID`` (or a unique prefix) is the page ``journal
show ID --html`` writes, with the parent, children and forks as links. It only reads: the
journal is opened read-only (a SELECT-only PostgreSQL role will do, the views then showing
what they hold and saying how far behind they are), and only GET and HEAD are answered
(405 otherwise).

The standard library's threading HTTP server is enough for one person's browser; requests
take turns on the one journal connection. Pages carry the same Content-Security-Policy as
the file (nothing is loaded from anywhere), and a server listening on a loopback address
answers only requests addressed to a loopback name, so a web page in the same browser
cannot read the journal through a DNS name of its own pointed at 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from journal.errors import ExecutionNotFound, JournalError
from projections import STATUSES
from runner.cli import html as pages
from runner.cli.lookup import AmbiguousPrefix
from runner.cli.plumbing import catch_up, echo, fail, one_line, scrub, session
from runner.cli.render import CHILD_MARK, short_id, usd
from runner.cli.timeparse import format_seconds

if TYPE_CHECKING:
    from journal import Journal
    from projections import ExecutionSummary, Projections

__all__ = [
    "Pages",
    "Response",
    "allowed_host",
    "error_page",
    "execution_href",
    "index_body",
    "serve_ui",
]

#: Executions on one page of the index, by default and at most.
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
_NAMES = ("localhost", "localhost.", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Response:
    """What the server answers: a status and a whole page."""

    status: int
    body: str


def execution_href(eid: str) -> str:
    """The address of an execution's page."""
    return "/e/" + quote(eid, safe="")


def _query(params: Mapping[str, str | None]) -> str:
    kept = {k: v for k, v in params.items() if v}
    return "/?" + urlencode(kept) if kept else "/"


def _loopback(host: str) -> bool:
    if host.lower() in _NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host(header: str | None, bound: str) -> bool:
    """Whether a request with this ``Host`` header is answered by a server bound to
    ``bound``: any, unless it listens on loopback only; then only loopback names (a page
    elsewhere that points its own name at 127.0.0.1 gets nothing)."""
    if header is None or not _loopback(bound):
        return True
    name = urlsplit(f"//{header}").hostname or ""
    return _loopback(name)


def _nav(status: str | None = None, workflow: str | None = None) -> str:
    links = [f"<a href=\"{escape(_query({'workflow': workflow}))}\""
             + (" class=\"current\"" if status is None else "") + ">all</a>"]
    for s in STATUSES:
        href = _query({"status": s, "workflow": workflow})
        current = " class=\"current\"" if s == status else ""
        links.append(f"<a href=\"{escape(href)}\"{current}>{escape(s)}</a>")
    return f"<nav class=\"filters\">{''.join(links)}</nav>"


def _note(r: ExecutionSummary) -> str:
    """Why it stopped, or what it waits for: the cell a reader of the list looks at."""
    if r.status == "failed" and r.error_type:
        step = f" in {r.error_step} #{r.error_step_seq}" if r.error_step else ""
        return f"{r.error_type}{step}: {r.error_message or ''}"
    if r.status == "paused" and r.pause_reason:
        return f"paused for {r.pause_reason}"
    if r.status == "waiting" and r.wait_kind:
        return f"waiting for {r.wait_kind}" + (f" {r.wait_name!r}" if r.wait_name else "")
    last = r.last_started_step
    return f"{last.name} #{last.seq}" if last else ""


def index_body(
    rows: Sequence[ExecutionSummary], *, status: str | None, workflow: str | None,
    older: str | None, now: datetime | None = None, notice: str = "",
) -> str:
    """The list of executions: one row each, newest first, and a link to older ones
    (``older``: that page's address, None on the last page)."""
    e = escape
    now = now or datetime.now(UTC)
    body = []
    for r in rows:
        eid = str(r.execution_id)
        took = r.duration if r.duration is not None else (now - r.started_at).total_seconds()
        wf = r.workflow if r.parent_id is None else CHILD_MARK + r.workflow
        wf_href = _query({"status": status, "workflow": r.workflow})
        body.append(
            f"<tr class=\"execution\" data-id=\"{e(eid)}\" data-status=\"{e(r.status)}\">"
            f"<td><a href=\"{e(execution_href(eid))}\" title=\"{e(eid)}\"><code>"
            f"{e(short_id(eid))}</code></a></td>"
            f"<td><a href=\"{e(wf_href)}\">{e(wf)}</a></td><td>{pages.badge(r.status)}</td>"
            f"<td>{pages.time_tag(r.started_at)}</td>"
            f"<td class=\"num\">{e(format_seconds(took) + ('' if r.ended_at else '…'))}</td>"
            f"<td class=\"num\">{e(usd(r.cost_usd))}</td><td>{e(_note(r))}</td></tr>")
    what = " ".join(filter(None, [status, repr(workflow) if workflow else None])) or "all"
    table = ("<table class=\"executions\"><thead><tr><th>id</th><th>workflow</th>"
             "<th>status</th><th>started</th><th class=\"num\">duration</th>"
             "<th class=\"num\">cost</th><th>step / reason</th></tr></thead>"
             f"<tbody>{''.join(body)}</tbody></table>" if rows
             else "<p class=\"muted\">no executions</p>")
    more = (f"<p><a class=\"older\" href=\"{e(older)}\">older executions</a></p>"
            if older else "")
    warn = f"<p class=\"warn\">{e(notice)}</p>" if notice else ""
    return (f"{warn}<h1>executions <small class=\"muted\">({e(what)}, newest first)</small>"
            f"</h1>{_nav(status, workflow)}{table}{more}")


class _BadRequest(ValueError):
    """A query the index cannot answer (400)."""


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1].strip() or None if values else None


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"invalid limit {text!r}: use a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise _BadRequest(f"invalid limit {value}: use 1 to {MAX_LIMIT}")
    return value


class Pages:
    """The ui's pages from one read-only session (requests take turns on it)."""

    def __init__(self, journal: Journal, views: Projections, url: str) -> None:
        self.journal, self.views, self.url = journal, views, url
        self._lock = threading.Lock()

    def _behind(self) -> str:
        """Bring the views up to the log where this connection may; else how far behind."""
        behind = self.views.refresh()
        return "" if behind is None else str(behind)

    def index(self, query: Mapping[str, list[str]]) -> Response:
        status, workflow = _one(query, "status"), _one(query, "workflow")
        if status is not None and status not in STATUSES:
            raise _BadRequest(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        limit = _limit(_one(query, "limit"))
        before_id = _one(query, "before")
        with self._lock:
            notice = self._behind()
            before = None
            if before_id is not None:
                try:
                    before = self.views.execution(before_id)
                except ValueError:
                    raise _BadRequest(f"invalid before {before_id!r}: use an id from the "
                                      "list") from None
                if before is None:
                    raise _BadRequest(f"no execution {before_id!r} to list from")
            rows = self.views.executions(status=status, workflow=workflow, before=before,
                                         limit=limit + 1)
        older = None
        if len(rows) > limit:
            rows = rows[:limit]
            older = _query({"status": status, "workflow": workflow,
                            "limit": None if limit == DEFAULT_LIMIT else str(limit),
                            "before": str(rows[-1].execution_id)})
        return Response(HTTPStatus.OK, pages.document(
            "executions", index_body(rows, status=status, workflow=workflow, older=older,
                                     notice=notice)))

    def execution(self, text: str) -> Response:
        with self._lock:
            notice = self._behind()
            timeline, forks = pages.load(self.journal, self.views, text, refresh=False)
        return Response(HTTPStatus.OK, pages.page(
            timeline, forks=forks, link=execution_href, nav=_HOME, notice=notice))

    def answer(self, target: str) -> Response:
        """The response to a GET of ``target`` (path and query)."""
        parts = urlsplit(target)
        try:
            if parts.path == "/":
                return self.index(parse_qs(parts.query))
            if parts.path.startswith("/e/") and len(parts.path) > 3:
                return self.execution(unquote(parts.path[3:]))
            return error_page(HTTPStatus.NOT_FOUND, f"no page {parts.path!r}")
        except ExecutionNotFound as e:  # (UnknownExecution: what was typed matches none)
            return error_page(HTTPStatus.NOT_FOUND, str(e))
        except AmbiguousPrefix as e:
            return error_page(HTTPStatus.BAD_REQUEST, str(e), links=[str(m) for m in e.matches])
        except _BadRequest as e:
            return error_page(HTTPStatus.BAD_REQUEST, str(e))
        except JournalError as e:
            return error_page(HTTPStatus.SERVICE_UNAVAILABLE, scrub(str(e), self.url))


_HOME = "<nav><a href=\"/\">← executions</a></nav>"


def error_page(status: int, message: str, *, links: Sequence[str] = ()) -> Response:
    """A page that says what went wrong in one line (and the executions it may have
    meant)."""
    e = escape
    items = "".join(f"<li><a href=\"{e(execution_href(m))}\"><code>{e(m)}</code></a></li>"
                    for m in links)
    body = (f"{_HOME}<h1>{status} {e(HTTPStatus(status).phrase)}</h1>"
            f"<p class=\"error\">{e(one_line(message))}</p>"
            + (f"<ul>{items}</ul>" if items else ""))
    return Response(status, pages.document(f"{status} {HTTPStatus(status).phrase}", body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # Ctrl-C does not wait for a browser's open connection

    def __init__(self, address: tuple[str, int], pages_: Pages) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.pages, self.host = pages_, address[0]
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "journal-ui"

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Any other method (POST, PUT, DELETE, a made-up one): 405, not http.server's 501.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        page = error_page(HTTPStatus.METHOD_NOT_ALLOWED,
                          f"{self.command} is not allowed: this server only reads")
        self._send(page, body=True, extra={"Allow": "GET, HEAD"})

    def _respond(self, *, body: bool) -> None:
        if not allowed_host(self.headers.get("Host"), self.server.host):
            page = error_page(HTTPStatus.FORBIDDEN, "this server answers requests to "
                              "localhost only")
        else:
            try:
                page = self.server.pages.answer(self.path)
            except Exception:  # a bug: say so, keep serving
                traceback.print_exc(file=sys.stderr)
                page = error_page(HTTPStatus.INTERNAL_SERVER_ERROR,
                                  "the page could not be made (see the server's output)")
        self._send(page, body=body)

    def _send(self, page: Response, *, body: bool, extra: Mapping[str, str] = {}) -> None:
        data = page.body.encode("utf-8")
        self.send_response(page.status)
        headers = {
            "Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)),
            "Content-Security-Policy": pages.CSP + "; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store", **extra,
        }
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows where the server is, not every request."""


def _display(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve_ui(*, url: str, host: str, port: int) -> None:
    """``journal ui``: serve the pages until Ctrl-C (``port`` 0: any free one, printed)."""
    with session(url, read_only=True) as (journal, views):
        catch_up(views)
        try:
            server = _Server((host, port), Pages(journal, views, url))
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
        with server:
            echo(f"serving {_display(host, server.server_address[1])} (Ctrl-C to stop)",
                 err=True)
            try:
                server.serve_forever(poll_interval=0.2)
            except KeyboardInterrupt:
                echo("stopped", err=True)
