"""Frames of one bus in, the vehicle state and its events out: decode + apply, sans-IO.

`VehicleTracker.feed(can_id, data, t)` does what `J1939Decoder.decode` followed by
`vehicle.apply` on each result does, with the same state, events and decoder counters, but a
gateway repeats most frames unchanged (a bus-FMS gateway sends each PGN every 20..1000 ms; the
values move far less often), and for those it does almost nothing: a single-frame signal frame
whose bytes equal the last frame with the same CAN id, while the state still holds every value
that frame set, can change nothing and cause no event, so it is only counted.

The state check is what keeps this exact: two PGNs can set the same quantity (DC1 and DC2 both
say whether doors are open; CCVS1 and the FMS1 tell-tales both carry the parking brake), so a
repeated frame does change the state when another frame changed that quantity in between.
Multi-packet transfers (TP.BAM), DM1 and the VIN always take the full path.
"""

from __future__ import annotations

from protocols.j1939.decode import DecoderStats, J1939Decoder, Signals
from protocols.j1939.vehicle import (
    VehicleEvent,
    VehicleState,
    apply,
    apply_changes,
    signal_changes,
)

__all__ = ["VehicleTracker"]

# Distinct CAN ids remembered; a bus-FMS gateway sends ~20. Past this (a bus sending signal
# PGNs from many source addresses) the memory is forgotten and refilled: nothing is lost but
# the shortcut for the frames of the ids forgotten, until they come again.
MAX_IDS = 1024


class VehicleTracker:
    """The vehicle state of one bus, kept from its frames in order; see the module docstring."""

    def __init__(self, bam_timeout: float = 0.75) -> None:
        self.decoder = J1939Decoder(bam_timeout=bam_timeout)
        self.state = VehicleState()
        self.repeats = 0  # frames taken by the shortcut (counted as decoded, not decoded)
        # CAN id -> (data of its last signal frame, (state field, value) pairs it set)
        self._last: dict[int, tuple[bytes, tuple[tuple[str, object], ...]]] = {}

    @property
    def stats(self) -> DecoderStats:
        """The decoder's counters, the repeated frames included as decoded."""
        return self.decoder.stats

    def feed(self, can_id: int, data: bytes, t: float) -> list[VehicleEvent]:
        """Take one frame; return the events it caused (usually none)."""
        last = self._last.get(can_id)
        if last is not None and last[0] == data:
            state = self.state
            for name, value in last[1]:
                if getattr(state, name) != value:
                    break
            else:
                st = self.decoder.stats
                st.frames += 1
                st.decoded += 1
                self.repeats += 1
                return []
        return self._full(can_id, data, t)

    def _full(self, can_id: int, data: bytes, t: float) -> list[VehicleEvent]:
        decoded = self.decoder.decode(can_id, data, t)
        if len(decoded) == 1 and isinstance(msg := decoded[0], Signals):
            changes = signal_changes(msg)
            self.state, events = apply_changes(self.state, msg.t, changes)
            if len(self._last) >= MAX_IDS and can_id not in self._last:
                self._last.clear()
            self._last[can_id] = (bytes(data), tuple(changes.items()))
            return events
        out: list[VehicleEvent] = []
        for msg in decoded:
            self.state, events = apply(self.state, msg)
            out += events
        return out
