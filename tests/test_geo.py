"""Geometry at city scale: distances, bearings, offsets and walking along polylines."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.geo import (
    Polyline,
    bearing_deg,
    haversine_m,
    match_along,
    offset_m,
    turn_deg,
)

lats = st.floats(min_value=-70, max_value=70)
lons = st.floats(min_value=-179, max_value=179)
metres = st.floats(min_value=-5_000, max_value=5_000)


def test_one_degree_of_latitude_is_about_111_km() -> None:
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, rel=1e-3)


def test_a_degree_of_longitude_shrinks_with_the_cosine_of_latitude() -> None:
    at_equator = haversine_m(0.0, 10.0, 0.0, 11.0)
    at_60 = haversine_m(60.0, 10.0, 60.0, 11.0)
    assert at_60 == pytest.approx(at_equator * 0.5, rel=1e-3)


def test_bearings_point_to_the_four_cardinal_directions() -> None:
    assert bearing_deg(0, 0, 1, 0) == pytest.approx(0.0, abs=1e-9)
    assert bearing_deg(0, 0, 0, 1) == pytest.approx(90.0)
    assert bearing_deg(0, 0, -1, 0) == pytest.approx(180.0)
    assert bearing_deg(0, 0, 0, -1) == pytest.approx(270.0)


@given(lats, lons, metres, metres)
def test_offsetting_a_point_moves_it_by_the_requested_distance(
    lat: float, lon: float, north: float, east: float
) -> None:
    lat2, lon2 = offset_m(lat, lon, north, east)
    assert haversine_m(lat, lon, lat2, lon2) == pytest.approx(
        math.hypot(north, east), abs=0.5, rel=2e-3
    )


@given(lats, lons, st.floats(min_value=10, max_value=5_000))
def test_an_offset_due_east_has_a_bearing_of_about_90_degrees(
    lat: float, lon: float, east: float
) -> None:
    lat2, lon2 = offset_m(lat, lon, 0.0, east)
    assert bearing_deg(lat, lon, lat2, lon2) == pytest.approx(90.0, abs=0.5)


def test_turns_are_signed_and_wrap_around_north() -> None:
    assert turn_deg(350.0, 10.0) == pytest.approx(20.0)
    assert turn_deg(10.0, 350.0) == pytest.approx(-20.0)
    assert turn_deg(90.0, 270.0) == pytest.approx(180.0)


def _l_shape() -> Polyline:
    # 1 km north, then 1 km east, starting in Cairns.
    a = (-16.92, 145.77)
    b = offset_m(*a, 1000.0, 0.0)
    c = offset_m(*b, 0.0, 1000.0)
    return Polyline([a, b, c])


def test_a_polyline_measures_the_sum_of_its_segments() -> None:
    assert _l_shape().length_m == pytest.approx(2000.0, rel=1e-3)


def test_walking_along_a_polyline_turns_at_the_corner() -> None:
    line = _l_shape()
    lat, lon, heading = line.point_at(500.0)
    assert abs(turn_deg(heading, 0.0)) < 0.5  # due north (359.99... is north too)
    assert haversine_m(*line.points[0], lat, lon) == pytest.approx(500.0, rel=1e-3)
    _, _, heading = line.point_at(1500.0)
    assert heading == pytest.approx(90.0, abs=0.5)


def test_walking_beyond_either_end_stays_at_that_end() -> None:
    line = _l_shape()
    assert line.point_at(-10.0)[:2] == line.points[0]
    assert line.point_at(1e9)[:2] == pytest.approx(line.points[-1])


def test_repeated_points_keep_the_heading_of_the_real_segments() -> None:
    a = (-16.92, 145.77)
    b = offset_m(*a, 0.0, 300.0)
    line = Polyline([a, a, b, b])
    assert line.length_m == pytest.approx(300.0, rel=1e-3)
    for d in (0.0, 150.0, 300.0):
        assert line.point_at(d)[2] == pytest.approx(90.0, abs=0.5)


def test_a_single_point_polyline_has_zero_length() -> None:
    line = Polyline([(1.0, 2.0)])
    assert line.length_m == 0.0
    assert line.point_at(5.0)[:2] == (1.0, 2.0)
    assert line.project(1.0, 2.0) == (0.0, 0.0)


def test_an_empty_polyline_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        Polyline([])


@given(st.floats(min_value=0, max_value=2000), st.floats(min_value=-40, max_value=40))
def test_a_point_beside_the_line_projects_back_to_where_it_was_offset_from(
    along: float, side: float
) -> None:
    line = _l_shape()
    lat, lon, heading = line.point_at(along)
    # Step sideways, perpendicular to the direction of travel.
    rad = math.radians(heading + 90.0)
    plat, plon = offset_m(lat, lon, side * math.cos(rad), side * math.sin(rad))
    d, off = line.project(plat, plon)
    assert off <= abs(side) + 0.5
    # Near the corner, a point outside the L is equally close to both legs.
    if abs(along - 1000.0) > abs(side) + 1:
        assert d == pytest.approx(along, abs=1.0)
        assert off == pytest.approx(abs(side), abs=0.5)


def test_projection_can_be_restricted_to_part_of_the_line() -> None:
    a = (-16.92, 145.77)
    b = offset_m(*a, 0.0, 1000.0)
    line = Polyline([a, b, a])  # out and back along the same street
    mid = offset_m(*a, 0.0, 400.0)
    d_out, _ = line.project(*mid)
    d_back, off = line.project(*mid, min_dist_m=1000.0)
    assert d_out == pytest.approx(400.0, abs=1.0)
    assert d_back == pytest.approx(1600.0, abs=1.0)
    assert off < 1.0


def test_stops_of_an_out_and_back_route_are_matched_in_order() -> None:
    start = (-16.92, 145.77)
    far = offset_m(*start, 0.0, 2000.0)
    line = Polyline([start, far, start])
    # Outbound stops on one side of the street, inbound stops on the other side (8 m apart):
    # the inbound stops are nearer to the outbound leg than some outbound stops are.
    outbound = [offset_m(*start, -5.0, x) for x in (300.0, 900.0, 1500.0)]
    inbound = [offset_m(*start, 3.0, x) for x in (1400.0, 800.0, 200.0)]
    matched = match_along(line, outbound + inbound)
    dists = [d for d, _ in matched]
    assert dists == sorted(dists)
    for (d, _), want in zip(matched, (300, 900, 1500, 2600, 3200, 3800), strict=True):
        assert d == pytest.approx(want, abs=2.0)


def test_a_loop_route_starting_and_ending_at_one_stop_puts_it_at_both_ends() -> None:
    a = (-16.92, 145.77)
    b = offset_m(*a, 0.0, 500.0)
    c = offset_m(*b, 500.0, 0.0)
    d = offset_m(*a, 500.0, 0.0)
    line = Polyline([a, b, c, d, a])
    matched = match_along(line, [a, c, a])
    assert [round(x) for x, _ in matched] == [0, round(line.length_m / 2), round(line.length_m)]
