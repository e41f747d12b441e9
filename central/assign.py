"""Assignments: central's desired state for a bus, versioned, stored, published retained."""

from __future__ import annotations

import uuid

import msgspec

from central import mqtt
from central.config import CentralConfig
from central.store import CentralStore
from protocols import codec, topics
from protocols.schemas import Assignment, DesiredState


def next_desired(store: CentralStore, bus: str, assignment: Assignment) -> tuple[int, bytes]:
    """Store the bus's next desired document (the previous one with a new assignment)."""
    topics.check_bus_id(bus)
    previous = store.desired(bus)
    base = codec.decode(DesiredState, previous[1]) if previous else DesiredState(bus=bus, version=0)

    def body(version: int) -> bytes:
        return codec.encode(msgspec.structs.replace(base, version=version, assignment=assignment))

    version = store.put_desired(bus, body)
    stored = store.desired(bus)
    assert stored is not None
    return version, stored[1]


async def assign(config: CentralConfig, bus: str, assignment: Assignment) -> int:
    """Record and push an assignment; the bus converges to it whenever it is connected."""
    store = CentralStore(config.db)
    try:
        version, payload = next_desired(store, bus, assignment)
    finally:
        store.close()
    async with mqtt.client(
        config, identifier=f"{config.client_id}-assign-{uuid.uuid4().hex[:8]}"
    ) as client:
        await client.publish(topics.desired(bus), payload, qos=1, retain=True)
    return version
