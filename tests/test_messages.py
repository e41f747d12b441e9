"""Passenger messages: who gets them, how they follow assignments, expire and are withdrawn,
and that the command line puts them on the broker for the buses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from busfleet.broker.launch import Broker
from busfleet.cli import main
from central.assign import next_desired
from central.gtfs_import import import_gtfs
from central.messages import (
    MessageError,
    create_message,
    expire_messages,
    list_messages,
    recipients,
    withdraw_message,
)
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.schemas import Assignment, DesiredState, FleetEntry
from tests.fleet_helpers import central_config, central_running, cli_conn

T0 = 1_900_000_000.0

FEED = {
    "agency.txt": "agency_name,agency_url,agency_timezone\nBus,http://x,Europe/Berlin\n",
    "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
    "start_date,end_date\nWK,1,1,1,1,1,0,0,20240101,20991231\n",
    "routes.txt": "route_id,route_short_name,route_type\nR1,1,3\nR2,2,3\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\nA,A,52.5,13.4\nB,B,52.51,13.41\n",
    "trips.txt": "route_id,service_id,trip_id,block_id\nR1,WK,T1,BL\nR2,WK,T2,BL\nR2,WK,T3,\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    "T1,07:00:00,07:00:00,A,1\nT1,07:10:00,07:10:00,B,2\n"
    "T2,08:00:00,08:00:00,B,1\nT2,08:10:00,08:10:00,A,2\n"
    "T3,09:00:00,09:00:00,B,1\nT3,09:10:00,09:10:00,A,2\n",
}


@pytest.fixture
def store(central_db: str) -> Iterator[CentralStore]:
    """The tests taking it run on both backends (SQLite and PostgreSQL)."""
    s = open_store(central_db)
    yield s
    s.close()


@pytest.fixture
def feed_store(store: CentralStore, tmp_path: Path) -> CentralStore:
    folder = tmp_path / "feed"
    folder.mkdir()
    for name, text in FEED.items():
        (folder / name).write_text(text)
    import_gtfs(store, folder)
    return store


def desired(store: CentralStore, bus: str) -> DesiredState:
    found = store.desired(bus)
    assert found is not None, f"{bus} has no desired state"
    return codec.decode(DesiredState, found[1])


def message_ids(store: CentralStore, bus: str) -> list[str]:
    return [m.id for m in desired(store, bus).messages]


def seen_bus(store: CentralStore, bus: str, route_id: str | None = None) -> None:
    """A bus in central's fleet state, reporting `route_id`, without a desired state."""
    entry = FleetEntry(bus=bus, online=True, route_id=route_id)
    store.save_bus(bus, True, 1, T0, codec.encode(entry).decode())


def test_a_message_to_all_reaches_every_known_bus_with_a_new_version(
    store: CentralStore,
) -> None:
    seen_bus(store, "bus-01")
    next_desired(store, "bus-02", Assignment(route_id="R1"), now=T0)
    message, published = create_message(
        store, text_de="Hallo", text_en="Hello", targets=["all"], valid_to=T0 + 60, now=T0
    )
    assert sorted(published) == ["bus-01", "bus-02"]
    assert published["bus-02"][0] == 2  # the assignment was version 1
    for bus in ("bus-01", "bus-02"):
        (got,) = desired(store, bus).messages
        assert (got.id, got.text_de, got.text_en, got.target) == (
            message.id,
            "Hallo",
            "Hello",
            "all",
        )
        assert got.valid_to == T0 + 60
        assert codec.decode(DesiredState, published[bus][1]) == desired(store, bus)
    assert [m.id for m in list_messages(store)] == [message.id]


def test_a_route_message_reaches_the_buses_assigned_to_that_route_however_assigned(
    feed_store: CentralStore,
) -> None:
    store = feed_store
    next_desired(store, "by-route", Assignment(route_id="R2"), now=T0)
    next_desired(store, "by-trip", Assignment(trip_id="T2"), now=T0)
    next_desired(store, "by-block", Assignment(block_id="BL"), now=T0)  # T1 (R1) and T2 (R2)
    next_desired(store, "elsewhere", Assignment(trip_id="T1"), now=T0)
    seen_bus(store, "reports-r2", route_id="R2")  # no desired assignment: what it reports counts
    seen_bus(store, "reports-r1", route_id="R1")
    message, published = create_message(store, text_de="Umleitung", targets=["route:R2"], now=T0)
    assert sorted(published) == ["by-block", "by-route", "by-trip", "reports-r2"]
    assert recipients(store, message) == {b: "route:R2" for b in published}
    assert message_ids(store, "elsewhere") == []


