"""The ``journal`` command line, and the library it is a thin face of.

Commands live in :mod:`runner.cli.commands`; what they do lives in small modules usable from
Python: :mod:`~runner.cli.timeparse` (``--since``/``--older-than``), :mod:`~runner.cli.lookup`
(id prefixes), :mod:`~runner.cli.timeline` (``show``), :mod:`~runner.cli.queries` (following,
``logs``), :mod:`~runner.cli.recovery` (a ``recover`` that says what it does),
:mod:`~runner.cli.retention` (export, prune, archive, import),
:mod:`~runner.cli.deploys` (``check``, ``fork``, ``retry`` and ``diff``: steps by name, the
executions a bulk retry takes, the lines and documents they print),
:mod:`~runner.cli.triage` (``errors``: failures by root cause), :mod:`~runner.cli.jsonout`
(``--json``) and :mod:`~runner.cli.render` (Rich output). The timeline as a self-contained
HTML page (``show --html``) is :mod:`~runner.cli.html`, and :mod:`~runner.cli.ui` serves
those pages read-only (``journal ui``). It sits in ``runner`` because it uses all three
packages.

``app`` and ``main`` are loaded on first use, so importing the library modules (the demo
uses :mod:`~runner.cli.timeline`) does not import Typer and Rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.cli.commands import app
    from runner.cli.fast import main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from runner.cli.fast import main

        return main
    if name == "app":
        from runner.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
