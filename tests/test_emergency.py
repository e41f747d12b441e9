"""The silent emergency alarm: pressed while the bus is offline, it reaches central first.

Real mosquitto, `busfleet central serve` and `busfleet agent` processes (GPS replayed from a
real receiver capture), real SQLite files. The bus's uplink is a TCP relay in front of the
broker that the test closes and opens, so that the broker and central stay up and only the
bus is cut off, as on a cellular link.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import free_port, run_mosquitto
from onboard.link.outbox import Outbox
from protocols import codec, compact, topics
from protocols.schemas import Alarm, Event, EventBatch
from tests.fleet_helpers import Procs, prefill, rows, stored_seqs, wait_for

REPO = Path(__file__).resolve().parent.parent
BUS = "bus-e1"
BACKLOG = 5000  # telemetry records
EVENTS = 200  # and events (they go before telemetry, but after alarms)


class Uplink:
    """A TCP relay to the broker: closed, it refuses the bus (connections are cut at once)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.open = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed at the end of the test
            if not self.open:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class Observer:
    """Records, in the broker's order, what the bus publishes on its telemetry and events."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[str, bytes]] = []
        self.alarms: list[tuple[Alarm, bool]] = []  # (alarm, retained) as dashboards get them
        self.stats = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [
                (topics.telemetry(BUS), 1),
                (topics.events(BUS), 1),
                (topics.central_stats(), 0),
                (topics.all_alarms(), 1),
            ]
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == topics.central_stats():
            self.stats.set()  # central is connected and publishing
        elif topics.matches(topics.all_alarms(), msg.topic):
            self.alarms.append((codec.decode(Alarm, bytes(msg.payload)), bool(msg.retain)))
        else:
            self.seen.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Procs, Uplink, Observer]]:
    with run_mosquitto(tmp_path / "mq") as broker:
        procs = Procs(tmp_path, broker.port)
        uplink = Uplink(broker.port)
        observer = Observer(broker.port)
        try:
            yield procs, uplink, observer
        finally:
            procs.close()
            observer.close()
            uplink.close()


def prefill_events(data_dir: Path, n: int, *, created: float) -> list[int]:
    """Events the bus recorded while offline (doors opening at every stop)."""
    box = Outbox(data_dir / "agent.sqlite")
    try:
        with box.transaction():
            return [
                box.put(
                    "event",
                    lambda seq, t=created + i: codec.encode(
                        Event(seq=seq, t=t, kind="door_open", data={"door": 1})
                    ),
                    created=created + i,
                )
                for i in range(n)
            ]
    finally:
        box.close()


def start_agent(procs: Procs, uplink: Uplink, driver_port: int, name: str) -> None:
    config = procs.workdir / f"{BUS}.toml"
    config.write_text(
        f'[bus]\nid = "{BUS}"\ndata_dir = "{procs.workdir / BUS}"\n'
        f"[mqtt]\nport = {uplink.port}\nbackoff_max_s = 1.0\ninsecure_dev_broker = true\n"
        f'[gps]\nsource = "replay"\nreplay_path = "{REPO / "data" / "nmea" / "ublox-8.log"}"\n'
        '[can]\ninterface = "none"\n[display]\nenabled = false\n[ads]\nenabled = false\n'
        f"[driver]\nport = {driver_port}\n"
    )
    procs.start(name, "agent", "--config", str(config))


def terminal_state(port: int) -> dict[str, Any]:
    """The terminal's state as the page gets it; empty while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/driver/state.json", timeout=2) as r:
            state: dict[str, Any] = json.load(r)["state"]
            return state
    except OSError:
        return {}


