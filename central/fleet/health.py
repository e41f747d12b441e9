"""Fleet health at central, pure: the alarms a bus's health reports raise and clear, and its
figures said for people.

The bus sends a `health` event (onboard/health/collect.py: disk, memory, load, temperature,
uptime, version and slot, clock, modem) every `[health] interval_s` and an `agent_start` event
at every start. Three alarms follow them, each raised once while its condition holds and
cleared when it stops:

- `disk_low`: the disk free for the agent's data below `disk_free_pct` of its budget (or of
  the file system) or below `disk_free_mb`;
- `clock_unsynced`: the bus says its clock is not synchronised (unknown says nothing);
- `restarting`: at least `restarts` starts within `restart_window_s` (by central's clock, when
  they arrive); it clears when fewer remain in the window.

Only live events are fed here to raise (central/service/alarm_center.py): backfilled health is
history, stored and shown but alarming no one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from central.fleet.alarms import CLEAR, RAISE, Change
from protocols.release import EVENT_AGENT_START
from protocols.schemas import Event, Scalar

__all__ = [
    "EVENT_HEALTH",
    "KINDS",
    "HealthAlarms",
    "HealthParams",
    "HealthWatch",
    "disk_low",
    "figure_lines",
    "packed",
]

EVENT_HEALTH: Final = "health"
DISK_LOW: Final = "disk_low"
CLOCK_UNSYNCED: Final = "clock_unsynced"
RESTARTING: Final = "restarting"
KINDS: Final = (DISK_LOW, CLOCK_UNSYNCED, RESTARTING)


@dataclass(frozen=True, slots=True)
class HealthParams:
    """central.toml's `health_*` keys."""

    disk_free_pct: float = 10.0  # below this share of the budget (or file system) free: alarm
    disk_free_mb: float = 0.0  # below this many MB free: alarm; 0: the share only
    restarts: int = 3  # this many starts ...
    restart_window_s: float = 600.0  # ... within this long: the bus keeps restarting


@dataclass(frozen=True, slots=True)
class HealthWatch:
    """What the health detectors remember of one bus."""

    disk_low: bool = False
    unsynced: bool = False
    restarting: bool = False
    # Its recent starts: (the event's sequence number, when it arrived by central's clock). By
    # sequence number, so that a start sent again (its receipt lost in the restart) counts once.
    starts: tuple[tuple[int, float], ...] = ()
    # No clearing of `restarting` before this; None: from a central before this one, which knew
    # the starts: a whole window from the first tick.
    quiet_from: float | None = 0.0


