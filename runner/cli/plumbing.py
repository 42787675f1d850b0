"""What every command shares, without Typer: printing, one-line errors, the session.

The Typer commands (:mod:`runner.cli.commands`) and the fast path of ``journal ls`` and
``journal show`` (:mod:`runner.cli.fast`) both print and fail through these, so the two print
the same bytes and exit with the same codes. A command ends early by raising
:class:`CommandExit`; the Typer group and the fast path turn it into the exit code.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import unquote, urlsplit
from uuid import UUID

from journal.errors import JournalError, mask_url
from runner.cli.apps import AppError

if TYPE_CHECKING:
    from journal import Journal
    from projections import Projections

__all__ = [
    "CommandExit",
    "catch_up",
    "echo",
    "echo_json",
    "fail",
    "one_line",
    "plain_text_stream",
    "reported",
    "resolve",
    "scrub",
    "session",
]

# Click's pattern of the ANSI codes it strips from output that is not a terminal.
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


class CommandExit(Exception):
    """End the command with this exit code (its message, if any, is already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def plain_text_stream(stream: TextIO | None) -> bool:
    """Whether click would write to ``stream`` as it is: a text stream with an encoding
    that is not ASCII and an error handler (else click rewraps it, and so do we, by
    printing through click)."""
    if stream is None or not isinstance(stream, io.TextIOBase):
        return False
    if type(stream).__module__.startswith("ipykernel."):
        return False
    encoding = getattr(stream, "encoding", None)
    if not encoding or getattr(stream, "errors", None) is None:
        return False
    try:
        return codecs.lookup(encoding).name != "ascii"
    except LookupError:
        return False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


def echo(message: str = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo(message, err=err, nl=nl)`` for text, without importing Click: ANSI codes
    stripped when the stream is not a terminal, flushed."""
    stream = sys.stderr if err else sys.stdout
    if not plain_text_stream(stream):
        import typer

        typer.echo(message, err=err, nl=nl)
        return
    out = message + "\n" if nl else message
    if out:
        if not _isatty(stream):
            out = _ANSI.sub("", out)
        stream.write(out)
    stream.flush()


def echo_json(value: Any) -> None:
    from runner.cli.jsonout import dumps

    echo(dumps(value))


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def scrub(message: str, url: str | None) -> str:
    """Remove the URL's password (raw and percent-decoded) from a driver's message."""
    if not url:
        return message
    message = message.replace(url, mask_url(url))
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            for secret in {password, unquote(password)}:
                message = message.replace(secret, "***")
    return message


def fail(message: str, url: str | None = None, *, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` (one line, password masked) on stderr and exit ``code``."""
    echo(f"error: {one_line(scrub(message, url))}", err=True)
    raise CommandExit(code)


@contextlib.contextmanager
def reported(url: str | None) -> Iterator[None]:
    """Turn the errors a user can cause into one line on stderr and a non-zero exit."""
    try:
        yield
    except CommandExit:
        raise
    except (JournalError, ValueError, LookupError, OSError, AppError) as e:
        fail(str(e) or type(e).__name__, url)


@contextlib.contextmanager
def session(url: str, *, read_only: bool = False) -> Iterator[tuple[Journal, Projections]]:
    """The journal and its views, closed (log lines flushed) when the command ends.

    Read commands never create anything (``create=False``): a mistyped path is an error,
    not a new empty journal.
    """
    from journal.journal import Journal
    from projections.api import Projections

    with (
        reported(url),
        Journal.open(url, create=not read_only) as journal,
        Projections(journal) as views,
    ):
        yield journal, views


def catch_up(views: Projections) -> None:
    """Bring the views up to the log; if this connection may not write them (a SELECT-only
    role, a read-only file), say how far behind they are and show them as they are.

    Far behind (a first `journal ls` after a backlog), it says so on stderr rather than
    keeping silent for seconds: a progress bar on a terminal, a line before and after
    otherwise (a log file, CI); pages are rebuild-sized, and views still at 0 are built
    in bulk."""
    import time

    from projections.api import LARGE_BACKLOG
    from projections.rebuild import refresh_with_progress

    backlog = views.backlog()
    plain = backlog > LARGE_BACKLOG and not _isatty(sys.stderr)
    if plain:
        echo(f"bringing the views up to the log: {backlog:,} events behind ...", err=True)
    start = time.monotonic()
    # (A bar only on a terminal: elsewhere Rich would leave an empty line where it was.)
    behind = views.refresh() if plain else refresh_with_progress(views)
    if behind is not None:
        echo(f"warning: {behind}", err=True)
    elif plain:
        echo(f"views up to the log in {time.monotonic() - start:.1f} s", err=True)


def resolve(journal: Journal, views: Projections, text: str) -> UUID:
    """The execution ``text`` names (a whole id, or a unique prefix:
    :func:`runner.cli.lookup.resolve_id`), the views caught up first with :func:`catch_up`
    when a prefix needs them: a long catch-up shows its progress, as every read does."""
    from runner.cli.lookup import resolve_id

    try:
        UUID(text.strip())
    except ValueError:
        catch_up(views)
    return resolve_id(journal, views, text)
