"""The tracker (decode + apply with a shortcut for repeated frames) is the plain path, faster."""

from __future__ import annotations

from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.j1939.decode import (
    PGN_CCVS1,
    PGN_DC1,
    PGN_DC2,
    PGN_FMS1,
    Dtc,
    J1939Decoder,
    Lamps,
    encode,
    encode_dm1,
    encode_telltales,
    encode_vin,
    make_id,
    messages,
)
from protocols.j1939.tracker import MAX_IDS, VehicleTracker
from protocols.j1939.vehicle import VehicleEvent, VehicleState, apply

Frame = tuple[int, bytes]


def tracked(frames: list[Frame]) -> tuple[VehicleState, list[VehicleEvent], VehicleTracker]:
    tracker, events = VehicleTracker(), []
    for i, (can_id, data) in enumerate(frames):
        events += tracker.feed(can_id, data, float(i))
    return tracker.state, events, tracker


def test_a_repeated_frame_counts_again_when_another_pgn_changed_its_quantity() -> None:
    doors_open = encode(PGN_DC1, {1821: 0})  # DC1: at least one door open
    all_closed = encode(PGN_DC2, {3413 + 3 * i: 0 for i in range(10)})  # DC2: every door shut
    frames = [doors_open, doors_open, all_closed, doors_open, doors_open]
    state, events, tracker = tracked(frames)
    assert [e.kind for e in events] == ["doors_opened", "doors_closed", "doors_opened"]
    assert state.doors_open is True and state.updated == 3.0
    assert (tracker.stats.frames, tracker.stats.decoded, tracker.repeats) == (5, 5, 2)


def test_repeated_frames_are_counted_as_decoded_and_change_nothing() -> None:
    frame = encode(PGN_CCVS1, {84: 42.0, 70: 1})
    state, events, tracker = tracked([frame] * 50)
    assert state.speed_kmh == 42.0 and state.parking_brake is True and state.updated == 0.0
    assert [e.kind for e in events] == ["parking_brake_set"]
    assert tracker.stats.decoded == tracker.stats.frames == 50 and tracker.repeats == 49


SA = (0x00, 0x0B)
signal_ids = st.sampled_from(
    [make_id(pgn, sa, msg.priority) for pgn, msg in messages().items() for sa in SA]
)
# Ids whose frames set the same quantities (doors, ramp, parking brake) and the transport ones.
busy_ids = st.sampled_from(
    [make_id(p, sa) for p in (PGN_DC1, PGN_DC2, PGN_CCVS1, PGN_FMS1) for sa in SA]
    + [0x1CECFF00, 0x1CEBFF00, 0x18FECA00, 0x18FEEC00]
)
encoded = st.sampled_from(
    [
        encode(PGN_DC1, {1821: 0, 1820: 1}),
        encode(PGN_DC1, {1821: 2, 1820: 0}),
        encode(PGN_DC2, {3413: 1}),
        encode(PGN_DC2, {3413: 0, 3416: 0}),
        encode(PGN_CCVS1, {84: 10.0, 70: 1}),
        encode(PGN_CCVS1, {84: 10.0, 70: 0}),
        encode(PGN_CCVS1, {}, errors=[84, 70]),
        *encode_telltales({6: 1, 7: 0}),
        *encode_telltales({6: 0, 7: 1}),
        *encode_telltales({38: 1, 44: 0}),
        *encode_telltales({38: 0, 44: 1}),
    ]
)
one_frame = st.one_of(
    encoded,
    st.tuples(
        st.one_of(signal_ids, busy_ids),
        st.one_of(
            st.binary(min_size=8, max_size=8),
            st.sampled_from([b"\xff" * 8, b"\x00" * 8, b"\xfe" * 8]),
            st.binary(max_size=9),
        ),
    ),
)
# Multi-frame pieces: a DM1 by TP.BAM (or single frame), a VIN, from either source address.
transfers = st.builds(
    lambda sa, dtcs, vin: (
        encode_dm1(Lamps(amber_warning=True), [Dtc(s, f, 1) for s, f in dtcs], sa)
        if vin is None
        else encode_vin(vin, sa)
    ),
    st.sampled_from(SA),
    st.lists(st.tuples(st.integers(1, 600), st.integers(0, 31)), max_size=3),
    st.none() | st.sampled_from(["YV3R8R624EA123456", "WDB9634031L123456"]),
)


@settings(max_examples=300)
@given(
    pool=st.lists(st.one_of(one_frame.map(lambda f: [f]), transfers), min_size=1, max_size=10),
    data=st.data(),
)
def test_the_tracker_agrees_with_decode_and_apply_after_every_frame(
    pool: list[list[Frame]], data: st.DataObject
) -> None:
    # Sequences drawn from a small pool, so frames repeat as they do on a bus.
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), max_size=40))
    frames = [frame for i in picks for frame in pool[i]]
    decoder, state, tracker = J1939Decoder(), VehicleState(), VehicleTracker()
    for i, (can_id, data_bytes) in enumerate(frames):
        events: list[VehicleEvent] = []
        for msg in decoder.decode(can_id, data_bytes, float(i)):
            state, ev = apply(state, msg)
            events += ev
        assert tracker.feed(can_id, data_bytes, float(i)) == events
        assert tracker.state == state
    assert asdict(tracker.stats) == asdict(decoder.stats)


def test_the_tracker_agrees_on_a_bus_with_more_ids_than_it_remembers() -> None:
    # Every signal PGN from every source address, each frame twice, all that twice over: past
    # MAX_IDS the memory is refilled, and the doors flip between DC1 and DC2 senders all along.
    ids = [make_id(pgn, sa, msg.priority) for sa in range(256) for pgn, msg in messages().items()]
    assert len(ids) > MAX_IDS
    doors = [encode(PGN_DC1, {1821: 0})[1], encode(PGN_DC2, {3413: 0})[1]]
    once = [(can_id, doors[i % 2]) for i, can_id in enumerate(ids) for _ in range(2)]
    flip = [encode(PGN_DC1, {1821: 0}), encode(PGN_DC2, {3413: 0})]  # the same two, again
    frames = [f for i, frame in enumerate(once * 2) for f in [frame, *(flip if i % 7 else [])]]
    decoder, state, events = J1939Decoder(), VehicleState(), []
    for i, (can_id, data_bytes) in enumerate(frames):
        for msg in decoder.decode(can_id, data_bytes, float(i)):
            state, ev = apply(state, msg)
            events += ev
    fast_state, fast_events, tracker = tracked(frames)
    assert fast_state == state and fast_events == events
    assert asdict(tracker.stats) == asdict(decoder.stats)
    assert tracker.repeats > 0
