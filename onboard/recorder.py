"""Events into the outbox: the one way a part of the agent tells central something happened.

Vehicle events, GPS lost, journey events, the driver's messages and alarms, proofs of play,
portal feedback: each becomes an `Event` numbered by the outbox and encoded once
(`Outbox.put`), filed by severity (alarms, severity >= 3, and emergencies, 4, go before
everything else and are never dropped), and the link is woken to send it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from onboard.bounded import Bounds
from onboard.link.outbox import Outbox
from protocols import codec
from protocols.schemas import Event, Scalar

__all__ = ["EventRecorder", "outbox_kind"]


def outbox_kind(severity: int) -> str:
    """The outbox's kind for an event of this severity (its sending priority)."""
    return "emergency" if severity >= 4 else "alarm" if severity >= 3 else "event"


class EventRecorder:
    """`record(kind, data, severity=, t=)` -> the event's sequence number."""

    def __init__(
        self, outbox: Outbox, wake: Callable[[], None], bounds: Bounds | None = None
    ) -> None:
        self.outbox = outbox
        self.wake = wake  # tells the link there is something to send
        self.bounds = bounds or Bounds()  # what central would refuse is left out first

    def record(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        """Put an event into the outbox (alarms, severity >= 3, go before everything else)."""
        at = time.time() if t is None else t
        event = self.bounds.fit(Event(seq=0, t=at, kind=kind, severity=severity, data=data))
        if event is None:  # a time or severity no central takes: the moment it was recorded
            event = self.bounds.fit(Event(seq=0, t=time.time(), kind=kind, data=data))
        assert event is not None  # seq 0, a sane time, severity 0: always within bounds
        ready = event
        seq = self.outbox.put(
            outbox_kind(ready.severity),
            lambda seq: codec.encode(msgspec.structs.replace(ready, seq=seq)),
        )
        self.wake()
        return seq
