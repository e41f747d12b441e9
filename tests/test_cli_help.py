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


WORD = re.compile(r"[a-z][a-z0-9-]*")  # a command word; options, placeholders and [...] are not
# A command the README names: `busfleet central command BUS NAME`, and on the same row the
# commands it lists beside it, relative to it: / `central commands` / `divert list`.
NAMED = re.compile(r"`busfleet ([^`]*)`((?:\s*/\s*`[^`]*`)*)")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def resolve(
    parser: argparse.ArgumentParser, words: list[str], *, group: bool = False
) -> tuple[tuple[str, ...], str | None]:
    """Follow `words` down the argparse tree to a command (a parser without subcommands).

    Returns the path taken and what is wrong, if anything: a word that is no subcommand of
    its group, or a group named without its subcommand (unless `group`: a row may name
    a group beside its command, `playlist`). Words after the command are its arguments.
    """
    path: tuple[str, ...] = ()
    for word in words:
        subs = _subcommands(parser)
        if subs is None or not WORD.fullmatch(word):
            break
        if word not in subs:
            return path, f"no command {' '.join((*path, word))!r}"
        parser, path = subs[word], (*path, word)
    if not path:
        return path, "no command named"
    if _subcommands(parser) is not None and not group:
        return path, f"{' '.join(path)!r} is a group: which of its commands?"
    return path, None


def readme_problems(text: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """The command paths a README names, and every name that is not a real command."""
    root = build_parser()
    found: list[tuple[str, ...]] = []
    problems: list[str] = []
    for match in NAMED.finditer(text):
        path, error = resolve(root, match.group(1).split())
        if error:
            problems.append(f"`busfleet {match.group(1)}`: {error}")
            continue
        found.append(path)
        for extra in re.findall(r"`([^`]*)`", match.group(2)):
            # from the top (`sim can`), or beside the command in one of its groups (`divert list`)
            starts = [path[:n] for n in range(len(path) - 1, -1, -1)]
            tries = [
                (start, *resolve(_parser_at(root, start), extra.split(), group=True))
                for start in starts
            ]
            good = [(*start, *p) for start, p, e in tries if e is None]
            if good:
                found.append(good[0])
            else:
                problems.append(f"`{extra}` beside `busfleet {match.group(1)}`: no such command")
    return found, problems


def _parser_at(root: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = root
    for word in path:
        subs = _subcommands(parser)
        assert subs is not None
        parser = subs[word]
    return parser


def test_every_command_in_the_readme_exists() -> None:
    found, problems = readme_problems(README.read_text())
    assert problems == []
    assert len(found) >= 20, found  # the README's table: what it names, with its neighbours
    assert {("central", "divert", "list"), ("central", "report", "plays")} <= set(found)


def test_the_readme_check_catches_a_command_that_does_not_exist() -> None:
    made_up = """
| `busfleet central no-such-command --config c.toml` | a subcommand nobody wrote |
| `busfleet central divert` | a group without its command |
| `busfleet gps decode FILE` / `gps nonsense` / `divert list` | neighbours that do not exist |
| `busfleet nowhere` | a first word that does not exist |
| `busfleet central divert create ROUTE` / `divert list` | all real |
"""
    found, problems = readme_problems(made_up)
    assert len(problems) == 5, problems
    assert "no command 'central no-such-command'" in problems[0]
    assert "is a group" in problems[1]
    assert [p.split("`")[1] for p in problems[2:4]] == ["gps nonsense", "divert list"]
    assert "no command 'nowhere'" in problems[4]
    assert found == [
        ("gps", "decode"),
        ("central", "divert", "create"),
        ("central", "divert", "list"),
    ]


def test_the_readme_starts_with_the_two_commands() -> None:
    first = README.read_text().splitlines()[:4]
    assert any(line.strip().startswith("./run demo") for line in first)
    assert any(line.strip().startswith("./run test") for line in first)
    ci = (README.parent / ".ci" / "run").read_text()
    assert "exec ./run test\n" in ci
