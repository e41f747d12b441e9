"""Central's MQTT settings, written once: the aiomqtt client (dashboard, central/client.py),
the paho client (the service: why paho there, see central/service/service.py) and the one
reconnect policy every loop on central's side follows.

Both builders read the same CentralConfig fields (host, port, user, password file, CA,
protocol), so a setting added here reaches every connection central makes.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.config import CentralConfig

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP_S",
    "MAX_PACKET_BYTES",
    "Backoff",
    "backoff",
    "client",
    "connect_properties",
    "delay",
    "paho_client",
]

BACKOFF_BASE = 1.5  # aiomqtt's own reconnect habit: uniform(0, 1.5 ** min(10, attempt))
BACKOFF_CAP_S = 30.0
MAX_INFLIGHT = 100  # mosquitto's receive maximum in deploy/ (max_inflight_messages)
# The largest packet central takes: the broker's own max_packet_size in deploy/. Announced in
# MQTT 5's CONNECT (Maximum Packet Size), so that a broker without a limit of its own does not
# send central a 100 MB message (the broker drops it for us); what still comes (MQTT 3.1.1,
# a broker that ignores the property) is dropped unread by the service.
MAX_PACKET_BYTES = 1024 * 1024
# No Nagle: a request, a reply or a receipt is one small packet that would otherwise wait up to
# ~40 ms for the peer's delayed ACK (measured: a dispatcher's request took 68 ms round trip with
# it, 2 ms without, bench/push_latency.py). The broker sets the same (set_tcp_nodelay).
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _password(config: CentralConfig) -> str | None:
    if not config.mqtt_password_file:
        return None
    return Path(config.mqtt_password_file).read_text().strip()


def _tls(config: CentralConfig) -> ssl.SSLContext | None:
    if not config.mqtt_ca_file:
        return None
    return ssl.create_default_context(cafile=config.mqtt_ca_file)


def client(config: CentralConfig, identifier: str | None = None, **extra: object) -> aiomqtt.Client:
    """An aiomqtt client for `config` (enter it to connect); `extra` goes to aiomqtt as is."""
    kwargs: dict[str, object] = {
        "hostname": config.mqtt_host,
        "port": config.mqtt_port,
        "username": config.mqtt_username or None,
        "password": _password(config),
        "identifier": identifier or config.identity,
        "protocol": aiomqtt.ProtocolVersion.V5
        if config.mqtt_protocol == 5
        else aiomqtt.ProtocolVersion.V311,
        "max_inflight_messages": MAX_INFLIGHT,
        "timeout": 10,
        "tls_context": _tls(config),
        "socket_options": (NODELAY,),
        "properties": connect_properties(config),  # MQTT 5: nothing over MAX_PACKET_BYTES
    }
    kwargs.update(extra)
    return aiomqtt.Client(**kwargs)  # type: ignore[arg-type]


def paho_client(config: CentralConfig, client_id: str | None = None) -> paho.Client:
    """A paho client with the same settings as `client` (credentials, TLS, protocol)."""
    v5 = config.mqtt_protocol == 5
    out = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or config.identity,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    password = _password(config)
    if config.mqtt_username or password:
        out.username_pw_set(config.mqtt_username or None, password)
    context = _tls(config)
    if context is not None:
        out.tls_set_context(context)
    # Receipts are QoS 1. mosquitto announces a receive maximum of its max_inflight_messages
    # (100 in deploy/); paho ignores it, so respect it here. More costs CPU, too: paho scans
    # its in-flight messages on every PUBACK.
    out.max_inflight_messages_set(MAX_INFLIGHT)
    # paho's own reconnect loop, as close to `backoff` as its knobs go (min, max; doubling).
    out.reconnect_delay_set(1, int(BACKOFF_CAP_S))
    out.on_socket_open = _no_delay
    return out


def connect_properties(config: CentralConfig) -> Properties | None:
    """The CONNECT properties for `paho_client` (give them to `connect_async`): MQTT 5's
    Maximum Packet Size; None for MQTT 3.1.1, which has no properties."""
    if config.mqtt_protocol != 5:
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
    props.MaximumPacketSize = MAX_PACKET_BYTES
    return props


def _no_delay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    """paho's hook on every new connection: switch Nagle off (see NODELAY)."""
    sock.setsockopt(*NODELAY)


def delay(attempt: int, cap_s: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 = the first retry): full jitter
    over a window growing by 1.5 per attempt, capped."""
    return min(cap_s, random.uniform(0.0, BACKOFF_BASE ** min(10, attempt)))


class Backoff:
    """The attempts of a reconnect loop: the first at once, each next one after `delay(n)`.

    retry = mqtt.backoff()
    async for _attempt in retry:
        try:
            async with mqtt.client(config) as c:
                retry.reset()  # connected: the next loss starts from a short wait again
                ...
        except aiomqtt.MqttError as exc:
            log.warning(...)
    """

    def __init__(self, cap_s: float = BACKOFF_CAP_S) -> None:
        self.cap_s = cap_s
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def __aiter__(self) -> Backoff:
        return self

    async def __anext__(self) -> int:
        if self.attempt:
            await asyncio.sleep(delay(self.attempt - 1, self.cap_s))
        self.attempt += 1
        return self.attempt - 1


def backoff(cap_s: float = BACKOFF_CAP_S) -> Backoff:
    """A new reconnect policy for one loop (see Backoff)."""
    return Backoff(cap_s)
