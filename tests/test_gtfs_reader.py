"""Reading GTFS: the real Cairns feed, a feed without shapes, and feeds with mistakes."""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from pathlib import Path

import pytest

from protocols.errors import GtfsError
from protocols.geo import haversine_m
from protocols.gtfs.feed import Feed, demo_trips, parse_feed, parse_time, read_feed

CAIRNS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"


def _rows(name: str) -> list[dict[str, str]]:
    """The rows of one file of the Cairns zip, read independently of the code under test."""
    with zipfile.ZipFile(CAIRNS) as zf:
        return list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8-sig"))))


@pytest.fixture(scope="module")
def cairns() -> Feed:
    return read_feed(CAIRNS)


def test_the_cairns_feed_has_every_route_stop_and_trip(cairns: Feed) -> None:
    assert len(cairns.routes) == len(_rows("routes.txt")) == 22
    assert len(cairns.stops) == len(_rows("stops.txt")) == 416
    assert len(cairns.trips) == len(_rows("trips.txt")) == 1339
    assert cairns.timezone == "Australia/Brisbane"


def test_a_cairns_route_keeps_its_names_and_type(cairns: Feed) -> None:
    route = cairns.routes["110-423"]
    assert (route.short_name, route.long_name, route.type) == ("110", "City - Palm Cove", 3)


def test_stop_times_come_in_sequence_order_with_times_in_seconds(cairns: Feed) -> None:
    trip_id = "CNS2014-CNS_MUL-Weekday-00-4165878"
    raw = [r for r in _rows("stop_times.txt") if r["trip_id"] == trip_id]
    calls = cairns.stop_times(trip_id)
    assert len(calls) == len(raw)
    assert [c.sequence for c in calls] == sorted(int(r["stop_sequence"]) for r in raw)
    assert calls[0].departure_s == 5 * 3600 + 50 * 60  # 05:50:00 in the file
    assert all(a.departure_s <= b.arrival_s for a, b in itertools.pairwise(calls))


def test_a_shape_is_returned_in_point_sequence_order(cairns: Feed) -> None:
    raw = [r for r in _rows("shapes.txt") if r["shape_id"] == "1100015"]
    raw.sort(key=lambda r: int(r["shape_pt_sequence"]))
    want = [(float(r["shape_pt_lat"]), float(r["shape_pt_lon"])) for r in raw]
    assert cairns.shape("1100015") == want


def test_the_stops_of_a_cairns_trip_lie_in_order_along_its_shape(cairns: Feed) -> None:
    trip_id = demo_trips(cairns, 1)[0]
    assert cairns.trips[trip_id].shape_id is not None
    line, stops = cairns.trip_path(trip_id)
    assert len(line) == len(cairns.shape(cairns.trips[trip_id].shape_id or ""))
    dists = [d for _, d in stops]
    assert all(b > a for a, b in itertools.pairwise(dists))
    assert dists[-1] - dists[0] > 0.8 * line.length_m  # the trip uses most of the shape
    for (stop, d), off in zip(stops, cairns.stop_offsets(trip_id), strict=True):
        lat, lon, _ = line.point_at(d)
        assert haversine_m(stop.lat, stop.lon, lat, lon) == pytest.approx(off, abs=0.5)
        assert off < 60.0  # a bus stop is at the kerb of the road the bus drives
    assert [s.stop_id for s, _ in stops] == [c.stop_id for c in cairns.stop_times(trip_id)]


def test_every_cairns_trip_has_monotonic_stop_distances(cairns: Feed) -> None:
    for trip_id in cairns.trips:
        _, stops = cairns.trip_path(trip_id)
        dists = [d for _, d in stops]
        assert dists == sorted(dists), trip_id


def test_demo_trips_are_distinct_and_cover_distinct_routes(cairns: Feed) -> None:
    trips = demo_trips(cairns, 10)
    assert len(trips) == len(set(trips)) == 10
    routes = [cairns.trips[t].route_id for t in trips]
    assert len(set(routes)) == 10
    directions = {cairns.trips[t].direction_id for t in trips}
    assert directions == {0, 1}
    for t in trips:
        line, stops = cairns.trip_path(t)
        assert line.length_m >= 2000.0 and len(stops) >= 3
        assert max(cairns.stop_offsets(t)) <= 80.0


def test_more_demo_trips_than_routes_are_still_distinct(cairns: Feed) -> None:
    trips = demo_trips(cairns, 40)
    assert len(trips) == len(set(trips)) == 40
    assert demo_trips(cairns, 40) == trips  # deterministic


# -- a small hand-made feed -----------------------------------------------------------------

STOPS = [("A", -16.90, 145.70), ("B", -16.91, 145.71), ("C", -16.92, 145.72), ("D", -16.93, 145.73)]


def _write_feed(folder: Path, **override: str) -> Path:
    files = {
        "agency.txt": "agency_name,agency_url,agency_timezone\nBus,http://x,Australia/Brisbane\n",
        "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,Loop,3\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
        + "".join(f"{s},Stop {s},{la},{lo}\n" for s, la, lo in STOPS),
        "trips.txt": "route_id,service_id,trip_id,trip_headsign,direction_id\nR1,WK,T1,Town,0\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        "T1,07:00:00,07:00:00,A,1\n"
        "T1,,,B,2\n"
        "T1,,,C,3\n"
        "T1,07:30:00,07:31:00,D,4\n",
    }
    files.update(override)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_feed_without_shapes_drives_stop_to_stop(tmp_path: Path) -> None:
    feed = read_feed(_write_feed(tmp_path / "feed"))
    line, stops = feed.trip_path("T1")
    assert [s.stop_id for s, _ in stops] == ["A", "B", "C", "D"]
    assert line.points == tuple((la, lo) for _, la, lo in STOPS)
    expected = [0.0]
    for (_, la1, lo1), (_, la2, lo2) in itertools.pairwise(STOPS):
        expected.append(expected[-1] + haversine_m(la1, lo1, la2, lo2))
    assert [d for _, d in stops] == pytest.approx(expected)
    assert feed.trips["T1"].shape_id is None


