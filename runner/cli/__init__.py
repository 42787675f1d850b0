"""The ``journal`` command line, and the library it is a thin face of.

Commands live in :mod:`runner.cli.commands`; what they do lives in small modules usable from
Python: :mod:`~runner.cli.timeparse` (``--since``/``--older-than``), :mod:`~runner.cli.lookup`
(id prefixes), :mod:`~runner.cli.timeline` (``show``), :mod:`~runner.cli.queries` (windowed
costs, following), :mod:`~runner.cli.retention` (export, prune, archive, import),
:mod:`~runner.cli.jsonout` (``--json``) and :mod:`~runner.cli.render` (Rich output).
It sits in ``runner`` because it uses all three packages.
"""

from runner.cli.commands import app, main

__all__ = ["app", "main"]
