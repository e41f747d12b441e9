"""The one MQTT settings builder of the onboard side: agent.toml's [mqtt] as aiomqtt's keywords.

The agent's link and any onboard tool that talks to the broker as this bus build their client
from `mqtt_settings(config)`, so the identity, the persistent session (MQTT 5 session expiry,
or clean_session=False on 3.1.1), the password file and TLS are decided in one place. Typed
(`MqttSettings`), so `aiomqtt.Client(**mqtt_settings(config))` is checked, not ignored.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import NotRequired, TypedDict

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from onboard.config import AgentConfig
from protocols import codec

__all__ = ["SESSION_EXPIRY_S", "MqttSettings", "mqtt_settings"]

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps a bus's commands and receipts a week
MAX_INFLIGHT = 20
CONNECT_TIMEOUT_S = 10.0
MAX_PACKET = codec.MAX_PAYLOAD + 4096  # the largest payload the link reads, topic and headers
# No Nagle: receipts, acks and an emergency are small packets that would otherwise wait for the
# broker's delayed ACK (tens of ms); cellular bytes are unchanged, only their timing.
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttSettings(TypedDict):
    """The keywords of `aiomqtt.Client` this side sets."""

    hostname: str
    port: int
    identifier: str
    username: str
    keepalive: int
    max_inflight_messages: int
    timeout: float
    protocol: aiomqtt.ProtocolVersion
    clean_start: NotRequired[bool]
    properties: NotRequired[Properties]
    clean_session: NotRequired[bool]
    password: NotRequired[str]
    tls_context: NotRequired[ssl.SSLContext]
    socket_options: tuple[tuple[int, int, int], ...]


def mqtt_settings(config: AgentConfig) -> MqttSettings:
    """Connection settings of this bus (reads the password file; OSError if it cannot)."""
    m = config.mqtt
    settings = MqttSettings(
        hostname=m.host,
        port=m.port,
        identifier=config.bus.id,
        username=config.mqtt_username,
        keepalive=m.keepalive_s,
        max_inflight_messages=MAX_INFLIGHT,
        timeout=CONNECT_TIMEOUT_S,
        socket_options=(NODELAY,),
        protocol=aiomqtt.ProtocolVersion.V5 if m.protocol == 5 else aiomqtt.ProtocolVersion.V311,
    )
    # A persistent session: commands and receipts sent while the bus is away wait for it.
    if m.protocol == 5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        # The broker drops what the bus would refuse anyway instead of sending it over cellular.
        properties.MaximumPacketSize = MAX_PACKET
        settings["clean_start"] = False
        settings["properties"] = properties
    else:
        settings["clean_session"] = False
    if m.password_file:
        settings["password"] = Path(m.password_file).read_text().strip()
    if m.ca_file:
        settings["tls_context"] = ssl.create_default_context(cafile=m.ca_file)
    return settings
