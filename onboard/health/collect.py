"""What the bus's machine says of itself: one `collect()` call reads every source.

Each source fails soft: one that cannot be read (no /proc here, no thermal zone on this board,
no ModemManager, a tool that hangs) gives None for its figures, is logged once (and again only
after it worked in between), and never stops the others or the agent. The commands run with a
timeout; the whole call is blocking and meant for a thread (onboard/health/runtime.py).

The figures are flat scalars, each bounded (numbers rounded, texts cut), so that a `health`
event fits what central takes (protocols/schemas.py `BusScalar`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from protocols.schemas import BusScalar

__all__ = [
    "COMMAND_TIMEOUT_S",
    "Collector",
    "Figures",
    "agent_version",
    "clock_synced",
    "cpu_temperature",
    "data_size",
    "disk",
    "load",
    "memory",
    "modem",
    "parse_chrony_tracking",
    "parse_meminfo",
    "parse_mmcli_list",
    "parse_mmcli_modem",
    "uptime",
]

log = logging.getLogger("busfleet.onboard.health")

Figures = dict[str, BusScalar]
COMMAND_TIMEOUT_S = 5.0  # timedatectl, chronyc, mmcli: a tool that hangs longer says nothing
MB = 1_000_000
TEXT_MAX = 64  # an operator name, a technology, a version: cut to this
SLOT_MAX = 128
# Thermal zone types that name the CPU (x86: x86_pkg_temp; ARM boards: cpu-thermal, soc_thermal).
CPU_ZONES = ("cpu", "x86_pkg", "soc")


def _text(value: str, limit: int = TEXT_MAX) -> str:
    return "".join(ch for ch in value if ch.isprintable())[:limit]


# -- the sources, each a function of its inputs (paths, a command runner) ----------------------
def data_size(path: Path) -> int:
    """The bytes of the files under `path` (not following links; files that vanish meanwhile
    count nothing)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def disk(data_dir: Path, budget_mb: float) -> Figures:
    """Disk free for the agent's data: the file system's free space, and with a budget also
    what is left of it (the smaller counts); total is the budget, else the file system."""
    usage = shutil.disk_usage(data_dir)
    free, total = usage.free, usage.total
    out: Figures = {}
    if budget_mb > 0:
        budget = int(budget_mb * MB)
        used = data_size(data_dir)
        free = max(0, min(free, budget - used))
        total = budget
        out["data_used_mb"] = round(used / MB, 1)
    out["disk_free_mb"] = round(free / MB, 1)
    out["disk_total_mb"] = round(total / MB, 1)
    out["disk_free_pct"] = round(100.0 * free / total, 1) if total > 0 else None
    return out


def parse_meminfo(text: str) -> Figures:
    """/proc/meminfo's MemAvailable and MemTotal (kB) as MB; ValueError if either is missing."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name in ("MemAvailable", "MemTotal") and fields and fields[0].isdigit():
            kb[name] = int(fields[0])
    if "MemAvailable" not in kb or "MemTotal" not in kb:
        raise ValueError("no MemAvailable/MemTotal in meminfo")
    return {
        "mem_avail_mb": round(kb["MemAvailable"] * 1024 / MB, 1),
        "mem_total_mb": round(kb["MemTotal"] * 1024 / MB, 1),
    }


def memory(proc: Path) -> Figures:
    return parse_meminfo((proc / "meminfo").read_text())


def load() -> Figures:
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2)}


def cpu_temperature(thermal: Path) -> Figures:
    """The hottest CPU zone (its type names the CPU, the package or the SoC), else the hottest
    zone of any type; ValueError when the board exposes none."""
    cpu: list[float] = []
    other: list[float] = []
    for zone in sorted(thermal.glob("thermal_zone*")):
        try:
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue  # a zone that cannot say (a sensor asleep reads EAGAIN or ENODATA)
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            kind = ""
        celsius = milli / 1000.0
        if not -60.0 <= celsius <= 200.0:
            continue  # a sensor's "no reading" (-273.2, 0x7fffffff)
        (cpu if any(k in kind for k in CPU_ZONES) else other).append(celsius)
    found = cpu or other
    if not found:
        raise ValueError(f"no thermal zone with a reading in {thermal}")
    return {"temp_c": round(max(found), 1)}


def uptime(proc: Path) -> Figures:
    return {"uptime_s": round(float((proc / "uptime").read_text().split()[0]))}


def agent_version() -> Figures:
    try:
        version = importlib.metadata.version("busfleet")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return {"version": _text(version), "slot": _text(os.environ.get("BUSFLEET_SLOT", ""), SLOT_MAX)}


Run = Callable[[Sequence[str]], str | None]  # a command's stdout; None: absent or failed


def run_command(argv: Sequence[str]) -> str | None:
    """stdout of a command that exists on PATH and succeeds within COMMAND_TIMEOUT_S, else
    None (absent) — OSError and a timeout are raised for the caller to log."""
    if shutil.which(argv[0]) is None:
        return None
    env = {**os.environ, "LC_ALL": "C"}
    # fixed argv of known tools, no shell
    done = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout if done.returncode == 0 else None


def parse_chrony_tracking(text: str) -> bool | None:
    """`chronyc -c tracking` (CSV): its last field is the leap status, "Not synchronised"
    while chrony has no source; None if the line is no tracking report."""
    fields = text.strip().splitlines()[0].split(",") if text.strip() else []
    if len(fields) < 14:
        return None
    return fields[-1].strip().lower() != "not synchronised"


def clock_synced(run: Run) -> Figures:
    """Whether the clock is synchronised: systemd's timedatectl where it answers, else chrony;
    neither: None (unknown, not "unsynchronised")."""
    answer = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if answer is not None and answer.strip() in ("yes", "no"):
        return {"clock_synced": answer.strip() == "yes", "clock_source": "timedatectl"}
    answer = run(["chronyc", "-c", "tracking"])
    synced = parse_chrony_tracking(answer) if answer is not None else None
    if synced is not None:
        return {"clock_synced": synced, "clock_source": "chrony"}
    return {"clock_synced": None, "clock_source": ""}


def parse_mmcli_list(text: str) -> str | None:
    """The first modem's index in `mmcli -L` ("/org/freedesktop/ModemManager1/Modem/0 ...")."""
    for word in text.split():
        head, sep, index = word.rpartition("/Modem/")
        if sep and head and index.isdigit():
            return index
    return None


