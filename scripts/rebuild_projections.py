"""Rebuild the journal's projections from position 0 (in bulk: swapped in whole).

    python scripts/rebuild_projections.py [--url URL] [--only NAME ...] [--page-size N]
                                          [--pages]

Safe while runners keep appending: it ends caught up and nothing is counted twice.
"""

from __future__ import annotations

import argparse
import sys

from projections import VIEWS, rebuild
from projections.bulk import BULK_PAGE


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and call :func:`projections.rebuild`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="journal URL (default: $JOURNAL_URL, else sqlite:///journal.db)")
    parser.add_argument(
        "--only", action="append", choices=VIEWS, metavar="NAME",
        help=f"rebuild only this view (repeatable; one of {', '.join(VIEWS)})",
    )
    parser.add_argument("--page-size", type=int, default=BULK_PAGE,
                        help="events read per page (per transaction with --pages)")
    parser.add_argument("--pages", action="store_true",
                        help="rebuild page by page (upserts) instead of in bulk")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)
    rebuild(args.url, only=args.only, page_size=args.page_size, show_progress=not args.quiet,
            bulk=not args.pages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
