"""central/when.py: the times a dispatcher types, read the same in the CLI and the dashboard."""

from __future__ import annotations

import datetime as dt

import pytest

from central.dashboard.screens.timetables import parse_valid_from
from central.when import parse_when

NOW = dt.datetime(2026, 12, 3, 16, 30, 15).timestamp()  # local time of this machine


def test_relative_clock_and_iso_times() -> None:
    assert parse_when("+90s", NOW) == NOW + 90
    assert parse_when(" +30m ", NOW) == NOW + 1800
    assert parse_when("+1.5h", NOW) == NOW + 5400
    assert parse_when("17:05", NOW) == dt.datetime(2026, 12, 3, 17, 5).timestamp()
    # A clock time that has passed today is tomorrow's.
    assert parse_when("08:00", NOW) == dt.datetime(2026, 12, 4, 8, 0).timestamp()
    assert (
        parse_when("2026-12-24T06:00+01:00", NOW)
        == dt.datetime(2026, 12, 24, 5, 0, tzinfo=dt.UTC).timestamp()
    )


@pytest.mark.parametrize(
    "text", ["soon", "+m", "+5x", "25:00", "7:60", "", "+nanm", "+infh", "+1e308d", "+-5m", "+400d"]
)
def test_what_is_not_a_time_says_what_is(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM, \\+30m"):
        parse_when(text, NOW)


def test_the_publish_form_takes_empty_or_now_for_at_once() -> None:
    assert parse_valid_from("", NOW) is None and parse_valid_from(" now ", NOW) is None
    assert parse_valid_from("+2h", NOW) == NOW + 7200
    with pytest.raises(ValueError, match="valid from: not a time: 'tomorrow'"):
        parse_valid_from("tomorrow", NOW)
