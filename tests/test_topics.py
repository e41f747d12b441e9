from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import topics
from protocols.errors import TopicError

bus_ids = st.from_regex(topics.BUS_ID_PATTERN, fullmatch=True)


@given(
    bus_ids, st.sampled_from([k for k in topics.Kind if k.value not in ("fleet", "central/stats")])
)
def test_every_built_bus_topic_parses_back_to_its_kind_and_bus(bus: str, kind: topics.Kind) -> None:
    parsed = topics.parse(topics.bus_topic(bus, kind))
    assert parsed == topics.Topic(kind, bus)
    assert topics.matches(topics.all_buses(kind), topics.bus_topic(bus, kind))


@given(bus_ids)
def test_fleet_topics_parse_and_match_the_fleet_filter(bus: str) -> None:
    assert topics.parse(topics.fleet(bus)) == topics.Topic(topics.Kind.FLEET, bus)
    assert topics.matches(topics.all_buses(topics.Kind.FLEET), topics.fleet(bus))


@pytest.mark.parametrize("bad", ["", "a/b", "bus+", "#", "x" * 40, "-lead", "bus id"])
def test_a_bus_id_that_would_break_the_topic_tree_is_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.telemetry(bad)


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/bus/a/telemetry",
        "busfleet/v1/bus/a/unknown",
        "busfleet/v1/bus/a+/telemetry",
        "busfleet/v1/bus",
        "busfleet/v1/fleet/a/b",
        "busfleet/v2/bus/a/telemetry",
    ],
)
def test_topics_outside_the_tree_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(topic)


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a/b/c", False),
        ("$share/g/a/+", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_wildcards_match_as_a_broker_matches_them(flt: str, topic: str, expected: bool) -> None:
    assert topics.matches(flt, topic) is expected


def test_shared_subscriptions_name_their_group() -> None:
    assert topics.shared("ingest", "busfleet/v1/bus/+/telemetry") == (
        "$share/ingest/busfleet/v1/bus/+/telemetry"
    )
    with pytest.raises(TopicError):
        topics.shared("a/b", "x")
