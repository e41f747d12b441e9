"""The compact telemetry codec: round trips within its quanta, hostile bytes, wire size."""

from __future__ import annotations

import math
import random
import socket

import msgspec
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hw_sim.drive import Drive, DriveParams
from protocols import codec
from protocols.compact import (
    COMPACT_VERSION,
    MAX_RECORDS,
    decode_batch,
    encode_batch,
    mqtt_publish_size,
)
from protocols.errors import CodecError
from protocols.geo import Polyline, offset_m
from protocols.schemas import (
    MAX_SAFE_INT,
    MAX_T,
    Position,
    TelemetryBatch,
    TelemetryRecord,
    Vehicle,
)

# The promised resolution of each float field; a round trip is within half of it.
QUANTUM = {
    "t": 1e-3,
    "lat": 1e-7,
    "lon": 1e-7,
    "speed": 0.01,
    "track": 0.01,
    "hdop": 0.01,
    "speed_kmh": 1 / 256,
    "rpm": 0.125,
    "coolant_c": 1.0,
    "fuel_pct": 0.4,
    "odometer_m": 5.0,
}
EXACT = ("seq", "mode", "sats", "estimated", "doors_open")


def assert_close(got: float | None, want: float | None, quantum: float, what: str) -> None:
    if want is None:
        assert got is None, what
        return
    assert got is not None, what
    # Half a quantum, plus float rounding: relative for huge values, 1/1000 for the product.
    slack = quantum * (0.5 + 1e-3) + math.ulp(abs(want))
    assert abs(got - want) <= slack, f"{what}: {got} vs {want}"


def assert_same_batch(got: TelemetryBatch, want: TelemetryBatch) -> None:
    assert (got.v, got.bus, got.backfill) == (want.v, want.bus, want.backfill)
    assert len(got.records) == len(want.records)
    for i, (g, w) in enumerate(zip(got.records, want.records, strict=True)):
        assert g.seq == w.seq
        assert_close(g.t, w.t, QUANTUM["t"], f"record {i} t")
        for part in ("pos", "veh"):
            gp, wp = getattr(g, part), getattr(w, part)
            assert (gp is None) == (wp is None), f"record {i} {part}"
            if wp is None:
                continue
            for name in wp.__struct_fields__:
                what = f"record {i} {part}.{name}"
                if name in EXACT:
                    assert getattr(gp, name) == getattr(wp, name), what
                else:
                    assert_close(getattr(gp, name), getattr(wp, name), QUANTUM[name], what)


# -- strategies ---------------------------------------------------------------------------------

# Anything the schema takes (protocols/schemas.py bounds every number a bus sends); the codec
# carries more, and decode_batch refuses what is beyond (test below).
seqs = st.integers(0, MAX_SAFE_INT - 1)
times = st.floats(0.0, MAX_T)


def opt(low: float, high: float) -> st.SearchStrategy[float | None]:
    return st.none() | st.floats(low, high)


positions = st.builds(
    Position,
    lat=st.floats(-90, 90), lon=st.floats(-180, 180), speed=opt(0, 1000), track=opt(0, 360),
    mode=st.integers(0, 3), hdop=opt(0, 1000), sats=st.none() | st.integers(0, 1000),
    estimated=st.booleans(),
)  # fmt: skip
vehicles = st.builds(
    Vehicle,
    speed_kmh=opt(0, 1000), rpm=opt(0, 20_000), doors_open=st.none() | st.booleans(),
    coolant_c=opt(-100, 400), fuel_pct=opt(0, 110), odometer_m=opt(0, 1e11),
)  # fmt: skip


