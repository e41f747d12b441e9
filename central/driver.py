"""Driver messages at central: dispatch to the driver's terminal, and what drivers send back.

A message to a driver is the command `DriverMessage` {text} (protocols/requests.py), sent
like any command by the service (central/service/dispatch.py): its id
and expiry are the command's, and the bus's answer "ok" means it is on the terminal
(delivered). The driver's acknowledgement comes later as a `driver_ack` event {id}, timed when
the driver tapped it. Drivers send canned messages (`driver_message` events: code, text and
the bus's position) and the silent emergency alarm (`emergency`, severity 4, with position).
All of them are ordinary rows of the `commands` and `events` tables; `driver_log` reads them
back as one time-ordered list.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from central.store import queries as query_db
from central.store.db import CentralStore
from protocols.requests import DriverMessage

COMMAND = str(DriverMessage.__struct_config__.tag)
MAX_TEXT = 500  # what the terminal shows; longer messages are refused, not cut
DEFAULT_TTL_S = 1800.0  # a bus away longer answers "expired" and never shows the message
EVENT_KINDS = ("driver_message", "driver_ack", "emergency")
STATUS = {"sent": "sent", "ok": "delivered", "failed": "failed", "expired": "expired"}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the driver log. `what`: to_driver | driver_ack | from_driver | emergency."""

    t: float  # sent (to_driver) or when it happened on the bus
    bus: str
    what: str
    id: str | None = None  # the dispatch message (to_driver, driver_ack)
    text: str | None = None
    code: str | None = None  # the canned message's code (from_driver)
    status: str | None = None  # to_driver: sent | delivered | failed | expired
    delivered: float | None = None  # to_driver: when the bus put it on the terminal
    acked: float | None = None  # to_driver: when the driver acknowledged it
    severity: int | None = None
    lat: float | None = None
    lon: float | None = None
    trip: str | None = None
    received: float | None = None  # when central stored the bus's event

    def as_dict(self) -> dict[str, Any]:
        """Without the fields that do not apply (None)."""
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


def driver_log(
    store: CentralStore, *, bus: str | None = None, since: float | None = None
) -> list[LogEntry]:
    """Messages to drivers (with delivery and acknowledgement), drivers' acknowledgements,
    canned messages and emergency alarms since `since` (default: the last 24 hours)."""
    since = time.time() - 86400.0 if since is None else since
    events = query_db.event_rows_since(store, since, EVENT_KINDS, bus)
    acks: dict[str, float] = {}
    entries: list[LogEntry] = []
    for bus_id, t, kind, severity, raw, received in events:
        data = _data(raw)
        if kind == "driver_ack":
            msg_id = _str(data.get("id"))
            if msg_id is not None:
                acks.setdefault(msg_id, t)
            entries.append(LogEntry(t, bus_id, "driver_ack", id=msg_id, received=received))
            continue
        entries.append(
            LogEntry(
                t,
                bus_id,
                "emergency" if kind == "emergency" else "from_driver",
                text=_str(data.get("text")),
                code=_str(data.get("code")),
                severity=severity,
                lat=_num(data.get("lat")),
                lon=_num(data.get("lon")),
                trip=_str(data.get("trip")),
                received=received,
            )
        )
    commands = query_db.sent_commands(store, since, COMMAND, bus)
    for msg_id, bus_id, sent, args, status, answered in commands:
        if msg_id not in acks:  # acknowledged before `since`'s window closed on its event
            acked = query_db.driver_ack_time(store, bus_id, msg_id)
            if acked is not None:
                acks[msg_id] = acked
        entries.append(
            LogEntry(
                sent,
                bus_id,
                "to_driver",
                id=msg_id,
                text=_str(_data(args).get("text")),
                status=STATUS.get(status, status),
                delivered=answered if status == "ok" else None,
                acked=acks.get(msg_id),
            )
        )
    texts = {e.id: e.text for e in entries if e.what == "to_driver"}
    entries = [
        LogEntry(e.t, e.bus, e.what, id=e.id, text=texts.get(e.id), received=e.received)
        if e.what == "driver_ack" and e.id in texts
        else e
        for e in entries
    ]
    entries.sort(key=lambda e: (e.t, e.bus))
    return entries


def _data(raw: str | bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
