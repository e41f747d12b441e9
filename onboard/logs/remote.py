"""The `logs` command: the agent's recent log lines for central (`busfleet central logs`).

Its answer travels as any command's: a `cmd_ack` event in the outbox, sent in a batch of the
cmd_acks waiting (onboard/link/mqtt.py, up to `telemetry.batch_max` of them in one message),
stored by central in its events table. Central takes a message of at most
protocols.codec.MAX_PAYLOAD (256 KiB) and refuses a bigger one, which the bus would then send
again forever: so the answers waiting together must stay under it. ACK_BUDGET bounds the
bodies of all cmd_acks not yet receipted; an answer gets what is left of it, at most its
`max_bytes` (64 KiB compressed, 87,384 characters of base64: two full answers fit), and a
request that finds no room left fails with the reason ("ask again").
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from onboard.link.commands import Handler, Result, typed_as
from onboard.link.outbox import Outbox
from onboard.logs.disk import log_path
from onboard.logs.reader import read_log
from onboard.logs.redact import Redactor, secrets_of
from protocols.requests import Logs
from protocols.schemas import Command

if TYPE_CHECKING:
    from onboard.config import AgentConfig

__all__ = ["ACK_BUDGET", "LogCommands"]

log = logging.getLogger("busfleet.onboard.logs")

ACK_BUDGET = 200 * 1024  # bytes of cmd_ack bodies waiting at once: under 256 KiB with room
ROOM = 1024  # the rest of an answer's event: id, name, counts, the JSON around them
MIN_ANSWER = 1024  # compressed bytes; less is no answer worth sending


class LogCommands:
    """The `logs` handler for onboard/link/commands.py's `Commands`."""

    def __init__(self, path: Path, outbox: Outbox, redact: Redactor) -> None:
        self.path = path
        self.outbox = outbox
        self.redact = redact

    @classmethod
    def for_agent(cls, config: AgentConfig, outbox: Outbox) -> LogCommands:
        """The handler of the agent's own log ([logs] file) and secrets."""
        path = log_path(config.logs.file, config.bus.data_dir)
        return cls(path, outbox, Redactor(secrets_of(config.mqtt.password_file)))

    def handlers(self) -> dict[str, Handler]:
        return {"logs": self.logs}

    def logs(self, cmd: Command) -> Result:
        request = typed_as(cmd, Logs)
        waiting = sum(len(p.body) for p in self.outbox.pending(10_000, kind="cmd_ack"))
        room = (ACK_BUDGET - waiting - ROOM) * 3 // 4  # base64: 4 characters for 3 bytes
        max_bytes = min(request.max_bytes, room)
        if max_bytes < MIN_ANSWER:
            return Result(
                "failed", f"answers of {waiting} bytes are still on their way: ask again later"
            )
        started = time.monotonic()
        found = read_log(
            self.path,
            self.redact,
            now=time.time(),
            since_s=request.since_s,
            grep=request.grep,
            max_bytes=max_bytes,
        )
        log.info(
            "logs: %d lines, %d bytes (%d sent) in %.2f s%s",
            found.lines,
            found.bytes,
            len(found.log),
            time.monotonic() - started,
            ", truncated" if found.truncated else "",
        )
        return Result("ok", data=found.data())
