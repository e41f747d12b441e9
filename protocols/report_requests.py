"""Dispatchers' operator reports and route replay (issue 18): part of protocols/requests.py's
`Request` union, kept here so that module stays small. Pure.

Both are read-only `Records` requests over bounded windows: a report covers at most
`MAX_REPORT_DAYS` local days, a replay at most `MAX_REPLAY_S` of one bus's positions, evenly
thinned by central to `max_points` (at most `MAX_REPLAY_POINTS`) when the bus sent more."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from protocols.request_base import Records, RequestBase

__all__ = [
    "MAX_REPLAY_POINTS",
    "MAX_REPLAY_S",
    "MAX_REPORT_DAYS",
    "REPORT_REQUESTS",
    "OperatorReport",
    "OperatorReportKind",
    "RouteReplay",
]

MAX_REPORT_DAYS = 92  # a quarter; the CLI reads up to a year straight from the database
MAX_REPLAY_S = 24 * 3600.0
MAX_REPLAY_POINTS = 5000

Name = Annotated[str, msgspec.Meta(max_length=200)]  # as protocols/requests.py's
OperatorReportKind = Literal["trips", "mileage", "punctuality", "plays", "feedback"]
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=1e11)]


class OperatorReport(Records, tag="operator_report", frozen=True, kw_only=True):
    """Report `kind` (central/operator_reports.py) over the local days `first` to `last` (at
    most `MAX_REPORT_DAYS`), of one `route` (trips, punctuality, plays) or `bus` (mileage)."""

    kind: OperatorReportKind
    first: dt.date
    last: dt.date
    route: Name | None = None
    bus: Name | None = None


class RouteReplay(Records, tag="route_replay", frozen=True, kw_only=True):
    """Bus `bus`'s positions (t, lat, lon) with since <= t < until (at most `MAX_REPLAY_S`),
    oldest first, evenly thinned to `max_points` when it sent more."""

    bus: Name
    since: UnixTime
    until: UnixTime
    max_points: Annotated[int, msgspec.Meta(ge=2, le=MAX_REPLAY_POINTS)] = 2000


REPORT_REQUESTS: tuple[type[RequestBase], ...] = (OperatorReport, RouteReplay)