@st.composite
def batches(draw: st.DrawFn, max_size: int = 25) -> TelemetryBatch:
    """Records ~1 s apart with mostly consecutive seq, or anything at all."""
    n = draw(st.integers(0, max_size))
    seq = draw(seqs)
    t = draw(times)
    records = []
    for _ in range(n):
        if draw(st.booleans()):  # the usual case: the next second, with gaps now and then
            seq += draw(st.sampled_from([1, 1, 1, 2, 7]))
            t += draw(st.sampled_from([1.0, 1.0, 0.999, 1.5, 30.0]))
        else:
            seq, t = draw(seqs), draw(times)
        seq, t = min(seq, MAX_SAFE_INT - 1), min(t, MAX_T)
        pos = draw(st.none() | positions)
        veh = draw(st.none() | vehicles)
        records.append(TelemetryRecord(seq=seq, t=t, pos=pos, veh=veh))
    bus = draw(st.sampled_from(["bus-001", "B7", "x.y_z", "a" * 32]))
    return TelemetryBatch(bus=bus, records=records, backfill=draw(st.booleans()))


def ordinary_record(rng: random.Random, seq: int, t: float) -> TelemetryRecord:
    """Values in the ranges a bus really reports."""
    pos = Position(
        lat=rng.uniform(-90, 90),
        lon=rng.uniform(-180, 180),
        speed=rng.uniform(0, 40),
        track=rng.uniform(0, 360),
        hdop=rng.uniform(0.5, 20),
        sats=rng.randint(0, 30),
    )
    veh = Vehicle(
        speed_kmh=rng.uniform(0, 250),
        rpm=rng.uniform(0, 8000),
        coolant_c=rng.uniform(-40, 210),
        fuel_pct=rng.uniform(0, 100),
        odometer_m=rng.uniform(0, 2e10),
        doors_open=rng.random() < 0.5,
    )
    return TelemetryRecord(seq=seq, t=t, pos=pos, veh=veh)


# -- round trips --------------------------------------------------------------------------------


@given(batches())
def test_any_batch_survives_the_compact_codec_within_its_quanta(batch: TelemetryBatch) -> None:
    data = encode_batch(batch)
    assert data[0] == COMPACT_VERSION
    assert_same_batch(decode_batch(data), batch)


@given(st.integers(0, 2**32), st.integers(0, 40))
def test_a_decoded_batch_of_ordinary_values_encodes_to_the_same_bytes(seed: int, n: int) -> None:
    rng = random.Random(seed)
    batch = TelemetryBatch(
        bus="bus-001", records=[ordinary_record(rng, 1000 + i, 1.7e9 + i) for i in range(n)]
    )
    data = encode_batch(batch)
    assert encode_batch(decode_batch(data)) == data


def test_values_as_the_j1939_decoder_gives_them_come_back_bit_for_bit() -> None:
    # protocols.j1939 computes raw * scale + offset with the DBC's scales.
    rng = random.Random(3)
    records = [
        TelemetryRecord(
            seq=i,
            t=1_717_200_000 + i,
            veh=Vehicle(
                speed_kmh=rng.randrange(0xFB00) * 0.00390625,
                rpm=rng.randrange(0xFB00) * 0.125,
                coolant_c=rng.randrange(251) * 1 - 40.0,
                fuel_pct=rng.randrange(251) * 0.4,
                odometer_m=rng.randrange(0xFAFFFFFF) * 5.0,
            ),
        )
        for i in range(200)
    ]
    batch = TelemetryBatch(bus="bus-001", records=records)
    assert decode_batch(encode_batch(batch)) == batch


def test_an_empty_batch_and_a_batch_of_bare_records_round_trip() -> None:
    for records in ([], [TelemetryRecord(seq=5, t=1.0), TelemetryRecord(seq=4, t=0.0)]):
        batch = TelemetryBatch(bus="bus-001", records=records, backfill=True)
        assert decode_batch(encode_batch(batch)) == batch


def test_none_in_every_optional_field_survives_as_none() -> None:
    rec = TelemetryRecord(seq=1, t=1.0, pos=Position(lat=0.0, lon=0.0), veh=Vehicle())
    assert (
        decode_batch(encode_batch(TelemetryBatch(bus="b", records=[rec] * 3))).records == [rec] * 3
    )


