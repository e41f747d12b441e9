"""Child processes of bench/central_ingest.py: lightweight simulated buses and a bare subscriber.

Publishers stand in for many buses each. The bench broker runs the development config
(anonymous, no ACL), so one MQTT connection may publish on many buses' topics: a publisher
process holds one paho connection and publishes, for each of its buses, one compact
TelemetryBatch on that bus's own telemetry topic at QoS 1 as the agent does: one record per
second, `batch` records a message (1: a message a second; the agent's default batches 10 s).
10,000 real buses would be 10,000 connections; mosquitto copes with that, but 10,000 Python
clients on the 2-core machine would measure the clients, not central.

Every payload is encoded before the clock starts (the compact encoder is pure Python, ~50 µs a
record: encoding on the fly would take CPU from the broker and central while they are being
measured). So a record's `t` is its scheduled publish time; the latency figures use the time
the publisher actually called publish, which it logs for the sampled buses.

Both processes are driven over a multiprocessing pipe by the parent: commands in, results out.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocols import topics
from protocols.compact import encode_batch
from protocols.schemas import Position, TelemetryBatch, TelemetryRecord, Vehicle

CAIRNS = (-16.9186, 145.7781)
# QoS 1 publishes without PUBACK before a publisher waits: mosquitto's receive maximum (its
# max_inflight_messages). paho's own limit stays off: it rescans its in-flight messages on
# every PUBACK, which would make the bench's publishers slower than they need to be.
RECEIVE_MAXIMUM = 100


def bus_id(index: int) -> str:
    return f"bus-{index:05d}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    index: int
    buses: tuple[int, ...]  # global bus indexes this process publishes for
    port: int
    batch: int  # records per message: a bus publishes every `batch` seconds
    messages: int  # paced messages per bus: records 0 .. messages * batch - 1
    flood_messages: int  # further messages per bus for the flood
    sampled: frozenset[int]  # buses whose publish times are logged
    t_base: float  # time of record 0 of phase 0 (only stamped into `t`)


def record(bus: int, seq: int, t: float) -> TelemetryRecord:
    """A plausible 1 Hz record: a bus driving east at 8 m/s from its own start point."""
    lat = CAIRNS[0] + (bus % 100) * 1e-3
    lon = CAIRNS[1] + (bus // 100) * 1e-3 + seq * 8.0 / 106_000.0
    return TelemetryRecord(
        seq=seq,
        t=round(t, 3),
        pos=Position(lat=lat, lon=lon, speed=8.0, track=90.0, mode=3, hdop=0.9, sats=9),
        veh=Vehicle(
            speed_kmh=28.8,
            rpm=1200.0,
            doors_open=False,
            coolant_c=85.0,
            fuel_pct=60.0,
            odometer_m=1_000_000.0 + seq * 8.0 // 5 * 5,
        ),
    )


def payload(bus: int, first: int, count: int, t_first: float) -> bytes:
    """The compact batch of records first .. first + count - 1, one a second from t_first."""
    records = [record(bus, first + i, t_first + i) for i in range(count)]
    return encode_batch(TelemetryBatch(bus=bus_id(bus), records=records))


class Publisher:
    def __init__(self, spec: PublisherSpec) -> None:
        self.spec = spec
        n, k = len(spec.buses), spec.batch
        self.topics = [topics.telemetry(bus_id(b)) for b in spec.buses]
        self.phase = [k * j / n for j in range(n)]  # spread over the `batch` seconds
        # payloads[m][j]: message m of the j-th bus of this process.
        self.payloads = [
            [
                payload(b, m * k, k, spec.t_base + m * k + self.phase[j])
                for j, b in enumerate(spec.buses)
            ]
            for m in range(spec.messages + spec.flood_messages)
        ]
        self.acked = 0
        self.sent = 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-publisher-{spec.index}",
            protocol=paho.MQTTv5,
        )
        self.client.max_inflight_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", spec.port)
        self.client.loop_start()

    def _on_publish(self, *_args: Any) -> None:
        self.acked += 1

    def paced(self, t0: float) -> dict[str, Any]:
        """Message m of bus j at t0 + batch * m + phase j; returns the sampled publish times."""
        spec = self.spec
        sampled = [j for j, b in enumerate(spec.buses) if b in spec.sampled]
        times = {spec.buses[j]: array("d", [math.nan] * spec.messages) for j in sampled}
        sampled_set = set(sampled)
        lags = array("d")
        publish = self.client.publish
        for m in range(spec.messages):
            row = self.payloads[m]
            for j, topic in enumerate(self.topics):
                due = t0 + spec.batch * m + self.phase[j]
                now = time.time()
                if due - now > 0.002:  # sleep in slices, not once per message
                    time.sleep(due - now)
                    now = time.time()
                while self.sent - self.acked >= RECEIVE_MAXIMUM:
                    time.sleep(0.0002)
                publish(topic, row[j], qos=1)
                self.sent += 1
                if j in sampled_set:
                    times[spec.buses[j]][m] = now
                    lags.append(now - due)
        lags_sorted = sorted(lags)
        return {
            "published": spec.messages * len(self.topics) * spec.batch,
            "lag_p99_s": lags_sorted[int(0.99 * (len(lags_sorted) - 1))] if lags_sorted else 0.0,
            "times": times,
        }

    def flood(self) -> dict[str, Any]:
        """Publish every flood message as fast as the broker takes them; return once acked."""
        start = time.time()
        publish = self.client.publish
        n = len(self.topics)
        for count in range(self.spec.flood_messages * n):
            while self.sent - self.acked >= RECEIVE_MAXIMUM:
                time.sleep(0.0002)
            m, j = divmod(count, n)
            publish(self.topics[j], self.payloads[self.spec.messages + m][j], qos=1)
            self.sent += 1
        while self.acked < self.sent:
            time.sleep(0.001)
        return {"published": self.spec.flood_messages * n * self.spec.batch, "start": start}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_publisher(conn: Connection, spec: PublisherSpec) -> None:
    """Encode, connect, say ready, then obey ("paced", t0) / ("flood",) / ("quit",)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    pub = Publisher(spec)
    conn.send(("ready",))
    try:
        while True:
            command = conn.recv()
            if command[0] == "paced":
                conn.send(pub.paced(command[1]))
            elif command[0] == "flood":
                conn.send(pub.flood())
            else:
                break
    finally:
        pub.close()


def run_bare_subscriber(
    conn: Connection, port: int, sampled: frozenset[str], progress: Any
) -> None:
    """A paho subscriber whose callback only counts (per 100 ms), plus sampled arrivals.

    `progress` is a shared array (count, time of the last message) for the parent to watch.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    buckets: dict[int, int] = {}
    samples: list[tuple[str, bytes, float]] = []

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        b = int(now * 10)
        buckets[b] = buckets.get(b, 0) + 1
        progress[0] += 1
        progress[1] = now
        topic = msg.topic
        if topic in sampled:
            samples.append((topic, bytes(msg.payload), now))

    subscribed: list[int] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare-paho", protocol=paho.MQTTv5
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.append(1)
    client.connect("127.0.0.1", port)
    client.subscribe(topics.all_buses(topics.Kind.TELEMETRY), qos=1)
    client.loop_start()
    while not subscribed:
        time.sleep(0.01)
    conn.send(("ready",))
    conn.recv()  # any command: stop and report
    client.disconnect()
    client.loop_stop()
    conn.send({"buckets": buckets, "samples": samples})
