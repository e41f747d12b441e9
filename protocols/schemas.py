"""Versioned MQTT payload schemas: frozen msgspec Structs, validated at the bytes boundary.

Every payload carries `v`, its schema version. Unknown fields are ignored, so a newer peer can
add fields without breaking an older one; a payload that does not validate is a CodecError.
Times are unix seconds (UTC) as floats; speeds in m/s unless the name says otherwise.

Every number a bus sends is bounded here, at the bytes boundary (issue 13): an integer of 2^63
overflows SQLite and protobuf, a float of 1e300 keeps a silent bus online, and a payload that
is retained does that again at every restart. A payload with a number out of its bound does
not validate at all. Sensor bounds are what any real device can say, not what is plausible
(plausibility, such as a time far from central's clock, is for the receiver to judge): a bound
that caught real data would refuse a whole batch, again at every resend.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocols.ads.playlist import Playlist
from protocols.predict import PredictionModel
from protocols.topics import BUS_ID_PATTERN

SCHEMA_VERSION = 1

Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
BusId = Annotated[str, msgspec.Meta(pattern=f"^{BUS_ID_PATTERN}$")]

# -- bounds of what the buses send ----------------------------------------------------------------
MAX_SAFE_INT = 2**53  # what a float (JSON in JavaScript, SQLite REAL, dashboards) holds exactly
MAX_T = 4_102_444_800.0  # 2100-01-01T00:00Z: no bus runs later; far below float trouble
MAX_DELAY_S = 86_400  # a journey a day late is no longer late but another day's
MAX_OFFLINE_AFTER_S = 86_400.0
MAX_DATA_NUMBER = 1e15  # a number in an event's data (counts, coordinates, speeds)

# A per-bus sequence number: never negative, exact in a float.
Seq = Annotated[int, msgspec.Meta(ge=0, lt=MAX_SAFE_INT)]
# Counters that only grow (connection sessions, document versions).
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
SignedCount = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
UnixTime = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_T)]
Severity = Annotated[int, msgspec.Meta(ge=0, le=4)]
OfflineAfter = Annotated[float, msgspec.Meta(gt=0.0, le=MAX_OFFLINE_AFTER_S)]
# GTFS-RT's int32. Not MAX_DELAY_S: a bus's clock or timetable can be wrong by years (seen in
# tests), and that must not refuse its whole reported state; central reads a delay beyond
# MAX_DELAY_S as not known (central/fleet/state.py, central/http/gtfs_rt.py).
DelayS = Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)]
StopSequence = Annotated[int, msgspec.Meta(ge=0, lt=2**31)]  # GTFS-RT: uint32; GTFS: int
DataInt = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
DataFloat = Annotated[float, msgspec.Meta(ge=-MAX_DATA_NUMBER, le=MAX_DATA_NUMBER)]
# Sensors: GNSS receivers are export-limited to 515 m/s; J1939 tops out at 251 km/h, 8,192 rpm,
# -40..215 degC, 102 % and 21 million km; each bound leaves room above that.
SpeedMps = Annotated[float, msgspec.Meta(ge=0.0, le=1_000.0)]
Degrees = Annotated[float, msgspec.Meta(ge=0.0, le=360.0)]
Dop = Annotated[float, msgspec.Meta(ge=0.0, le=1_000.0)]
FixMode = Annotated[int, msgspec.Meta(ge=0, le=3)]
Satellites = Annotated[int, msgspec.Meta(ge=0, le=1_000)]
SpeedKmh = Annotated[float, msgspec.Meta(ge=0.0, le=1_000.0)]
Rpm = Annotated[float, msgspec.Meta(ge=0.0, le=20_000.0)]
Celsius = Annotated[float, msgspec.Meta(ge=-100.0, le=400.0)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=110.0)]
Metres = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]


class Presence(msgspec.Struct, frozen=True, kw_only=True):
    """Birth (online=True, retained) and last will (online=False) of a bus.

    `session` grows with every connection of the bus, so that central can ignore a stale
    death that arrives after a newer birth.
    """

    v: int = SCHEMA_VERSION
    bus: BusId
    online: bool
    session: Count
    t: UnixTime
    agent: str = ""  # agent version
    offline_after_s: OfflineAfter | None = None  # silence after which central shows the bus offline


class Position(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    lat: Lat
    lon: Lon
    speed: SpeedMps | None = None  # m/s
    track: Degrees | None = None  # degrees true
    mode: FixMode = 3  # 2 = 2D, 3 = 3D, as gpsd
    hdop: Dop | None = None
    sats: Satellites | None = None
    estimated: bool = False  # dead reckoning, not a GNSS fix


class Vehicle(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The 1 Hz vehicle summary from the bus CAN (bus-FMS); None where the bus gave nothing."""

    speed_kmh: SpeedKmh | None = None
    rpm: Rpm | None = None
    doors_open: bool | None = None
    coolant_c: Celsius | None = None
    fuel_pct: Percent | None = None
    odometer_m: Metres | None = None


class TelemetryRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    seq: Seq  # per-bus sequence number, never reused: central deduplicates on (bus, seq)
    t: UnixTime
    pos: Position | None = None
    veh: Vehicle | None = None


class TelemetryBatch(msgspec.Struct, frozen=True, kw_only=True):
    v: int = SCHEMA_VERSION
    bus: BusId
    records: list[TelemetryRecord]
    backfill: bool = False  # sent from the outbox after an outage: store, raise no live alarms


Scalar = str | int | float | bool | None
# A scalar from a bus: its numbers bounded (an event's data is stored, shown and compared).
BusScalar = str | DataInt | DataFloat | bool | None


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something that happened on the bus: a vehicle event, GPS lost, a command result...

    Events share the bus's sequence numbers with telemetry; alarms (severity >= 3) are sent
    before anything else and never dropped by the outbox's disk budget.
    """

    seq: Seq
    t: UnixTime
    kind: str
    severity: Severity = 0  # 0 info, 1 notice, 2 warning, 3 alarm, 4 emergency
    data: dict[str, BusScalar] = msgspec.field(default_factory=dict)


class EventBatch(msgspec.Struct, frozen=True, kw_only=True):
    v: int = SCHEMA_VERSION
    bus: BusId
    events: list[Event]
    backfill: bool = False


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """Central's receipt: these sequence numbers are stored; the bus may forget them."""

    v: int = SCHEMA_VERSION
    bus: BusId
    ranges: list[tuple[Seq, Seq]]  # inclusive [first, last] ranges


