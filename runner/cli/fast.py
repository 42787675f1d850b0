"""The ``journal`` entry point: ``ls`` and ``show`` straight, other command lines through Typer.

Typer (with the Click it vendors and the Pydantic it converts option values with) costs more
to import and to run than these two read commands spend doing their work. So :func:`main`
first looks at the command line: if it is ``journal ls`` or ``journal show ID`` with only
options it fully understands (``--url``, ``--json``, and for ``ls`` ``--status``,
``--workflow``, ``--since``, ``--before``, ``--sort``, ``--offset``, ``--limit``,
``--error-type``, ``--error-contains``, each as ``--opt value`` or ``--opt=value``, the last
one winning as in Click), it calls
:mod:`runner.cli.reads` directly, as the Typer command would. Anything else (``--help``, a
typo, a value Typer would reject or convert, an option value starting with ``-``, ``--``,
shell completion, an ASCII-only stdout that Click would rewrap) goes to the Typer app
unchanged, which prints the same help and errors as ever. The two paths share every printing
and failing function (:mod:`runner.cli.plumbing`), and end the same way: exit 0, the
command's own exit code, 130 on Ctrl-C, 1 on a closed pipe.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from runner.cli.plumbing import CommandExit, echo, plain_text_stream

__all__ = ["SORTS", "STATUSES", "main", "parse", "run"]

#: ``journal ls --status`` choices, as the Typer command declares them (a test checks).
STATUSES = ("queued", "running", "paused", "waiting", "completed", "failed", "cancelled")
#: ``journal ls --sort`` choices, likewise.
SORTS = ("started", "duration", "cost")

_OPTIONS: dict[str, dict[str, str]] = {
    "ls": {"--url": "url", "--status": "status", "--workflow": "workflow", "--since": "since",
           "--before": "before", "--sort": "sort", "--offset": "offset", "--limit": "limit",
           "--error-type": "error_type", "--error-contains": "error_contains"},
    "show": {"--url": "url"},
}
_MAX_LIMIT_DIGITS = 18  # beyond that, let Typer convert it


def _default_url(environ: Mapping[str, str]) -> str:
    from journal.storage import DEFAULT_URL

    # Click's envvar: an empty value counts as unset.
    return environ.get("JOURNAL_URL") or DEFAULT_URL


def parse(args: Sequence[str], environ: Mapping[str, str] | None = None,
          ) -> tuple[Callable[..., None], dict[str, Any]] | None:
    """The read command and its keyword arguments that ``args`` (``sys.argv[1:]``) asks
    for, or None when Typer should handle them."""
    environ = os.environ if environ is None else environ
    if not args or args[0] not in _OPTIONS:
        return None
    if any(k.startswith("_") and k.endswith("_COMPLETE") and v for k, v in environ.items()):
        return None  # a shell asking Click for completions
    command, rest = args[0], list(args[1:])
    options = _OPTIONS[command]
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--json":
            values["as_json"] = True
            continue
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in options:
            return None
        if not eq:
            if i >= len(rest):
                return None
            value = rest[i]
            i += 1
        if not value or value.startswith("-"):
            return None
        values[options[name]] = value
    if "status" in values and values["status"] not in STATUSES:
        return None
    if "sort" in values and values["sort"] not in SORTS:
        return None
    for name, least in (("limit", 1), ("offset", 0)):
        if name in values:
            number = values[name]
            # Plain digits only (Typer takes "05" or "+5" too: let it), within the bound.
            if not (number.isascii() and number.isdigit() and len(number) <= _MAX_LIMIT_DIGITS
                    and (number == "0" or number[0] != "0") and int(number) >= least):
                return None
            values[name] = int(number)
    values.setdefault("url", None)
    if values["url"] is None:
        values["url"] = _default_url(environ)

    from runner.cli import reads

    if command == "ls":
        if positional:
            return None
        return reads.ls, values
    if len(positional) != 1:
        return None
    return reads.show, {"execution": positional[0], **values}


class _PacifyFlush:
    """Click's PacifyFlushWrapper: a stream whose flush ignores a closed pipe."""

    def __init__(self, wrapped: IO[Any]) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)


def run(command: Callable[..., None], kwargs: dict[str, Any]) -> int:
    """Run a read command as the Typer app would; returns the exit code."""
    try:
        command(**kwargs)
    except CommandExit as e:
        return e.code
    except KeyboardInterrupt:
        return 130
    except EOFError:
        echo(err=True)
        echo("aborted", err=True)
        return 130
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        sys.stdout = _PacifyFlush(sys.stdout)  # type: ignore[assignment]
        sys.stderr = _PacifyFlush(sys.stderr)  # type: ignore[assignment]
        return 1
    return 0


def main() -> None:
    """Entry point of the ``journal`` console script and ``python -m journal``."""
    call = None
    if plain_text_stream(sys.stdout) and plain_text_stream(sys.stderr):
        call = parse(sys.argv[1:])
    if call is None:
        from runner.cli.commands import main as typer_main

        typer_main()
        return
    sys.exit(run(*call))
