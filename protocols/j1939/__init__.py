"""bus-FMS / J1939, sans-IO: CAN frames in, signals and vehicle events out.

decode      the decoder, by PGN from our DBC (busfleet.dbc beside it); "not available" and
            error values are absent, never numbers
tp          the transport protocol (BAM): DM1 faults and the VIN
vehicle     signals folded into a vehicle state; doors, stop requests, kneeling as events
candump     can-utils' log format, for replay and the simulator
"""

from protocols.j1939.decode import J1939Decoder, decode_frame
from protocols.j1939.vehicle import VehicleEvent, VehicleState

__all__ = ["J1939Decoder", "VehicleEvent", "VehicleState", "decode_frame"]