def _num(value: Scalar | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def disk_low(data: dict[str, Scalar], p: HealthParams) -> bool | None:
    """Whether a health report's disk figures are below the thresholds; None: no figures."""
    free = _num(data.get("disk_free_mb"))
    if free is None:
        return None
    pct = _num(data.get("disk_free_pct"))
    low_pct = p.disk_free_pct > 0 and pct is not None and pct < p.disk_free_pct
    return low_pct or (p.disk_free_mb > 0 and free < p.disk_free_mb)


def _disk_text(data: dict[str, Scalar]) -> str:
    free, total = _num(data.get("disk_free_mb")), _num(data.get("disk_total_mb"))
    pct = _num(data.get("disk_free_pct"))
    text = f"{_mb(free)} free"
    if total is not None:
        text += f" of {_mb(total)}"
    if pct is not None:
        text += f" ({pct:.0f} %)"
    return text


@dataclass(slots=True)
class HealthAlarms:
    """The health detectors of every bus, fed with live events."""

    params: HealthParams = field(default_factory=HealthParams)
    watch: dict[str, HealthWatch] = field(default_factory=dict)

    def resume(self, open_kinds: dict[str, list[str]]) -> None:
        """Start from the alarms a central before this one left open: each starts as raised so
        that it clears when its condition ends (`restarting` not before a whole window)."""
        self.watch = {}
        for bus, kinds in open_kinds.items():
            if set(kinds) & set(KINDS):
                self.watch[bus] = HealthWatch(
                    disk_low=DISK_LOW in kinds,
                    unsynced=CLOCK_UNSYNCED in kinds,
                    restarting=RESTARTING in kinds,
                    quiet_from=None,
                )

    def on_events(self, bus: str, events: Iterable[Event], now: float) -> list[Change]:
        """Live events of one bus: its health reports and starts."""
        w = self.watch.get(bus, HealthWatch())
        changes: list[Change] = []
        for event in events:
            if event.kind == EVENT_HEALTH:
                w = self._health(w, event.data, now, changes)
            elif event.kind == EVENT_AGENT_START and all(s[0] != event.seq for s in w.starts):
                w = self._start(w, event.seq, event.data, now, changes)
        if changes or w != self.watch.get(bus, HealthWatch()):
            self.watch[bus] = w
        return changes

    def tick(self, now: float) -> dict[str, list[Change]]:
        """A bus that stopped restarting: its `restarting` alarm clears."""
        out: dict[str, list[Change]] = {}
        window = self.params.restart_window_s
        for bus, w in list(self.watch.items()):
            if not w.starts and not w.restarting:
                continue
            starts = tuple(s for s in w.starts if s[1] > now - window)
            restarting, quiet = w.restarting, w.quiet_from
            if quiet is None:
                quiet = now + window
            if restarting and len(starts) < self.params.restarts and now >= quiet:
                restarting = False
                out[bus] = [Change(CLEAR, RESTARTING, now)]
            if (starts, restarting, quiet) != (w.starts, w.restarting, w.quiet_from):
                self.watch[bus] = replace(w, starts=starts, restarting=restarting, quiet_from=quiet)
        return out

    def _health(
        self, w: HealthWatch, data: dict[str, Scalar], now: float, changes: list[Change]
    ) -> HealthWatch:
        low = disk_low(data, self.params)
        if low is not None and low != w.disk_low:
            text = _disk_text(data) if low else ""
            changes.append(Change(RAISE if low else CLEAR, DISK_LOW, now, text=text))
            w = replace(w, disk_low=low)
        synced = data.get("clock_synced")
        if isinstance(synced, bool) and synced == w.unsynced:
            unsynced = not synced
            source = data.get("clock_source") or "the bus"
            text = f"{source} says the clock is not synchronised" if unsynced else ""
            changes.append(Change(RAISE if unsynced else CLEAR, CLOCK_UNSYNCED, now, text=text))
            w = replace(w, unsynced=unsynced)
        return w

    def _start(
        self,
        w: HealthWatch,
        seq: int,
        data: dict[str, Scalar],
        now: float,
        changes: list[Change],
    ) -> HealthWatch:
        p = self.params
        recent = (s for s in w.starts if s[1] > now - p.restart_window_s)
        starts = (*recent, (seq, now))[-max(p.restarts, 1) :]
        restarting = w.restarting
        if not restarting and p.restarts > 0 and len(starts) >= p.restarts:
            restarting = True
            version = data.get("version") or "?"
            text = f"{len(starts)} starts within {_duration(p.restart_window_s)} (v{version})"
            changes.append(Change(RAISE, RESTARTING, now, text=text[:200]))
        return replace(w, starts=starts, restarting=restarting)


# -- for people ------------------------------------------------------------------------------
def _mb(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value / 1000:,.1f} GB"
    return f"{value:,.1f} MB" if value < 100 else f"{value:,.0f} MB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def _when(t: float | None) -> str:
    if t is None:
        return "—"
    try:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "—"


def figure_lines(data: dict[str, Scalar], t: float | None, now: float) -> list[tuple[str, str]]:
    """A health report as (label, value) lines for people (the dashboard, the CLI); each value
    is short (the bus's texts are cut) so that a label and its value fit 80 columns."""
    if t is None:
        return [("report", "none yet")]
    n = _num
    ago = now - t
    age = f" ({_duration(ago)} ago)" if 0 <= ago < 1e9 else ""
    lines = [("report", f"{_when(t)}{age}")]
    disk = _disk_text(data) if n(data.get("disk_free_mb")) is not None else "—"
    used = n(data.get("data_used_mb"))
    if used is not None:
        disk += f", data {_mb(used)}"
    lines.append(("disk", disk))
    avail, total = n(data.get("mem_avail_mb")), n(data.get("mem_total_mb"))
    memory = "—" if avail is None else f"{_mb(avail)} available"
    if avail is not None and total is not None:
        memory += f" of {_mb(total)}"
    lines.append(("memory", memory))
    loads = [n(data.get(k)) for k in ("load1", "load5", "load15")]
    lines.append(("load", " ".join("—" if x is None else f"{x:.2f}" for x in loads)))
    temp = n(data.get("temp_c"))
    lines.append(("CPU temp", "not exposed" if temp is None else f"{temp:.1f} °C"))
    lines.append(("uptime", _duration(n(data.get("uptime_s")))))
    lines.append(("agent up", _duration(n(data.get("agent_uptime_s")))))
    version = str(data.get("version") or "?")[:32]
    slot = str(data.get("slot") or "")[:40]
    lines.append(("version", f"{version}{f' (slot {slot})' if slot else ''}"))
    synced, source = data.get("clock_synced"), str(data.get("clock_source") or "")[:20]
    clock = "unknown" if not isinstance(synced, bool) else "synchronised"
    if synced is False:
        clock = "NOT synchronised"
    lines.append(("clock", f"{clock}{f' ({source})' if source else ''}"))
    lines.append(("modem", _modem(data)))
    return lines


def _modem(data: dict[str, Scalar]) -> str:
    keys = ("modem_signal_pct", "modem_tech", "modem_operator", "modem_state")
    if all(data.get(k) is None for k in keys):
        return "none (no ModemManager)"
    signal = _num(data.get("modem_signal_pct"))
    parts = ["signal —" if signal is None else f"signal {signal:.0f} %"]
    parts += [str(data.get(k) or "")[:24] for k in keys[1:] if data.get(k)]
    return ", ".join(parts)


def packed(pairs: list[tuple[str, str]], width: int = 74) -> list[str]:
    """(label, value) pairs as few lines as fit `width`, "label value" joined by " · "."""
    out: list[str] = []
    for label, value in pairs:
        item = f"{label} {value}"[:width]
        if out and len(out[-1]) + 3 + len(item) <= width:
            out[-1] += f" · {item}"
        else:
            out.append(item)
    return out
