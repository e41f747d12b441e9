"""Commands sent to the buses (table `commands`): what runs on both backends.

`CommandTables` is a part of `CentralStore` ahead of `TelemetryTables` (telemetry.py, the
ingest's module, which also holds the commands' other statements, portable already): its
`add_command` is plain SQL, where telemetry.py's used a sqlite-utils table helper, which
PostgreSQL's connection interface has not (backend.py). Once telemetry.py drops its copy,
the commands' statements can all move here.
"""

from __future__ import annotations

import sqlite_utils

__all__ = ["COMMAND_COLUMNS", "CommandTables"]

COMMAND_COLUMNS = ("id", "bus", "name", "args", "sent", "expires", "status")
_INSERT = (
    f"INSERT INTO commands ({', '.join(COMMAND_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(COMMAND_COLUMNS))})"
)


class CommandTables:
    """Commands sent to buses; a part of `CentralStore`."""

    db: sqlite_utils.Database

    def add_command(
        self, cmd_id: str, bus: str, name: str, args: str, sent: float, expires: float
    ) -> None:
        """A command sent to a bus, waiting for its answer."""
        self.db.execute(_INSERT, (cmd_id, bus, name, args, sent, expires, "sent"))