def test_a_bus_target_creates_the_desired_state_of_a_bus_not_seen_yet(
    store: CentralStore,
) -> None:
    _, published = create_message(store, text_de="Für dich", targets=["bus:bus-09"], now=T0)
    assert list(published) == ["bus-09"]
    assert desired(store, "bus-09").messages[0].target == "bus:bus-09"
    assert desired(store, "bus-09").version == 1


def test_messages_follow_a_bus_when_it_is_reassigned(feed_store: CentralStore) -> None:
    store = feed_store
    next_desired(store, "bus-01", Assignment(route_id="R1"), now=T0)
    r1, _ = create_message(store, text_de="Linie 1", targets=["route:R1"], now=T0)
    r2, _ = create_message(store, text_de="Linie 2", targets=["route:R2"], now=T0)
    everyone, _ = create_message(store, text_de="Alle", targets=["all"], now=T0)
    assert sorted(message_ids(store, "bus-01")) == sorted([r1.id, everyone.id])
    next_desired(store, "bus-01", Assignment(trip_id="T3"), now=T0 + 1)  # T3 runs on R2
    assert sorted(message_ids(store, "bus-01")) == sorted([r2.id, everyone.id])
    # A bus first assigned after the message was sent gets the messages for everyone too.
    next_desired(store, "bus-new", Assignment(route_id="R1"), now=T0 + 2)
    assert sorted(message_ids(store, "bus-new")) == sorted([r1.id, everyone.id])


def test_messages_are_ordered_by_priority_in_the_desired_state(store: CentralStore) -> None:
    low, _ = create_message(store, text_de="unwichtig", targets=["bus:b1"], now=T0)
    high, _ = create_message(store, text_de="dringend", priority=9, targets=["bus:b1"], now=T0)
    assert message_ids(store, "b1") == [high.id, low.id]


def test_expired_messages_leave_every_desired_state_and_only_then(store: CentralStore) -> None:
    short, _ = create_message(
        store, text_de="kurz", targets=["bus:b1", "bus:b2"], valid_to=T0 + 10, now=T0
    )
    long, _ = create_message(store, text_de="lang", targets=["bus:b1"], valid_to=T0 + 1000, now=T0)
    versions = {b: desired(store, b).version for b in ("b1", "b2")}
    assert expire_messages(store, T0 + 9) == {}
    published = expire_messages(store, T0 + 10)
    assert sorted(published) == ["b1", "b2"]
    assert message_ids(store, "b1") == [long.id]
    assert message_ids(store, "b2") == []
    assert {b: desired(store, b).version for b in versions} == {
        b: v + 1 for b, v in versions.items()
    }
    assert {m.id: m.status for m in list_messages(store)} == {
        short.id: "expired",
        long.id: "active",
    }
    assert expire_messages(store, T0 + 11) == {}  # nothing new: nothing republished


def test_a_withdrawn_message_leaves_at_once_and_cannot_be_withdrawn_twice(
    store: CentralStore,
) -> None:
    message, _ = create_message(store, text_de="Fehler", targets=["bus:b1"], now=T0)
    assert list(withdraw_message(store, message.id, now=T0 + 1)) == ["b1"]
    assert message_ids(store, "b1") == []
    with pytest.raises(MessageError, match="withdrawn already"):
        withdraw_message(store, message.id, now=T0 + 2)
    with pytest.raises(MessageError, match="no message"):
        withdraw_message(store, "m-nothing", now=T0 + 2)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"text_de": "  "}, "German text is required"),
        ({"priority": 10}, "priority"),
        ({"targets": []}, "at least one target"),
        ({"targets": ["bus:no/slash"]}, "bad target"),
        ({"valid_to": T0 - 1}, "already be over"),
        ({"valid_from": T0 + 100, "valid_to": T0 + 50}, "after valid from"),
        ({"targets": ["route:R9"]}, "not in the imported GTFS feed"),
    ],
)
def test_a_message_that_makes_no_sense_is_refused(
    feed_store: CentralStore, kwargs: dict[str, object], why: str
) -> None:
    args: dict[str, object] = {"text_de": "Text", "targets": ["all"], "now": T0, **kwargs}
    with pytest.raises(MessageError, match=why):
        create_message(feed_store, **args)  # type: ignore[arg-type]
    assert list_messages(feed_store) == []


