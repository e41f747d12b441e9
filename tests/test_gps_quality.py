"""Fix-quality gating: bad fixes rejected, GPS lost and regained, dead reckoning on CAN speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from onboard.gps.quality import (
    GPS_LOST,
    GPS_REGAINED,
    TRANSITIONS,
    GpsQuality,
    QualityLimits,
)
from protocols.geo import bearing_deg, haversine_m, offset_m
from protocols.nmea.decoder import Fix

CAIRNS = (-16.9186, 145.7781)
T0 = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)


def fix_at(
    north_m: float,
    east_m: float,
    t: float,
    *,
    speed: float | None = 10.0,
    track: float | None = 90.0,
    mode: int = 3,
    hdop: float | None = 1.0,
) -> Fix:
    """A fix `north_m`/`east_m` from Cairns at receiver time T0 + t seconds."""
    lat, lon = offset_m(*CAIRNS, north_m, east_m)
    return Fix(
        time=T0 + timedelta(seconds=t),
        mode=mode,
        lat=lat if mode >= 2 else None,
        lon=lon if mode >= 2 else None,
        speed=speed,
        track=track,
        hdop=hdop,
        sats_used=8,
    )


def drive_east(q: GpsQuality, seconds: int, speed: float = 10.0) -> None:
    """A bus driving east at `speed`, one good fix and one tick per second from t = 0."""
    for t in range(seconds):
        q.update_fix(fix_at(0.0, speed * t, t, speed=speed), float(t))
        q.tick(float(t), speed)


def test_a_fix_without_a_position_is_rejected_and_counted() -> None:
    q = GpsQuality()
    assert q.update_fix(fix_at(0, 0, 0, mode=1), 0.0) == "no_fix"
    assert q.stats.rejected["no_fix"] == 1
    assert q.last_fix is None


def test_a_fix_with_a_poor_hdop_is_rejected_and_counted() -> None:
    q = GpsQuality(QualityLimits(max_hdop=5.0))
    assert q.update_fix(fix_at(0, 0, 0, hdop=12.5), 0.0) == "hdop"
    assert q.stats.rejected["hdop"] == 1
    assert q.update_fix(fix_at(0, 0, 1, hdop=4.0), 1.0) is None


def test_a_jump_faster_than_the_speed_limit_is_rejected_and_counted() -> None:
    q = GpsQuality(QualityLimits(max_speed_mps=60.0, jump_slack_m=30.0))
    assert q.update_fix(fix_at(0, 0, 0), 0.0) is None
    # 500 m in one second is 500 m/s: no bus does that.
    assert q.update_fix(fix_at(500, 0, 1), 1.0) == "jump"
    assert q.stats.rejected["jump"] == 1
    assert q.last_fix is not None and q.last_fix.time == T0


@given(
    speed=st.floats(min_value=0.0, max_value=40.0),
    heading=st.floats(min_value=0.0, max_value=359.9),
    dt=st.floats(min_value=0.1, max_value=30.0),
)
def test_any_move_at_bus_speed_is_accepted(speed: float, heading: float, dt: float) -> None:
    import math

    q = GpsQuality()
    assert q.update_fix(fix_at(0, 0, 0), 0.0) is None
    d = speed * dt
    north, east = d * math.cos(math.radians(heading)), d * math.sin(math.radians(heading))
    assert q.update_fix(fix_at(north, east, dt), dt) is None


@given(
    dist=st.floats(min_value=1_000.0, max_value=50_000.0),
    heading=st.floats(min_value=0.0, max_value=359.9),
)
def test_a_single_far_jump_is_never_accepted(dist: float, heading: float) -> None:
    import math

    q = GpsQuality()
    q.update_fix(fix_at(0, 0, 0), 0.0)
    north, east = dist * math.cos(math.radians(heading)), dist * math.sin(math.radians(heading))
    assert q.update_fix(fix_at(north, east, 1), 1.0) == "jump"
    assert q.last_fix is not None and q.last_fix.time == T0


def test_a_fast_replay_is_judged_on_receiver_time_not_arrival_time() -> None:
    q = GpsQuality()
    # Fixes one receiver-second and 25 m apart, delivered ten times faster than real time.
    for i in range(10):
        assert q.update_fix(fix_at(0, 25.0 * i, float(i), speed=25.0), i * 0.1) is None
    assert q.stats.rejected["jump"] == 0


def test_fixes_that_agree_at_a_new_place_are_accepted_after_reanchor_after_of_them() -> None:
    q = GpsQuality(QualityLimits(reanchor_after=3))
    q.update_fix(fix_at(0, 0, 0), 0.0)
    assert q.update_fix(fix_at(5_000, 0, 1), 1.0) == "jump"
    assert q.update_fix(fix_at(5_000, 10, 2), 2.0) == "jump"
    assert q.update_fix(fix_at(5_000, 20, 3), 3.0) is None
    assert q.stats.reanchored == 1
    assert q.last_fix is not None and q.last_fix.time == T0 + timedelta(seconds=3)


def test_scattered_outliers_never_reanchor() -> None:
    q = GpsQuality(QualityLimits(reanchor_after=3))
    q.update_fix(fix_at(0, 0, 0), 0.0)
    for i, north in enumerate((5_000, -5_000, 9_000, -9_000), start=1):
        assert q.update_fix(fix_at(north, 0, i), float(i)) == "jump"
    assert q.stats.reanchored == 0


def test_gps_lost_comes_once_after_stale_after_s_and_regained_with_a_good_fix() -> None:
    q = GpsQuality(QualityLimits(stale_after_s=3.0))
    drive_east(q, 5)  # last good fix at t = 4
    kinds: list[str] = []
    for t in range(5, 20):
        _, events = q.tick(float(t), 10.0)
        kinds += [e.kind for e in events]
        if t <= 7:
            assert not events, f"lost too early at t={t}"
    assert kinds == [GPS_LOST]
    assert q.state == "lost"
    q.update_fix(fix_at(0, 10.0 * 20, 20), 20.0)
    _, events = q.tick(20.0, 10.0)
    assert [e.kind for e in events] == [GPS_REGAINED]
    assert q.state == "ok"
    assert q.stats.lost == 1


def test_the_lost_event_says_whether_the_receiver_went_silent_or_lost_its_fix() -> None:
    silent = GpsQuality()
    drive_east(silent, 3)
    _, events = silent.tick(10.0, 10.0)
    assert events[0].data["reason"] == "silent"
    assert events[0].severity >= 2

    no_fix = GpsQuality()
    drive_east(no_fix, 3)
    events = []
    for t in range(3, 10):
        no_fix.update_fix(fix_at(0, 0, t, mode=1), float(t))
        events += no_fix.tick(float(t), 10.0)[1]
    assert [e.data["reason"] for e in events] == ["no_fix"]


def test_while_lost_the_position_is_dead_reckoned_along_the_heading_by_wheel_speed() -> None:
    q = GpsQuality(QualityLimits(stale_after_s=3.0))
    drive_east(q, 10, speed=10.0)  # last good fix 90 m east at t = 9
    anchor = q.last_fix
    assert anchor is not None and anchor.lat is not None and anchor.lon is not None
    pos = None
    for t in range(10, 30):
        pos, _ = q.tick(float(t), 10.0)
    assert pos is not None and pos.estimated
    # 20 s at 10 m/s since the last fix, due east.
    assert abs(haversine_m(anchor.lat, anchor.lon, pos.lat, pos.lon) - 200.0) < 0.5
    assert abs(bearing_deg(anchor.lat, anchor.lon, pos.lat, pos.lon) - 90.0) < 0.5
    assert pos.speed == 10.0


def test_while_gps_is_fine_the_reported_position_is_the_fix_and_not_estimated() -> None:
    q = GpsQuality()
    drive_east(q, 3)
    pos, events = q.tick(2.5, 10.0)
    assert not events
    assert pos is not None and not pos.estimated
    last = q.last_fix
    assert last is not None and (pos.lat, pos.lon) == (last.lat, last.lon)
    assert pos.hdop == last.hdop and pos.sats == last.sats_used


def test_the_regained_event_reports_how_far_dead_reckoning_was_off() -> None:
    q = GpsQuality()
    drive_east(q, 10, speed=10.0)
    for t in range(10, 20):
        q.tick(float(t), 10.0)
    # The receiver comes back 40 m north of where the wheels said: a turn we could not see.
    q.update_fix(fix_at(40.0, 190.0, 19.5), 19.5)
    _, events = q.tick(20.0, 10.0)
    (regained,) = events
    assert regained.kind == GPS_REGAINED
    assert abs(float(regained.data["dr_error_m"] or 0) - 40.0) < 1.0


def test_without_wheel_speed_there_is_no_estimate() -> None:
    q = GpsQuality()
    drive_east(q, 3)
    for t in range(3, 10):
        pos, _ = q.tick(float(t), None)
    assert q.state == "lost"
    assert pos is None


def test_a_gap_in_wheel_speed_ends_the_estimate_until_the_next_fix() -> None:
    q = GpsQuality()
    drive_east(q, 3)
    q.tick(6.0, 10.0)
    q.tick(7.0, None)
    pos, _ = q.tick(8.0, 10.0)
    assert pos is None


def test_dead_reckoning_gives_up_after_dead_reckon_max_s() -> None:
    q = GpsQuality(QualityLimits(dead_reckon_max_s=30.0))
    drive_east(q, 3)  # last fix at t = 2
    positions = {t: q.tick(float(t), 5.0)[0] for t in range(3, 40)}
    assert positions[32] is not None
    assert positions[33] is None


def test_a_standing_bus_without_a_heading_keeps_its_place_while_lost() -> None:
    q = GpsQuality()
    q.update_fix(fix_at(0, 0, 0, speed=0.0, track=None), 0.0)
    for t in range(1, 10):
        pos, _ = q.tick(float(t), 0.0)
    assert q.state == "lost"
    assert pos is not None and pos.estimated
    last = q.last_fix
    assert last is not None and (pos.lat, pos.lon) == (last.lat, last.lon)


def test_a_moving_bus_without_any_heading_gets_no_estimate() -> None:
    q = GpsQuality()
    q.update_fix(fix_at(0, 0, 0, speed=None, track=None), 0.0)
    for t in range(1, 10):
        pos, _ = q.tick(float(t), 10.0)
    assert pos is None


def test_no_first_fix_within_the_timeout_is_reported_as_lost() -> None:
    q = GpsQuality(QualityLimits(first_fix_timeout_s=60.0))
    events = []
    for t in range(0, 100, 5):
        q.update_fix(fix_at(0, 0, t, mode=1), float(t))
        events += q.tick(float(t), 0.0)[1]
    assert [(e.kind, e.data["reason"]) for e in events] == [(GPS_LOST, "no_first_fix")]


def test_the_transition_table_covers_every_state_and_input() -> None:
    states = {s for s, _ in TRANSITIONS} | {n for n, _ in TRANSITIONS.values()}
    inputs = {i for _, i in TRANSITIONS}
    assert {(s, i) for s in states for i in inputs} == set(TRANSITIONS)


# One step of a random life: ("fix", good?, north, east, dt) or ("tick", dt, can speed or None).
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("fix"),
            st.booleans(),
            st.floats(-3_000, 3_000),
            st.floats(-3_000, 3_000),
            st.floats(0.05, 8.0),
        ),
        st.tuples(
            st.just("tick"),
            st.floats(0.05, 8.0),
            st.one_of(st.none(), st.floats(0.0, 30.0)),
        ),
    ),
    max_size=80,
)


@given(steps)
def test_lost_and_regained_alternate_and_only_lost_positions_are_estimated(
    life: list[tuple[object, ...]],
) -> None:
    q = GpsQuality()
    now = 0.0
    kinds: list[str] = []
    for step in life:
        if step[0] == "fix":
            _, good, north, east, dt = step
            assert isinstance(dt, float) and isinstance(north, float) and isinstance(east, float)
            now += dt
            q.update_fix(fix_at(north, east, now, mode=3 if good else 1), now)
        else:
            _, dt, speed = step
            assert isinstance(dt, float) and (speed is None or isinstance(speed, float))
            now += dt
            pos, events = q.tick(now, speed)
            kinds += [e.kind for e in events]
            assert q.state in ("searching", "ok", "lost")
            if pos is not None:
                assert pos.estimated == (q.state == "lost")
            if q.state == "ok":
                assert pos is not None
    assert kinds == [GPS_LOST, GPS_REGAINED] * (len(kinds) // 2) + [GPS_LOST] * (len(kinds) % 2)
