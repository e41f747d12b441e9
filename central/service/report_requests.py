"""Dispatchers' operator reports and route replays (issue 18), for the dashboard.

Handlers in the shape of central/service/timetable_requests.py's, `(context, request) ->
(result, records)`; the reports are central/operator_reports.py's (as `busfleet central
report` prints them), the replay central/route_replay.py's. Both are `Records` requests, so
dispatch runs them on a thread with a connection of their own, and pages their answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from central.config import CentralConfig
from central.errors import Refused
from central.operator_reports import report_rows
from central.route_replay import route_replay
from central.store.db import CentralStore
from protocols import topics
from protocols.errors import ProtocolError
from protocols.report_requests import (
    MAX_REPLAY_S,
    MAX_REPORT_DAYS,
    OperatorReport,
    RouteReplay,
)
from protocols.request_base import RequestBase
from protocols.schemas import Scalar

__all__ = ["Context", "handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Record = dict[str, Any]


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore


Page = Callable[[Any, list[Record], int], Answer]
Handler = Callable[[Any, Any], Answer]


def _bus(text: str) -> str:
    try:
        return topics.check_bus_id(text.strip())
    except ProtocolError as exc:
        raise Refused(str(exc)) from None


def _name(text: str | None) -> str | None:
    return (text or "").strip() or None


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def operator_report(c: Context, r: OperatorReport) -> Answer:
        if r.last < r.first:
            raise Refused("the last day is before the first")
        if (r.last - r.first).days >= MAX_REPORT_DAYS:
            raise Refused(f"{MAX_REPORT_DAYS} days at most")
        bus = _name(r.bus)
        bus = None if bus is None else _bus(bus)
        rows = report_rows(c.store, r.kind, r.first, r.last, route=_name(r.route), bus=bus)
        result, tables = page(c, rows, r.offset)
        return {**result, "report": r.kind}, tables

    def replay(c: Context, r: RouteReplay) -> Answer:
        bus = _bus(r.bus)
        if r.until <= r.since:
            raise Refused("the window ends before it begins")
        if r.until - r.since > MAX_REPLAY_S:
            raise Refused(f"a window of {MAX_REPLAY_S / 3600:.0f} hours at most")
        got = route_replay(c.store, bus, r.since, r.until, r.max_points)
        records: list[Record] = [{"t": t, "lat": lat, "lon": lon} for t, lat, lon in got.points]
        result, tables = page(c, records, r.offset)
        return {**result, "bus": bus, "in_window": got.in_window, "cut": got.cut}, tables

    return {OperatorReport: operator_report, RouteReplay: replay}