# -- over a real broker ---------------------------------------------------------------------


async def retained_desired(broker: Broker, bus: str) -> DesiredState:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"t-{time.monotonic_ns()}") as c:
        await c.subscribe(topics.desired(bus), qos=1)
        async with asyncio.timeout(10):
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                return codec.decode(DesiredState, msg.payload)
    raise AssertionError("no retained desired state")


async def test_the_message_command_publishes_each_targeted_bus_desired_state(
    mosquitto: Broker, central_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = central_db
    conn = cli_conn(mosquitto, db)
    args = ["central", "message", "--de", "Baustelle", "--en", "Roadworks", "--priority", "3"]
    with central_running(central_config(mosquitto, db)):  # the tools ask it
        status = await asyncio.to_thread(main, [*args, "--bus", "bus-01", "--bus", "bus-02", *conn])
        out = capsys.readouterr().out
        assert status == 0
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["buses"] == {"bus-01": 1, "bus-02": 1} and summary["published"] is True
        for bus in ("bus-01", "bus-02"):
            doc = await retained_desired(mosquitto, bus)
            (m,) = doc.messages
            assert (m.id, m.text_de, m.text_en, m.priority) == (
                summary["id"],
                "Baustelle",
                "Roadworks",
                3,
            )
            assert m.valid_to is not None and m.valid_to > time.time() + 23 * 3600  # default: +24h
        await asyncio.to_thread(main, ["central", "messages", *conn])
        (line,) = capsys.readouterr().out.strip().splitlines()
        listed = json.loads(line)
        assert (listed["id"], listed["status"], listed["buses"]) == (
            summary["id"],
            "active",
            ["bus-01", "bus-02"],
        )
        # Withdrawing publishes the emptied desired state.
        assert await asyncio.to_thread(main, ["central", "withdraw", summary["id"], *conn]) == 0
        assert (await retained_desired(mosquitto, "bus-01")).messages == []


def test_the_message_command_refuses_nonsense_with_exit_status_2(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_conn(mosquitto, tmp_path / "c.sqlite")
    with central_running(central_config(mosquitto, tmp_path / "c.sqlite")):
        assert main(["central", "message", "--de", "x", *db]) == 2  # no target
        assert main(["central", "message", "--de", "x", "--all", "--until", "soon", *db]) == 2
        assert (
            main(["central", "message", "--de", "x", "--all", "--until", "2001-01-01T00:00", *db])
            == 2
        )
    err = capsys.readouterr().err
    assert "at least one target" in err and "not a time" in err and "already be over" in err


async def test_the_expiry_task_publishes_desired_states_without_the_expired_message(
    mosquitto: Broker, store: CentralStore, tmp_path: Path
) -> None:
    now = time.time()
    keep, _ = create_message(store, text_de="bleibt", targets=["bus:bus-07"], now=now)
    gone, _ = create_message(
        store, text_de="geht", targets=["bus:bus-07"], valid_to=now + 4.0, now=now
    )
    # The service publishes every stored desired state when it connects, then expires the
    # message on its own client (central/service/sync.py).
    with central_running(central_config(mosquitto, store.path)):
        assert {m.id for m in (await retained_desired(mosquitto, "bus-07")).messages} == {
            keep.id,
            gone.id,
        }
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="watch") as w:
            await w.subscribe(topics.desired("bus-07"), qos=1)
            async with asyncio.timeout(15):
                async for msg in w.messages:  # the retained one, then what expiry publishes
                    assert isinstance(msg.payload, bytes)
                    doc = codec.decode(DesiredState, msg.payload)
                    if [m.id for m in doc.messages] == [keep.id]:
                        break
