"""Loading the service's own Runner for ``journal resume`` and ``journal recover``.

Resuming re-runs workflow code, so it needs the workflows the service registered: the CLI
imports the service's module and takes its Runner (``--app package.module:runner``), or
calls a zero-argument factory found there. The journal URL the CLI was given is exported
as ``$JOURNAL_URL`` first, so an app that reads it acts on the same database.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from journal.errors import mask_url

if TYPE_CHECKING:
    from runner._runner import Runner

__all__ = ["AppError", "describe_mismatch", "load_runner"]


class AppError(ValueError):
    """``--app`` does not name an importable Runner."""


def load_runner(spec: str, *, url: str | None = None) -> Runner:
    """Import ``module:attr`` and return the Runner it names (calling it if it is a factory)."""
    from runner._runner import Runner

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"invalid --app {spec!r}: use module:attribute, e.g. myservice.jobs:runner")
    if url is not None and os.environ.get("JOURNAL_URL") != url:
        os.environ["JOURNAL_URL"] = url
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the service's modules are here
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AppError(f"cannot import --app module {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"--app {spec!r}: {module_name} has no attribute {attr!r}") from None
    if not isinstance(obj, Runner) and callable(obj):
        obj = obj()
    if not isinstance(obj, Runner):
        raise AppError(f"--app {spec!r} is a {type(obj).__name__}, not a runner.Runner "
                       "(or a function returning one)")
    return obj


def describe_mismatch(runner: Runner, url: str | None) -> str | None:
    """Why the app's runner may not be used: it writes to another database than ``url``."""
    if url is None or runner.journal.url == url:
        return None
    return (f"the app's runner uses {mask_url(runner.journal.url)}, not --url {mask_url(url)}: "
            "build the app's Journal from $JOURNAL_URL, or pass its URL as --url")
