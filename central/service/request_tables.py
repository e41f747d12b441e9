"""The dispatch handlers kept outside dispatch.py (which stays a table of the core requests):
one module per subject, each with `handlers(config, page)` in timetable_requests.py's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from central.config import CentralConfig
from central.service import (
    announce_requests,
    health_requests,
    log_requests,
    people_requests,
    release_requests,
    report_requests,
    timetable_requests,
)
from protocols.requests import RequestBase

MODULES: tuple[Any, ...] = (
    timetable_requests,
    release_requests,
    health_requests,
    log_requests,
    announce_requests,
    people_requests,  # issue 18: roles and the audit log
    report_requests,  # issue 18: operator reports, route replay
)


def handlers(
    config: CentralConfig, page: Callable[..., Any]
) -> dict[type[RequestBase], Callable[[Any, Any], Any]]:
    """Every module's handlers in one table."""
    table: dict[type[RequestBase], Callable[[Any, Any], Any]] = {}
    for module in MODULES:
        table.update(module.handlers(config, page))
    return table
