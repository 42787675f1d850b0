"""The version of a workflow's code: what an execution records at its start, so that a deploy
that changed the code can be told from one that did not before any run is resumed with it.

By default a fingerprint: a hash of the workflow function's source and of the source of every
function of the application it names (its step functions, the helpers they call, lambdas
inside), followed transitively. It is stable across processes, machines and restarts (source
text, not bytecode or addresses), and any edit of that code changes it. Library code (the
standard library, installed packages, this package) is left out: an upgrade of a dependency
is not a change of the workflow. ``@runner.workflow(version="2024-06-billing")`` sets it
explicitly instead.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["fingerprint"]

#: Where library code lives: functions defined under these paths are not the application's.
_LIBRARY_PATHS = tuple(
    {p for p in (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib",
                                                          "platlib")) if p}
)
_OWN_PACKAGES = ("journal", "runner", "projections")


def fingerprint(fn: Callable[..., Any]) -> str:
    """A 16-hex-digit hash of ``fn``'s code and of the application functions it names."""
    digest = hashlib.sha256()
    home = (getattr(_unwrap(fn), "__module__", "") or "").split(".")[0]
    seen: set[types.CodeType] = set()
    pending = [fn]
    while pending:
        f = _unwrap(pending.pop())
        code = getattr(f, "__code__", None)
        if not isinstance(code, types.CodeType) or code in seen:
            continue
        seen.add(code)
        digest.update(f"{getattr(f, '__module__', '')}:{getattr(f, '__qualname__', '')}\n"
                      .encode())
        digest.update(_source(f, code))
        names = getattr(f, "__globals__", {})
        for name in sorted(set(_names(code))):
            target = names.get(name)
            if target is not None and _is_application_function(target, home):
                pending.append(target)
    return digest.hexdigest()[:16]


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.unwrap(fn) if callable(fn) else fn


def _source(f: Any, code: types.CodeType) -> bytes:
    try:
        return inspect.getsource(f).encode()
    except (OSError, TypeError):  # defined in a REPL or -c: its bytecode stands in
        return code.co_code + repr(code.co_consts).encode()


def _names(code: types.CodeType) -> Iterator[str]:
    """Global names ``code`` uses, its nested functions' and lambdas' included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _is_application_function(target: Any, home: str) -> bool:
    """A function of the application: of the workflow's own top-level package (installed
    or not), or of any module outside the library paths; never of this package."""
    target = _unwrap(target)
    if not inspect.isfunction(target):
        return False
    top = (target.__module__ or "").split(".")[0]
    if top == home:
        return True
    if top in _OWN_PACKAGES:
        return False
    module = sys.modules.get(target.__module__ or "")
    path = getattr(module, "__file__", None) or target.__code__.co_filename
    return not any(path.startswith(p) for p in _LIBRARY_PATHS)
