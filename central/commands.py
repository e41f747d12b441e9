"""Commands to buses: id, expiry, tracked at central as sent / ok / failed / expired."""

from __future__ import annotations

import time
import uuid

from central import mqtt
from central.config import CentralConfig
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import Command, Scalar

KNOWN = ("resend", "announce", "restart")


async def send_command(
    config: CentralConfig, bus: str, name: str, args: dict[str, Scalar], ttl_s: float = 300.0
) -> str:
    """Record and publish a command; the bus answers with a cmd_ack event. Returns its id."""
    topics.check_bus_id(bus)
    now = time.time()
    cmd = Command(id=uuid.uuid4().hex[:16], name=name, t=now, expires=now + ttl_s, args=args)
    store = CentralStore(config.db)
    try:
        store.add_command(cmd.id, bus, name, codec.encode_json(args), now, cmd.expires)
    finally:
        store.close()
    async with mqtt.client(config, identifier=f"{config.client_id}-cmd-{cmd.id}") as client:
        await client.publish(topics.command(bus), codec.encode(cmd), qos=1)
    return cmd.id
