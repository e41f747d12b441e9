"""Dispatchers' requests for a bus's log (issue 16), as timetable_requests.py.

The log itself is asked for with the ordinary command path: `SendCommand` with a `Logs`
command (id, expiry, tracked as sent / ok / failed / expired). `CommandAnswer` is how a tool
waits for it: the command's status and, once the bus answered, the data of its answer (for
`logs`: the packed lines, protocols/logtext.py). Central passes the data on as the bus sent
it; the tool unpacks it with a bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from central.config import CentralConfig
from central.errors import Refused
from central.store import answers
from central.store.db import CentralStore
from protocols import topics
from protocols.errors import ProtocolError
from protocols.requests import CommandAnswer, RequestBase
from protocols.schemas import Scalar

__all__ = ["Context", "handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Handler = Callable[[Any, Any], Answer]
# What the command's row says; the bus's data cannot overwrite these.
OWN_KEYS = ("id", "bus", "name", "status", "reason", "sent", "expires", "answered")


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore


def handlers(config: CentralConfig, page: Callable[..., Any]) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def command_answer(c: Context, r: CommandAnswer) -> Answer:
        try:
            bus = topics.check_bus_id(r.bus.strip())
        except ProtocolError as exc:
            raise Refused(str(exc)) from None
        row = answers.command_row(c.store, bus, r.id.strip())
        if row is None:
            raise Refused(f"no command {r.id.strip()!r} was sent to {bus}")
        result: dict[str, Scalar] = {}
        if row["status"] in ("ok", "failed"):
            data = answers.answer_data(c.store, bus, row["id"], float(row["sent"]))
            for key, value in (data or {}).items():
                if key not in OWN_KEYS and isinstance(value, str | int | float | bool):
                    result[key] = value
        result.update({k: row.get(k) for k in OWN_KEYS if k != "bus"})
        result["bus"] = bus
        return result, {}

    return {CommandAnswer: command_answer}
