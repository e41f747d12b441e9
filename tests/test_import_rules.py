"""DESIGN.md's one-way rule, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN = {
    "protocols": {
        "asyncio",
        "socket",
        "serial",
        "can",
        "aiomqtt",
        "paho",
        "textual",
        "aiohttp",
        "onboard",
        "central",
        "hw_sim",
        "busfleet",
        "subprocess",
        "threading",
        "selectors",
        "ssl",
        "sqlite3",
        "sqlite_utils",
    },
    "hw_sim": {"onboard", "central", "busfleet"},
    "onboard": {"central", "busfleet", "hw_sim", "textual"},
    "central": {"onboard", "busfleet", "hw_sim", "serial", "can"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_the_one_way_rule_allows(package: str) -> None:
    files = modules_of(package)
    assert files, f"{package} has no modules"
    offences = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path) & FORBIDDEN[package])
    ]
    assert offences == []


def test_the_rule_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import asyncio\nfrom central.store import CentralStore\n")
    assert imported_modules(module) >= {"asyncio", "central"}