def parse_mmcli_modem(text: str) -> Figures:
    """Signal quality (%), access technology and operator of `mmcli -m N --output-keyvalue`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), value.strip())
    signal = values.get("modem.generic.signal-quality.value", "")
    tech = [
        v
        for k, v in values.items()
        if k.startswith("modem.generic.access-technologies.value") and v not in ("", "--")
    ]
    operator = values.get("modem.3gpp.operator-name", "")
    state = values.get("modem.generic.state", "")
    return {
        "modem_signal_pct": int(signal) if signal.isdigit() and int(signal) <= 100 else None,
        "modem_tech": _text(",".join(tech)),
        "modem_operator": _text("" if operator == "--" else operator),
        "modem_state": _text("" if state == "--" else state),
    }


def modem(run: Run) -> Figures | None:
    """The first modem ModemManager knows; None when mmcli is absent or lists no modem."""
    listing = run(["mmcli", "-L"])
    index = parse_mmcli_list(listing) if listing is not None else None
    if index is None:
        return None
    answer = run(["mmcli", "-m", index, "--output-keyvalue"])
    return None if answer is None else parse_mmcli_modem(answer)


# -- all of them -------------------------------------------------------------------------------
class Collector:
    """Reads every source; remembers which failed so that each is logged once."""

    def __init__(
        self,
        data_dir: str | Path,
        data_budget_mb: float = 0.0,
        *,
        proc: str | Path = "/proc",
        thermal: str | Path = "/sys/class/thermal",
        run: Run = run_command,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_budget_mb = data_budget_mb
        self.proc = Path(proc)
        self.thermal = Path(thermal)
        self.run = run
        self.started = time.monotonic()
        self.failing: set[str] = set()  # sources whose failure was logged (until they work)
        self.failures = 0

    def collect(self) -> Figures:
        """Every figure; None for those whose source failed."""
        out: Figures = {}
        sources: tuple[tuple[str, Callable[[], Figures | None], tuple[str, ...]], ...] = (
            (
                "disk",
                lambda: disk(self.data_dir, self.data_budget_mb),
                ("disk_free_mb", "disk_total_mb", "disk_free_pct"),
            ),
            ("memory", lambda: memory(self.proc), ("mem_avail_mb", "mem_total_mb")),
            ("load", load, ("load1", "load5", "load15")),
            ("temperature", lambda: cpu_temperature(self.thermal), ("temp_c",)),
            ("uptime", lambda: uptime(self.proc), ("uptime_s",)),
            ("version", agent_version, ("version", "slot")),
            ("clock", lambda: clock_synced(self.run), ("clock_synced",)),
            ("modem", lambda: modem(self.run), ()),
        )
        for name, read, keys in sources:
            out.update(self._read(name, read, keys))
        out["agent_uptime_s"] = round(time.monotonic() - self.started)
        return out

    def _read(
        self, name: str, read: Callable[[], Figures | None], keys: tuple[str, ...]
    ) -> Figures:
        try:
            figures = read()
        except Exception as exc:  # any source failing is said once, never fatal
            self.failures += 1
            if name not in self.failing:
                self.failing.add(name)
                log.warning("health: cannot read %s (%s: %s)", name, type(exc).__name__, exc)
            return dict.fromkeys(keys)
        if name in self.failing:
            self.failing.discard(name)
            log.info("health: %s readable again", name)
        return figures or {}
