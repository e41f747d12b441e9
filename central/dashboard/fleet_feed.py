"""The fleet entries, read off the dashboard's event loop: paho's own network thread.

Central publishes one retained fleet entry per bus per second: 5,000 messages a second for
5,000 buses. Read through aiomqtt, each one was a callback on the Textual event loop (a packet
read, a message object, a decode): about half of that loop's time, so a key press waited
behind the fleet and the redraw after it came late (issue 18: p99 over a second at 5,000
buses on a busy machine). Here paho's thread reads and decodes them and keeps the newest per
bus; the event loop takes what piled up, a dict swap under a lock, when it flushes (link.py).
A bad entry is counted and logged, never raised.

The two threads share the GIL. An event loop gives it up at every poll and then waits for it
as long as the interpreter's switch interval (5 ms by default) while paho decodes a burst, for
each of the dozens of loop turns a key press and its frame take: a convoy that made the p99
a few hundred ms with the loop 90 % idle. The dashboard's process switches every SWITCH_S.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho

from central import mqtt
from central.config import CentralConfig
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.schemas import FleetEntry

log = logging.getLogger("busfleet.central.dashboard")

SWITCH_S = 0.0005  # the GIL's switch interval while a feed runs (see above)


class FleetFeed:
    """Follows central's fleet topics in a thread of its own; `take` the newest per bus."""

    def __init__(self, config: CentralConfig, user: str) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._fleet: dict[str, FleetEntry] = {}
        self.rejected = 0
        identifier = f"dash-{user[:20]}-fleet-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.paho_client(config, client_id=identifier)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself (central/mqtt.py's backoff)."""
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_S))
        self.client.connect_async(
            self.config.mqtt_host,
            self.config.mqtt_port,
            properties=mqtt.connect_properties(self.config),
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def take(self) -> list[FleetEntry]:
        """The newest entry of every bus heard from since the last call."""
        with self._lock:
            fleet, self._fleet = self._fleet, {}
        return list(fleet.values())

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("fleet feed: the broker refused the connection: %s", reason)
            return
        client.subscribe(topics.all_buses(topics.Kind.FLEET), qos=1)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if not message.payload:  # a retained entry cleared: nothing to show
            return
        try:
            entry = codec.decode(FleetEntry, bytes(message.payload))
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("ignored a bad message on %s: %s", message.topic, exc)
            return
        with self._lock:
            self._fleet[entry.bus] = entry
