"""The compact decoder's refusals name what the JSON path names for the same batch.

The decoder builds plain values and validates them against the schema in one conversion
(central's ingest decodes every record, so each is built once): the fields must go to that
conversion in the schema's order, or a batch with several values out of bounds is refused for
another field than its JSON form is, and a log or a counter tells two stories.
"""

from __future__ import annotations

import re

import pytest

from protocols import codec
from protocols.compact import decode_batch, encode_batch
from protocols.errors import CodecError
from protocols.schemas import Position, TelemetryBatch, TelemetryRecord, Vehicle


def refused_at(payload: bytes) -> str:
    """The JSON path of the field a payload is refused for."""
    with pytest.raises(CodecError) as info:
        decode_batch(payload)
    found = re.search(r"at `(\$[^`]*)`", str(info.value))
    assert found, str(info.value)
    return found.group(1)


@pytest.mark.parametrize(
    ("pos", "veh"),
    [
        # Structs built in code are not validated: the encoder carries what the schema refuses.
        (Position(lat=-16.9, lon=145.7, speed=-1.0, mode=-1), None),
        (Position(lat=-16.9, lon=145.7, track=-1.0, mode=-1, hdop=-1.0, sats=-1), None),
        (None, Vehicle(speed_kmh=-1.0, rpm=-8.0, doors_open=True, coolant_c=-500.0)),
        (None, Vehicle(rpm=-8.0, doors_open=False, fuel_pct=-4.0, odometer_m=-5.0)),
    ],
)
def test_a_batch_with_several_bad_values_is_refused_for_the_field_its_json_form_is(
    pos: Position | None, veh: Vehicle | None
) -> None:
    batch = TelemetryBatch(
        bus="bus-001", records=[TelemetryRecord(seq=1, t=1.7e9, pos=pos, veh=veh)]
    )
    compact, json = encode_batch(batch), codec.encode(batch)
    assert refused_at(compact) == refused_at(json)
