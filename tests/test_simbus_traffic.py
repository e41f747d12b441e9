"""The simulated bus (busfleet/simbus.py, the demo's) drives in the simulator's city traffic
(hw_sim/traffic.py): its halts are the traffic model's dwells for its trip, laid on the clock
so that the bus is on time where it starts, repeatable; without a traffic seed the drive keeps
its own random dwells."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from busfleet.simbus import DEFAULT_GTFS, SimBusSpec, make_drive, timetable_from
from hw_sim.traffic import TrafficModel, drive_inputs
from protocols.gtfs.feed import read_feed


def test_the_simulated_bus_drives_the_traffic_models_dwells(tmp_path: Path) -> None:
    feed = read_feed(DEFAULT_GTFS)
    trip = next(t for t in feed.trips if len(feed.stop_times(t)) >= 10)
    spec = SimBusSpec(
        bus_id="bus-3",
        trip_id=trip,
        mqtt_host="127.0.0.1",
        mqtt_port=1,
        data_dir=tmp_path,
        start_fraction=0.3,
    )
    tz = feed.timezone or "UTC"
    start = dt.datetime(2024, 3, 5, 17, 0, tzinfo=ZoneInfo(tz)).timestamp()  # a weekday rush
    path, placed = feed.trip_path(trip)
    start_m = path.length_m * 0.3
    timed = timetable_from(feed, trip, start, start_m)
    # On time where it starts: the scheduled time at its position is the start.
    k = next(i for i, s in enumerate(timed) if s.dist_m >= start_m)
    assert timed[k - 1].departure_t <= start <= timed[k].arrival_t
    calls = feed.stop_times(trip)
    assert [round(s.arrival_t - timed[0].arrival_t) for s in timed] == [
        c.arrival_s - calls[0].arrival_s for c in calls
    ]
    _, dwells = drive_inputs(
        TrafficModel(seed=spec.traffic_seed or 0, tz=tz),
        timed,
        trip_key=f"{trip}:bus-3",
        day=dt.date(2024, 3, 5),
    )
    drive = make_drive(feed, spec, start)
    again = make_drive(feed, spec, start)
    halts = {h.stop_index: h.hold_s for h in drive.halts if h.stop_index is not None}
    assert halts == {h.stop_index: h.hold_s for h in again.halts if h.stop_index is not None}
    ahead = [i for i, (_, d) in enumerate(placed) if d >= start_m - 1.0]
    last = ahead[-1]
    served = {i: dwells[i] for i in ahead if dwells[i] > 0 and i != last}
    assert served and {i: halts[i] for i in served} == served
    assert all(i in served or i == last for i in halts)  # the stops it does not serve
    # Without the traffic model the drive's own random dwells (8 to 25 s) again.
    plain = make_drive(feed, dataclasses.replace(spec, traffic_seed=None), start)
    own = [h.hold_s for h in plain.halts if h.stop_index is not None and h.stop_index != last]
    assert own and all(8.0 <= d <= 25.0 for d in own)
    assert own != [halts[i] for i in sorted(served)]
