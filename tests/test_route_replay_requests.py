"""The dashboard's operator reports and route replay (issue 18) through central's real
dispatch, on SQLite and on PostgreSQL: the report's records are central/operator_reports.py's
rows (the seeded month of tests/test_operator_reports.py), paged; a replay gives one bus's
positions of the window, thinned evenly to the cap with its first and last; windows too long
or backwards and bad bus ids are refused with the reason."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from central.config import CentralConfig
from central.operator_reports import report_rows
from central.route_replay import evenly
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.report_requests import OperatorReport, RouteReplay
from protocols.requests import DispatchReply, DispatchRequest, Request
from tests.test_operator_reports import JUNE, local, seed

REPLAY_BUS = "bus-9"
T_REPLAY = local(dt.date(2026, 6, 4), 8 * 3600)
N_REPLAY = 3000  # one a second for 50 minutes


def replay_rows(bus: str = REPLAY_BUS, t0: float = T_REPLAY, n: int = N_REPLAY) -> list[Any]:
    """A bus driving north-east, one position a second, with one fix lost on the way."""
    return [
        (bus, k + 1, t0 + k, None if k == 7 else -16.95 + k * 1e-5, 145.70 + k * 2e-5, None,
         None, 3, 1.0, 8, 0, 30.0, 900.0, 0, None, None, 1000.0 + 8 * k, 0, t0 + k + 1)
        for k in range(n)
    ]  # fmt: skip


@pytest.fixture
def store(central_db: str) -> Iterator[CentralStore]:
    s = open_store(central_db)
    try:
        seed(s)
        s.add_records(replay_rows())
        yield s
    finally:
        s.close()


@pytest.fixture
def dispatch(store: CentralStore, central_db: str) -> Dispatch:
    config = dataclasses.replace(CentralConfig(), db=central_db)
    return Dispatch(store, config, AlarmCenter(store))


async def ask(dispatch: Dispatch, request: Request) -> DispatchReply:
    envelope = DispatchRequest(id="r1", t=T_REPLAY, request=request)
    out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(envelope), T_REPLAY)
    return codec.decode(DispatchReply, out[-1][1])


async def every(dispatch: Dispatch, request: Any) -> tuple[list[dict[str, Any]], DispatchReply]:
    """All records of a paged request, and its first reply."""
    first = reply = await ask(dispatch, request)
    records = list(reply.records)
    while reply.ok and "next" in reply.result:
        reply = await ask(dispatch, msgspec.structs.replace(request, offset=reply.result["next"]))
        records += reply.records
    return records, first


async def test_operator_reports_answer_the_reports_rows(
    dispatch: Dispatch, store: CentralStore
) -> None:
    for kind in ("trips", "mileage", "punctuality", "plays", "feedback"):
        records, reply = await every(
            dispatch, OperatorReport(kind=kind, first=JUNE[0], last=JUNE[1])
        )
        assert reply.ok, reply.error
        assert records == report_rows(store, kind, *JUNE), kind
        assert reply.result["report"] == kind
    trips, _ = await every(dispatch, OperatorReport(kind="trips", first=JUNE[0], last=JUNE[1]))
    assert sum(r["planned"] for r in trips if r["route"] == "R2") == 21
    r2, _ = await every(
        dispatch, OperatorReport(kind="trips", first=JUNE[0], last=JUNE[1], route=" R2 ")
    )
    assert r2 == [r for r in trips if r["route"] == "R2"] and r2
    km, _ = await every(
        dispatch, OperatorReport(kind="mileage", first=JUNE[0], last=JUNE[1], bus="bus-2")
    )
    assert [(r["day"], r["bus"], r["km"]) for r in km] == [("2026-06-02", "bus-2", 2.5)]


async def test_operator_reports_refuse_windows_they_do_not_serve(dispatch: Dispatch) -> None:
    june = dt.date(2026, 6, 1)
    backwards = await ask(
        dispatch,
        OperatorReport(kind="trips", first=june, last=june.replace(day=1) - dt.timedelta(days=1)),
    )
    assert not backwards.ok and "before" in backwards.error
    long = await ask(
        dispatch, OperatorReport(kind="trips", first=june, last=june + dt.timedelta(days=92))
    )
    assert not long.ok and "92 days at most" in long.error
    bad = await ask(dispatch, OperatorReport(kind="mileage", first=june, last=june, bus="a/b#"))
    assert not bad.ok and not bad.failed


async def test_a_route_replay_is_the_windows_positions_thinned_evenly(dispatch: Dispatch) -> None:
    whole = replay_rows()
    fixes = [(r[2], r[3], r[4]) for r in whole if r[3] is not None]  # one fix was lost
    request = RouteReplay(
        bus=REPLAY_BUS, since=T_REPLAY, until=T_REPLAY + N_REPLAY, max_points=1000
    )
    points, reply = await every(dispatch, request)
    assert reply.ok, reply.error
    assert (reply.result["in_window"], reply.result["cut"]) == (N_REPLAY - 1, False)
    assert reply.result["total"] == 1000
    got = [(p["t"], p["lat"], p["lon"]) for p in points]
    assert got == evenly(fixes, 1000)
    assert got[0] == fixes[0] and got[-1] == fixes[-1]
    steps = {round(b[0] - a[0]) for a, b in itertools.pairwise(got)}
    assert steps <= {2, 3, 4}  # evenly: 2999 fixes over 1000 points, one lost fix beside
    # not thinned: all of them, over several replies
    request = msgspec.structs.replace(request, max_points=5000)
    points, reply = await every(dispatch, request)
    assert "next" in reply.result and [(p["t"], p["lat"], p["lon"]) for p in points] == fixes
    # a window inside: its positions only, all of them under the cap
    inside, _ = await every(
        dispatch, RouteReplay(bus=REPLAY_BUS, since=T_REPLAY + 100, until=T_REPLAY + 160)
    )
    assert [p["t"] for p in inside] == [T_REPLAY + k for k in range(100, 160)]
    other, reply = await every(
        dispatch, RouteReplay(bus="bus-1", since=T_REPLAY, until=T_REPLAY + 60)
    )
    assert reply.ok and other == []


@pytest.mark.parametrize(
    ("since", "until", "why"),
    [
        (T_REPLAY, T_REPLAY, "ends before it begins"),
        (T_REPLAY, T_REPLAY - 60, "ends before it begins"),
        (T_REPLAY, T_REPLAY + 86400 + 1, "24 hours at most"),
    ],
)
async def test_a_replay_window_must_be_forward_and_bounded(
    dispatch: Dispatch, since: float, until: float, why: str
) -> None:
    reply = await ask(dispatch, RouteReplay(bus=REPLAY_BUS, since=since, until=until))
    assert not reply.ok and not reply.failed and why in reply.error


def test_evenly_keeps_the_first_and_the_last() -> None:
    assert evenly(list(range(10)), 20) == list(range(10))
    assert evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly(list(range(101)), 5) == [0, 25, 50, 75, 100]
    assert evenly([1, 2, 3], 1) == [1]
