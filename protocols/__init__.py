"""protocols: what busfleet's parts say to each other and to their devices. Pure.

The rule of this room: no I/O. Nothing here reads a socket, a serial port or a file handle it
did not get, sleeps or looks at the clock (time is an argument); no asyncio, sockets, serial,
python-can, MQTT clients, Textual, aiohttp, SQLite or subprocesses (tests/test_import_rules.py).
That makes every parser and codec easy to fuzz and to test on real captures.

    schemas, codec, compact   versioned MQTT payloads (msgspec); JSON and compact codecs
    topics                    the topic tree, built and matched by typed functions
    requests                  dispatcher requests and bus commands: one typed vocabulary
    errors                    the one exception tree: a peer or device broke the protocol
    geo, ranges               geometry on the earth; sequence-number ranges
    nmea/                     NMEA 0183: framing, sentences, epochs (gpsd's rules), encoder
    gtfs/                     GTFS static: reading, checking, calendars, stop times
    j1939/                    bus-FMS / J1939: decoder from our DBC, transport protocol, candump
    ads/                      playlists, schedules and geo-fences of the advertising

Import the submodules (`from protocols.nmea import NmeaDecoder`); this face exports nothing.
"""
