"""The exception tree of `protocols`: everything a peer or device can get wrong."""

from __future__ import annotations


class ProtocolError(Exception):
    """Bytes from a peer or a device that do not follow the protocol.

    Parsers and codecs raise only this (or a subclass) for bad input, never anything else.
    """


class NmeaError(ProtocolError):
    """A line that is not a valid NMEA 0183 sentence (checksum, framing, fields)."""


class J1939Error(ProtocolError):
    """A CAN frame that cannot be decoded as J1939 / bus-FMS."""


class CodecError(ProtocolError):
    """An MQTT payload that does not decode or does not validate against its schema."""

    def __init__(self, message: str, *, schema: str | None = None) -> None:
        super().__init__(message)
        self.schema = schema


class TopicError(ProtocolError):
    """A topic outside the busfleet tree, or with an invalid bus id."""


class GtfsError(ProtocolError):
    """A GTFS feed that cannot be read: carries the file, line and field at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.field = field
