"""The schedule engine and the geo-fences: dayparts, weekdays, dates, caps, priority, share of
the hour, targets, and fences that do not flap on GPS jitter."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec
from protocols.ads.fence import FenceTracker, signed_distance_m
from protocols.ads.playlist import Circle, Item, Playlist, Polygon, Schedule, Target, Window
from protocols.ads.schedule import Context, PlayHistory, hour_start, next_item
from protocols.errors import CodecError
from protocols.geo import offset_m
from protocols.schemas import DesiredState

TZ = "Australia/Brisbane"  # no DST: local days are always 24 hours
BUS = Context(bus="bus-1", route="R1")
CAIRNS = (-16.9203, 145.7710)


def item(item_id: str, seconds: float = 10.0) -> Item:
    media = format(abs(hash(item_id)) % (1 << 64), "064x")
    return Item(id=item_id, media=media, kind="image", mime="image/png", size=100,
                duration_s=seconds)  # fmt: skip


def playlist(schedules: Sequence[Schedule], items: Sequence[Item] = (), tz: str = TZ) -> Playlist:
    named = {i.id: i for i in items}
    for s in schedules:
        for i in s.items:
            named.setdefault(i, item(i))
    return Playlist(id="p", timezone=tz, items=list(named.values()), schedules=list(schedules))


def at(day: dt.date, minute: float, tz: str = TZ) -> float:
    midnight = dt.datetime.combine(day, dt.time(), ZoneInfo(tz))
    return midnight.timestamp() + minute * 60


def chosen(pl: Playlist, t: float, ctx: Context = BUS, history: PlayHistory | None = None) -> str:
    choice = next_item(pl, t, ctx, history or PlayHistory())
    return "" if choice is None else choice.item.id


def simulate(pl: Playlist, start: float, seconds: float, ctx: Context = BUS) -> list[tuple]:
    """Play back to back like the player does: (start, item id, schedule id, duration)."""
    history = PlayHistory()
    plays = []
    t = start
    while t < start + seconds:
        choice = next_item(pl, t, ctx, history)
        if choice is None:
            t += 5.0
            continue
        d = choice.item.duration_s
        history.record(choice.schedule.id, choice.item.id, hour_start(pl.local(t)), t, d)
        plays.append((t, choice.item.id, choice.schedule.id, d))
        t += d
    return plays


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


days = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2027, 12, 31))


@given(
    start=st.integers(0, 1439),
    end=st.integers(0, 1440),
    minute=st.integers(0, 1439),
    second=st.integers(0, 59),
    day=days,
)
def test_a_schedule_plays_only_inside_its_time_of_day_window(
    start: int, end: int, minute: int, second: int, day: dt.date
) -> None:
    pl = playlist([Schedule(id="s", items=["a"], windows=[Window(start=hhmm(start),
                                                                 end=hhmm(end))])])  # fmt: skip
    # The window's minutes, walked from its start: an oracle independent of Window.contains.
    length = (end - start) % 1440 or 1440
    covered = {(start + k) % 1440 for k in range(length)}
    assert (chosen(pl, at(day, minute + second / 60)) == "a") == (minute in covered)


@given(weekdays=st.sets(st.integers(1, 7), min_size=1), day=days)
def test_a_schedule_plays_only_on_its_weekdays(weekdays: set[int], day: dt.date) -> None:
    pl = playlist([Schedule(id="s", items=["a"], weekdays=sorted(weekdays))])
    name = day.strftime("%A")
    iso = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    assert (chosen(pl, at(day, 720)) == "a") == (iso.index(name) + 1 in weekdays)


@given(first=days, length=st.integers(0, 60), day=days)
def test_a_campaign_runs_from_its_first_day_and_ends_on_its_date(
    first: dt.date, length: int, day: dt.date
) -> None:
    last = first + dt.timedelta(days=length)
    pl = playlist([Schedule(id="s", items=["a"], start=first, end=last)])
    inside = first <= day <= last
    assert (chosen(pl, at(day, 0.01)) == "a") == inside
    assert (chosen(pl, at(day, 1439.9)) == "a") == inside


def test_the_last_day_plays_until_local_midnight_and_not_after() -> None:
    last = dt.date(2025, 3, 31)
    pl = playlist([Schedule(id="s", items=["a"], end=last)])
    assert chosen(pl, at(last, 1439.99)) == "a"
    assert chosen(pl, at(last + dt.timedelta(days=1), 0.0)) == ""


def test_hours_and_days_are_those_of_the_playlists_timezone() -> None:
    pl = playlist([Schedule(id="s", items=["a"], windows=[Window(start="08:00", end="09:00")])])
    local_8am = dt.datetime(2025, 6, 2, 8, 30, tzinfo=ZoneInfo(TZ))
    utc_8am = dt.datetime(2025, 6, 2, 8, 30, tzinfo=dt.UTC)
    assert chosen(pl, local_8am.timestamp()) == "a"
    assert chosen(pl, utc_8am.timestamp()) == ""


@given(cap=st.integers(0, 20), seconds=st.sampled_from([5.0, 10.0, 15.0, 30.0]))
@settings(max_examples=60)
def test_a_capped_schedule_never_plays_more_than_its_cap_in_a_clock_hour(
    cap: int, seconds: float
) -> None:
    pl = playlist(
        [
            Schedule(id="capped", items=["ad"], priority=5, max_plays_per_hour=cap),
            Schedule(id="filler", items=["fill"]),
        ],
        items=[item("ad", seconds), item("fill", 20.0)],
    )
    start = at(dt.date(2025, 5, 5), 7 * 60 + 13)  # not on an hour: the first hour is partial
    plays = simulate(pl, start, 3 * 3600)
    per_hour = Counter(hour_start(pl.local(t)) for t, _i, s, _d in plays if s == "capped")
    assert all(n <= cap for n in per_hour.values())
    # It has the higher priority, so it uses its cap in full in every whole hour.
    whole = [h for h in {hour_start(pl.local(t)) for t, *_ in plays} if h >= start]
    whole = [h for h in whole if h + 3600 <= start + 3 * 3600]
    assert whole and all(per_hour[h] == cap for h in whole)


def test_only_the_highest_priority_plays_while_it_is_active() -> None:
    pl = playlist(
        [
            Schedule(id="low", items=["l1", "l2"], priority=1),
            Schedule(id="high", items=["h"], priority=9,
                     windows=[Window(start="10:00", end="11:00")]),
        ]
    )  # fmt: skip
    plays = simulate(pl, at(dt.date(2025, 5, 5), 9 * 60 + 30), 2 * 3600)
    for t, item_id, _s, _d in plays:
        minute = pl.local(t).hour * 60 + pl.local(t).minute
        assert (item_id == "h") == (600 <= minute < 660), (minute, item_id)


def test_items_of_equal_priority_take_turns() -> None:
    pl = playlist([Schedule(id="a", items=["a1", "a2"]), Schedule(id="b", items=["b1"])])
    plays = simulate(pl, at(dt.date(2025, 5, 5), 600), 600)
    order = [i for _t, i, _s, _d in plays]
    assert order[:6] == ["a1", "a2", "b1", "a1", "a2", "b1"]
    counts = Counter(order)
    assert max(counts.values()) - min(counts.values()) <= 1


@given(
    share=st.floats(0.02, 0.5),
    ad_s=st.sampled_from([6.0, 10.0, 15.0, 30.0]),
    fill_s=st.sampled_from([5.0, 8.0, 20.0, 45.0]),
    offset_min=st.integers(0, 59),
)
@settings(max_examples=40, deadline=None)
def test_an_interrupt_takes_its_share_of_every_hour_and_no_more(
    share: float, ad_s: float, fill_s: float, offset_min: int
) -> None:
    pl = playlist(
        [
            Schedule(id="interrupt", items=["ad"], share_of_hour=share),
            Schedule(id="filler", items=["fill"], priority=9),
        ],
        items=[item("ad", ad_s), item("fill", fill_s)],
    )
    start = at(dt.date(2025, 5, 5), 6 * 60 + offset_min)
    plays = simulate(pl, start, 4 * 3600)
    seconds: Counter[float] = Counter()
    for t, _i, s, d in plays:
        if s == "interrupt":
            seconds[hour_start(pl.local(t))] += d
    quota = share * 3600
    for hour in {hour_start(pl.local(t)) for t, *_ in plays}:
        assert seconds[hour] < quota + ad_s  # never beyond its share (by less than one play)
        if hour >= start and hour + 3600 <= start + 4 * 3600:  # a whole hour
            # It keeps pace through the hour; what it may lack at the end is one filler play
            # (it waits for the screen) and the part of one ad that did not fit.
            assert seconds[hour] > quota - fill_s - ad_s


def test_targets_select_by_route_and_by_bus() -> None:
    pl = playlist(
        [
            Schedule(id="r2", items=["r2"], priority=2, target=Target(routes=["R2"])),
            Schedule(id="b7", items=["b7"], priority=1, target=Target(buses=["bus-7"])),
            Schedule(id="all", items=["all"]),
        ]
    )
    t = at(dt.date(2025, 5, 5), 600)
    assert chosen(pl, t, Context(bus="bus-1", route="R2")) == "r2"
    assert chosen(pl, t, Context(bus="bus-7", route="R1")) == "b7"
    assert chosen(pl, t, Context(bus="bus-7", route=None)) == "b7"
    assert chosen(pl, t, Context(bus="bus-1", route="R1")) == "all"


def test_a_geo_fenced_schedule_plays_only_while_the_bus_is_inside() -> None:
    fence = Circle(id="esplanade", lat=CAIRNS[0], lon=CAIRNS[1], radius_m=300)
    pl = playlist([
        Schedule(id="geo", items=["geo"], priority=5, target=Target(fences=[fence])),
        Schedule(id="all", items=["all"]),
    ])  # fmt: skip
    t = at(dt.date(2025, 5, 5), 600)
    assert chosen(pl, t, Context(bus="b", inside=frozenset({"esplanade"}))) == "geo"
    assert chosen(pl, t, Context(bus="b")) == "all"


def test_media_not_on_the_bus_is_never_chosen() -> None:
    pl = playlist([Schedule(id="s", items=["a", "b"])])
    b = pl.item("b")
    choice = next_item(pl, at(dt.date(2025, 5, 5), 600), BUS, PlayHistory(), have={b.media})
    assert choice is not None and choice.item.id == "b"
    assert next_item(pl, at(dt.date(2025, 5, 5), 600), BUS, PlayHistory(), have=set()) is None


def test_the_media_needed_are_those_of_campaigns_running_in_the_coming_days() -> None:
    today = dt.date(2025, 5, 5)
    pl = playlist([
        Schedule(id="now", items=["now"], end=today),
        Schedule(id="soon", items=["soon"], start=today + dt.timedelta(days=1)),
        Schedule(id="later", items=["later"], start=today + dt.timedelta(days=5)),
        Schedule(id="over", items=["over"], end=today - dt.timedelta(days=1)),
    ])  # fmt: skip
    needed = {i.id for i in pl.needed_media(today, 2).values()}
    assert needed == {"now", "soon"}


def test_media_of_campaigns_for_other_buses_are_not_needed() -> None:
    pl = playlist([
        Schedule(id="mine", items=["mine"], target=Target(buses=["bus-1"])),
        Schedule(id="theirs", items=["theirs"], target=Target(buses=["bus-2"])),
        Schedule(id="route", items=["route"], target=Target(routes=["R9"])),
    ])  # fmt: skip
    needed = {i.id for i in pl.needed_media(dt.date(2025, 5, 5), 1, "bus-1").values()}
    assert needed == {"mine", "route"}  # the bus may be sent on R9 at any time


def test_an_inconsistent_playlist_is_refused_with_the_whole_desired_state() -> None:
    pl = playlist([Schedule(id="s", items=["a"])])
    good = codec.encode(DesiredState(bus="bus-1", version=3, playlist="p", ads=pl))
    assert codec.decode(DesiredState, good).ads == pl
    with pytest.raises(CodecError, match="unknown item"):
        codec.decode(DesiredState, good.replace(b'"items":["a"]', b'"items":["zz"]'))
    with pytest.raises(CodecError, match="timezone"):
        codec.decode(DesiredState, good.replace(TZ.encode(), b"Mars/Olympus"))


# -- geo-fences ---------------------------------------------------------------------------

ring = st.floats(0.0, 2 * math.pi)


def square(centre: tuple[float, float], half_m: float) -> Polygon:
    corners = [offset_m(*centre, n * half_m, e * half_m) for n, e in
               ((1, 1), (1, -1), (-1, -1), (-1, 1))]  # fmt: skip
    return Polygon(id="sq", points=corners)


@given(
    distance=st.one_of(st.floats(-60.0, 60.0), st.floats(-400.0, 400.0)),
    bearing=ring,
    fixes=st.lists(st.tuples(st.floats(0.0, 1.0), ring, st.floats(1.0, 40.0)), max_size=60),
    shape=st.sampled_from(["circle", "polygon"]),
)
@settings(max_examples=300)
def test_a_bus_standing_still_changes_a_fence_at_most_once_whatever_the_jitter(
    distance: float,
    bearing: float,
    fixes: list[tuple[float, float, float]],
    shape: str,
) -> None:
    fence = (
        Circle(id="sq", lat=CAIRNS[0], lon=CAIRNS[1], radius_m=200, hysteresis_m=30)
        if shape == "circle"
        else square(CAIRNS, 200)
    )
    # The bus stands `distance` m from the edge (along a ray from the centre), the receiver
    # reports fixes scattered within the accuracy it states.
    r = 200 + distance
    true = offset_m(*CAIRNS, r * math.cos(bearing), r * math.sin(bearing))
    tracker = FenceTracker([fence])
    states = [False]
    for frac, angle, accuracy in fixes:
        e = frac * accuracy * 0.99
        lat, lon = offset_m(*true, e * math.cos(angle), e * math.sin(angle))
        tracker.update(lat, lon, accuracy)
        states.append("sq" in tracker.inside)
    flips = sum(a != b for a, b in itertools.pairwise(states))
    assert flips <= 1
    d_true = signed_distance_m(fence, *true)
    if states[-1]:
        assert d_true <= 0.5  # it only enters when truly inside


def test_a_bus_driving_through_a_fence_enters_once_and_leaves_once() -> None:
    fence = Circle(id="cbd", lat=CAIRNS[0], lon=CAIRNS[1], radius_m=250, hysteresis_m=40)
    tracker = FenceTracker([fence])
    events = []
    for step in range(-100, 101):  # 1 km south to 1 km north in 10 m steps, with 8 m wobble
        wobble = 8.0 * math.sin(step * 1.7)
        lat, lon = offset_m(*CAIRNS, step * 10.0 + wobble, wobble)
        events += [(c.inside, step) for c in tracker.update(lat, lon, 10.0)]
    assert [inside for inside, _ in events] == [True, False]
    entered, left = events[0][1], events[1][1]
    assert entered * 10 >= -250 and left * 10 > 250 + 40


def test_inaccurate_fixes_do_not_move_a_fence() -> None:
    fence = Circle(id="f", lat=CAIRNS[0], lon=CAIRNS[1], radius_m=100)
    tracker = FenceTracker([fence], max_accuracy_m=30)
    assert tracker.update(*CAIRNS, 80.0) == [] and not tracker.inside
    assert tracker.ignored == 1
    assert [c.inside for c in tracker.update(*CAIRNS, 5.0)] == [True]
    far = offset_m(*CAIRNS, 2000, 0)
    assert tracker.update(*far, 31.0) == [] and tracker.inside == {"f"}


def test_a_polygon_knows_inside_from_outside() -> None:
    fence = square(CAIRNS, 100)
    assert signed_distance_m(fence, *CAIRNS) == pytest.approx(-100, abs=0.5)
    assert signed_distance_m(fence, *offset_m(*CAIRNS, 150, 0)) == pytest.approx(50, abs=0.5)
    assert signed_distance_m(fence, *offset_m(*CAIRNS, 0, -130)) == pytest.approx(30, abs=0.5)
