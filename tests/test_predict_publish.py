"""Central sends each bus with a route the part of its prediction model about that route's
stops for the coming hours, in the desired document; a bus without a route gets none, and
nothing goes out before anything is learned or again before the refresh is due."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from central.desired import update_desired
from central.gtfs_import import import_gtfs
from central.predictions.keeper import ModelKeeper
from central.predictions.publish import ModelSync
from central.service.sync import DesiredSync
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols import codec
from protocols.predict import ALL_DAY, bucket_of
from protocols.schemas import Assignment, DesiredState

CAIRNS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
TZ = "Australia/Brisbane"


def test_buses_get_their_routes_part_of_the_model_for_the_coming_hours(tmp_path: Path) -> None:
    store = CentralStore(tmp_path / "central.sqlite")
    import_gtfs(store, CAIRNS)
    route = "110-423"
    trip = next(
        t for (t,) in store.db.execute("SELECT trip_id FROM gtfs_trips WHERE route_id = ?", [route])
    )
    calls = gtfs_db.trip_calls(store, trip)
    monday = dt.datetime(2014, 6, 16, tzinfo=ZoneInfo(TZ)).timestamp()
    now = monday + 3 * 86400 + 7 * 3600  # Thursday 07:00
    rows: list[tuple[object, ...]] = []
    for d in range(3):  # Monday to Wednesday, every half hour from 05:00 to 21:00
        for h in range(32):
            t = monday + d * 86400 + 5 * 3600 + h * 1800
            for k, (stop, _) in enumerate(calls):
                data = json.dumps({"trip": trip, "index": k, "stop": stop})
                rows.append(("bus-h", len(rows), t + 60 * k, "arrived", 0, data, 0, t))
                rows.append(("bus-h", len(rows), t + 60 * k + 20, "departed", 0, data, 0, t))
    store.add_events(rows)
    keeper = ModelKeeper(store)
    sync = ModelSync(store, keeper, horizon_s=2 * 3600)
    assert sync.step(now) == {}  # the first learn has begun, off the loop: nothing known yet
    assert keeper.wait(60) and keeper.model is not None
    on_route = Assignment(route_id=route)
    update_desired(store, "bus-1", lambda d: msgspec.structs.replace(d, assignment=on_route))
    update_desired(store, "bus-2", lambda d: d)  # no assignment
    assert set(sync.step(now + 60)) == {"bus-1"}  # the model learned, to the bus with a route
    assert sync.step(now + 120) == {}  # the same model again: nothing new
    sync.step(now + 3600)  # the refresh is due: learning again
    assert keeper.wait(60)
    published = sync.step(now + 3601)
    assert set(published) == {"bus-1"}
    doc = codec.decode(DesiredState, published["bus-1"][1])
    model = doc.predictions
    assert model is not None and model.tz == TZ and model.segments and model.dwells
    stops = gtfs_db.route_stops(store, route)
    assert all(s.from_stop in stops and s.to_stop in stops for s in model.segments)
    assert model.built == now + 3600 == keeper.model.built
    coming = {bucket_of(now + 3601 + m * 60, TZ, 1800)[1] // 1 for m in range(0, 121, 10)}
    buckets = {s.bucket for s in model.segments} - {ALL_DAY}
    assert coming <= buckets and max(buckets) <= max(coming) + 1 and min(buckets) >= min(coming) - 1
    assert any(s.bucket == ALL_DAY for s in model.segments)
    # The service's sync runs it: a fresh one sends the model to bus-1 again (newer build).
    desired = DesiredSync(store)
    desired.step(now + 7200)
    assert desired.keeper.wait(60)
    assert set(desired.step(now + 7201)) == {"bus-1"}
    store.close()
