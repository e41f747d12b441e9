"""Shared fixtures: a real mosquitto per test on a free loopback port, output folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from busfleet.broker.launch import Broker, run_mosquitto

# These machines are shared and noisy: a slow example is not a failure (no timing asserts).
settings.register_profile("busfleet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("busfleet")

# A real PostgreSQL per test process (`postgres`) and a fresh database per test (`postgres_url`).
pytest_plugins = ["tests.postgres_helpers"]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto, started for this test and stopped after it."""
    with run_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """test-output/<test name>/ in the repo: screenshots and other artefacts to look at."""
    path = REPO / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


# CI runs as root with everything installed: a test that cannot run there is a failure, not a
# skip. A justified skip is listed here (node id -> why); any other skip fails the run.
ALLOWED_SKIPS: dict[str, str] = {}
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and report.nodeid not in ALLOWED_SKIPS:
        _unexpected_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid in _unexpected_skips:
        terminalreporter.write_line(f"FAILED (skipped, not in ALLOWED_SKIPS): {nodeid}", red=True)
