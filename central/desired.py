"""Changing a bus's desired state safely, from any central process, and publishing it.

Assignments (`central assign`), passenger messages (`central message`) and the service's
message expiry all edit the same per-bus document, from different processes. Each change is
read-modify-write in one store transaction (SQLite's write lock, taken at once), so two of
them can never both turn version 7 into two different version 8s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import msgspec

from central import mqtt
from central.config import CentralConfig
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import DesiredState

__all__ = ["Published", "publish_desired", "update_desired"]

# bus -> (version, payload): desired documents stored and waiting to be published
Published = dict[str, tuple[int, bytes]]


def update_desired(
    store: CentralStore, bus: str, change: Callable[[DesiredState], DesiredState]
) -> tuple[int, bytes]:
    """Store `change(current document)` as the bus's next version; returns (version, payload).

    `change` gets the current document (version 0 if there is none) and returns the new one;
    the version is set here.
    """
    topics.check_bus_id(bus)
    with store.transaction():  # the write lock at once: no deadlock on upgrade
        previous = store.desired(bus)
        if previous is not None:
            base = codec.decode(DesiredState, previous[1])
        else:
            base = DesiredState(bus=bus, version=0)
        new = change(base)

        def body(version: int) -> bytes:
            return codec.encode(_with_version(new, version))

        version = store.put_desired(bus, body)
        stored = store.desired(bus)
    assert stored is not None
    return version, stored[1]


def _with_version(doc: DesiredState, version: int) -> DesiredState:
    return msgspec.structs.replace(doc, version=version)


async def publish_desired(config: CentralConfig, docs: Mapping[str, tuple[int, bytes]]) -> None:
    """Publish stored desired documents, retained, over a short-lived connection (CLI tools)."""
    if not docs:
        return
    identifier = f"{config.client_id}-desired-{uuid.uuid4().hex[:8]}"
    async with mqtt.client(config, identifier=identifier) as client:
        for bus, (_, payload) in sorted(docs.items()):
            await client.publish(topics.desired(bus), payload, qos=1, retain=True)
