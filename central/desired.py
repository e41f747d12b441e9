"""Changing a bus's desired state safely: read, change, store the next version.

Assignments, passenger messages, playlists, diversions and the service's periodic sync all
edit the same per-bus document. Each change is read-modify-write in one store transaction
(SQLite's write lock, taken at once), so two of them can never both turn version 7 into two
different version 8s, even with several service workers on one database. The functions here
store and return (version, payload); the service alone publishes them
(central/service/service.py), and tells fleet state the new version as it does.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import DesiredState

__all__ = ["Published", "update_desired"]

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
