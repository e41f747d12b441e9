"""The bus's health figures (issue 16): each source read from real files (this machine's /proc,
a /proc-like and a /sys/class/thermal-like tree written here), each failing soft.

timedatectl, chronyc and ModemManager cannot run here (no systemd, no chrony, no modem): the
clock and modem tests put small executable scripts of those names first on PATH, printing what
the real tools print (their documented output formats), and run the production code's
subprocess path against them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from onboard.health import collect
from onboard.health.collect import (
    Collector,
    clock_synced,
    cpu_temperature,
    data_size,
    disk,
    memory,
    modem,
    run_command,
    uptime,
)
from onboard.health.runtime import EVENT_HEALTH, HealthRuntime
from onboard.health.settings import HealthSection
from protocols.release import EVENT_AGENT_START
from protocols.schemas import Scalar

MEMINFO = """MemTotal:        3884000 kB
MemFree:          120000 kB
MemAvailable:    1942000 kB
Buffers:           20000 kB
"""
# `mmcli -L` and `mmcli -m 0 --output-keyvalue` of a Quectel EG25 on LTE (trimmed).
MMCLI_LIST = "    /org/freedesktop/ModemManager1/Modem/0 [Quectel] EG25\n"
MMCLI_MODEM = """modem.dbus-path  : /org/freedesktop/ModemManager1/Modem/0
modem.generic.state                             : connected
modem.generic.access-technologies.length        : 1
modem.generic.access-technologies.value[1]      : lte
modem.generic.signal-quality.value              : 67
modem.generic.signal-quality.recent             : yes
modem.3gpp.operator-name                        : Vodafone.de
"""
CHRONY_UNSYNCED = "00000000,,0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,1.0,0.0,Not synchronised\n"
CHRONY_SYNCED = (
    "C0A80001,192.168.0.1,3,1700000000.1,-0.000012,0.000003,0.000050,-12.3,0.001,0.02,"
    "0.012,0.0004,64.2,Normal\n"
)


def fake_tool(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of only the fake tools (and sh, cat, sleep): the real timedatectl of the machine
    is not seen, so each test says exactly which tools exist."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in ("sh", "cat", "sleep"):
        real = shutil.which(tool)
        assert real is not None
        os.symlink(real, d / tool)
    monkeypatch.setenv("PATH", str(d))
    return d


def fake_proc(root: Path) -> Path:
    proc = root / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "uptime").write_text("86523.71 170000.02\n")
    return proc


def zone(thermal: Path, n: int, kind: str, milli: str) -> None:
    z = thermal / f"thermal_zone{n}"
    z.mkdir(parents=True)
    (z / "type").write_text(kind + "\n")
    (z / "temp").write_text(milli + "\n")


# -- each source -------------------------------------------------------------------------------
def test_memory_and_uptime_come_from_proc_files(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    assert memory(proc) == {"mem_avail_mb": 1988.6, "mem_total_mb": 3977.2}
    assert uptime(proc) == {"uptime_s": 86524}


def test_this_machines_proc_gives_real_memory_load_and_uptime(tmp_path: Path) -> None:
    figures = Collector(tmp_path, proc="/proc").collect()
    total = figures["mem_total_mb"]
    avail = figures["mem_avail_mb"]
    assert isinstance(total, float) and isinstance(avail, float)
    assert 0 < avail <= total
    with open("/proc/meminfo") as f:
        kb = int(next(x for x in f if x.startswith("MemTotal:")).split()[1])
    assert total == round(kb * 1024 / 1e6, 1)
    up = figures["uptime_s"]
    assert isinstance(up, int) and up > 0
    assert isinstance(figures["load1"], float) and figures["load1"] >= 0
    assert figures["version"]  # the installed busfleet's version
    assert figures["slot"] == os.environ.get("BUSFLEET_SLOT", "")
    free = figures["disk_free_mb"]
    assert isinstance(free, float)
    assert free == pytest.approx(shutil.disk_usage(tmp_path).free / 1e6, rel=0.05)


def test_the_hottest_cpu_zone_counts_before_hotter_other_sensors(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    zone(thermal, 0, "acpitz", "80000")  # a hotter board sensor: not the CPU
    zone(thermal, 1, "x86_pkg_temp", "52000")
    zone(thermal, 2, "cpu-thermal", "55500")
    zone(thermal, 3, "soc_thermal", "-273200")  # "no reading"
    assert cpu_temperature(thermal) == {"temp_c": 55.5}
    other = tmp_path / "board"
    zone(other, 0, "acpitz", "41000")
    zone(other, 1, "pch_skylake", "47000")
    assert cpu_temperature(other) == {"temp_c": 47.0}  # no CPU zone: the hottest of any


def test_a_board_without_thermal_zones_reports_no_temperature_and_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector(tmp_path, thermal=tmp_path / "none", proc=fake_proc(tmp_path))
    with caplog.at_level(logging.INFO, "busfleet.onboard.health"):
        first = collector.collect()
        second = collector.collect()
    assert first["temp_c"] is None and second["temp_c"] is None
    assert first["mem_total_mb"] == 3977.2  # the other sources still read
    said = [r for r in caplog.records if "temperature" in r.getMessage()]
    assert len(said) == 1, said
    thermal = tmp_path / "none"
    zone(thermal, 0, "cpu-thermal", "61000")  # the sensor appears (a driver loaded late)
    with caplog.at_level(logging.INFO, "busfleet.onboard.health"):
        assert collector.collect()["temp_c"] == 61.0
    assert "temperature" not in collector.failing


def test_no_proc_at_all_gives_none_never_an_exception(tmp_path: Path) -> None:
    figures = Collector(tmp_path / "gone", proc=tmp_path / "noproc").collect()
    for key in ("mem_avail_mb", "mem_total_mb", "uptime_s", "disk_free_mb", "disk_free_pct"):
        assert key in figures and figures[key] is None, key
    assert isinstance(figures["agent_uptime_s"], int)


def test_a_data_dir_over_its_budget_has_no_disk_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "media").mkdir(parents=True)
    (data / "agent.sqlite").write_bytes(b"x" * 600_000)
    (data / "media" / "ad.mp4").write_bytes(b"y" * 700_000)
    os.symlink("/usr", data / "link")  # not followed
    assert data_size(data) == 1_300_000
    over = disk(data, budget_mb=1.0)
    assert over == {
        "data_used_mb": 1.3,
        "disk_free_mb": 0.0,
        "disk_total_mb": 1.0,
        "disk_free_pct": 0.0,
    }
    under = disk(data, budget_mb=2.0)
    assert under["disk_free_mb"] == 0.7 and under["disk_free_pct"] == 35.0
    fs = disk(data, budget_mb=0)  # no budget: the file system's own figures
    assert "data_used_mb" not in fs
    assert fs["disk_total_mb"] == round(shutil.disk_usage(data).total / 1e6, 1)


# -- the clock and the modem, through fake tools on PATH ------------------------------------------
def test_timedatectl_says_whether_the_clock_is_synchronised(bindir: Path) -> None:
    fake_tool(bindir, "timedatectl", 'echo "$@" > "$0.args"; echo yes')
    assert clock_synced(run_command) == {"clock_synced": True, "clock_source": "timedatectl"}
    assert (bindir / "timedatectl.args").read_text().split() == [
        "show",
        "-p",
        "NTPSynchronized",
        "--value",
    ]
    fake_tool(bindir, "timedatectl", "echo no")
    assert clock_synced(run_command)["clock_synced"] is False


def test_without_systemd_chrony_tells_and_without_either_the_clock_is_unknown(
    bindir: Path,
) -> None:
    # timedatectl where systemd is not PID 1 (a container, this machine): it fails.
    fake_tool(bindir, "timedatectl", 'echo "System has not been booted with systemd" >&2; exit 1')
    assert clock_synced(run_command) == {"clock_synced": None, "clock_source": ""}
    fake_tool(bindir, "chronyc", f"printf '{CHRONY_UNSYNCED}'")
    assert clock_synced(run_command) == {"clock_synced": False, "clock_source": "chrony"}
    fake_tool(bindir, "chronyc", f"printf '{CHRONY_SYNCED}'")
    assert clock_synced(run_command) == {"clock_synced": True, "clock_source": "chrony"}
    (bindir / "timedatectl").unlink()
    (bindir / "chronyc").unlink()
    assert clock_synced(run_command)["clock_synced"] is None


def test_mmcli_gives_signal_technology_and_operator_and_none_without_modem_manager(
    bindir: Path,
) -> None:
    assert modem(run_command) is None  # no mmcli at all
    fake_tool(
        bindir,
        "mmcli",
        f"""case "$1" in
  -L) printf '{MMCLI_LIST}' ;;
  -m) [ "$2" = 0 ] && [ "$3" = --output-keyvalue ] && cat <<'EOF'
{MMCLI_MODEM}EOF
;;
esac""",
    )
    assert modem(run_command) == {
        "modem_signal_pct": 67,
        "modem_tech": "lte",
        "modem_operator": "Vodafone.de",
        "modem_state": "connected",
    }
    fake_tool(bindir, "mmcli", "echo 'No modems were found'")
    assert modem(run_command) is None


def test_a_tool_that_hangs_is_cut_off_and_reported_as_unknown(
    bindir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(collect, "COMMAND_TIMEOUT_S", 0.5)
    fake_tool(bindir, "timedatectl", "exec sleep 30")
    collector = Collector(tmp_path, proc=fake_proc(tmp_path))
    figures = collector.collect()
    assert figures["clock_synced"] is None
    assert "clock" in collector.failing
    assert figures["mem_total_mb"] == 3977.2


# -- the task ------------------------------------------------------------------------------------
def test_the_agent_says_it_started_then_reports_health_each_interval(tmp_path: Path) -> None:
    got: list[tuple[str, dict[str, Scalar]]] = []

    async def main() -> None:
        runtime = HealthRuntime(
            HealthSection(interval_s=1.0, data_budget_mb=1.0),
            tmp_path,
            lambda kind, data: got.append((kind, data)),
        )
        task = asyncio.create_task(runtime.run())
        while runtime.reports < 2:  # noqa: ASYNC110 - a counter of the task's, no event to await
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    kinds = [k for k, _ in got]
    assert kinds[:3] == [EVENT_AGENT_START, EVENT_HEALTH, EVENT_HEALTH]
    assert kinds.count(EVENT_AGENT_START) == 1
    start = got[0][1]
    assert set(start) == {"version", "slot"} and start["version"]
    health = got[1][1]
    assert health["disk_total_mb"] == 1.0
    assert all(v is None or isinstance(v, str | int | float | bool) for v in health.values())
