"""Rebuild views from position 0, or catch them up, with a progress bar: the library behind
the rebuild script and what read commands call when the views are far behind."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from journal import Journal
from journal.errors import mask_url
from projections.api import LARGE_BACKLOG, Projections, _views
from projections.bulk import BULK_PAGE
from projections.errors import ViewsBehind

if TYPE_CHECKING:  # Rich is loaded only to draw progress: the library never pays for it
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["RebuildResult", "rebuild", "refresh_with_progress"]


class RebuildResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a rebuild did: which views, how many events, how fast, and where it ended."""

    views: tuple[str, ...]
    events: int
    seconds: float
    position: int

    @property
    def events_per_second(self) -> float:
        """Events applied per second of the rebuild."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def rebuild(
    url: str | None = None,
    *,
    only: Iterable[str] | None = None,
    page_size: int = BULK_PAGE,
    show_progress: bool = True,
    console: Console | None = None,
    bulk: bool = True,
) -> RebuildResult:
    """Rebuild views of the journal at ``url`` from position 0, then report.

    ``url`` defaults like ``Journal.open()`` (``$JOURNAL_URL``, else ``sqlite:///journal.db``);
    ``only`` names views (default: all). In bulk (fresh tables swapped in whole, see
    :meth:`Projections.rebuild`) unless ``bulk`` is false. Safe while runners keep
    appending: it ends caught up and nothing is counted twice. Prints a progress bar and
    events/s unless ``show_progress`` is false.
    """
    views = tuple(_views(only))
    if show_progress and console is None:
        from rich.console import Console

        console = Console(stderr=True)
    with Journal.open(url) as journal, Projections(journal) as projections:
        head = projections.head()
        start = time.perf_counter()
        if not show_progress:
            events = projections.rebuild(only=views, page_size=page_size, bulk=bulk)
        else:
            with _progress_bar(f"rebuilding {', '.join(views)}", console,
                               transient=False) as bar:
                task = bar.add_task("rebuild", total=max(head, 1))

                def progress(n: int, position: int) -> None:
                    nonlocal head
                    if position > head:
                        head = position
                    bar.update(task, completed=position, total=max(head, position, 1))

                events = projections.rebuild(only=views, progress=progress, page_size=page_size,
                                             bulk=bulk)
                position = min(projections.positions()[v] for v in views)
                bar.update(task, completed=position, total=max(position, 1))
        seconds = time.perf_counter() - start
        position = min(projections.positions()[v] for v in views)
        result = RebuildResult(views=views, events=events, seconds=seconds, position=position)
        if show_progress and console is not None:
            console.print(
                f"rebuilt {', '.join(views)} of {mask_url(journal.url)}: {events:,} events in "
                f"{seconds:.2f} s ({result.events_per_second:,.0f} events/s), "
                f"caught up at notification {position:,}"
            )
        return result


def refresh_with_progress(
    views: Projections, *, console: Console | None = None, min_backlog: int = LARGE_BACKLOG
) -> ViewsBehind | None:
    """``views.refresh()``, with a progress bar on ``console`` (stderr by default) when the
    views are more than ``min_backlog`` events behind: what a read command calls first.

    Returns what ``refresh()`` returns (how far behind views this connection may not write
    are, else None). Far behind, pages are rebuild-sized and views at 0 are built in bulk.
    """
    backlog = views.backlog()
    if backlog <= min_backlog:
        return views.refresh()
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    head = views.head()
    start = head - backlog
    with _progress_bar("bringing the views up to the log", console, transient=True) as bar:
        task = bar.add_task("catch-up", total=backlog)

        def progress(_: int, position: int) -> None:
            bar.update(task, completed=max(0, position - start),
                       total=max(backlog, position - start))

        return views.refresh(progress=progress)


def _progress_bar(label: str, console: Console | None, *, transient: bool) -> Progress:
    """The one progress bar of rebuilds and catch-ups (Rich loaded only when one is drawn)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TimeElapsedColumn(), console=console, transient=transient,
    )