def test_a_track_crossing_north_is_still_exact_to_its_quantum() -> None:
    tracks = [359.99, 0.0, 0.01, 359.5, 360.0, 359.999, 0.5, 10.0]
    records = [
        TelemetryRecord(seq=i, t=float(i), pos=Position(lat=1.0, lon=2.0, track=x))
        for i, x in enumerate(tracks)
    ]
    got = decode_batch(encode_batch(TelemetryBatch(bus="b", records=records)))
    for rec, want in zip(got.records, tracks, strict=True):
        assert rec.pos is not None and rec.pos.track is not None
        assert_close(rec.pos.track, want, QUANTUM["track"], "track")


def test_json_payloads_are_decoded_as_json() -> None:
    rng = random.Random(1)
    batch = TelemetryBatch(bus="bus-001", records=[ordinary_record(rng, 1, 2.0)])
    assert decode_batch(codec.encode(batch)) == batch
    assert decode_batch(b"  \n" + codec.encode(batch)) == batch


def test_a_compact_payload_is_never_mistaken_for_json() -> None:
    data = encode_batch(TelemetryBatch(bus="bus-001", records=[]))
    assert chr(data[0]) not in ' \t\r\n{["-0123456789tfn'
    with pytest.raises(CodecError):
        codec.decode(TelemetryBatch, data)


def test_a_batch_the_codec_cannot_carry_is_our_error_not_a_codec_error() -> None:
    rec = TelemetryRecord(seq=1, t=math.nan)
    for bad in (
        TelemetryBatch(bus="bus-001", records=[rec]),
        TelemetryBatch(bus="no spaces", records=[]),
        TelemetryBatch(bus="b", records=[TelemetryRecord(seq=1, t=1.0)] * (MAX_RECORDS + 1)),
        TelemetryBatch(v=3, bus="b", records=[]),
    ):
        with pytest.raises(ValueError) as err:
            encode_batch(bad)
        assert not isinstance(err.value, CodecError)


@pytest.mark.parametrize(
    "record",
    [
        TelemetryRecord(seq=2**63, t=1.0),
        TelemetryRecord(seq=-1, t=1.0),
        TelemetryRecord(seq=2**53, t=1.0),
        TelemetryRecord(seq=1, t=1e20),
        TelemetryRecord(seq=1, t=-1.0),
        TelemetryRecord(seq=1, t=1.0, pos=Position(lat=1, lon=2, speed=1e300)),
        TelemetryRecord(seq=1, t=1.0, pos=Position(lat=1, lon=2, track=-0.5)),
        TelemetryRecord(seq=1, t=1.0, pos=Position(lat=1, lon=2, mode=2**63)),
        TelemetryRecord(seq=1, t=1.0, pos=Position(lat=1, lon=2, sats=-1)),
        TelemetryRecord(seq=1, t=1.0, veh=Vehicle(rpm=1e12)),
        TelemetryRecord(seq=1, t=1.0, veh=Vehicle(odometer_m=-5.0)),
    ],
    ids=repr,
)
def test_a_compact_batch_beyond_the_schemas_bounds_is_a_codec_error(
    record: TelemetryRecord,
) -> None:
    # The codec carries it (any finite number); the schema does not take it, on either path.
    data = encode_batch(TelemetryBatch(bus="bus-001", records=[record]))
    with pytest.raises(CodecError):
        decode_batch(data)
    with pytest.raises(CodecError):
        codec.decode(TelemetryBatch, codec.encode(TelemetryBatch(bus="b", records=[record])))


# -- hostile bytes ------------------------------------------------------------------------------


