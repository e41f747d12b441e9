"""The passenger display's state (pure) and its HTTP server without a browser."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from onboard.display import AdSlot, Display, DisplayState, JourneyView, NextStop, display_state
from onboard.display.model import (
    MAX_ANNOUNCEMENTS,
    MAX_TEXT,
    from_journey,
    message_valid,
    to_json,
)
from onboard.journey.tracker import JourneyState, StopCall
from protocols.schemas import Assignment, DesiredState, PassengerMessage

NOW = 1_750_000_000.0


def msg(
    id: str,
    de: str = "Hinweis",
    en: str = "",
    *,
    priority: int = 0,
    valid_from: float | None = None,
    valid_to: float | None = None,
) -> PassengerMessage:
    return PassengerMessage(
        id=id, text_de=de, text_en=en, priority=priority, valid_from=valid_from, valid_to=valid_to
    )


def journey(*names: str, line: str = "110", destination: str = "Cairns City") -> JourneyView:
    stops = tuple(NextStop(f"s{i}", n, NOW + 60 * i) for i, n in enumerate(names, 1))
    return JourneyView(line=line, destination=destination, next_stops=stops, delay_s=120.0)


# -- announcements ------------------------------------------------------------------------


def test_a_message_is_shown_from_valid_from_until_just_before_valid_to() -> None:
    m = msg("m", valid_from=NOW, valid_to=NOW + 60)
    shown = [
        bool(display_state(None, [m], t).announcements) for t in (NOW - 1, NOW, NOW + 59, NOW + 60)
    ]
    assert shown == [False, True, True, False]


def test_a_message_without_bounds_is_always_valid() -> None:
    assert message_valid(msg("m"), 0.0)
    assert message_valid(msg("m"), 4_000_000_000.0)


def test_announcements_are_ordered_by_priority_and_capped() -> None:
    messages = [msg(f"m{p}", f"text {p}", priority=p) for p in (0, 3, 1, 2, 4)]
    shown = display_state(None, messages, NOW).announcements
    assert [a.id for a in shown] == ["m4", "m3", "m2"]
    assert len(shown) == MAX_ANNOUNCEMENTS


def test_a_message_without_english_is_shown_in_german_and_the_reverse() -> None:
    only_de, only_en = msg("a", "Nur deutsch"), msg("b", "", "English only")
    shown = {a.id: a for a in display_state(None, [only_de, only_en], NOW).announcements}
    assert (shown["a"].text_de, shown["a"].text_en) == ("Nur deutsch", "")
    assert shown["b"].text_de == "English only"


def test_an_empty_message_is_not_shown_and_a_long_one_is_clipped() -> None:
    shown = display_state(None, [msg("blank", "  "), msg("long", "x" * 2000)], NOW).announcements
    assert [a.id for a in shown] == ["long"]
    assert len(shown[0].text_de) == MAX_TEXT
    assert shown[0].text_de.endswith("…")


messages_strategy = st.lists(
    st.builds(
        msg,
        st.text(min_size=1, max_size=4),
        st.text(max_size=10),
        st.text(max_size=10),
        priority=st.integers(-2, 5),
        valid_from=st.none() | st.floats(NOW - 100, NOW + 100),
        valid_to=st.none() | st.floats(NOW - 100, NOW + 100),
    ),
    max_size=8,
    unique_by=lambda m: m.id,  # central gives every message its own id
)


@given(messages_strategy, st.floats(NOW - 150, NOW + 150))
def test_only_valid_messages_are_shown_and_none_outranks_a_hidden_one(
    messages: list[PassengerMessage], now: float
) -> None:
    shown = display_state(None, messages, now).announcements
    by_id = {m.id: m for m in messages}
    assert len(shown) <= MAX_ANNOUNCEMENTS
    assert all(message_valid(by_id[a.id], now) for a in shown)
    priorities = [a.priority for a in shown]
    assert priorities == sorted(priorities, reverse=True)
    hidden = [
        m
        for m in messages
        if message_valid(m, now)
        and (m.text_de.strip() or m.text_en.strip())
        and m.id not in {a.id for a in shown}
    ]
    if hidden:
        assert len(shown) == MAX_ANNOUNCEMENTS
        assert min(priorities) >= max(m.priority for m in hidden)


# -- journey, fallbacks, ad -----------------------------------------------------------------


def test_without_a_journey_line_and_destination_come_from_the_fallbacks() -> None:
    state = display_state(None, [], NOW, fallback_line="R1", fallback_destination="Depot")
    assert (state.line, state.destination, state.next_stops) == ("R1", "Depot", ())


def test_the_journey_wins_over_the_fallbacks_and_its_stops_are_capped() -> None:
    j = journey("A", "B", "C", "D", "E", "F", "G")
    state = display_state(j, [], NOW, fallback_line="R1", max_stops=3)
    assert state.line == "110"
    assert [s.name for s in state.next_stops] == ["A", "B", "C"]
    assert state.delay_s == 120.0


def test_an_empty_line_in_the_journey_falls_back_to_the_assignment() -> None:
    state = display_state(journey("A", line=""), [], NOW, fallback_line="R1")
    assert state.line == "R1"


def test_an_ad_from_another_host_is_refused_and_a_local_one_is_kept() -> None:
    for url in ("https://ads.example/x.png", "//ads.example/x.png", "javascript:alert(1)", "x.png"):
        assert display_state(None, [], NOW, ad=AdSlot("i", url)).ad is None, url
    local = AdSlot("i", "/media/spring.png")
    assert display_state(None, [], NOW, ad=local).ad == local


def test_a_blank_diversion_is_no_diversion() -> None:
    assert display_state(None, [], NOW, diversion="  ").diversion is None
    assert (
        display_state(None, [], NOW, diversion=" via Mulgrave Rd ").diversion == "via Mulgrave Rd"
    )


# -- the Display object -------------------------------------------------------------------


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_display_counts_a_version_only_when_what_it_shows_changes() -> None:
    display = Display(port=0, clock=Clock(NOW))
    display.update(journey=journey("A", "B"))
    first = display.version
    display.update(journey=journey("A", "B"), online=False)
    assert display.version == first
    display.update(journey=journey("B"))
    assert display.version == first + 1
    assert display.state.next_stops[0].name == "B"


def test_a_message_expires_on_the_bus_clock_without_any_new_input() -> None:
    clock = Clock(NOW)
    display = Display(port=0, clock=clock)
    desired = DesiredState(
        bus="bus-001",
        version=3,
        assignment=Assignment(route_id="R1"),
        messages=[msg("m", "Bitte vorne einsteigen", valid_to=NOW + 30)],
    )
    display.apply_desired(desired)
    assert [a.id for a in display.state.announcements] == ["m"]
    assert display.state.line == "R1"
    clock.t = NOW + 31
    assert display.refresh()
    assert display.state.announcements == ()


# -- HTTP, without a browser ----------------------------------------------------------------


async def test_the_pages_are_served_with_a_policy_that_allows_only_the_agent_itself() -> None:
    display = Display(port=0)
    async with TestClient(TestServer(display.app())) as client:
        for page in ("landscape", "strip"):
            response = await client.get(f"/display/{page}")
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy
            assert "script-src 'self'" in policy
            html = await response.text()
            assert "http://" not in html and "https://" not in html
        script = await client.get("/display/static/display.js")
        assert script.status == 200
        code = await script.text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, f"display.js uses {sink}: data must go in as text"
        assert (await client.get("/display/nope")).status == 404
        index = await client.get("/", allow_redirects=False)
        assert index.headers["Location"] == "/display/landscape"


async def test_state_json_and_the_event_stream_carry_the_current_state() -> None:
    display = Display(port=0, heartbeat_s=60.0)
    display.update(journey=journey("Lake Street"), stop_requested=True)
    async with TestClient(TestServer(display.app())) as client:
        body = await (await client.get("/display/state.json")).json()
        assert body["state"]["next_stops"][0]["name"] == "Lake Street"
        assert body["state"]["stop_requested"] is True
        events = await client.get("/display/events")
        assert events.headers["Content-Type"].startswith("text/event-stream")
        first = await _next_data(events)
        assert first["version"] == display.version
        display.update(journey=journey("Spence Street"))
        second = await _next_data(events)
        assert second["state"]["next_stops"][0]["name"] == "Spence Street"
        assert display.clients == 1
        events.close()


async def _next_data(response: ClientResponse) -> dict[str, Any]:
    while True:
        line = await response.content.readline()
        if line.startswith(b"data: "):
            data = json.loads(line[len(b"data: ") :])
            assert isinstance(data, dict)
            return data


def test_the_state_serialises_with_the_field_names_the_pages_read() -> None:
    state = DisplayState(line="110", next_stops=(NextStop("s1", "A", NOW),))
    data = json.loads(to_json(state))
    assert data["line"] == "110"
    assert data["next_stops"][0] == {
        "stop_id": "s1",
        "name": "A",
        "expected": NOW,
        "skipped": False,
    }


# -- from the journey tracker ---------------------------------------------------------------


def tracker_state(*, at_stop: bool, finished: bool = False, adherence: str = "on") -> JourneyState:
    calls = tuple(
        StopCall(i, f"s{i}", name, NOW + 60 * i, NOW + 60 * i + 90)
        for i, name in enumerate(["Lake St", "Spence St", "Cairns Central"], start=4)
    )
    return JourneyState(
        t=NOW,
        trip_id="t1",
        route_id="R110",
        route_short_name="110",
        headsign="Smithfield",
        block_id=None,
        service_date=date(2025, 6, 15),
        diverted=False,
        stop_index=4,
        stop_id="s4",
        stop_name="Lake St",
        at_stop=at_stop,
        finished=finished,
        dist_m=1200.0,
        offset_m=3.0,
        adherence=adherence,
        delay_s=90.0,
        upcoming=() if finished else calls,
        stop_requested=True,
    )


def test_the_tracker_state_becomes_line_destination_and_expected_stops() -> None:
    state = tracker_state(at_stop=True)
    view = from_journey(state)
    assert (view.line, view.destination, view.delay_s) == ("110", "Smithfield", 90.0)
    assert [(s.stop_id, s.name, s.expected) for s in view.next_stops] == [
        (c.stop_id, c.name, c.expected_t) for c in state.upcoming
    ]
    shown = display_state(view, [], NOW)
    assert shown.at_stop and shown.on_route


def test_a_finished_or_off_route_trip_shows_no_stops_or_marks_the_times_unsure() -> None:
    finished = display_state(from_journey(tracker_state(at_stop=False, finished=True)), [], NOW)
    assert finished.next_stops == () and not finished.at_stop
    assert finished.delay_s is None
    assert finished.destination == "Smithfield"
    off = display_state(from_journey(tracker_state(at_stop=False, adherence="off")), [], NOW)
    assert not off.on_route


def test_the_display_takes_the_stop_request_from_the_tracker_when_it_knows_it() -> None:
    display = Display(port=0, clock=Clock(NOW))
    display.apply_journey(tracker_state(at_stop=False))
    assert display.state.stop_requested
    assert display.state.next_stops[0].name == "Lake St"
    display.apply_journey(None)
    assert display.state.next_stops == ()


async def test_extra_routes_are_served_on_the_display_origin() -> None:
    async def media(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG", content_type="image/png")

    display = Display(port=0)
    display.add_routes([web.get("/media/{name}", media)])
    async with TestClient(TestServer(display.app())) as client:
        response = await client.get("/media/spring.png")
        assert response.status == 200
        assert await response.read() == b"\x89PNG"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
