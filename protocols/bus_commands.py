"""Commands to a bus: one-off orders, told apart by their `name` (protocols/requests.py
re-exports them; they live here to keep that module small). On the wire a command travels
as `protocols.schemas.Command` (name + args), so agents of every version read it, and
`bus_command` turns that back into the typed struct at the bus. Pure.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocols.errors import CodecError
from protocols.schemas import Scalar

__all__ = [
    "BUS_COMMANDS",
    "COMMAND_NAMES",
    "MAX_LOGS_BYTES",
    "MAX_LOGS_GREP",
    "MAX_LOGS_SINCE_S",
    "Announce",
    "BusCommand",
    "BusCommandBase",
    "DriverMessage",
    "Logs",
    "Resend",
    "Restart",
    "bus_command",
    "command_args",
]

When = Annotated[float, msgspec.Meta(ge=0.0)]
DriverText = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]  # the terminal's limit


class BusCommandBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="name"):
    """A one-off order to a bus; its `name` is the tag (Command.name on the wire)."""


class Resend(BusCommandBase, tag="resend", frozen=True, kw_only=True):
    """Send the outbox's history from `since` (unix s) again."""

    since: When


class Announce(BusCommandBase, tag="announce", frozen=True, kw_only=True):
    """A live announcement from city hall (issue 17): the bus speaks `de` (and `en`) and shows
    it on the displays at the same moment. `announcement` is its id, the same on every bus it
    went to (central/announcements.py). `text` is an older central's one text, taken as `de`;
    a central sends it beside `de` too, so that an older agent still shows something."""

    de: DriverText | None = None  # required in effect: `de` or `text`
    en: DriverText | None = None
    text: DriverText | None = None
    announcement: Annotated[str, msgspec.Meta(max_length=64)] | None = None

    def __post_init__(self) -> None:
        if not self.german:
            raise ValueError("announce needs a German text: `de` (or `text`), 1 to 500 characters")

    @property
    def german(self) -> str:
        """The German text (`de`, else an older central's `text`), stripped."""
        return (self.de or self.text or "").strip()


class Restart(BusCommandBase, tag="restart", frozen=True, kw_only=True):
    """Restart the agent (it answers first; systemd starts it again)."""


class DriverMessage(BusCommandBase, tag="driver_message", frozen=True, kw_only=True):
    """Put `text` on the driver's terminal; the driver acknowledges it later."""

    text: DriverText


# -- the agent's log, read remotely (issue 16: `busfleet central logs`) --
MAX_LOGS_SINCE_S = 7 * 86400.0  # a week back at most
MAX_LOGS_GREP = 200  # characters of a plain substring: never a pattern from the network
MAX_LOGS_BYTES = 64 * 1024  # compressed; base64 makes it 87,384 characters of the answer


class Logs(BusCommandBase, tag="logs", frozen=True, kw_only=True):
    """The agent's log lines of the last `since_s` seconds that contain `grep` (a plain,
    case-sensitive substring; "" keeps all), the newest that fit `max_bytes` compressed; the
    answer's data: `log` (zlib, base64; protocols/logtext.py), `lines`, `bytes`, `truncated`."""

    since_s: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_LOGS_SINCE_S)] = 3600.0
    grep: Annotated[str, msgspec.Meta(max_length=MAX_LOGS_GREP)] = ""
    max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MAX_LOGS_BYTES)] = MAX_LOGS_BYTES


BusCommand = Resend | Announce | Restart | DriverMessage | Logs
BUS_COMMANDS: tuple[type[BusCommandBase], ...] = (Resend, Announce, Restart, DriverMessage, Logs)
COMMAND_NAMES: tuple[str, ...] = tuple(str(c.__struct_config__.tag) for c in BUS_COMMANDS)


def command_args(command: BusCommand) -> dict[str, Scalar]:
    """The command's arguments as carried in `Command.args` (its name aside)."""
    raw = msgspec.to_builtins(command)
    raw.pop("name", None)
    return {k: v for k, v in raw.items() if v is not None}


def bus_command(name: str, args: dict[str, Scalar]) -> BusCommand:
    """The typed command of a `Command`'s name and args; CodecError if it is none we know or
    its arguments are wrong (the message says which)."""
    if name not in COMMAND_NAMES:
        raise CodecError(f"unknown command {name!r}: one of {', '.join(COMMAND_NAMES)}")
    try:
        command: BusCommand = msgspec.convert({**args, "name": name}, BusCommand)
    except msgspec.ValidationError as exc:
        raise CodecError(f"{name}: {exc}", schema=name) from exc
    return command
