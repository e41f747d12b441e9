"""The fleet link: the outbox, desired/applied state, central's commands, the MQTT connection.

Rules of this room:
- every record goes into the outbox (agent.sqlite, onboard/store.py) before it is sent, numbered
  by the outbox and encoded once (`Outbox.put(kind, build)`); it leaves only when central's
  receipt says it is stored;
- the desired state is applied whole or not at all (`desired`), kept across restarts;
- `mqtt.Link` owns the one MQTT connection of the bus and reconnects with the onboard backoff.
The face re-exports the storage models eagerly; the MQTT link (aiomqtt) is imported from
onboard.link.mqtt by the agent that runs it.
"""

from onboard.link.desired import AppliedStore, Outcome, evaluate, reported
from onboard.link.outbox import Outbox, Pending

__all__ = ["AppliedStore", "Outbox", "Outcome", "Pending", "evaluate", "reported"]
