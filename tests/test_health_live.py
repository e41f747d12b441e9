"""Fleet health live (issue 16): a real agent (`busfleet agent` child processes, run again as
systemd would) with a tiny `[health] data_budget_mb` and a data dir already over it, a real
`busfleet central serve`, a real mosquitto; the figures reach central (`FleetHealth`, `Detail`,
`busfleet central health`), a `disk_low` alarm is raised once, an unsynchronised clock raises
`clock_unsynced`, three starts raise `restarting`, and another bus's backfilled reports raise
nothing while their figures are shown.

The bus's clock and modem tools cannot run here (no systemd, no chrony, no ModemManager): the
agent finds a fake `timedatectl` (says "no") and a fake `mmcli` (a modem on LTE) first on its
PATH, small scripts printing what the real tools print; everything else is the real thing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import os
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from busfleet.broker.provision import agent_toml
from busfleet.cli import main
from central import client
from central.config import CentralConfig
from onboard.config import (
    AgentConfig,
    BusSection,
    CanSection,
    GpsSection,
    MqttSection,
)
from onboard.health.settings import HealthSection
from protocols import codec, topics
from protocols.requests import Detail, FleetHealth, Record
from protocols.schemas import Alarm, Event, EventBatch, Presence, Scalar
from tests.fleet_helpers import (
    Procs,
    central_config,
    cli_conn,
    rows,
    wait_central_online,
    wait_for,
)

BUS = "bus-hl1"
OTHER = "bus-hl2"  # a bus whose reports arrive backfilled only
MMCLI = """case "$1" in
  -L) echo '    /org/freedesktop/ModemManager1/Modem/3 [Quectel] EG25' ;;
  -m) cat <<'EOF'
