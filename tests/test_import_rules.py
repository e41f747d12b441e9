"""DESIGN.md's one-way rule, checked on the import statements of every module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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
    "httpguard": {"protocols", "onboard", "central", "busfleet", "hw_sim"},
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


# -- the house (ARCHITECTURE.md): no import circle, small modules, SQL only in central's store --

PACKAGES = ("protocols", "onboard", "central", "hw_sim", "busfleet")
MAX_LINES = 600
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+[A-Z]+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b"
)


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages under `root`."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere (top level, functions, TYPE_CHECKING)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(owner(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else owner(base))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle_among_the_projects_modules() -> None:
    assert import_circles(import_graph(module_names(REPO))) == []


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "onboard" / "journey").mkdir(parents=True)
    (tmp_path / "onboard" / "__init__.py").write_text("")
    (tmp_path / "onboard" / "journey" / "__init__.py").write_text("from . import a\n")
    (tmp_path / "onboard" / "journey" / "a.py").write_text("from onboard.journey.b import f\n")
    (tmp_path / "onboard" / "journey" / "b.py").write_text(
        "def f():\n    from onboard.journey import a\n"
    )
    (tmp_path / "onboard" / "journey" / "c.py").write_text("import onboard.journey.b\n")
    circles = import_circles(import_graph(module_names(tmp_path)))
    assert circles == [["onboard.journey.a", "onboard.journey.b"]]


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in module_names(REPO).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


# Where SQL may not be: every package that has no store of central's. onboard keeps its own
# store (agent.sqlite, onboard/store.py and its tables' modules), protocols may not even
# import sqlite3 (FORBIDDEN above); central/store/ is the one place of central's SQL, which
# tools and the demo reach through its functions (central/store/queries.py).
NO_SQL = ("central", "busfleet", "hw_sim")


def sql_outside_the_store(root: Path) -> list[str]:
    """Lines of NO_SQL's packages outside central/store/ with SQL text or a direct
    `.execute(` call."""
    found = []
    for path in sorted(p for package in NO_SQL for p in (root / package).rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[:2] == ("central", "store"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if SQL.search(line) or re.search(r"\.(execute|executemany|executescript)\(", line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_sql_outside_centrals_store() -> None:
    assert sql_outside_the_store(REPO) == []


def test_the_sql_finder_finds_queries_and_executes_outside_the_store(tmp_path: Path) -> None:
    (tmp_path / "central" / "store").mkdir(parents=True)
    (tmp_path / "central" / "store" / "db.py").write_text('Q = "SELECT a FROM t"\n')
    (tmp_path / "central" / "reports.py").write_text(
        'ROWS = "SELECT id FROM plays WHERE t > ?"\nconn.execute(ROWS)\n'
    )
    (tmp_path / "busfleet").mkdir()
    (tmp_path / "busfleet" / "figures.py").write_text(
        'x = 1\nn = conn.execute("SELECT COUNT(*) FROM events").fetchone()\n'
    )
    (tmp_path / "hw_sim").mkdir()
    (tmp_path / "hw_sim" / "log.py").write_text('DROP = "DELETE FROM truth"\n')
    assert [":".join(line.split(":")[:2]) for line in sql_outside_the_store(tmp_path)] == [
        "busfleet/figures.py:2",
        "central/reports.py:1",
        "central/reports.py:2",
        "hw_sim/log.py:1",
    ]


def aiohttp_loaded_by(module: str) -> list[str]:
    """The aiohttp modules that importing `module` in a fresh interpreter loads."""
    probe = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "print(*sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, module],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    return done.stdout.split()


JOURNEY = sorted(m for m in module_names(REPO) if m.split(".")[:2] == ["onboard", "journey"])


@pytest.mark.parametrize("module", JOURNEY)
def test_importing_the_journey_family_loads_no_aiohttp(module: str) -> None:
    assert aiohttp_loaded_by(module) == []


def test_the_aiohttp_probe_sees_a_server_module_load_aiohttp() -> None:
    assert "aiohttp.web" in aiohttp_loaded_by("onboard.web.live")
