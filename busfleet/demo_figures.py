"""The headless demo's figures: what central stored, what it counted, what the buses report.

Read from the outside, as an operator would see them: central's database (read-only),
central's retained counters and the retained fleet entries on the broker (`fleet/{bus}`,
central's view of each bus from its last reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import aiomqtt

from busfleet.broker.launch import Broker
from central.store.queries import event_count, telemetry_counts
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.schemas import CentralStats, FleetEntry

__all__ = [
    "STOP_KINDS",
    "database_figures",
    "fleet_entries",
    "plays_stored",
    "rejected_by_central",
    "timetable",
]

# Journey events of a bus leaving a stop behind: departed after a halt, or passed without one.
STOP_KINDS = ("departed", "passed")
QUIET_S = 1.0  # retained messages come at once: this long without one, all are in
READ_S = 10.0  # at most this long for the retained fleet entries


def database_figures(db: Path) -> dict[str, int]:
    """Buses seen, positions stored and stops passed (all buses), from central's database
    (read-only; zeros while central has not created it)."""
    buses, positions = telemetry_counts(db) or (0, 0)
    return {
        "buses_seen": buses,
        "positions_stored": positions,
        "stops_passed": event_count(db, STOP_KINDS) or 0,
    }


def plays_stored(db: Path) -> int:
    """Proofs of play central stored (all buses; 0 while it has not created its database)."""
    return event_count(db, ("play",)) or 0


def timetable(entries: dict[str, FleetEntry], version: int | None) -> dict[str, int | None]:
    """The published version, how many buses report running it, and the largest delay (s)
    any bus reports now (None when none reports one)."""
    delays = [abs(e.delay_s) for e in entries.values() if e.delay_s is not None]
    on = sum(1 for e in entries.values() if version is not None and e.timetable == version)
    return {
        "timetable_version": version,
        "buses_on_timetable": on,
        "max_abs_delay_s": max(delays) if delays else None,
    }


def _protocol(broker: Broker) -> aiomqtt.ProtocolVersion:
    return (
        aiomqtt.ProtocolVersion.V5 if broker.kind == "mosquitto" else aiomqtt.ProtocolVersion.V311
    )


def fleet_entries(broker: Broker) -> dict[str, FleetEntry]:
    """Central's retained fleet entries, by bus ({} and a line on stderr if unreadable)."""
    try:
        return asyncio.run(_fleet_entries(broker))
    except (aiomqtt.MqttError, TimeoutError) as exc:
        print(f"[demo] cannot read the fleet entries: {exc}", file=sys.stderr)
        return {}


async def _fleet_entries(broker: Broker) -> dict[str, FleetEntry]:
    wanted = topics.all_buses(topics.Kind.FLEET)
    entries: dict[str, FleetEntry] = {}
    async with aiomqtt.Client(broker.host, broker.port, protocol=_protocol(broker)) as client:
        await client.subscribe(wanted)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READ_S):
                while True:
                    async with asyncio.timeout(QUIET_S):
                        message = await anext(client.messages)
                    # amqtt also hands a new subscriber retained messages of other topics
                    if not message.topic.matches(wanted) or not isinstance(message.payload, bytes):
                        continue
                    try:
                        entry = codec.decode(FleetEntry, message.payload)
                    except ProtocolError as exc:
                        print(f"[demo] a fleet entry that does not decode: {exc}", file=sys.stderr)
                        continue
                    entries[entry.bus] = entry
    return entries


def rejected_by_central(broker: Broker) -> int:
    """Central's rejection counter, from the retained stats it publishes (1 if unreadable)."""
    try:
        stats = asyncio.run(_central_stats(broker))
    except (aiomqtt.MqttError, ProtocolError, TimeoutError) as exc:
        print(f"[demo] cannot read central's stats: {exc}", file=sys.stderr)
        return 1
    return int(stats.counters.get("rejected", 0))


async def _central_stats(broker: Broker) -> CentralStats:
    async with aiomqtt.Client(broker.host, broker.port, protocol=_protocol(broker)) as client:
        await client.subscribe(topics.central_stats())
        async with asyncio.timeout(5):
            async for message in client.messages:
                # amqtt also hands a new subscriber retained messages of other topics
                if message.topic.matches(topics.central_stats()) and isinstance(
                    message.payload, bytes
                ):
                    return codec.decode(CentralStats, message.payload)
    raise TimeoutError("no stats from central")
