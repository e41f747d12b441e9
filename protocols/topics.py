"""The MQTT topic tree: typed builders and one matcher. No other module formats topics.

    busfleet/v1/bus/{bus}/presence         bus -> all, retained (birth; the last will says offline)
    busfleet/v1/bus/{bus}/telemetry        bus -> central, QoS 1, sequence-numbered batches
    busfleet/v1/bus/{bus}/state/desired    central -> bus, retained, one versioned document
    busfleet/v1/bus/{bus}/state/reported   bus -> central, retained, what the bus runs now
    busfleet/v1/bus/{bus}/cmd              central -> bus, commands with id and expiry
    busfleet/v1/bus/{bus}/cmd/ack          bus -> central, command results (sequence-numbered)
    busfleet/v1/bus/{bus}/events           bus -> central, events and alarms (sequence-numbered)
    busfleet/v1/bus/{bus}/stored           central -> bus, which sequence numbers are stored
    busfleet/v1/fleet/{bus}                central -> dashboards, retained fleet view of a bus
    busfleet/v1/central/stats              central -> dashboards, counters
    busfleet/v1/central/presence/{client}  central -> clients, retained (last will: offline)
    busfleet/v1/alarms/{id}                central -> dashboards, retained alarm (empty: gone)
    busfleet/v1/dispatch/{user}/request    dashboard -> central, a dispatcher's request
    busfleet/v1/dispatch/{user}/reply      central -> dashboard, the answer to it

Every bus topic has the bus id as its fourth level so that a broker ACL `pattern` rule with
`%u` confines a bus to its own subtree; likewise `{user}` in the dispatch topics is the
dispatcher's broker account, so that `%u` patterns let an account ask under its own name
only and read its own answers only (deploy/mosquitto/city.acl).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from protocols.errors import TopicError

ROOT = "busfleet/v1"

# Bus ids become MQTT usernames and topic levels: no wildcards, no separators, short.
BUS_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
_BUS_ID = re.compile(BUS_ID_PATTERN)


class Kind(enum.Enum):
    """What a topic carries; the value is the topic suffix below the bus id."""

    PRESENCE = "presence"
    TELEMETRY = "telemetry"
    DESIRED = "state/desired"
    REPORTED = "state/reported"
    COMMAND = "cmd"
    COMMAND_ACK = "cmd/ack"
    EVENTS = "events"
    STORED = "stored"
    FLEET = "fleet"
    CENTRAL_STATS = "central/stats"


_BY_SUFFIX = {k.value: k for k in Kind if k not in (Kind.FLEET, Kind.CENTRAL_STATS)}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its kind and, for per-bus topics, the bus id."""

    kind: Kind
    bus_id: str | None = None


def valid_bus_id(bus_id: str) -> bool:
    return _BUS_ID.fullmatch(bus_id) is not None


def check_bus_id(bus_id: str) -> str:
    """Return `bus_id` if it may be used as a bus identity, else raise TopicError."""
    if not valid_bus_id(bus_id):
        raise TopicError(f"invalid bus id {bus_id!r}: use 1-32 of A-Z a-z 0-9 _ . -")
    return bus_id


def bus_topic(bus_id: str, kind: Kind) -> str:
    if kind not in _BY_SUFFIX.values():
        raise TopicError(f"{kind} is not a per-bus topic")
    return f"{ROOT}/bus/{check_bus_id(bus_id)}/{kind.value}"


def presence(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.PRESENCE)


def telemetry(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.TELEMETRY)


def desired(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.DESIRED)


def reported(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.REPORTED)


def command(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.COMMAND)


def command_ack(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.COMMAND_ACK)


def events(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.EVENTS)


def stored(bus_id: str) -> str:
    return bus_topic(bus_id, Kind.STORED)


def fleet(bus_id: str) -> str:
    return f"{ROOT}/fleet/{check_bus_id(bus_id)}"


def central_stats() -> str:
    return f"{ROOT}/central/stats"


def central_instance_stats(client_id: str) -> str:
    """One central instance's own counters, in a group of several (central_stats: the leader's)."""
    return f"{ROOT}/central/stats/{_level(client_id, 'client id')}"


def all_central_instance_stats() -> str:
    return f"{ROOT}/central/stats/+"


def central_presence(client_id: str) -> str:
    """A central worker's presence (one per client id: a group has several)."""
    return f"{ROOT}/central/presence/{_level(client_id, 'client id')}"


def all_central_presence() -> str:
    return f"{ROOT}/central/presence/+"


# Alarm ids are made by central (central/service/alarm_center.py); dispatcher names are their
# broker accounts (`central dash --name`): both become one topic level, like bus ids.
_LEVEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _level(value: str, what: str) -> str:
    if _LEVEL.fullmatch(value) is None:
        raise TopicError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


def alarm(alarm_id: str) -> str:
    return f"{ROOT}/alarms/{_level(alarm_id, 'alarm id')}"


def all_alarms() -> str:
    return f"{ROOT}/alarms/+"


def alarm_id(topic: str) -> str:
    """The alarm id of an alarm topic; TopicError for any other topic."""
    prefix = f"{ROOT}/alarms/"
    if not topic.startswith(prefix):
        raise TopicError(f"not an alarm topic: {topic!r}")
    return _level(topic[len(prefix) :], "alarm id")


def check_user(user: str) -> str:
    """Return `user` if it may name a dispatcher in a topic, else raise TopicError."""
    return _level(user, "dispatcher name")


def dispatch_request(user: str) -> str:
    return f"{ROOT}/dispatch/{check_user(user)}/request"


def dispatch_reply(user: str) -> str:
    return f"{ROOT}/dispatch/{check_user(user)}/reply"


def all_dispatch_requests() -> str:
    return f"{ROOT}/dispatch/+/request"


def dispatch_user(topic: str) -> str:
    """The dispatcher of a request topic; TopicError for any other topic."""
    prefix, suffix = f"{ROOT}/dispatch/", "/request"
    if not (topic.startswith(prefix) and topic.endswith(suffix)):
        raise TopicError(f"not a dispatch request topic: {topic!r}")
    return check_user(topic[len(prefix) : -len(suffix)])


def all_buses(kind: Kind) -> str:
    """Subscription filter for one kind of topic from every bus."""
    if kind is Kind.FLEET:
        return f"{ROOT}/fleet/+"
    if kind not in _BY_SUFFIX.values():
        raise TopicError(f"{kind} is not a per-bus topic")
    return f"{ROOT}/bus/+/{kind.value}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker spreads messages over the group's members."""
    if not group or any(c in group for c in "/+#"):
        raise TopicError(f"invalid share group {group!r}")
    return f"$share/{group}/{topic_filter}"


def parse(topic: str) -> Topic:
    """Match a concrete topic onto the tree; raise TopicError for anything else."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic outside {ROOT}: {topic!r}")
    rest = topic[len(prefix) :]
    if rest == "central/stats":
        return Topic(Kind.CENTRAL_STATS)
    head, _, tail = rest.partition("/")
    bus_id, _, suffix = tail.partition("/")
    if not valid_bus_id(bus_id):
        raise TopicError(f"invalid bus id in topic {topic!r}")
    if head == "fleet" and not suffix:
        return Topic(Kind.FLEET, bus_id)
    if head == "bus" and suffix in _BY_SUFFIX:
        return Topic(_BY_SUFFIX[suffix], bus_id)
    raise TopicError(f"unknown topic {topic!r}")


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard matching (`+` one level, `#` the rest), as a broker does it."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True  # also matches the parent level itself ("a/#" matches "a")
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
