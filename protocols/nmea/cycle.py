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
  reports. An RMC "V" or a GGA "no fix" without a time makes the ender unreliable again
  (Quectel sends `$GPGGA,,,,,,0,...` while searching); the RMC also forces a report.

Sentence types are tags without the talker, as gpsd's table is: GNGGA and GPGGA are one tag.
A sentence gpsd has no decoder for (or one too short for it) has no tag: it leaves gpsd's
"continues a cycle" flag as the last decoded sentence set it and can itself become the
ender (gpsd's tag 0): a Garmin's `$GPBOD` after its GLL reports the fix, and the sentences after
it no longer do. `GPSD_DECODES` lists the sentences gpsd decodes, with the fewest fields
(address included) it takes, read off gpsd's `nmea_phrase` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# gpsd starts a new cycle when the time moves by more than 10 ms.
NEW_CYCLE_US = 10_000

GPSD_DECODES: dict[str, int] = {
    "ACCURACY": 0,
    "BWC": 0,
    "DBT": 0,
    "DPT": 0,
    "DTM": 0,
    "GBS": 0,
    "GGA": 0,
    "GLL": 0,
    "GNS": 0,
    "GRS": 0,
    "GSA": 0,
    "GST": 0,
    "GSV": 0,
    "GYOACC": 0,
    "HDG": 0,
    "HDM": 0,
    "HDT": 0,
    "INFO": 0,
    "MTW": 0,
    "MWD": 0,
    "MWV": 0,
    "PAIR001": 0,
    "PAIR010": 0,
    "PASHR": 0,
    "PDTINFO": 0,
    "PGLOR": 0,
    "PGPSP": 0,
    "PGRME": 0,
    "PGRMF": 0,
    "PGRMM": 0,
    "PGRMT": 0,
    "PGRMV": 0,
    "PGRMZ": 0,
    "PMGNST": 0,
    "PMTK001": 0,
    "PMTK424": 0,
    "PMTK705": 0,
    "PQTMCFGEINSMSGERROR": 0,
    "PQTMCFGEINSMSGOK": 0,
    "PQTMCFGORIENTATIONERROR": 0,
    "PQTMCFGORIENTATIONOK": 0,
    "PQTMCFGWHEELTICKERROR": 0,
    "PQTMCFGWHEELTICKOK": 0,
    "PQTMGPS": 0,
    "PQTMIMU": 0,
    "PQTMINS": 0,
    "PQTMQMPTERROR": 0,
    "PQTMVER": 0,
    "PQVERNO": 0,
    "PRHS": 0,
    "PSRFEPE": 0,
    "PSTMANTENNASTATUS": 0,
    "PSTMCPU": 0,
    "PSTMVER": 0,
    "PTNLRBA": 0,
    "PTNLRNM": 0,
    "PTNLRTP": 0,
    "PTNLRXO": 0,
    "PTNTA": 0,
    "PTNTHTM": 0,
    "RMC": 0,
    "ROT": 0,
    "SNRSTAT": 0,
    "STI": 0,
    "THS": 0,
    "TXT": 0,
    "VTG": 0,
    "XDR": 0,
    "ZDA": 0,
}
# Decoded only with one of these second fields.
GPSD_DECODES_SUBTYPES: dict[str, frozenset[str]] = {
    "PERC": frozenset({"FWsts", "GPavp", "GPctr", "GPdbg", "GPppf", "GPppr", "GPreh", "GPsts"}),
    "PSTI": frozenset({"030", "032", "033", "035", "036"}),
}
# Sentences gpsd lets continue a cycle (`cycle_continue` in its table).
CONTINUERS = frozenset({"GLL", "ACCURACY"})


def gpsd_tag(address: str, fields: tuple[str, ...]) -> str:
    """gpsd's tag for a sentence (`GPGGA` -> `GGA`), or "" when gpsd does not decode it."""
    for name in (address[2:], address):
        if name in GPSD_DECODES and len(fields) + 1 >= GPSD_DECODES[name]:
            return name
    subtypes = GPSD_DECODES_SUBTYPES.get(address)
    if subtypes is not None and fields and fields[0] in subtypes:
        return address
    return ""


@dataclass(frozen=True, slots=True)
class Seen:
    """What one sentence means to the detector (gpsd's field[0], mask and flags)."""

    tag: str
    tod: int | None = None  # registered time of day, microseconds
    has_data: bool = False  # the mask holds more than ONLINE_SET
    sets_fix: bool = False  # LATLON_SET or MODE_SET
    more_to_come: bool = False  # a GSV run not yet complete (gsx_more)
    force_report: bool = False  # RMC V without a time or date
    unreliable: bool = False  # the handler cleared cycle_end_reliable (RMC V, GGA no fix, no time)


@dataclass(slots=True)
class CycleDetector:
    _enders: set[str] = field(default_factory=set)
    _lasttag: str = ""
    _last_tod: int = 0  # gpsd's last_frac_time starts at zero
    _continues: bool = False  # gpsd's cycle_continue: as the last *decoded* sentence left it
    reliable: bool = False

    def new_cycle(self, seen: Seen) -> bool:
        """Whether this sentence starts a new cycle (call before merging it)."""
        if seen.more_to_come or seen.tod is None:
            return False
        return abs(seen.tod - self._last_tod) > NEW_CYCLE_US

    def report(self, seen: Seen) -> bool:
        """Update the detector with the sentence; whether gpsd reports after merging it."""
        if seen.tag:
            self._continues = seen.tag in CONTINUERS
        continues = self._continues
        if seen.unreliable:  # the sentence handler's doing, before the detector runs
            self.reliable = False
        report = seen.force_report
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
