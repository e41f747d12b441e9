"""The demo's feed mapped onto today (hw_sim/feed_today.py): the 2014 Cairns feed runs today,
its clock reads late morning now, every stop time is untouched, and the trips picked for the
buses run now, each from where the agent's own plan has it on time."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from busfleet.simbus import DEFAULT_GTFS
from hw_sim.feed_today import (
    LOCAL_HOUR,
    FeedToday,
    map_feed,
    trips_now,
    write_feed_today,
    zone_for,
)
from onboard.journey.plan import plan_trip
from protocols.errors import GtfsError
from protocols.gtfs.calendar import parse_agencies, parse_services
from protocols.gtfs.feed import Feed, read_feed

# A Thursday in December 2026, 16:20 UTC; Hypothesis roams the week from here.
THURSDAY = dt.datetime(2026, 12, 3, 16, 20, tzinfo=dt.UTC).timestamp()
WEEK_S = 7 * 86400
CHANGED = {"agency.txt", "calendar.txt", "calendar_dates.txt"}


@functools.cache
def cairns_files() -> dict[str, bytes]:
    with zipfile.ZipFile(DEFAULT_GTFS) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


@functools.cache
def cairns() -> Feed:
    return read_feed(DEFAULT_GTFS)


def exception_days() -> set[dt.date]:
    text = cairns_files()["calendar_dates.txt"].decode()
    return {dt.datetime.strptime(line.split(",")[1], "%Y%m%d").date() for line in text.split()[1:]}


def mapped_feed(today: FeedToday) -> Feed:
    """The Cairns feed with the mapped agency and calendars: only those files differ, so the
    parsed stop times, shapes and trips are shared instead of parsed again per example."""
    feed = copy.copy(cairns())
    text = {name: data.decode() for name, data in today.files.items() if name in CHANGED}
    (timezone,) = {a.timezone for a in parse_agencies(text["agency.txt"])}
    feed.timezone = timezone
    feed.services = parse_services(text["calendar.txt"], text["calendar_dates.txt"])
    return feed


def check_on_time(feed: Feed, today: FeedToday, now: float, n: int) -> None:
    chosen = trips_now(feed, now, n)
    assert len(chosen) == n
    assert len({t.route_id for t in chosen}) == n, "each bus on its own route"
    assert feed.services is not None
    active = feed.services.active(today.service_date)
    for trip in chosen:
        assert feed.trips[trip.trip_id].service_id in active, f"{trip.trip_id} does not run today"
        plan = plan_trip(feed, trip.trip_id, today.service_date)  # as the agent plans it
        assert plan.first_departure_t <= now <= plan.last_arrival_t - 600
        assert 0 <= trip.dist_m <= trip.length_m
        # The agent's delay for a bus there now: on time (dwell times aside, none here).
        assert abs(now - plan.scheduled_t_at(trip.dist_m)) < 1.0, trip


@given(now=st.floats(min_value=-1e9, max_value=4e9), hour=st.integers(0, 23))
def test_the_zone_puts_any_moment_at_the_wanted_hour(now: float, hour: int) -> None:
    name, offset = zone_for(now, hour)
    assert -12 <= offset <= 14
    assert dt.datetime.fromtimestamp(now, ZoneInfo(name)).hour == hour


@settings(max_examples=30)
@given(now=st.floats(min_value=THURSDAY, max_value=THURSDAY + WEEK_S))
def test_any_moment_of_a_week_becomes_late_morning_of_the_same_weekdays_service(
    now: float,
) -> None:
    today = map_feed(cairns_files(), now)
    zone = ZoneInfo(today.timezone)
    assert dt.datetime.fromtimestamp(now, zone).hour == LOCAL_HOUR
    assert today.service_date == dt.datetime.fromtimestamp(now, zone).date()
    assert today.shift_days % 7 == 0
    assert today.reference_date.weekday() == today.service_date.weekday()
    assert today.reference_date not in exception_days(), "a holiday is no typical day"
    # Every stop time (and all but agency and the calendars) stays byte for byte.
    for name, data in cairns_files().items():
        if name not in CHANGED:
            assert today.files[name] == data, name
    feed = mapped_feed(today)
    original = cairns().services
    assert feed.services is not None and original is not None
    # The weekly pattern moved whole: today runs the reference day's service, and so does
    # every day of the week around it.
    for days in range(-7, 8):
        day = today.service_date + dt.timedelta(days=days)
        assert feed.services.active(day) == original.active(
            today.reference_date + dt.timedelta(days=days)
        )
    assert feed.services.active(today.service_date), "no service today"
    check_on_time(feed, today, now, 5)


def test_the_mapped_zip_reads_back_and_its_trips_run_now(tmp_path: Path) -> None:
    target = tmp_path / "today.zip"
    today = write_feed_today(DEFAULT_GTFS, target, THURSDAY)
    assert today.timezone == "Etc/GMT+6"  # 16:20 UTC is 10:20 six hours behind
    assert today.service_date == dt.date(2026, 12, 3)
    assert today.reference_date.weekday() == 3  # a Thursday of 2014
    feed = read_feed(target)
    assert feed.timezone == today.timezone
    assert feed.stop_times("CNS2014-CNS_MUL-Weekday-00-4165887") == cairns().stop_times(
        "CNS2014-CNS_MUL-Weekday-00-4165887"
    )
    check_on_time(feed, today, THURSDAY, 8)


def test_more_buses_than_routes_take_further_trips_of_the_same_routes() -> None:
    today = map_feed(cairns_files(), THURSDAY)
    feed = mapped_feed(today)
    chosen = trips_now(feed, THURSDAY, 40)
    routes = {t.route_id for t in chosen}
    assert len({t.trip_id for t in chosen}) == len(chosen) > len(routes)


def test_a_feed_without_agency_or_with_a_bad_date_is_a_clear_error() -> None:
    files = dict(cairns_files())
    del files["agency.txt"]
    with pytest.raises(GtfsError, match="agency"):
        map_feed(files, THURSDAY)
    files = dict(cairns_files())
    files["calendar_dates.txt"] = b"service_id,date,exception_type\r\nX,2014-06-09,2\r\n"
    with pytest.raises(GtfsError, match="not a date"):
        map_feed(files, THURSDAY)
