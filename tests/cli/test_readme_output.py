"""The sample output in README.md is what the commands print: each column the README's
tables show (``journal ls``, ``journal stuck``, the steps and timeline of ``journal show``)
is one the command prints, in the same order (a narrow terminal drops some of them), and no
sample line is wider than 80."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.conftest import Filled, Invoke

README = Path(__file__).resolve().parents[2] / "README.md"


def _sample() -> dict[str, list[str]]:
    """The README's ```text block, by the command after each ``$ ``."""
    [block] = re.findall(r"```text\n(.*?)```", README.read_text(), flags=re.S)
    shown: dict[str, list[str]] = {}
    command = ""
    for line in block.splitlines():
        if line.startswith("$ "):
            command = line[2:].split()[1]
            shown[command] = []
        elif command:
            shown[command].append(line)
    return shown


def _header(lines: list[str], first_word: str) -> list[str]:
    return next(line.split() for line in lines if line.split()[:1] == [first_word])


def _within(shown: list[str], printed: list[str]) -> bool:
    """Whether ``shown`` is ``printed`` with some columns left out (a subsequence)."""
    rest = iter(printed)
    return all(word in rest for word in shown)


def test_the_readme_sample_output_is_what_the_commands_print(
    filled: Filled, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # every column
    sample = _sample()
    assert set(sample) == {"ls", "stuck", "show"}
    assert all(len(line) <= 80 for lines in sample.values() for line in lines)
    ls = cli("ls", url=filled.url)
    stuck = cli("stuck", "--older-than", "0s", url=filled.url)
    show = cli("show", str(filled.retried), url=filled.url)
    for result in (ls, stuck, show):
        assert result.exit_code == 0, result.output
    for command, result in (("ls", ls), ("stuck", stuck)):
        printed = _header(result.stdout.splitlines(), "id")
        assert _within(_header(sample[command], "id"), printed), (command, printed)
    printed = show.stdout.splitlines()
    for first in ("seq", "#"):
        assert _within(_header(sample["show"], first), _header(printed, first)), show.stdout
    assert printed[0].split()[0] == sample["show"][0].split()[0] == "execution"
