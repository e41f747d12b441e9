"""Central's MQTT client settings, shared by the service, the dashboard and the CLI tools."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiomqtt

from central.config import CentralConfig


def client(config: CentralConfig, identifier: str | None = None, **extra: object) -> aiomqtt.Client:
    kwargs: dict[str, object] = {
        "hostname": config.mqtt_host,
        "port": config.mqtt_port,
        "username": config.mqtt_username or None,
        "identifier": identifier or config.client_id,
        "protocol": aiomqtt.ProtocolVersion.V5
        if config.mqtt_protocol == 5
        else aiomqtt.ProtocolVersion.V311,
        "max_inflight_messages": 100,
        "timeout": 10,
    }
    if config.mqtt_password_file:
        kwargs["password"] = Path(config.mqtt_password_file).read_text().strip()
    if config.mqtt_ca_file:
        kwargs["tls_context"] = ssl.create_default_context(cafile=config.mqtt_ca_file)
    kwargs.update(extra)
    return aiomqtt.Client(**kwargs)  # type: ignore[arg-type]
