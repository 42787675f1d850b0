"""``python -m journal``: the command line (it lives in runner.cli, above every package)."""

from runner.cli import main

main()
