"""The driver terminal's model, store and actions: pure state, SQLite, the outbox records."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboard.agent import Agent
from onboard.config import parse_config
from onboard.driver import (
    CANNED,
    DispatchMessage,
    DriverStore,
    DriverTerminal,
    Outgoing,
    adherence,
    cross_origin_reason,
    driver_state,
    map_view,
)
from onboard.driver.model import EARLY_S, LATE_S, VERY_LATE_S
from onboard.journey.plan import PlannedStop, TripPlan, plan_trip, service_day_origin
from onboard.journey.tracker import JourneyTracker
from onboard.link.commands import Commands
from onboard.link.outbox import Outbox
from protocols import codec
from protocols.geo import Polyline, offset_m
from protocols.gtfs.feed import Feed, demo_trips, read_feed
from protocols.schemas import Command, Event, Scalar

REPO = Path(__file__).resolve().parent.parent
START = (-16.92, 145.77)
DAY = date(2024, 5, 6)
ORIGIN = service_day_origin(DAY, "Australia/Brisbane")


def straight_plan(heading_deg: float, length_m: float = 3000.0, stops: int = 4) -> TripPlan:
    """A trip along a straight street in direction `heading_deg`, stops evenly spaced."""
    north, east = math.cos(math.radians(heading_deg)), math.sin(math.radians(heading_deg))
    points = [offset_m(*START, north * d, east * d) for d in range(0, int(length_m) + 1, 100)]
    line = Polyline(points)
    planned = []
    for i in range(stops):
        d = i * line.length_m / (stops - 1)
        lat, lon, _ = line.point_at(d)
        at = 8 * 3600 + round(d * 0.12)
        planned.append(PlannedStop(i, i + 1, f"S{i}", f"Stop {i}", lat, lon, d, at, at))
    return TripPlan("T1", "R1", "1", "Town", "B7", DAY, ORIGIN, line, tuple(planned))


# -- adherence ---------------------------------------------------------------------------------


@given(st.floats(min_value=-7200, max_value=7200, allow_nan=False))
def test_the_adherence_text_reads_back_as_the_rounded_delay_in_its_band(delay: float) -> None:
    band, text = adherence(delay)
    sign = -1 if text.startswith("\u2212") else 1
    d = round(delay)
    if abs(d) < 3600:
        minutes, seconds = text.lstrip("+\u2212").split(":")
        assert sign * (int(minutes) * 60 + int(seconds)) == d
        assert len(seconds) == 2 and int(seconds) < 60
    else:  # hours and minutes, the seconds left out
        hours, minutes = text.lstrip("+\u2212").split("h")
        assert sign * (int(hours) * 3600 + int(minutes) * 60) == int(
            math.copysign(abs(d) // 60 * 60, d)
        )
        assert len(minutes) == 2 and int(minutes) < 60
    expected = (
        "early" if d < EARLY_S else "very_late" if d > VERY_LATE_S else "late" if d > LATE_S
        else "on_time"
    )  # fmt: skip
    assert band == expected


def test_late_and_early_are_told_apart_and_an_unknown_delay_says_nothing() -> None:
    assert adherence(200) == ("late", "+3:20")
    assert adherence(-65) == ("early", "\u22121:05")
    assert adherence(30)[0] == "on_time"
    assert adherence(8 * 3600 + 14 * 60 + 59) == ("very_late", "+8h14")
    assert adherence(None) == ("unknown", "")
    assert adherence(math.nan) == ("unknown", "")


# -- the map -----------------------------------------------------------------------------------


@given(
    st.floats(min_value=0, max_value=359.9),
    st.floats(min_value=0, max_value=2900),
)
def test_the_map_turns_the_path_ahead_up_whatever_the_street_s_direction(
    heading: float, dist: float
) -> None:
    plan = straight_plan(heading)
    view = map_view(plan, dist, 1)
    assert view.ahead[0] == pytest.approx((0.0, 0.0), abs=0.2)  # the bus at the origin
    for x, y in view.ahead:
        assert abs(x) < 1.0 and y <= 0.2  # straight up the screen
    for x, y in view.behind:
        assert abs(x) < 1.0 and y >= -0.2  # and what was driven, below
    length = -min(y for _, y in view.ahead)
    assert length == pytest.approx(min(1500.0, plan.path.length_m - dist), abs=1.0)
    min_x, min_y, w, h = view.extent
    for x, y in (*view.ahead, *view.behind, *((s.x, s.y) for s in view.stops)):
        assert min_x <= x <= min_x + w and min_y <= y <= min_y + h


def test_a_turn_to_the_right_appears_on_the_right_of_the_map() -> None:
    # North 1 km, then east 1 km: driving north, the street after the corner goes right.
    points = [offset_m(*START, d, 0.0) for d in range(0, 1001, 100)]
    points += [offset_m(*START, 1000.0, e) for e in range(100, 1001, 100)]
    plan = straight_plan(0.0)
    plan = TripPlan(
        "T1", "R1", "1", "Town", None, DAY, ORIGIN, Polyline(points), plan.stops[:1]
    )  # fmt: skip
    view = map_view(plan, 500.0, 0)
    corner = min(view.ahead, key=lambda p: abs(p[1] + 500.0))
    assert corner[0] == pytest.approx(0.0, abs=1.0)
    end = view.ahead[-1]
    assert end[0] > 900 and end[1] == pytest.approx(-500.0, abs=2.0)


def test_only_stops_still_to_come_within_the_view_are_drawn_and_the_next_one_is_marked() -> None:
    plan = straight_plan(90.0, length_m=6000.0, stops=7)  # a stop every 1 km
    view = map_view(plan, 1500.0, 2)
    names = [s.name for s in view.stops]
    assert names == ["Stop 2", "Stop 3"]  # Stop 1 is behind, Stop 4 beyond 1.5 km ahead
    assert [s.next for s in view.stops] == [True, False]
    assert view.stops[0].y == pytest.approx(-500.0, abs=1.0)


def test_the_detour_is_drawn_from_the_bus_where_the_bus_is_on_it() -> None:
    plan = straight_plan(0.0)
    view = map_view(plan, 1000.0, 1, detour_m=(800.0, 1600.0))
    ys = [y for _, y in view.detour]
    assert max(ys) == pytest.approx(0.0, abs=0.5) and min(ys) == pytest.approx(-600.0, abs=1)
    assert map_view(plan, 2000.0, 2, detour_m=(800.0, 1600.0)).detour == ()


# -- the whole state from a real trip -----------------------------------------------------------


@pytest.fixture(scope="module")
def feed() -> Feed:
    return read_feed(REPO / "data" / "gtfs" / "cairns_gtfs.zip")


def test_a_tracked_cairns_trip_gives_trip_next_stop_delay_and_the_map(feed: Feed) -> None:
    trip = demo_trips(feed, 1)[0]
    plan = plan_trip(feed, trip, date.today())
    stop = plan.stops[2]
    late = 240.0
    t = plan.arrival_t(2) - 60 + late  # a minute before stop 2, four minutes late
    tracker = JourneyTracker(plan, now=t - 1)
    for k in range(3):
        p = plan.path.point_at(stop.dist_m - 300 + k * 8)
        tracker.update(t + k, p[0], p[1], speed=8.0, track=p[2])
    state = driver_state(tracker.state, plan, [], [], now=t + 3, online=True)
    assert (state.trip_id, state.line, state.destination) == (
        trip,
        plan.route_short_name or plan.route_id,
        plan.headsign,
    )
    assert state.next_stop == stop.name and not state.at_stop
    assert state.adherence in ("late", "very_late") and state.adherence_text.startswith("+")
    assert [s.name for s in state.stops] == [s.name for s in plan.stops[3:7]]
    assert state.map is not None and state.map.stops[0].name == stop.name
    assert state.map.stops[0].next and state.map.stops[0].y < 0  # the next stop is ahead


def test_without_a_trip_the_terminal_still_lists_messages_and_sent_items() -> None:
    now = 10_000.0
    messages = [DispatchMessage("m1", "Call dispatch", now - 50, now - 40)]
    sent = [Outgoing(5, "canned", "full_bus", now - 10, delivered=False)]
    state = driver_state(None, None, messages, sent, now=now)
    assert state.trip_id == "" and state.map is None and state.adherence == "unknown"
    assert [m.id for m in state.messages] == ["m1"] and state.unacked == 1
    assert [(s.code, s.pending) for s in state.sent] == [("full_bus", True)]
    assert state.pending == 1


def test_open_messages_come_first_and_an_ack_is_pending_until_central_has_it() -> None:
    now = 50_000.0
    messages = [
        DispatchMessage("old", "Old news", now - 9000, now - 9000, acked_t=now - 7200),
        DispatchMessage("read", "Read it", now - 600, now - 600, acked_t=now - 30),
        DispatchMessage("a", "First", now - 300, now - 300),
        DispatchMessage("b", "Second", now - 100, now - 100),
    ]
    ack = Outgoing(9, "ack", "read", now - 30, delivered=False)
    state = driver_state(None, None, messages, [ack], now=now)
    assert [m.id for m in state.messages] == ["b", "a", "read"]  # "old" acked 2 h ago: gone
    assert state.unacked == 2
    assert state.messages[2].ack_pending
    delivered = Outgoing(9, "ack", "read", now - 30, delivered=True)
    again = driver_state(None, None, messages, [delivered], now=now)
    assert not again.messages[2].ack_pending and again.pending == 0


def test_the_emergency_shows_only_as_a_small_confirmation_for_ten_minutes() -> None:
    now = 80_000.0
    sos = Outgoing(3, "emergency", "emergency", now - 5, delivered=False)
    state = driver_state(None, None, [], [sos], now=now)
    assert state.emergency is not None and state.emergency.pending
    assert state.sent == ()  # never in the list of sent messages
    assert driver_state(None, None, [], [sos], now=now + 700).emergency is None


# -- the store and the actions ------------------------------------------------------------------


def test_the_store_keeps_a_message_once_and_knows_which_items_central_stored(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "agent.sqlite")
    store = DriverStore(outbox)
    assert store.add_message("m1", "Hello", 1.0, 2.0, 100.0)
    assert not store.add_message("m1", "Hello", 1.0, 3.0, 100.0)  # redelivered
    assert store.acknowledge("m1", 5.0) is True
    assert store.acknowledge("m1", 6.0) is False
    assert store.acknowledge("nope", 6.0) is None
    assert [(m.id, m.acked_t) for m in store.messages()] == [("m1", 5.0)]
    seq = outbox.append("event", b"x")
    store.add_outgoing(seq, "canned", "accident", 10.0)
    assert [o.delivered for o in store.outgoing(0.0)] == [False]
    outbox.confirm([(seq, seq)])
    assert [o.delivered for o in store.outgoing(0.0)] == [True]
    store.forget(older_than=20.0)
    assert store.outgoing(0.0) == [] and store.messages() == []
    outbox.close()


def agent_in(tmp_path: Path) -> Agent:
    config = parse_config(
        f'[bus]\nid = "bus-d1"\ndata_dir = "{tmp_path}"\n[gps]\nsource = "none"\n'
        '[can]\ninterface = "none"\n[display]\nenabled = false\n[ads]\nenabled = false\n'
        "[driver]\nport = 0\n[mqtt]\ninsecure_dev_broker = true\n"
    )
    return Agent(config)


def events_of(outbox: Outbox) -> list[tuple[str, Event]]:
    return [(p.kind, codec.decode(Event, p.body)) for p in outbox.pending(100_000)]


def test_the_emergency_is_the_first_record_to_send_even_behind_thousands_of_records(
    tmp_path: Path,
) -> None:
    agent = agent_in(tmp_path)
    assert agent.driver is not None
    with agent.outbox.transaction():
        for i in range(3000):
            agent.outbox.append("telemetry", b"t%d" % i)
    agent.record_event("door", {"door": 1})
    agent.driver.send_canned("accident")
    seq = agent.driver.press_emergency()
    first = agent.outbox.pending(1)[0]
    assert (first.seq, first.kind) == (seq, "emergency")
    event = codec.decode(Event, first.body)
    assert (event.kind, event.severity) == ("emergency", 4)
    assert agent.link.wake.is_set()
    agent.outbox.close()


def test_canned_messages_and_the_alarm_carry_the_bus_s_position_and_trip(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "agent.sqlite")
    recorded: list[tuple[str, dict[str, Scalar], int]] = []

    def record(
        kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        recorded.append((kind, data, severity))
        return outbox.append("alarm" if severity >= 3 else "event", b"{}")

    plan = straight_plan(45.0)
    tracker = JourneyTracker(plan, now=ORIGIN + 8 * 3600)
    p = plan.path.point_at(500.0)
    tracker.update(ORIGIN + 8 * 3600 + 60, p[0], p[1], speed=8.0, track=p[2])
    terminal = DriverTerminal(outbox, record, port=0, position=lambda: (-16.9251234567, 145.77))
    terminal.apply_journey(tracker.state, plan)
    first = terminal.send_canned("passenger_incident", nonce="n1")
    assert terminal.send_canned("passenger_incident", nonce="n1") == first  # a repeated POST
    terminal.press_emergency(nonce="n2")
    (kind, data, severity), (kind2, data2, severity2) = recorded
    assert (kind, data["code"], severity) == ("driver_message", "passenger_incident", 2)
    assert (kind2, severity2) == ("emergency", 4)
    for d in (data, data2):
        assert (d["lat"], d["lon"]) == (-16.925123, 145.77)
        assert (d["trip"], d["block"], d["route"]) == ("T1", "B7", "R1")
    with pytest.raises(KeyError):
        terminal.send_canned("coffee")
    state = terminal.state
    assert [s.code for s in state.sent] == ["passenger_incident"]
    assert state.emergency is not None and state.pending == 2
    outbox.close()


def test_a_dispatch_message_is_delivered_once_and_the_ack_is_an_event_timed_by_the_driver(
    tmp_path: Path,
) -> None:
    agent = agent_in(tmp_path)
    terminal = agent.driver
    assert terminal is not None
    terminal.clock = lambda: 1000.0
    cmd = Command(id="c1", name="driver_message", t=990.0, expires=5000.0, args={"text": "Hi\x07"})
    assert agent.commands.receive(codec.encode(cmd), now=1000.0) is not None
    assert agent.commands.receive(codec.encode(cmd), now=1001.0) is None  # redelivered
    empty = Command(id="c2", name="driver_message", t=990.0, expires=5000.0, args={"text": " "})
    result = agent.commands.receive(codec.encode(empty), now=1000.0)
    assert result is not None and result.result == "failed"
    assert [(m.id, m.text) for m in terminal.state.messages] == [("c1", "Hi")]
    terminal.clock = lambda: 1042.5
    assert terminal.acknowledge("c1") is True
    assert terminal.acknowledge("c1") is False and terminal.acknowledge("zz") is None
    kinds = [(kind, e.kind, e.data.get("id"), e.data.get("result")) for kind, e in events_of(
        agent.outbox
    )]  # fmt: skip
    assert kinds == [
        ("cmd_ack", "cmd_ack", "c1", "ok"),
        ("cmd_ack", "cmd_ack", "c2", "failed"),
        ("event", "driver_ack", "c1", None),
    ]
    ack = events_of(agent.outbox)[-1][1]
    assert ack.t == 1042.5
    assert terminal.state.messages[0].ack_pending
    agent.outbox.close()


def test_a_bus_without_a_terminal_fails_driver_messages(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "agent.sqlite")
    commands = Commands(outbox, {})
    cmd = Command(id="c1", name="driver_message", t=1.0, expires=100.0, args={"text": "x"})
    result = commands.receive(codec.encode(cmd), now=2.0)
    assert result is not None and result.result == "failed"
    outbox.close()


def test_canned_messages_are_the_five_the_issue_names() -> None:
    assert {c.code for c in CANNED} == {
        "delay_traffic",
        "accident",
        "vehicle_defect",
        "passenger_incident",
        "full_bus",
    }
    assert all(c.severity < 3 for c in CANNED)  # only the emergency jumps the alarm queue


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8091", "127.0.0.1:8091", True),
        ("http://localhost:8091", "localhost:8091", True),
        ("http://10.0.0.2:8091", "10.0.0.2:8091", True),
        ("http://[::1]:8091", "[::1]:8091", True),
        (None, "127.0.0.1:8091", False),
        ("null", "127.0.0.1:8091", False),
        ("http://evil.example:8091", "127.0.0.1:8091", False),
        ("http://127.0.0.1:9999", "127.0.0.1:8091", False),
        ("http://evil.example:8091", "evil.example:8091", False),  # DNS rebinding
    ],
)
def test_only_posts_from_the_terminal_s_own_page_are_accepted(
    origin: str | None, host: str, allowed: bool
) -> None:
    assert (cross_origin_reason(origin, host) is None) == allowed


def test_the_alarm_goes_even_when_the_position_cannot_be_had(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "agent.sqlite")

    def record(
        kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        event = Event(seq=0, t=t or 0.0, kind=kind, severity=severity, data=data)
        return outbox.append("alarm" if severity >= 3 else "event", codec.encode(event))

    def broken() -> tuple[float, float]:
        raise RuntimeError("GPS driver crashed")

    terminal = DriverTerminal(outbox, record, port=0, position=broken)
    terminal.press_emergency()
    ((kind, event),) = events_of(outbox)
    assert (kind, event.kind, event.severity) == ("alarm", "emergency", 4)
    assert "lat" not in event.data
    outbox.close()
