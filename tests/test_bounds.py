"""protocols/bounds.py: what a bus built is fitted into its schema's bounds before it is sent,
so central never refuses a record the bus would then send again forever."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onboard.config import parse_config
from onboard.gps.quality import GpsQuality, QualityLimits
from onboard.link.mqtt import Link
from onboard.link.outbox import Outbox
from onboard.recorder import EventRecorder
from onboard.telemetry import Telemetry
from protocols import codec
from protocols.bounds import fit
from protocols.errors import CodecError
from protocols.schemas import (
    Event,
    JourneyStatus,
    Position,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
    Vehicle,
)

T = 1_800_000_000.0


def accepted_by_central(record: TelemetryRecord) -> bool:
    batch = TelemetryBatch(bus="bus-a", records=[record])
    try:
        codec.decode(TelemetryBatch, codec.encode(batch))
    except CodecError:
        return False
    return True


def test_a_speed_out_of_bounds_goes_and_the_position_stays() -> None:
    record = TelemetryRecord(seq=1, t=T, pos=Position(lat=-16.9, lon=145.7, speed=51_444.0))
    assert not accepted_by_central(record)  # what the bus would otherwise send forever
    fitted, dropped = fit(record)
    assert dropped == ["pos.speed"]
    assert fitted.pos == Position(lat=-16.9, lon=145.7)
    assert accepted_by_central(fitted)


def test_a_latitude_out_of_bounds_takes_the_position_and_the_vehicle_stays() -> None:
    record = TelemetryRecord(
        seq=1, t=T, pos=Position(lat=999.0, lon=145.7), veh=Vehicle(rpm=800.0, coolant_c=9e9)
    )
    fitted, dropped = fit(record)
    assert sorted(dropped) == ["pos", "veh.coolant_c"]
    assert fitted.pos is None and fitted.veh == Vehicle(rpm=800.0)


def test_one_bad_entry_of_an_event_data_goes_alone() -> None:
    event = Event(seq=1, t=T, kind="x", data={"ok": 1, "big": 1e300, "text": "a"})
    fitted, dropped = fit(event)
    assert dropped == ["data.big"] and fitted.data == {"ok": 1, "text": "a"}


def test_a_journey_delay_out_of_bounds_goes_and_the_reported_state_stays() -> None:
    state = ReportedState(
        bus="bus-a", version=3, t=T, journey=JourneyStatus(t=T, trip_id="t1", delay_s=2**40)
    )
    fitted, dropped = fit(state)
    assert dropped == ["journey.delay_s"]
    assert fitted.journey is not None and fitted.journey.delay_s is None
    assert fitted.version == 3


def test_a_required_top_level_value_out_of_bounds_cannot_be_fitted() -> None:
    with pytest.raises(CodecError, match="seq"):
        fit(TelemetryRecord(seq=2**63, t=T))
    with pytest.raises(CodecError):
        fit(Event(seq=-1, t=T, kind="x"))


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**70), 2**70).map(float),
)


@given(
    lat=numbers,
    lon=numbers,
    speed=numbers,
    track=numbers,
    hdop=numbers,
    rpm=numbers,
    coolant=numbers,
    fuel=numbers,
    odo=numbers,
)
def test_whatever_the_sensors_say_the_fitted_record_is_accepted_and_keeps_what_was_fine(
    lat: float,
    lon: float,
    speed: float,
    track: float,
    hdop: float,
    rpm: float,
    coolant: float,
    fuel: float,
    odo: float,
) -> None:
    record = TelemetryRecord(
        seq=7,
        t=T,
        pos=Position(lat=lat, lon=lon, speed=speed, track=track, hdop=hdop),
        veh=Vehicle(rpm=rpm, coolant_c=coolant, fuel_pct=fuel, odometer_m=odo),
    )
    fitted, dropped = fit(record)
    assert accepted_by_central(fitted)
    assert fitted.seq == 7 and fitted.t == T
    kept = msgspec.to_builtins(fitted)
    if "pos" not in dropped:
        assert fitted.pos is not None and math.isclose(fitted.pos.lat, lat)
        for name, value in (("speed", speed), ("track", track), ("hdop", hdop)):
            assert (f"pos.{name}" in dropped) == (name not in kept["pos"])
            if name in kept["pos"]:
                assert kept["pos"][name] == value


def test_the_agent_stores_what_central_accepts_and_counts_what_it_left_out(
    tmp_path: Path,
) -> None:
    # A receiver's garbage (99,999 knots, a clock before 1970) and a journey a day late by
    # decades: before, the outbox kept them as they were and central refused them forever.
    outbox = Outbox(tmp_path / "o.sqlite")
    events = EventRecorder(outbox, lambda: None)
    telemetry = Telemetry(
        outbox, events, GpsQuality(QualityLimits()), None, None, interval_s=1.0, wake=lambda: None
    )
    fast = TelemetryRecord(seq=0, t=T, pos=Position(lat=-16.9, lon=145.7, speed=51_444.0))
    early = TelemetryRecord(seq=0, t=-3e9, veh=Vehicle(rpm=900.0))
    telemetry.store(fast)
    telemetry.store(early)
    events.record("departed", {"delay_s": 1e300, "stop": "s1"}, severity=1)
    pending = outbox.pending(10)
    assert len(pending) == 3
    records = [codec.decode(TelemetryRecord, p.body) for p in pending if p.kind == "telemetry"]
    (event,) = [codec.decode(Event, p.body) for p in pending if p.kind == "event"]
    assert [r.pos.speed for r in records if r.pos] == [None]
    times = [r.t for r in records if r.veh]
    assert len(times) == 1 and times[0] > 1_700_000_000  # the agent's clock stood in
    assert event.data == {"stop": "s1"}
    assert events.bounds.dropped == 2 and events.bounds.unfit == 1


def test_records_an_older_agent_stored_out_of_bounds_are_fitted_once_or_set_aside(
    tmp_path: Path,
) -> None:
    # Before the bounds, the outbox kept whatever the agent built. After the upgrade such a
    # row would be refused by central at every resend (JSON) or end the link's session
    # (compact: the link decodes it): fitted and rewritten, or marked stored and counted.
    outbox = Outbox(tmp_path / "o.sqlite")
    old = b'{"seq":1,"t":1800000000.0,"pos":{"lat":-16.9,"lon":145.7,"speed":5000.0}}'
    outbox.put("telemetry", lambda seq: old)
    outbox.put("telemetry", lambda seq: b'{"seq":2,"t":-1e300}')  # nothing to keep
    good = codec.encode(TelemetryRecord(seq=3, t=T))
    outbox.put("telemetry", lambda seq: good)
    config = parse_config('[bus]\nid = "bus-a"\n[mqtt]\ninsecure_dev_broker = true\n')
    link = Link(config, outbox, lambda _p: None, lambda _p: None)
    sendable = link._sendable(outbox.pending(10))
    assert [r.seq for r in sendable] == [1, 3]
    fitted = codec.decode(TelemetryRecord, sendable[0].body)
    assert fitted.pos == Position(lat=-16.9, lon=145.7)
    assert [p.body for p in outbox.pending(10)] == [sendable[0].body, good]  # rewritten once
    assert link.unsendable == 1 and outbox.count() == 2