class Command(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A one-off order to a bus; it is acknowledged with a cmd_ack event (ok/failed/expired)."""

    v: int = SCHEMA_VERSION
    id: str
    name: str  # resend | announce | restart
    t: float
    expires: float
    args: dict[str, Scalar] = msgspec.field(default_factory=dict)


class Assignment(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the bus drives: a trip, a block (a day's trips) or a route (trip matched on board)."""

    trip_id: str | None = None
    block_id: str | None = None
    route_id: str | None = None


class PassengerMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    text_de: str
    text_en: str = ""
    priority: int = 0
    valid_from: float | None = None
    valid_to: float | None = None  # the bus stops showing it then, even before central drops it
    # Why this bus got it: "all", "route:R" or "bus:B" (central/messages.py). A display may
    # show route messages only while on that route.
    target: str = "all"


class TempStop(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A stop served only during a diversion; its id is made up by central (not in GTFS)."""

    id: str
    name: str
    lat: Lat
    lon: Lon


class Diversion(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A route (or some of its trips) diverted for a while (central/diversions.py).

    `path` is the detour in driving order: it replaces the trip's shape between the points
    nearest its first and its last coordinate (reversed for trips running the other way);
    empty: the shape stays and only stops are skipped. The bus applies it from `valid_from`
    to `valid_to` by its own clock, so the timetable comes back on time even offline.
    """

    id: str
    route_id: str
    trips: list[str] = msgspec.field(default_factory=list)  # empty: every trip of the route
    skip: list[str] = msgspec.field(default_factory=list)  # GTFS stop_ids not served
    temp_stops: list[TempStop] = msgspec.field(default_factory=list)
    path: list[tuple[Lat, Lon]] = msgspec.field(default_factory=list)
    valid_from: float | None = None
    valid_to: float | None = None
    notice_de: str = ""
    notice_en: str = ""


Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class TimetableRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A published timetable version for a bus (issue 14): a content-addressed package.

    The package is a zip of the GTFS files a bus reads (protocols/gtfs/package.py), normalised
    so that the same timetable always gives the same bytes; the bus downloads it from `url`
    (central's HTTP, Range/resume like the media), checks `size` and `sha256`, keeps it beside
    the version it runs and switches at `valid_from` by its own clock (None: at once). A trip
    in progress finishes on the version it started with.
    """

    version: Count
    sha256: Sha256
    size: Annotated[int, msgspec.Meta(ge=1, le=2**31)]
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    valid_from: UnixTime | None = None


class TimetableState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which timetable a bus runs and which it holds ready (in its reported state)."""

    running: Count | None = None  # None: no timetable (or a local bootstrap feed: `source`)
    staged: Count | None = None  # downloaded and checked, waiting for its valid_from
    source: str = ""  # "central" or "local" (agent.toml [journey] gtfs, a bootstrap)
    error: str | None = None  # why the last package was refused (the old one runs on)


# A release's version: dotted numbers ("0.2.0"), compared as tuples (protocols/release.py).
ReleaseVersion = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$")]
# A TUF target's name in central's repository ("busfleet-0.2.0.tar"): no path, no dot first.
TargetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")]
ShortText = Annotated[str, msgspec.Meta(max_length=2000)]


class ReleaseRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The software release central wants a bus to run: a target of central's TUF repository,
    fetched and verified through TUF metadata (onboard/update/), never trusted by this name."""

    version: ReleaseVersion
    target: TargetName
    rollout: Annotated[str, msgspec.Meta(max_length=64)] = ""  # the rollout that asked for it


class ReleaseState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What software a bus runs and where an update stands (protocols/release.py: PHASES)."""

    running: Annotated[str, msgspec.Meta(max_length=64)]  # the agent's version
    slot: Annotated[str, msgspec.Meta(max_length=128)] = ""  # the slot it runs from
    previous: Annotated[str, msgspec.Meta(max_length=64)] = ""  # the version it would fall back to
    wanted: Annotated[str, msgspec.Meta(max_length=64)] = ""  # the desired version being worked on
    phase: Annotated[str, msgspec.Meta(max_length=32)] = "idle"
    error: ShortText = ""  # why `wanted` failed or was refused


class DesiredState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What central wants a bus to run: one retained document per bus, versioned as a whole."""

    v: int = SCHEMA_VERSION
    bus: BusId
    version: Count
    assignment: Assignment | None = None
    playlist: str | None = None  # playlist id (the advertising issue fills in the details)
    # The playlist document itself, carried here so that it is versioned and validated with
    # the rest (see protocols/ads/playlist.py); its media come over HTTP.
    ads: Playlist | None = None
    messages: list[PassengerMessage] = msgspec.field(default_factory=list)
    config: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    diversions: list[Diversion] = msgspec.field(default_factory=list)  # of the bus's routes
    timetable: TimetableRef | None = None  # the published timetable this bus should run
    release: ReleaseRef | None = None  # the software release this bus should run (issue 16)
    predictions: PredictionModel | None = None  # central's model for the bus's routes (issue 17)


class ReportedState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the bus runs now; `version` is the desired version it applied (0 = none yet)."""

    v: int = SCHEMA_VERSION
    bus: BusId
    version: Count
    t: UnixTime
    assignment: Assignment | None = None
    playlist: str | None = None
    messages: list[str] = msgspec.field(default_factory=list)  # message ids shown
    # The running value of each setting central set (not an echo of the desired document;
    # secrets and paths never: protocols/config_keys.py), and the settings refused, with why.
    config: dict[str, str | DataInt | DataFloat | bool] = msgspec.field(default_factory=dict)
    config_refused: dict[str, str] = msgspec.field(default_factory=dict)
    rejected_version: Count | None = None  # a newer desired version the bus refused
    error: str | None = None  # why it refused it
    counters: dict[str, SignedCount] = msgspec.field(default_factory=dict)  # rejected inputs etc.
    journey: JourneyStatus | None = None  # where on its trip the bus is, how late
    timetable: TimetableState | None = None  # which timetable version runs, which is staged
    release: ReleaseState | None = None  # which software runs, where an update stands


class JourneyStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where the bus is on its trip, as its journey tracker sees it (for GTFS-Realtime).

    Carried in the reported state, republished when it changes at stop granularity (a stop
    reached or left, another trip, the delay changed by 30 s or more), never at telemetry
    rate: retained, so a restarted central has it at once, and no change to the telemetry
    codec. Central also falls back on the bus's journey events (arrived/departed/passed).
    """

    t: UnixTime  # when this was true
    trip_id: str
    route_id: str | None = None
    start_date: str | None = None  # the trip's service day, YYYYMMDD
    stop_id: str | None = None  # the stop the bus stands at (at_stop) or drives to next
    stop_sequence: StopSequence | None = None  # its GTFS stop_sequence
    at_stop: bool = False
    delay_s: DelayS | None = None  # positive: late; None: not known yet
    finished: bool = False  # the trip is done; the next one has not started
    diversions: list[str] = msgspec.field(default_factory=list)  # ids applied to the trip now


class FleetEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Central's view of one bus, retained for dashboards."""

    v: int = SCHEMA_VERSION
    bus: BusId
    online: bool
    last_seen: float | None = None
    t: float | None = None  # time of the last position
    lat: Lat | None = None
    lon: Lon | None = None
    speed: float | None = None
    doors_open: bool | None = None
    route_id: str | None = None
    trip_id: str | None = None
    desired_version: int = 0
    reported_version: int = 0
    records: int = 0
    stop_id: str | None = None  # the journey's next stop (or the one the bus stands at)
    delay_s: int | None = None  # the journey's delay, positive: late
    wifi_clients: int | None = None  # passengers on the bus Wi-Fi, from its portal statistics
    # The timetable (issue 14): the version central wants on the bus and from when, and what
    # the bus reports it runs, holds staged, and why it refused the last package.
    timetable_desired: Count | None = None
    timetable_valid_from: UnixTime | None = None
    timetable: Count | None = None
    timetable_staged: Count | None = None
    timetable_source: str = ""  # "central" or "local" (a bootstrap feed on the bus)
    timetable_error: str | None = None


class CentralStats(msgspec.Struct, frozen=True, kw_only=True):
    v: int = SCHEMA_VERSION
    t: float
    counters: dict[str, int]


class Alarm(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An alarm central raised (central/fleet/alarms.py), retained on its own topic for dashboards.

    `state`: active, acked (still active, a dispatcher took it), cleared (over, nobody
    acknowledged it yet) or closed (over and acknowledged). `subject` tells alarms of one
    kind on one bus apart (a DTC's "spn/fmi").
    """

    v: int = SCHEMA_VERSION
    id: str
    bus: BusId
    kind: str
    severity: int  # as Event.severity: 2 warning, 3 alarm, 4 emergency
    state: str
    raised_t: float
    t: float  # the last change
    subject: str = ""
    text: str = ""
    lat: Lat | None = None
    lon: Lon | None = None
    cleared_t: float | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    ack_t: float | None = None