def decodes_or_raises_codec_error(data: bytes) -> None:
    try:
        batch = decode_batch(data)
    except CodecError:
        return
    assert isinstance(batch, TelemetryBatch)
    assert len(batch.records) <= MAX_RECORDS
    # Within every bound of the schema, as a JSON batch would have to be.
    assert msgspec.convert(msgspec.to_builtins(batch), TelemetryBatch) == batch
    for rec in batch.records:
        assert math.isfinite(rec.t)
        if rec.pos is not None:
            assert -90 <= rec.pos.lat <= 90 and -180 <= rec.pos.lon <= 180


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_batch_or_raise_codec_error(data: bytes) -> None:
    decodes_or_raises_codec_error(data)


@given(st.binary(max_size=300))
def test_any_bytes_behind_the_version_byte_decode_or_raise_codec_error(tail: bytes) -> None:
    decodes_or_raises_codec_error(bytes([COMPACT_VERSION, 0, 7]) + b"bus-001" + tail)


@given(batches(max_size=8), st.data())
def test_a_damaged_compact_batch_decodes_or_raises_codec_error(
    batch: TelemetryBatch, data: st.DataObject
) -> None:
    payload = bytearray(encode_batch(batch))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    decodes_or_raises_codec_error(bytes(payload[:cut]))
    decodes_or_raises_codec_error(bytes(payload))


@pytest.mark.parametrize("count", [MAX_RECORDS + 1, 2**21 - 1, 2**63])
def test_a_huge_declared_record_count_is_rejected(count: int) -> None:
    varint = bytearray()
    while True:
        varint.append(count & 0x7F | (0x80 if count > 0x7F else 0))
        count >>= 7
        if not count:
            break
    with pytest.raises(CodecError):
        decode_batch(bytes([COMPACT_VERSION, 0, 1]) + b"b" + bytes(varint) + b"\xff" * 64)


