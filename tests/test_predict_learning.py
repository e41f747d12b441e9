"""Central learns the prediction model from the stop events it holds, alike on SQLite and
PostgreSQL: segment times by the bucket the bus left in, dwells by the bucket it arrived in,
medians that one outlier does not move, events without JSON, trip or index left out."""

from __future__ import annotations

import datetime as dt
import json

from central.predictions.learn import learn, model_for_stops
from central.store.pg_store import open_store
from protocols.predict import ALL_DAY, LiveState, ModelTables, ScheduledStop, predict

TZ = "Europe/Berlin"
MONDAY = dt.datetime(2024, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()


def row(bus: str, seq: int, t: float, kind: str, data: object) -> tuple[object, ...]:
    text = data if isinstance(data, str) else json.dumps(data)
    return (bus, seq, t, kind, 0, text, 0, t + 1.0)


def run(
    bus: str, seq: int, start: float, legs: list[float], dwell: float
) -> list[tuple[object, ...]]:
    """One run of trip T over stops a, b, c: departs a at start, each leg then a dwell."""
    out = [row(bus, seq, start, "departed", {"trip": "T", "index": 0, "stop": "a"})]
    t = start
    for k, (stop, leg) in enumerate(zip("bc", legs, strict=True), start=1):
        t += leg
        out.append(row(bus, seq + len(out), t, "arrived", {"trip": "T", "index": k, "stop": stop}))
        if k < 2:
            t += dwell
            data = {"trip": "T", "index": k, "stop": stop, "delay_s": 3}
            out.append(row(bus, seq + len(out), t, "departed", data))
    return out


def test_the_model_is_learned_from_stop_events_by_time_of_day(central_db: str) -> None:
    store = open_store(central_db)
    rows: list[tuple[object, ...]] = []
    for d in range(5):  # Monday..Friday
        day = MONDAY + d * 86400
        rows += run("bus-1", 100 * d, day + 8 * 3600 + 60, [300.0, 100.0], 40.0)  # rush
        rows += run("bus-2", 100 * d, day + 12 * 3600 + 60, [120.0, 100.0], 10.0)  # noon
    rows += run("bus-3", 1, MONDAY + 8 * 3600 + 300, [3000.0, 100.0], 40.0)  # one outlier
    rows.append(row("bus-4", 1, MONDAY + 8 * 3600, "arrived", "{no json"))
    rows.append(row("bus-4", 2, MONDAY + 8 * 3600, "arrived", {"trip": "T", "stop": "b"}))
    rows.append(row("bus-4", 3, MONDAY + 8 * 3600, "arrived", {"index": 1, "stop": "b"}))
    half = {"trip": "T", "index": 1.5, "stop": "b"}
    rows.append(row("bus-4", 4, MONDAY + 8 * 3600, "passed", half))
    assert store.add_events(rows) == len(rows)
    now = MONDAY + 6 * 86400
    model = learn(store, now, tz=TZ, days=7)
    store.close()

    segs = {(s.from_stop, s.to_stop, s.day, s.bucket): (s.median_s, s.n) for s in model.segments}
    assert segs[("a", "b", 0, 16)] == (
        300.0,
        6,
    )  # 08:01 local: bucket 16; the median shrugs off the outlier
    assert segs[("a", "b", 0, 24)] == (120.0, 5)  # noon
    assert segs[("a", "b", 0, ALL_DAY)][1] == 11
    assert segs[("b", "c", 0, 16)] == (100.0, 5)  # the outlier left b in the next bucket
    assert segs[("b", "c", 0, 17)] == (100.0, 1)
    dwells = {(d.stop, d.day, d.bucket): (d.median_s, d.n) for d in model.dwells}
    assert dwells[("b", 0, 16)] == (40.0, 5)
    assert dwells[("b", 0, 24)] == (10.0, 5)
    assert ("a", 0, 16) not in dwells  # the first stop: no arrival recorded
    assert model.tz == TZ and model.built == now
    assert learn(open_store(central_db), MONDAY - 86400, tz=TZ, days=7).segments == []

    # The learned model predicts the rush a timetable of 120 s per leg does not know.
    tables = ModelTables(model)
    tuesday_8 = MONDAY + 7 * 86400 + 8 * 3600 + 60
    stops = [
        ScheduledStop(s, i, tuesday_8 + 120 * i, tuesday_8 + 120 * i) for i, s in enumerate("abc")
    ]
    got = predict(stops, LiveState(tuesday_8, 1, since_t=tuesday_8, progress=0.0), tables)
    assert [round(p.arrival_t - tuesday_8) for p in got] == [300, 300 + 40 + 100]
    assert model_for_stops(model, ["a", "b"]).segments == [
        s for s in model.segments if (s.from_stop, s.to_stop) == ("a", "b")
    ]
