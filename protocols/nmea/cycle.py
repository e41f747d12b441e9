"""gpsd's end-of-cycle detector: when a new cycle starts and when gpsd reports the fix.

This mirrors `nmea_parse()` in gpsd's `drivers/driver_nmea0183.c` and the reporting rule in
`gpsd.c`, so that the fix we give for an epoch is the one gpsd last reported for it:

- Sentences that carry a time (RMC valid with a date, GGA, GLL, ZDA, GNS, GBS) *register* it. A
  registered time more than 10 ms from the previous one starts a new cycle (gpsd's CLEAR_IS),
  and the last timed sentence type seen before it becomes a *cycle ender* (`cycle_enders`,
  `lasttag`), unless the new sentence is a GLL, which gpsd lets continue a cycle.
- A timed sentence of a cycle-ender type reports the fix (REPORT_IS). So does an untimed sentence
  with data (GSA, VTG, a complete GSV run) right after a cycle ender. An untimed GLL moves the
  ender to GLL. Nothing happens in the middle of a GSV run.
- Until an ender is known (`cycle_end_reliable`), every sentence that sets a position or a mode
  reports. An RMC "V" or a GGA "no fix" without a time forces a report and makes the ender
  unreliable again (Quectel sends `$GPGGA,,,,,,0,...` while searching).

Sentence types are tags without the talker, as gpsd's table is: GNGGA and GPGGA are one tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# gpsd starts a new cycle when the time moves by more than 10 ms.
NEW_CYCLE_US = 10_000


@dataclass(frozen=True, slots=True)
class Seen:
    """What one sentence means to the detector (gpsd's field[0], mask and flags)."""

    tag: str
    tod: int | None = None  # registered time of day, microseconds
    has_data: bool = False  # the mask holds more than ONLINE_SET
    sets_fix: bool = False  # LATLON_SET or MODE_SET
    more_to_come: bool = False  # a GSV run not yet complete (gsx_more)
    force_report: bool = False  # RMC V / GGA no fix without a time


@dataclass(slots=True)
class CycleDetector:
    _enders: set[str] = field(default_factory=set)
    _lasttag: str = ""
    _last_tod: int = 0  # gpsd's last_frac_time starts at zero
    reliable: bool = False

    def new_cycle(self, seen: Seen) -> bool:
        """Whether this sentence starts a new cycle (call before merging it)."""
        if seen.more_to_come or seen.tod is None:
            return False
        return abs(seen.tod - self._last_tod) > NEW_CYCLE_US

    def report(self, seen: Seen) -> bool:
        """Update the detector with the sentence; whether gpsd reports after merging it."""
        continues = seen.tag == "GLL"
        report = False
        if seen.force_report:  # the sentence handler's doing, before the detector runs
            self.reliable = False
            report = True
        if seen.more_to_come:
            pass
        elif seen.tod is not None:
            learns = self._lasttag and self._lasttag not in self._enders and not continues
            if learns and abs(seen.tod - self._last_tod) > NEW_CYCLE_US:
                self._enders.add(self._lasttag)
                self.reliable = True
            self._last_tod = seen.tod
        else:
            if self._lasttag in self._enders and seen.has_data:
                report = True
            if continues:
                self._enders.discard(self._lasttag)
                self._enders.add(seen.tag)
                self.reliable = True
        if (seen.tod is not None or continues) and seen.tag in self._enders:
            report = report or not seen.more_to_come
        if seen.tod is not None:
            self._lasttag = seen.tag
        if not self.reliable and seen.sets_fix:
            report = True
        return report