def test_a_number_claiming_thousands_of_bits_is_rejected() -> None:
    # One record, loud, same shape; seq's length code: 30 zeros announce a giant number.
    stream = "1" + "0" + "0" * 30 + "1" + "1" * 40
    stream += "0" * (-len(stream) % 8)
    body = int(stream, 2).to_bytes(len(stream) // 8, "big")
    with pytest.raises(CodecError):
        decode_batch(bytes([COMPACT_VERSION, 0, 1]) + b"b" + b"\x01" + body)


def test_an_oversized_payload_is_rejected_before_decoding() -> None:
    with pytest.raises(CodecError):
        decode_batch(bytes([COMPACT_VERSION]) + b"\x00" * (256 * 1024))
    with pytest.raises(CodecError):
        decode_batch(b"{" + b" " * (256 * 1024) + b"}")


def test_trailing_bytes_after_the_records_are_rejected() -> None:
    data = encode_batch(TelemetryBatch(bus="b", records=[TelemetryRecord(seq=1, t=1.0)]))
    with pytest.raises(CodecError):
        decode_batch(data + b"\x00")


def test_reserved_flags_are_rejected() -> None:
    data = bytearray(encode_batch(TelemetryBatch(bus="b", records=[])))
    data[1] |= 0x80
    with pytest.raises(CodecError):
        decode_batch(bytes(data))


# -- size ---------------------------------------------------------------------------------------


def driving_records(seconds: int) -> list[TelemetryRecord]:
    """A bus on a bent street at 1 Hz, GPS with a wandering error of a few metres."""
    start = (-16.92, 145.77)
    corner = offset_m(*start, 400.0, 300.0)
    path = Polyline([start, corner, offset_m(*corner, -200.0, 900.0)])
    stops = [("A", 0.0), ("B", 600.0), ("C", path.length_m)]
    drive = Drive(path, stops, start_t=1_717_200_000.0, seed=4, params=DriveParams())
    rng = random.Random(5)
    north = east = 0.0
    records = []
    for i in range(seconds):
        truth = drive.step(1_717_200_000.0 + i)
        north, east = 0.97 * north + rng.gauss(0, 0.7), 0.97 * east + rng.gauss(0, 0.7)
        lat, lon = offset_m(truth.lat, truth.lon, north, east)
        moving = truth.speed_mps > 0.3
        pos = Position(
            lat=round(lat, 7),
            lon=round(lon, 7),
            speed=max(0.0, truth.speed_mps + rng.gauss(0, 0.1)),
            track=(truth.heading_deg + rng.gauss(0, 1)) % 360 if moving else 0.0,
            hdop=0.9,
            sats=9,
        )
        veh = Vehicle(
            speed_kmh=round(truth.speed_mps * 3.6 * 256) / 256,
            rpm=round(truth.engine_rpm * 8) / 8,
            coolant_c=float(round(truth.coolant_c)),
            fuel_pct=round(truth.fuel_pct / 0.4) * 0.4,
            odometer_m=round(truth.odometer_m / 5) * 5.0,
            doors_open=truth.doors_open,
        )
        records.append(TelemetryRecord(seq=70_000 + i, t=truth.t, pos=pos, veh=veh))
    return records


def test_a_ten_second_batch_of_a_driving_bus_costs_under_25_bytes_per_record_on_the_wire() -> None:
    records = driving_records(300)
    topic = "busfleet/v1/bus/bus-001/telemetry"
    total = 0
    for i in range(0, len(records), 10):
        batch = TelemetryBatch(bus="bus-001", records=records[i : i + 10])
        data = encode_batch(batch)
        assert_same_batch(decode_batch(data), batch)
        total += mqtt_publish_size(topic, len(data))
        assert mqtt_publish_size(topic, len(codec.encode(batch))) > 10 * 25  # JSON could not
    assert total / len(records) < 25


# -- MQTT packet size, against what paho really sends -------------------------------------------


def read_packet(conn: socket.socket) -> bytes:
    head = conn.recv(1, socket.MSG_WAITALL)
    length, shift, raw = 0, 0, b""
    while True:
        byte = conn.recv(1, socket.MSG_WAITALL)
        raw += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return head + raw + (conn.recv(length, socket.MSG_WAITALL) if length else b"")


@pytest.mark.parametrize(
    ("protocol", "qos", "payload_len", "alias"),
    [
        (mqtt.MQTTv5, 1, 10, False),
        (mqtt.MQTTv5, 0, 300, False),
        (mqtt.MQTTv5, 2, 20_000, False),
        (mqtt.MQTTv5, 1, 90, True),
        (mqtt.MQTTv311, 1, 100, False),
        (mqtt.MQTTv311, 0, 5, False),
    ],
)
def test_the_publish_size_is_what_paho_puts_on_the_wire(
    protocol: MQTTProtocolVersion, qos: int, payload_len: int, alias: bool
) -> None:
    topic = "busfleet/v1/bus/bus-001/telemetry"
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        client.connect("127.0.0.1", server.getsockname()[1])
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            client.loop(0.05)
            assert read_packet(conn)[0] >> 4 == 1  # CONNECT
            # CONNACK; MQTT 5 with "topic alias maximum 10" so that aliases may be used.
            conn.sendall(
                b"\x20\x06\x00\x00\x03\x22\x00\x0a"
                if protocol == mqtt.MQTTv5
                else b"\x20\x02\x00\x00"
            )
            client.loop(0.05)
            props = None
            if alias:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho
                props.TopicAlias = 1
                client.publish(topic, b"x", qos=qos, properties=props)  # sets up the alias
                client.loop(0.05)
                read_packet(conn)
            client.publish("" if alias else topic, b"x" * payload_len, qos=qos, properties=props)
            client.loop(0.05)
            packet = read_packet(conn)
        client.disconnect()
    assert packet[0] >> 4 == 3  # PUBLISH
    expected = mqtt_publish_size(
        topic, payload_len, qos=qos, mqtt5=protocol == mqtt.MQTTv5, topic_alias=alias
    )
    assert len(packet) == expected
