"""A command's row and the data of its answer (`busfleet central logs` waits for it).

The answer is the bus's `cmd_ack` event (its data holds the command's id); it was received
after the command went out, by central's own clock (`received`), so only the bus's events of
that kind since then are looked at. Plain SQL, the same on both backends.
"""

from __future__ import annotations

from typing import Any

from central.store.db import CentralStore
from protocols import codec
from protocols.errors import CodecError

__all__ = ["ANSWER_SLACK_S", "answer_data", "command_row"]

# Several central instances write `sent` and `received` by their own clocks: a little slack.
ANSWER_SLACK_S = 300.0


def command_row(store: CentralStore, bus: str, cmd_id: str) -> dict[str, Any] | None:
    """The command `cmd_id` sent to `bus`: id, name, sent, expires, status, reason, answered."""
    sql = (
        "SELECT id, name, sent, expires, status, reason, answered FROM commands"
        " WHERE id = ? AND bus = ?"
    )
    return next(iter(store.db.query(sql, [cmd_id, bus])), None)


def answer_data(store: CentralStore, bus: str, cmd_id: str, sent: float) -> dict[str, Any] | None:
    """The data of the bus's answer to `cmd_id` (the first it sent), if it is stored."""
    sql = (
        "SELECT data FROM events WHERE bus = ? AND kind = 'cmd_ack' AND received >= ? ORDER BY seq"
    )
    for row in store.db.query(sql, [bus, sent - ANSWER_SLACK_S]):
        try:
            data = codec.decode_json(row["data"])
        except CodecError:
            continue
        if isinstance(data, dict) and data.get("id") == cmd_id:
            return data
    return None
