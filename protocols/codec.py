"""Bytes <-> schema objects for every MQTT payload. The only place payloads are (de)serialised."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from protocols.errors import CodecError
from protocols.requests import CentralPresence, DispatchReply, DispatchRequest
from protocols.schemas import (
    SCHEMA_VERSION,
    Alarm,
    CentralStats,
    Command,
    DesiredState,
    Diversion,
    Event,
    EventBatch,
    FleetEntry,
    Presence,
    ReportedState,
    Stored,
    TelemetryBatch,
    TelemetryRecord,
)

T = TypeVar("T", bound=msgspec.Struct)

# A payload larger than this is rejected before parsing; a 50-record batch is ~8 kB in JSON.
MAX_PAYLOAD = 256 * 1024

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (
        EventBatch,
        Stored,
        Command,
        Event,
        Presence,
        TelemetryBatch,
        TelemetryRecord,
        DesiredState,
        ReportedState,
        FleetEntry,
        CentralStats,
        Alarm,
        DispatchRequest,
        DispatchReply,
        CentralPresence,
        Diversion,  # central stores each as sent (central/diversions.py)
    )
}


def encode(msg: msgspec.Struct) -> bytes:
    """Serialise any schema object to its JSON payload."""
    return _encoder.encode(msg)


def encode_json(value: object) -> str:
    """Any JSON-able value as text (for SQLite columns and logs)."""
    return _encoder.encode(value).decode()


def decode_json(text: str | bytes) -> Any:
    """Parse JSON text written by encode_json; raise CodecError if it is not JSON."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    except RecursionError:
        raise CodecError("not JSON: nested too deeply") from None


def decode(kind: type[T], data: bytes) -> T:
    """Parse and validate a payload as `kind`; raise CodecError for anything that is not one."""
    name = kind.__name__
    if len(data) > MAX_PAYLOAD:
        raise CodecError(f"{name}: payload of {len(data)} bytes exceeds {MAX_PAYLOAD}", schema=name)
    try:
        msg: T = _decoders[kind].decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise CodecError(f"{name}: {exc}", schema=name) from exc
    except RecursionError:  # msgspec skips an unknown field recursively: nesting too deep
        raise CodecError(f"{name}: nested too deeply", schema=name) from None
    version = getattr(msg, "v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise CodecError(f"{name}: unsupported schema version {version}", schema=name)
    return msg