modem.generic.state                        : connected
modem.generic.access-technologies.value[1] : lte
modem.generic.signal-quality.value         : 58
modem.3gpp.operator-name                   : Telekom.de
EOF
;;
esac"""


def tool(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


class Alarms:
    """Every alarm document on the broker, by id (retained: those from before come too)."""

    def __init__(self, broker: Broker) -> None:
        self.seen: dict[str, Alarm] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topics.all_alarms(), qos=1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload:
            alarm = codec.decode(Alarm, bytes(msg.payload))
            with self.lock:
                self.seen[alarm.id] = alarm

    def of(self, bus: str, kind: str | None = None) -> list[Alarm]:
        with self.lock:
            return [a for a in self.seen.values() if a.bus == bus and kind in (None, a.kind)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def alarms(mosquitto: Broker) -> Iterator[Alarms]:
    watcher = Alarms(mosquitto)
    try:
        yield watcher
    finally:
        watcher.close()


def health_of(config: CentralConfig, bus: str) -> Record | None:
    reply = asyncio.run(client.ask(config, FleetHealth(bus=bus), user="tester"))
    return reply.records[0] if reply.ok and reply.records else None


def starts_stored(db: Path, bus: str) -> int:
    sql = "SELECT COUNT(*) FROM events WHERE bus = ? AND kind = 'agent_start'"
    return int(rows(db, sql, bus)[0][0])


def publish_backfill(broker: Broker, figures: dict[str, Scalar], t: float) -> None:
    """Another bus back from a long outage: its presence, then a day-old backlog of five starts
    and a health report with a full disk and an unsynchronised clock, marked backfill."""
    events = [
        Event(seq=i + 1, t=t + i, kind="agent_start", data={"version": "0.0.9"}) for i in range(5)
    ]
    events.append(Event(seq=6, t=t + 10, kind="health", data=figures))
    pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        birth = Presence(bus=OTHER, online=True, session=1, t=t + 86_400)
        pub.publish(
            topics.presence(OTHER), codec.encode(birth), qos=1, retain=True
        ).wait_for_publish(10)
        batch = EventBatch(bus=OTHER, events=events, backfill=True)
        pub.publish(topics.events(OTHER), codec.encode(batch), qos=1).wait_for_publish(10)
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_health_figures_and_alarms_reach_central_from_a_bus_with_a_tiny_disk_budget(
    mosquitto: Broker,
    tmp_path: Path,
    alarms: Alarms,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool(bindir, "timedatectl", "echo no")
    tool(bindir, "mmcli", MMCLI)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    data_dir = tmp_path / "bus"
    data_dir.mkdir()
    (data_dir / "old-media.bin").write_bytes(b"\0" * 2_000_000)  # over the 1 MB budget already
    config = AgentConfig(
        bus=BusSection(id=BUS, data_dir=str(data_dir)),
        mqtt=MqttSection(port=mosquitto.port, backoff_max_s=1.0, insecure_dev_broker=True),
        gps=GpsSection(source="none"),
        can=CanSection(interface="none"),
        health=HealthSection(interval_s=1.0, data_budget_mb=1.0),
    )
    off = {"enabled": False}
    config = dataclasses.replace(
        config,
        display=dataclasses.replace(config.display, **off),
        driver=dataclasses.replace(config.driver, **off),
        ads=dataclasses.replace(config.ads, **off),
    )
    toml = tmp_path / "agent.toml"
    toml.write_text(agent_toml(config))
    procs = Procs(tmp_path, mosquitto.port)
    db = tmp_path / "central.sqlite"
    central = central_config(mosquitto, db)
    try:
        procs.central()  # the real `busfleet central serve`, default health thresholds
        wait_central_online(mosquitto)

        def run_agent(n: int) -> subprocess.Popen[bytes]:
            agent = procs.start(f"agent{n}", "agent", "--config", str(toml))
            wait_for(lambda: starts_stored(db, BUS) >= n, 60, f"start {n} stored at central")
            return agent

        def stop(agent: subprocess.Popen[bytes]) -> None:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=60) is not None

        agent = run_agent(1)
        record = wait_for(lambda: health_of(central, BUS), 60, "a health report at central")
        assert record["disk_total_mb"] == 1.0  # the budget
        assert record["disk_free_mb"] == 0.0 and record["disk_free_pct"] == 0.0
        assert record["data_used_mb"] >= 2.0
        assert record["clock_synced"] is False and record["clock_source"] == "timedatectl"
        assert (record["modem_signal_pct"], record["modem_tech"]) == (58, "lte")
        assert record["modem_operator"] == "Telekom.de"
        assert record["version"] == importlib.metadata.version("busfleet")
        assert record["mem_total_mb"] > 0 and record["uptime_s"] > 0
        assert record["backfill"] is False

        disk = wait_for(lambda: alarms.of(BUS, "disk_low"), 60, "a disk_low alarm on the broker")
        assert disk[0].state == "active" and "0.0 MB free of 1.0 MB" in disk[0].text
        wait_for(lambda: alarms.of(BUS, "clock_unsynced"), 60, "a clock_unsynced alarm")
        sql = "SELECT COUNT(*) FROM events WHERE bus = ? AND kind = 'health'"
        wait_for(lambda: rows(db, sql, BUS)[0][0] >= 4, 60, "more reports, still low")

        detail = asyncio.run(client.ask(central, Detail(bus=BUS), user="tester"))
        assert detail.ok and detail.result["health.disk_free_mb"] == 0.0
        assert detail.result["health.modem_operator"] == "Telekom.de"

        publish_backfill(mosquitto, {**record, "clock_synced": False}, t=record["t"] - 86_400)
        other = wait_for(lambda: health_of(central, OTHER), 60, "the backfilled report shown")
        assert other["backfill"] is True and other["disk_free_mb"] == 0.0

        stop(agent)
        assert alarms.of(BUS, "restarting") == []  # one start (and 5 backfilled of another)
        stop(run_agent(2))
        agent = run_agent(3)
        restarting = wait_for(lambda: alarms.of(BUS, "restarting"), 60, "a restarting alarm")
        assert restarting[0].text.startswith("3 starts within 10 min")

        # raised once each while they held, none from the backfilled bus
        assert len(alarms.of(BUS, "disk_low")) == 1
        assert len(alarms.of(BUS, "clock_unsynced")) == 1
        assert alarms.of(OTHER) == []
        stored = rows(db, "SELECT kind FROM alarms WHERE bus = ? ORDER BY kind", BUS)
        kinds = [k for (k,) in stored]
        assert kinds.count("disk_low") == 1 and kinds.count("restarting") == 1
        assert rows(db, "SELECT COUNT(*) FROM alarms WHERE bus = ?", OTHER)[0][0] == 0

        assert main(["central", "health", *cli_conn(mosquitto, db)]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:3] == ["BUS", "AGE", "DISK"]
        (line,) = [x for x in table if x.startswith(BUS)]
        assert "0MB 0%" in line and "UNSYNC" in line and "58% lte" in line
        assert all(len(x) <= 80 for x in table)
        assert main(["central", "health", BUS, *cli_conn(mosquitto, db)]) == 0
        shown = capsys.readouterr().out
        assert "clock     NOT synchronised (timedatectl)" in shown
        assert "modem     signal 58 %, lte, Telekom.de, connected" in shown
        stop(agent)
    finally:
        procs.close()
