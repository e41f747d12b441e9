"""`busfleet central health [BUS]`: the fleet's newest health reports (issue 16).

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools; it asks the running central (`FleetHealth`). Without
a bus: one line per bus (report age, disk, memory, load, temperature, clock, modem, version);
with one: each figure on its line. `--json` prints the records as central sends them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from busfleet.commands._common import ask_central, terminal_text

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "busfleet central health"
COLUMNS = ("BUS", "AGE", "DISK FREE", "MEM", "LOAD", "TEMP", "CLOCK", "MODEM", "VERSION")


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `health` to `busfleet central`."""
    p = csub.add_parser(
        "health",
        help="the buses' health: disk, memory, load, temperature, clock, modem",
        description="The newest health report of every bus (or of BUS): disk free for its "
        "data, memory, load, CPU temperature, uptime, agent version and slot, clock "
        "synchronisation and the modem, as each bus last sent them (every [health] "
        "interval_s). Alarms they raise (disk_low, clock_unsynced, restarting) are in the "
        "dashboard's alarm list.",
    )
    connection_args(p)
    p.add_argument("bus", nargs="?", help="one bus: every figure on its line")
    p.add_argument("--json", action="store_true", help="the records, one JSON object a line")
    p.set_defaults(func=health_cmd)


def _num(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else float(value)


def _age(seconds: float) -> str:
    if seconds < 0:
        return "ahead"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h" if seconds < 172_800 else f"{seconds / 86_400:.0f}d"


def _row(r: dict[str, Any], now: float) -> tuple[str, ...]:
    def num(key: str, fmt: str, unit: str = "") -> str:
        value = _num(r.get(key))
        return "-" if value is None else f"{value:{fmt}}{unit}"

    t = _num(r.get("t"))
    synced = r.get("clock_synced")
    clock = "-" if not isinstance(synced, bool) else "sync" if synced else "UNSYNC"
    pct = _num(r.get("disk_free_pct"))
    disk = num("disk_free_mb", ".0f", "MB") + ("" if pct is None else f" {pct:.0f}%")
    signal = _num(r.get("modem_signal_pct"))
    modem = "-" if signal is None else f"{signal:.0f}% {str(r.get('modem_tech') or '')[:6]}"
    return (
        str(r.get("bus", ""))[:16],
        "-" if t is None else _age(now - t),
        disk,
        num("mem_avail_mb", ".0f", "MB"),
        num("load1", ".2f"),
        num("temp_c", ".0f", "C"),
        clock,
        modem.strip(),
        str(r.get("version") or "-")[:12],
    )


def health_cmd(args: argparse.Namespace) -> int:
    from central.fleet.health import figure_lines
    from protocols.requests import FleetHealth

    records: list[dict[str, Any]] = []
    offset = 0
    while True:  # page by page (a record a bus)
        reply = ask_central(args, FleetHealth(bus=args.bus, offset=offset), PROG)
        if isinstance(reply, int):
            return reply
        records += reply.records
        more = reply.result.get("next")
        if not isinstance(more, int) or more <= offset:
            break
        offset = more
    if args.json:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return 0
    now = time.time()
    if args.bus:
        for record in records:
            t = _num(record.get("t"))
            print(f"{record.get('bus')}{' (backfilled report)' if record.get('backfill') else ''}")
            for label, value in figure_lines(record, t, now):
                print(f"  {label:<9} {_clean(value)}")
        return 0
    if not records:
        print("no health report from any bus yet")
        return 0
    table = [COLUMNS, *(tuple(_clean(c) for c in _row(r, now)) for r in records)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _clean(text: str) -> str:
    """A bus's text for a terminal (busfleet/commands/_common.py)."""
    return terminal_text(text)
