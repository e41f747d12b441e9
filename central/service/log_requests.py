"""Dispatchers' requests for a bus's log (issue 16), as timetable_requests.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from central.config import CentralConfig
from protocols.requests import RequestBase

Handler = Callable[[Any, Any], Any]


def handlers(config: CentralConfig, page: Callable[..., Any]) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""
    return {}