def press_emergency(port: int, nonce: str) -> int:
    """What the page's hold gesture posts."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/driver/emergency",
        data=json.dumps({"id": nonce}).encode(),
        headers={"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        seq: int = json.load(response)["seq"]
        return seq


def test_an_alarm_pressed_offline_is_the_first_record_central_stores_after_reconnect_once(
    setup: tuple[Procs, Uplink, Observer], tmp_path: Path
) -> None:
    procs, uplink, observer = setup
    procs.central()
    assert observer.stats.wait(30), "central never came up"
    backlog = prefill(tmp_path / BUS, BACKLOG, created=time.time() - BACKLOG)
    backlog += prefill_events(tmp_path / BUS, EVENTS, created=time.time() - EVENTS)
    driver_port = free_port()
    start_agent(procs, uplink, driver_port, "agent-1")
    state = wait_for(lambda: terminal_state(driver_port), 30, "the driver terminal")
    assert state["online"] is False
    agent_db = tmp_path / BUS / "agent.sqlite"
    # The GPS replay has given a fix (a record beyond the backlog): the alarm will carry it.
    wait_for(
        lambda: rows(agent_db, "SELECT MAX(seq) FROM outbox")[0][0] > max(backlog),
        30,
        "a telemetry record from the replayed GPS",
    )
    seq = press_emergency(driver_port, "press-1")
    assert press_emergency(driver_port, "press-1") == seq  # the page retried: still one alarm
    state = wait_for(lambda: terminal_state(driver_port), 10, "the terminal")
    assert state["emergency"]["pending"] is True and state["sent"] == []

    # The agent dies before the bus is back online; the alarm is on disk and survives it.
    procs.procs[-1].kill()
    procs.procs[-1].wait()
    start_agent(procs, uplink, driver_port, "agent-2")
    wait_for(lambda: terminal_state(driver_port), 30, "the restarted driver terminal")
    assert stored_seqs(tmp_path, BUS) == [] and observer.seen == []

    uplink.open = True
    written = [r[0] for r in rows(agent_db, "SELECT seq FROM outbox")]
    assert set(backlog) | {seq} <= set(written)
    wait_for(
        lambda: set(written) <= set(stored_seqs(tmp_path, BUS)),
        120,
        "the alarm and the backlog at central",
    )

    # On the wire: the bus's first publish after reconnecting is the alarm, alone.
    topic, payload = observer.seen[0]
    assert topic == topics.events(BUS)
    first = codec.decode(EventBatch, payload)
    assert [(e.seq, e.kind, e.severity) for e in first.events] == [(seq, "emergency", 4)]
    assert not any(
        t == topics.telemetry(BUS) and seq in {r.seq for r in compact.decode_batch(p).records}
        for t, p in observer.seen
    )
    # At central: stored once, before (or in the same transaction as) the first record of the
    # backlog, with the bus's position and the highest severity.
    db = tmp_path / "central.sqlite"
    alarms = rows(db, "SELECT seq, severity, data, received FROM events WHERE kind = 'emergency'")
    assert len(alarms) == 1
    alarm_seq, severity, data, received = alarms[0]
    assert (alarm_seq, severity) == (seq, 4)
    position = json.loads(data)
    assert -90 <= position["lat"] <= 90 and -180 <= position["lon"] <= 180
    (first_telemetry,) = rows(db, "SELECT MIN(received) FROM telemetry WHERE bus = ?", BUS)[0]
    (first_event,) = rows(
        db, "SELECT MIN(received) FROM events WHERE bus = ? AND kind != 'emergency'", BUS
    )[0]
    assert received <= min(first_telemetry, first_event)

    # The bus got central's receipt: the terminal no longer shows it pending.
    def confirmed() -> dict[str, Any]:
        s = terminal_state(driver_port)
        return s if s and s["emergency"]["pending"] is False else {}

    state = wait_for(confirmed, 30, "the receipt on the terminal")
    assert state["online"] is True

    # Central raised the alarm, at the time the driver pressed, and published it to the
    # dispatchers' dashboards: on its alarm topic, retained for a dashboard started later.
    (pressed_t,) = rows(db, "SELECT t FROM events WHERE bus = ? AND seq = ?", BUS, seq)[0]
    raised = rows(db, "SELECT id, kind, severity, state, raised_t FROM alarms WHERE bus = ?", BUS)
    assert [r[1:] for r in raised] == [("emergency", 4, "active", pressed_t)]
    alarm_id = raised[0][0]
    published = wait_for(
        lambda: [a for a, _ in observer.alarms if a.id == alarm_id], 30, "the alarm on its topic"
    )
    assert {(a.bus, a.kind, a.severity, a.state, a.raised_t) for a in published} == {
        (BUS, "emergency", 4, "active", pressed_t)
    }
    assert (published[0].lat, published[0].lon) == (position["lat"], position["lon"])
    later = Observer(observer.port)  # a dashboard started now gets it at once, retained
    try:
        got = wait_for(lambda: [r for a, r in later.alarms if a.id == alarm_id], 30, "retained")
        assert got and all(got)
    finally:
        later.close()