def test_untimed_intermediate_stops_get_times_in_between(tmp_path: Path) -> None:
    feed = read_feed(_write_feed(tmp_path / "feed"))
    times = [c.arrival_s for c in feed.stop_times("T1")]
    assert times[0] == 7 * 3600 and times[-1] == 7 * 3600 + 30 * 60
    assert times[0] < times[1] < times[2] < times[3]
    assert feed.stop_times("T1")[-1].departure_s == 7 * 3600 + 31 * 60


def test_a_zipped_feed_reads_like_its_folder(tmp_path: Path) -> None:
    folder = _write_feed(tmp_path / "feed")
    archive = tmp_path / "feed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"nested/{f.name}")  # some publishers put a folder inside the zip
    a, b = read_feed(folder), read_feed(archive)
    assert a.stops == b.stops and a.trips == b.trips and a.routes == b.routes
    assert a.stop_times("T1") == b.stop_times("T1")


def test_a_shape_with_shuffled_points_is_sorted_by_sequence(tmp_path: Path) -> None:
    shapes = "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + "".join(
        f"S1,{la},{lo},{seq}\n" for seq, (_, la, lo) in reversed(list(enumerate(STOPS)))
    )
    trips = "route_id,service_id,trip_id,shape_id\nR1,WK,T1,S1\n"
    feed = read_feed(_write_feed(tmp_path / "f", **{"shapes.txt": shapes, "trips.txt": trips}))
    assert feed.shape("S1") == [(la, lo) for _, la, lo in STOPS]
    line, stops = feed.trip_path("T1")
    assert [d for _, d in stops] == pytest.approx([line.cum_m[i] for i in range(4)], abs=0.5)


@pytest.mark.parametrize(
    ("file", "text", "line", "field"),
    [
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,x,-16.9,145.7\nB,y,north,145.7\n",
         3, "stop_lat"),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,x,-96.9,145.7\n", 2, "stop_lat"),
        ("stops.txt", "stop_id,stop_name,stop_lon\nA,x,145.7\n", 1, "stop_lat"),
        ("trips.txt", "route_id,service_id,trip_id\nR9,WK,T1\n", 2, "route_id"),
        ("trips.txt", "route_id,service_id,trip_id,shape_id\nR1,WK,T1,S9\n", 2, "shape_id"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
         "T1,07:00:00,07:00:00,A,1\nT1,7:6:00,07:06:00,B,2\n", 3, "arrival_time"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
         "T1,07:00:00,07:00:00,A,1\nT1,07:10:00,07:10:00,Z,2\n", 3, "stop_id"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
         "T1,07:00:00,07:00:00,A,1\nT1,06:10:00,06:10:00,B,2\n", 3, "arrival_time"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
         "T1,07:00:00,07:00:00,A,1\nT1,07:10:00,07:10:00,B,1\n", 3, "stop_sequence"),
        ("routes.txt", "route_id,route_short_name,route_long_name,route_type\nR1,1,x,bus\n",
         2, "route_type"),
    ],
)  # fmt: skip
def test_an_invalid_feed_names_the_file_line_and_field(
    tmp_path: Path, file: str, text: str, line: int, field: str
) -> None:
    shapes = {"shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"}
    folder = _write_feed(tmp_path / "bad", **{file: text}, **shapes)
    with pytest.raises(GtfsError) as info:
        read_feed(folder)
    assert (info.value.file, info.value.line, info.value.field) == (file, line, field)
    assert file in str(info.value)


def test_a_feed_missing_a_required_file_says_which(tmp_path: Path) -> None:
    folder = _write_feed(tmp_path / "feed")
    (folder / "stop_times.txt").unlink()
    with pytest.raises(GtfsError) as info:
        read_feed(folder)
    assert info.value.file == "stop_times.txt"


def test_a_path_that_is_no_feed_raises_gtfs_error(tmp_path: Path) -> None:
    bogus = tmp_path / "feed.zip"
    bogus.write_bytes(b"not a zip at all")
    with pytest.raises(GtfsError):
        read_feed(bogus)
    with pytest.raises(GtfsError):
        read_feed(tmp_path / "missing.zip")


def test_parse_feed_accepts_a_byte_order_mark_and_blank_lines() -> None:
    files = {
        "routes.txt": "\ufeffroute_id,route_short_name,route_type\nR1,1,3\n\n",
        "stops.txt": "stop_id,stop_lat,stop_lon\nA,1.0,2.0\nB,1.001,2.0\n",
        "trips.txt": "route_id,service_id,trip_id\nR1,WK,T1\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        "T1,25:00:00,25:00:00,A,1\nT1,25:05:00,25:05:00,B,2\n",
    }
    feed = parse_feed(files)
    assert feed.routes["R1"].short_name == "1"
    assert feed.stop_times("T1")[1].arrival_s == 25 * 3600 + 5 * 60  # past midnight is fine


@pytest.mark.parametrize("text", ["", "7:00", "07:60:00", "07:00:0", "a:bb:cc", "-1:00:00"])
def test_malformed_times_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_single_digit_hours_are_gtfs_times() -> None:
    assert parse_time("7:05:09") == 7 * 3600 + 5 * 60 + 9
