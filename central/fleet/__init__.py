"""Fleet rules, pure: from (state, event) to the new state, and alarms as a table.

    state    a bus's fleet entry from presence, telemetry, reported and desired versions
    alarms   what raises and clears each alarm, and the alarm lifecycle (open, acked, cleared)

No SQL, no MQTT, no clock of its own (time is an argument): the service feeds these and stores
and publishes what they return.
"""

from central.fleet.alarms import AlarmError
from central.fleet.state import BusState, out_of_sync

__all__ = ["AlarmError", "BusState", "out_of_sync"]
