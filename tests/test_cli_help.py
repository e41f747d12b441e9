"""Every command has --help, and every command the README names exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from busfleet.cli import build_parser, main

README = Path(__file__).resolve().parent.parent / "README.md"


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


ALL_COMMANDS = command_paths(build_parser())


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "busfleet")
def test_every_command_answers_help(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: busfleet")
    assert len(out.splitlines()) > 3


def test_every_command_in_the_readme_exists() -> None:
    named = set(re.findall(r"`busfleet ((?:[a-z][a-z-]* ?)+)", README.read_text()))
    assert named, "the README names no commands"
    known = {" ".join(p) for p in ALL_COMMANDS}
    for words in named:
        parts = words.split()
        # the longest known command prefix of what the README wrote
        assert any(" ".join(parts[:n]) in known for n in range(len(parts), 0, -1)), words
        assert " ".join(parts[:1]) in known


def test_the_readme_starts_with_the_two_commands() -> None:
    first = README.read_text().splitlines()[:4]
    assert any(line.strip().startswith("./run demo") for line in first)
    assert any(line.strip().startswith("./run test") for line in first)
    ci = (README.parent / ".ci" / "run").read_text()
    assert "exec ./run test\n" in ci
