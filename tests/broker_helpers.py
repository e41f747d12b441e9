"""A paho session against deploy/'s broker, for tests that act as a bus, central or a dispatcher."""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from busfleet.broker.secure import SecureBroker

WAIT = 45.0  # generous: a busy CI machine is slow, a missing message is a failure anyway


class Session:
    """A paho client (MQTT 5, TLS) whose events land in queues the test can wait on."""

    def __init__(
        self,
        broker: SecureBroker,
        user: str | None,
        password: str | None = None,
        *,
        port: int | None = None,
        client_id: str = "",
        tls: bool = True,
        clean_start: bool = True,
    ) -> None:
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: dict[int, queue.Queue[ReasonCode]] = {}
        self.disconnects: list[ReasonCode] = []
        self.disconnected = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if tls:
            c.tls_set(ca_certs=str(broker.ca_file))
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.put(rc)
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        c.on_publish = lambda _c, _u, mid, rc, _p: self._ack(mid).put(rc)
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self._on_disconnect(rc)
        c.connect_async(broker.host, port or broker.city_port, clean_start=clean_start)
        c.loop_start()
        self.client = c

    def _on_disconnect(self, rc: ReasonCode) -> None:
        self.disconnects.append(rc)
        self.disconnected.set()

    def _ack(self, mid: int) -> queue.Queue[ReasonCode]:
        return self.acks.setdefault(mid, queue.Queue())

    def connack(self) -> ReasonCode:
        return self.connacks.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """QoS 1 publish; the PUBACK's reason code (MQTT 5 says "not authorized" there)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._ack(info.mid).get(timeout=WAIT).value

    def subscribe(self, *filters: str) -> None:
        for f in filters:
            self.client.subscribe(f, qos=1)

    def until(self, topic: str, payload: bytes | None = None) -> list[tuple[str, bytes]]:
        """Every message received up to and including the first on `topic` (with `payload`)."""
        seen: list[tuple[str, bytes]] = []
        while True:
            msg = self.messages.get(timeout=WAIT)
            seen.append((msg.topic, bytes(msg.payload)))
            if msg.topic == topic and payload in (None, msg.payload):
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
