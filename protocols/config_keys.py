"""Remote configuration's keys, as central and the bus both read them (issue 14).

The desired document's `config` holds agent settings by their TOML names: "section.key"
(`telemetry.send_every_s`, `portal.max_clients`). Central checks a key's form and refuses the
keys that must never come over the air before it stores them; the bus checks the same again
(a retained document may come from an older central, or from someone with the broker's
password) and then judges the value against its own config schema (onboard/remote_config.py):
central does not know the agent's schema, the bus is the judge of values.

Never over the air (`FORBIDDEN`): what the bus is (its id, its data directory), how it reaches
city hall (a wrong broker host, port, protocol or CA would cut it off, and nothing remote could
set it back; `insecure_dev_broker` turns TLS off), its credentials, and any path to a file on
the bus (the file would have to be there; a path could point at anything). Those are set by
whoever installs the bus, in agent.toml.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "FORBIDDEN",
    "KEY_PATTERN",
    "MAX_KEYS",
    "MAX_TEXT",
    "ConfigValue",
    "forbidden",
    "refusal",
]

ConfigValue = str | int | float | bool

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,59}$")
MAX_KEYS = 200  # keys in one bus's remote configuration; the agent has fewer than 100
MAX_TEXT = 1000  # characters of a text value
MAX_INT = 2**53  # what every JSON reader holds exactly

_LINK = (
    "the link to city hall: a wrong value would cut the bus off,"
    " and nothing remote could set it back"
)
_PATH = "a path to a file on the bus: set in agent.toml by whoever installs the bus"

# A key ending in "." stands for its whole section. Reasons are said to the dispatcher.
FORBIDDEN: dict[str, str] = {
    "bus.": "the bus's identity and data directory are set on the bus only",
    "mqtt.host": _LINK,
    "mqtt.port": _LINK,
    "mqtt.protocol": _LINK,
    "mqtt.username": "credentials are set on the bus only",
    "mqtt.password_file": "credentials are set on the bus only",
    "mqtt.ca_file": "the CA the bus trusts for its link: set on the bus only",
    "mqtt.insecure_dev_broker": "it turns TLS off: set on a development bus only, in agent.toml",
    "gps.device": _PATH,
    "gps.replay_path": _PATH,
    "can.channel": _PATH + " (or the bus's CAN interface)",
    "journey.gtfs": _PATH + " (timetables come from central as packages)",
    "portal.nft_template": _PATH,
    "portal.tls_cert": _PATH,
    "portal.tls_key": _PATH + " (a secret)",
    # The software's trust anchors: whoever could set them could install any code on the bus.
    "update.repo_url": "where releases come from: set on the bus only (deploy/README.md)",
    "update.trusted_root": _PATH + " (the TUF root the bus trusts: set at provisioning only)",
    "logs.file": _PATH,
}


def forbidden(key: str) -> str | None:
    """Why `key` must never come over the air, or None."""
    section = key.partition(".")[0] + "."
    return FORBIDDEN.get(key) or FORBIDDEN.get(section)


def refusal(key: str, value: object) -> str | None:
    """Why central or the bus refuses `key` = `value` on sight (its form, a forbidden key, a
    value that is no scalar or out of any sane bound), or None; the value's meaning is for the
    bus's schema to judge."""
    if not KEY_PATTERN.match(key):
        return "not a key: give section.key as in agent.toml (e.g. telemetry.send_every_s)"
    if why := forbidden(key):
        return f"never set remotely: {why}"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -MAX_INT <= value <= MAX_INT else "integer out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) and abs(value) <= MAX_INT else "number out of range"
    if isinstance(value, str):
        return None if len(value) <= MAX_TEXT else f"text longer than {MAX_TEXT} characters"
    return "not a text, number or true/false"
