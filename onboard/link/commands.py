"""Commands from central: validated, run once (deduplicated by id), acknowledged through the
outbox so that the result reaches central exactly once, even across outages.

Results: ok, failed (with a reason) or expired (it arrived after its expiry). The names and
arguments are the one vocabulary of protocols/requests.py (`BusCommand`, `COMMAND_NAMES`),
shared with central; a handler reads its command typed with `typed(cmd)`, which fails it with
the reason when the arguments do not fit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from onboard.link.outbox import Outbox
from protocols import codec
from protocols.errors import CodecError, ProtocolError
from protocols.requests import BusCommand, bus_command
from protocols.schemas import Command, Event, Scalar

log = logging.getLogger("busfleet.onboard.commands")

C = TypeVar("C", bound=BusCommand)


@dataclass(frozen=True, slots=True)
class Result:
    result: str  # ok | failed | expired
    reason: str = ""
    data: dict[str, Scalar] | None = None


Handler = Callable[[Command], Result]


class Commands:
    def __init__(self, outbox: Outbox, handlers: dict[str, Handler]) -> None:
        self.outbox = outbox
        self.handlers = handlers
        self.db = outbox.db  # its commands_done table is onboard/store.py's migration
        self.rejected = 0

    def receive(self, payload: bytes, now: float | None = None) -> Result | None:
        """Run a command payload; None if it was bad or already done (redelivery)."""
        now = time.time() if now is None else now
        try:
            cmd = codec.decode(Command, payload)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected a command: %s", exc)
            return None
        done = self.db.execute("SELECT 1 FROM commands_done WHERE id = ?", [cmd.id]).fetchone()
        if done:
            return None
        if now > cmd.expires:
            result = Result("expired", f"arrived {now - cmd.expires:.0f} s after its expiry")
        elif (handler := self.handlers.get(cmd.name)) is None:
            result = Result("failed", f"unknown command {cmd.name!r}")
        else:
            try:
                result = handler(cmd)
            except (ValueError, TypeError, KeyError) as exc:
                result = Result("failed", f"{type(exc).__name__}: {exc}")
        log.info("command %s %s: %s %s", cmd.id, cmd.name, result.result, result.reason)
        data: dict[str, Scalar] = {"id": cmd.id, "name": cmd.name, "result": result.result}
        if result.reason:
            data["reason"] = result.reason
        data.update(result.data or {})
        # Recording the command as done and queueing its result happen in one transaction.
        with self.outbox.transaction():
            self.db.execute("INSERT INTO commands_done (id, t) VALUES (?, ?)", (cmd.id, now))
            self.outbox.put(
                "cmd_ack",
                lambda seq: codec.encode(Event(seq=seq, t=now, kind="cmd_ack", data=data)),
            )
        return result


def typed(cmd: Command) -> BusCommand:
    """The command as its typed struct (protocols/requests.py); ValueError (the command
    fails with its text as the reason) if its arguments do not fit its name."""
    try:
        return bus_command(cmd.name, cmd.args)
    except CodecError as exc:
        raise ValueError(str(exc)) from exc


def typed_as(cmd: Command, kind: type[C]) -> C:
    """`typed(cmd)`, which a handler registered for `kind`'s name expects to be a `kind`."""
    command = typed(cmd)
    if not isinstance(command, kind):
        raise ValueError(f"{cmd.name!r} is not a {kind.__name__} command")
    return command
