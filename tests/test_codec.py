from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import (
    MAX_T,
    Assignment,
    DesiredState,
    FleetEntry,
    PassengerMessage,
    Position,
    Presence,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
    Vehicle,
)


# Within the bounds the schema sets on what a bus sends (protocols/schemas.py).
def opt(low: float, high: float) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.floats(low, high))


positions = st.builds(
    Position,
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    speed=opt(0, 1000),
    track=opt(0, 360),
    mode=st.integers(1, 3),
    hdop=opt(0, 1000),
    sats=st.one_of(st.none(), st.integers(0, 64)),
    estimated=st.booleans(),
)
vehicles = st.builds(
    Vehicle,
    speed_kmh=opt(0, 1000),
    rpm=opt(0, 20_000),
    doors_open=st.one_of(st.none(), st.booleans()),
    coolant_c=opt(-100, 400),
    fuel_pct=opt(0, 110),
    odometer_m=opt(0, 1e11),
)
records = st.builds(
    TelemetryRecord,
    seq=st.integers(1, 2**53 - 1),
    t=st.floats(0, MAX_T),
    pos=st.one_of(st.none(), positions),
    veh=st.one_of(st.none(), vehicles),
)
batches = st.builds(
    TelemetryBatch,
    bus=st.sampled_from(["bus-01", "B7", "x.y_z"]),
    records=st.lists(records, max_size=20),
    backfill=st.booleans(),
)


@given(batches)
def test_a_telemetry_batch_survives_encode_and_decode(batch: TelemetryBatch) -> None:
    assert codec.decode(TelemetryBatch, codec.encode(batch)) == batch


@given(st.binary(max_size=300))
def test_any_bytes_either_decode_or_raise_codec_error(data: bytes) -> None:
    for kind in (TelemetryBatch, Presence, DesiredState, ReportedState, FleetEntry):
        with contextlib.suppress(CodecError):
            codec.decode(kind, data)


def test_other_schemas_round_trip() -> None:
    desired = DesiredState(
        bus="bus-01",
        version=3,
        assignment=Assignment(trip_id="T1"),
        playlist="p",
        messages=[PassengerMessage(id="m1", text_de="Hallo", text_en="Hello")],
        config={"a": 1},
    )
    for msg in (
        desired,
        Presence(bus="bus-01", online=True, session=4, t=1.0),
        ReportedState(bus="bus-01", version=3, t=2.0, counters={"x": 1}),
        FleetEntry(bus="bus-01", online=False),
    ):
        assert codec.decode(type(msg), codec.encode(msg)) == msg


def test_unknown_fields_are_ignored_so_newer_peers_can_add_them() -> None:
    data = b'{"v":1,"bus":"b1","online":true,"session":1,"t":5,"future":"x"}'
    assert codec.decode(Presence, data).session == 1


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'{"v":2,"bus":"b1","online":true,"session":1,"t":5}', "unsupported schema version"),
        (b'{"v":1,"bus":"b/1","online":true,"session":1,"t":5}', "bus"),
        (b'{"v":1,"bus":"b1","online":"yes","session":1,"t":5}', "online"),
        (b"\xff\xfe", "Presence"),
    ],
)
def test_invalid_payloads_are_rejected_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        codec.decode(Presence, payload)


def test_a_position_off_the_globe_is_rejected() -> None:
    bad = msgspec.json.encode(
        {"bus": "b1", "records": [{"seq": 1, "t": 0, "pos": {"lat": 91, "lon": 0}}]}
    )
    with pytest.raises(CodecError):
        codec.decode(TelemetryBatch, bad)


def test_an_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(CodecError, match="exceeds"):
        codec.decode(TelemetryBatch, b" " * (codec.MAX_PAYLOAD + 1))


def test_nesting_too_deep_for_the_decoder_is_a_codec_error_for_every_schema() -> None:
    # msgspec skips an unknown field recursively: 100,000 brackets raised RecursionError,
    # which no caller catches (central's ingest and dispatch catch ProtocolError).
    from protocols import schemas
    from protocols.ads.playlist import decode_playlist
    from protocols.requests import DispatchRequest

    deep = b'{"v":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    kinds = [schemas.TelemetryBatch, schemas.EventBatch, schemas.ReportedState, DispatchRequest]
    for kind in kinds:
        with pytest.raises(CodecError, match="nested too deeply"):
            codec.decode(kind, deep)
    with pytest.raises(CodecError, match="nested too deeply"):
        codec.decode_json(deep)
    with pytest.raises(CodecError, match="nested too deeply"):
        decode_playlist(deep)
