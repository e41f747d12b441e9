"""Epoch assembly: merge the sentences of one receiver epoch into a `Fix`, the way gpsd does.

gpsd's NMEA driver keeps a fix being built for the current cycle; a sentence whose UTC time
differs (by more than 10 ms) from the last timed sentence starts a new cycle and clears it.
Each sentence then merges what it carries, and gpsd reports the fix at the sentences its cycle
detector picks (`protocols/nmea/cycle.py`). We do the same and emit one fix per cycle when the
next one starts (or at `close()`): the cycle as gpsd last reported it once it learned where its
cycles end (sentences merged after that report, like the RMC and GGA of a second whose GLL came
early, are not in it), else all we merged of it (gpsd's first cycles; a cycle it never reported).

The mode rules below are gpsd's (`driver_nmea0183.c`), quirks included, because our fixes must
agree with gpsd's on the same input:
- GGA: a position is 2D, 3D with an altitude and at least 4 satellites, and *no fix* with fewer
  than 3 satellites used (an empty count is 0) whatever the quality flag says.
- GSA: its mode field, unless the last GGA repeated the previous GGA's timestamp (a receiver
  that lost lock keeps repeating its last cycle: its GSA is not trusted then).
- RMC/GLL "A": at least 2D; 3D when the previous fix was 3D, when more than 3 satellites are in
  use (last GSA), or when the fix being built already has an altitude.
- a 3D fix is not downgraded to 2D by a later sentence of the same epoch while altitudes exist.
- with no speed from RMC/VTG, speed is the distance to the previous epoch's position over the
  time between them (WGS84 distance, as gpsd's error model does).
Position, speed and track are only reported with mode >= 2, like gpsd's TPV.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from protocols.nmea.cycle import CycleDetector, Seen, gpsd_tag
from protocols.nmea.sentences import (
    DAY_US,
    BadField,
    earth_distance,
    parse_gga,
    parse_gll,
    parse_gns,
    parse_gsa,
    parse_gsv,
    parse_rmc,
    parse_time,
    parse_vtg,
    parse_zda,
    satellite_key,
    valid_dop,
)

if TYPE_CHECKING:
    from protocols.nmea.framing import Sentence

_HALF_DAY_US = DAY_US // 2
_INT = re.compile(r"\s*[+-]?\d+")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_SPEED = 9999.9  # gpsd's sanity limit, m/s

NO_FIX, FIX_2D, FIX_3D = 1, 2, 3
_FOOT = 0.3048  # metres
# Sentences we do not decode whose time gpsd registers for cycle detection (first field).
_TIMED_ONLY = frozenset({"GBS", "PSRFEPE"})


def _require_fields(s: Sentence, n: int) -> None:
    if len(s.fields) < n:
        raise BadField(f"{s.talker}{s.type}: {len(s.fields)} fields, need {n}")


def _leading_int(text: str) -> int:
    """C's atoi(): the leading integer of the text, 0 when there is none."""
    match = _INT.match(text)
    return int(match.group()) if match else 0


@dataclass(frozen=True, slots=True)
class Fix:
    """The receiver's solution for one epoch.

    `mode` is gpsd's: 1 no fix, 2 2D, 3 3D (0 when no sentence said anything about the fix).
    Position, speed, track and altitude are only given with a fix (mode >= 2), as gpsd does.
    `speed` is the receiver's (RMC/VTG) or, when it sent none, derived from the distance to the
    previous fix like gpsd does. `sats_used` is GGA's count, else the satellites listed in GSA.
    """

    time: datetime | None
    mode: int
    lat: float | None = None
    lon: float | None = None
    speed: float | None = None
    track: float | None = None
    alt_msl: float | None = None
    sats_used: int | None = None
    hdop: float | None = None
    vdop: float | None = None
    pdop: float | None = None
    quality: int | None = None

    def to_json_dict(self) -> dict[str, object]:
        """gpsd-like JSON keys; a key is absent when the receiver gave nothing for it."""
        out: dict[str, object] = {}
        if self.time is not None:
            out["time"] = self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out["mode"] = self.mode
        for key, value in (
            ("lat", self.lat),
            ("lon", self.lon),
            ("speed", self.speed),
            ("track", self.track),
            ("alt", self.alt_msl),
            ("sats", self.sats_used),
            ("hdop", self.hdop),
            ("vdop", self.vdop),
            ("pdop", self.pdop),
            ("quality", self.quality),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(slots=True)
class _Building:
    """The fix of the open epoch (gpsd's `gpsdata.fix`)."""

    time_us: int | None = None  # microseconds since 1970, once a timed sentence had a date
    mode: int = 0
    lat: float | None = None
    lon: float | None = None
    alt_msl: float | None = None
    speed: float | None = None
    track: float | None = None
    quality: int | None = None
    gga_sats: int | None = None
    gsa_sats: int | None = None
    hdop: float | None = None
    vdop: float | None = None
    pdop: float | None = None
    touched: bool = False


@dataclass(frozen=True, slots=True)
class _Past:
    """What gpsd remembers of an earlier fix (`lastfix`, `oldfix`)."""

    time_us: int
    mode: int
    lat: float | None
    lon: float | None
    has_alt: bool


@dataclass(slots=True)
class _New:
    """What one sentence carries (gpsd's `newdata` plus its report mask)."""

    tod: int | None = None  # time of day that takes part in cycle detection
    time_set: bool = False
    mode: int | None = None  # None: the sentence does not set the mode
    position: tuple[float, float] | None = None
    alt_msl: float | None = None
    speed: float | None = None
    track: float | None = None
    quality: int | None = None
    gga_sats: int | None = None
    gsa_sats: int | None = None
    hdop: float | None = None
    vdop: float | None = None
    pdop: float | None = None
    sky: bool = False  # a complete GSV run
    more_to_come: bool = False  # a GSV run not complete yet
    force_report: bool = False  # gpsd reports an RMC V without a time at once
    wipe_time: bool = False  # ... and the fix being built loses its time
    unreliable: bool = False  # a GGA no fix without a time: gpsd forgets the cycle end
    tod_only: bool = False  # the time takes part in cycle detection, but sets no fix time

    def seen(self, tag: str) -> Seen:
        has_data = (
            self.time_set
            or self.mode is not None
            or self.position is not None
            or self.alt_msl is not None
            or self.speed is not None
            or self.track is not None
            or self.quality is not None
            or self.hdop is not None
            or self.pdop is not None
            or self.sky
        )
        return Seen(
            tag=tag,
            tod=self.tod,
            has_data=has_data,
            sets_fix=self.mode is not None or self.position is not None,
            more_to_come=self.more_to_come,
            force_report=self.force_report,
            unreliable=self.unreliable or self.force_report,
        )


class EpochAssembler:
    """Feeds checked sentences, calls `emit(fix)` once per completed epoch."""

    def __init__(self, emit: Callable[[Fix], None]) -> None:
        self._emit = emit
        self._cur = _Building()
        self._date: date | None = None  # last date from RMC or ZDA
        self._date_tod = 0  # time of day when the date was last confirmed (midnight rollover)
        self._cycle = CycleDetector()
        self._reported: Fix | None = None  # the open epoch as gpsd last reported it
        self._reported_at_end = False  # ... and gpsd reported it once at a learned cycle end
        self._lastfix: _Past | None = None
        self._oldfix: _Past | None = None
        self._sats_used = 0  # satellites in use per the last GSA run (gpsd keeps it across cycles)
        self._used: set[int] = set()
        self._last_gsa_talker = ""
        self._last_gga_talker = ""
        self._last_gga_time = ""
        self._latch_mode = False

    def feed(self, sentence: Sentence) -> bool:
        """Merge one sentence; False when it is not a type we decode. May raise BadField."""
        handlers = self._PROPRIETARY if sentence.proprietary else self._HANDLERS
        handler = handlers.get(sentence.type)
        if handler is None:
            self._last_gsa_talker = ""
            self._not_ours(sentence)
            return False
        new = handler(self, sentence)
        if sentence.type != "GSA":
            self._last_gsa_talker = ""
        seen = new.seen(gpsd_tag(sentence.talker + sentence.type, sentence.fields))
        if self._cycle.new_cycle(seen):
            self._new_cycle(new)
        self._merge(new)
        self._report(seen)
        return True

    def _not_ours(self, sentence: Sentence) -> None:
        """A sentence we do not decode still moves gpsd's cycle detector (and may report)."""
        tag = gpsd_tag(sentence.talker + sentence.type, sentence.fields)
        tod = None
        if tag in _TIMED_ONLY and sentence.fields:
            tod = parse_time(sentence.fields[0])
        seen = Seen(tag=tag, tod=tod, has_data=any(sentence.fields))
        if self._cycle.new_cycle(seen):
            self._new_cycle(_New())
        self._report(seen)

    def _report(self, seen: Seen) -> None:
        # A report without a time (after a timeless RMC V) is not one of the epoch. While gpsd
        # knows no cycle end it reports at every position or mode; an epoch with only such
        # reports (the first one, typically) we give whole, as all we merged of it.
        if not self._cycle.report(seen):
            return
        now = self._fix(self._cur)
        if now.time is not None:
            self._reported = now
            self._reported_at_end = self._reported_at_end or self._cycle.reliable

    def close(self) -> None:
        """End of input: emit the open epoch, if it holds anything."""
        self._finish()

    # -- per sentence (parse everything first, so a BadField leaves the state untouched) --------

    def _rmc(self, s: Sentence) -> _New:
        rmc = parse_rmc(s.fields)
        new = _New()
        if not rmc.valid:
            # gpsd ignores an invalid RMC's time and date: some receivers send garbage there.
            new.mode = NO_FIX
            if not s.fields[0] or len(s.fields) < 9 or not s.fields[8]:
                # ... and without either it forgets the date, reports at once, and that report
                # and the rest of the cycle have no time (gpsd merges a zero time).
                new.force_report, new.wipe_time, self._date = True, True, None
            return new
        if rmc.time is not None and rmc.date is not None:
            self._set_date(rmc.date, rmc.time)
            new.tod, new.time_set = rmc.time, True
        new.position = rmc.position
        last_mode = self._lastfix.mode if self._lastfix else 0
        if rmc.position is None:
            new.mode = NO_FIX
        else:
            new.mode = FIX_3D if last_mode == FIX_3D else FIX_2D
        new.speed, new.track = rmc.speed, rmc.track
        if self._sats_used > 3 or self._cur.alt_msl is not None:
            new.mode = FIX_3D
        return new

    def _gga(self, s: Sentence) -> _New:
        gga = parse_gga(s.fields)
        time_text = s.fields[0]
        new = _New(quality=gga.quality, gga_sats=gga.sats_used, hdop=valid_dop(gga.hdop))
        # A GGA repeating the previous GGA's timestamp: the receiver lost lock (gpsd's latch).
        if self._last_gga_talker and self._last_gga_talker != s.talker:
            self._latch_mode = False
        else:
            self._latch_mode = time_text == self._last_gga_time
        self._last_gga_talker = s.talker
        if not self._latch_mode:
            self._last_gga_time = time_text
        if gga.time is not None:
            new.tod = gga.time
            new.time_set = self._date is not None
        elif not gga.quality:
            # gpsd: no fix and no time (a receiver still searching) forgets the date and the
            # cycle end (its forced report is lost: the GGA handler then overwrites its mask).
            new.unreliable, self._date = True, None
        sats = gga.sats_used or 0
        if gga.position is None:
            new.mode = NO_FIX
        else:
            new.position = gga.position
            new.mode = FIX_2D
            if gga.alt_msl is not None:
                new.alt_msl = gga.alt_msl
                if sats >= 4:
                    new.mode = FIX_3D
            if sats < 3:
                new.mode = NO_FIX
        return new

    def _gns(self, s: Sentence) -> _New:
        gns = parse_gns(s.fields)
        new = _New()
        if gns.time is not None:
            new.tod = gns.time
            new.time_set = self._date is not None
        if not gns.modes or gns.modes[0] == "N":
            new.mode = NO_FIX
            return new
        if gns.nav_status in ("U", "V"):
            return new
        new.gga_sats, new.hdop = gns.sats_used, valid_dop(gns.hdop)
        if gns.position is None:
            new.mode = NO_FIX
            return new
        new.position, new.mode = gns.position, FIX_2D
        if gns.alt_msl is not None:
            new.alt_msl = gns.alt_msl
            if (gns.sats_used or 0) > 3:
                new.mode = FIX_3D
        return new

    def _pgrmz(self, s: Sentence) -> _New:
        """Garmin's altitude (feet, whole ones as gpsd reads them) and fix dimension."""
        _require_fields(s, 3)
        new = _New()
        feet = _leading_int(s.fields[0])
        if s.fields[1][:1] == "f" and s.fields[0]:
            new.alt_msl = feet * _FOOT
        new.mode = {"1": NO_FIX, "2": FIX_2D, "3": FIX_3D}.get(s.fields[2][:1])
        return new

    def _gll(self, s: Sentence) -> _New:
        gll = parse_gll(s.fields)
        new = _New()
        if gll.time is not None:
            new.tod = gll.time
            new.time_set = self._date is not None
        if gll.valid and gll.position is not None:
            new.position = gll.position
            if self._cur.alt_msl is not None or self._sats_used > 3:
                new.mode = FIX_3D
            elif self._cur.mode < FIX_2D or not (self._oldfix and self._oldfix.has_alt):
                new.mode = FIX_2D
            else:
                new.mode = 0  # gpsd sets "mode not seen" here; the 3D hold below restores it
        else:
            new.mode = NO_FIX
        return new

    def _gsa(self, s: Sentence) -> _New:
        gsa = parse_gsa(s.fields)
        new = _New()
        if self._latch_mode:
            return new
        new.mode = gsa.mode
        new.pdop, new.hdop, new.vdop = valid_dop(gsa.pdop), valid_dop(gsa.hdop), valid_dop(gsa.vdop)
        talker = s.talker
        # Consecutive GSAs of different constellations (GP then GL, or GN GN) add up; a new run,
        # or the same single-constellation talker again, starts over.
        if not self._last_gsa_talker or (
            talker == self._last_gsa_talker and talker[1:] not in ("N", "Q")
        ):
            self._used.clear()
        self._last_gsa_talker = talker
        for prn in gsa.prns:
            if 0 < prn <= 600:
                self._used.add(satellite_key(talker, prn, gsa.system_id))
        self._sats_used = len(self._used)
        new.gsa_sats = self._sats_used
        return new

    def _vtg(self, s: Sentence) -> _New:
        vtg = parse_vtg(s.fields)
        new = _New()
        # gpsd uses a VTG only with both track and knots, and not in DR-only or invalid mode.
        if vtg.track is not None and vtg.speed is not None and vtg.usable:
            new.track, new.speed = vtg.track, vtg.speed
        return new

    def _zda(self, s: Sentence) -> _New:
        zda = parse_zda(s.fields)
        new = _New()
        if zda.time is not None and zda.date is not None:
            self._set_date(zda.date, zda.time)
            new.tod, new.time_set = zda.time, True
        return new

    def _gsv(self, s: Sentence) -> _New:
        gsv = parse_gsv(s.fields)  # checked; the sky view is not part of a fix
        if gsv.number is not None and gsv.total is not None and gsv.number < gsv.total:
            return _New(more_to_come=True)
        return _New(sky=True)

    _HANDLERS: ClassVar[dict[str, Callable[[EpochAssembler, Sentence], _New]]] = {
        "RMC": _rmc,
        "GGA": _gga,
        "GLL": _gll,
        "GNS": _gns,
        "GSA": _gsa,
        "VTG": _vtg,
        "ZDA": _zda,
        "GSV": _gsv,
    }
    _PROPRIETARY: ClassVar[dict[str, Callable[[EpochAssembler, Sentence], _New]]] = {
        "GRMZ": _pgrmz,
    }

    # -- merging -----------------------------------------------------------------------------

    def _set_date(self, day: date, tod: int) -> None:
        self._date, self._date_tod = day, tod

    def _time_us(self, tod: int) -> int | None:
        """Full time for a time of day, with the date from the last RMC/ZDA."""
        if self._date is None:
            return None
        if tod < self._date_tod - _HALF_DAY_US:
            # Past midnight with no new date yet (GGA-only receivers): the next day.
            self._date += timedelta(days=1)
        self._date_tod = tod
        return (self._date.toordinal() - _EPOCH_ORDINAL) * DAY_US + tod

    def _new_cycle(self, new: _New) -> None:
        # gpsd applies its "keep 3D" rule before a new cycle clears the fix being built.
        self._keep_3d(new)
        self._finish()
        self._cur = _Building()

    def _keep_3d(self, new: _New) -> None:
        if new.mode is not None and self._cur.mode == FIX_3D and new.mode != NO_FIX:
            new.mode = self._hold_3d(new.mode)

    def _merge(self, new: _New) -> None:
        self._keep_3d(new)
        cur = self._cur
        if new.wipe_time:
            cur.time_us = None
        if new.time_set and new.tod is not None:
            cur.time_us = self._time_us(new.tod)
        if new.position is not None:
            cur.lat, cur.lon = new.position
        if new.alt_msl is not None:
            cur.alt_msl = new.alt_msl
        if new.speed is not None:
            cur.speed = new.speed
        if new.track is not None:
            cur.track = new.track
        if new.mode is not None:
            cur.mode = new.mode
        if new.quality is not None:
            cur.quality = new.quality
        if new.gga_sats is not None:
            cur.gga_sats = new.gga_sats
        if new.gsa_sats is not None:
            cur.gsa_sats = new.gsa_sats
        if new.hdop is not None:
            cur.hdop = new.hdop
        if new.vdop is not None:
            cur.vdop = new.vdop
        if new.pdop is not None:
            cur.pdop = new.pdop
        if not cur.touched and (
            new.mode is not None
            or new.time_set
            or new.position is not None
            or new.speed is not None
            or new.hdop is not None
            or new.pdop is not None
        ):
            cur.touched = True
        self._error_model(cur)

    def _hold_3d(self, mode: int) -> int:
        """gpsd does not downgrade a 3D fix while the last fixes had an altitude."""
        if (self._lastfix and self._lastfix.has_alt) or (self._oldfix and self._oldfix.has_alt):
            return FIX_3D
        return mode

    def _error_model(self, cur: _Building) -> None:
        """gpsd's `gpsd_error_model()`: remember fixes, derive a missing speed."""
        if cur.time_us is None:
            return
        last = self._lastfix
        if last is None or abs(cur.time_us - last.time_us) > 9_900:
            self._oldfix = last
        old = self._oldfix
        if (
            old is not None
            and cur.speed is None
            and cur.mode >= FIX_2D
            and old.mode >= FIX_2D
            and cur.time_us > old.time_us
            and cur.lat is not None
            and cur.lon is not None
            and old.lat is not None
            and old.lon is not None
        ):
            seconds = (cur.time_us - old.time_us) / 1e6
            speed = earth_distance(cur.lat, cur.lon, old.lat, old.lon) / seconds
            if speed <= _MAX_SPEED:
                cur.speed = speed
        self._lastfix = _Past(cur.time_us, cur.mode, cur.lat, cur.lon, cur.alt_msl is not None)

    def _finish(self) -> None:
        """Emit the epoch as gpsd last reported it (with a time); else all we merged of it."""
        cur, reported, at_end = self._cur, self._reported, self._reported_at_end
        self._reported, self._reported_at_end = None, False
        if not cur.touched:
            return
        self._cur = _Building()
        full = self._fix(cur)
        # (A timeless RMC V took the time of what we merged: then gpsd's last timed report.)
        if reported is not None and (at_end or full.time is None):
            self._emit(reported)
        else:
            self._emit(full)

    @staticmethod
    def _fix(cur: _Building) -> Fix:
        when = None
        if cur.time_us is not None:
            when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=cur.time_us)
        has_fix = cur.mode >= FIX_2D
        return Fix(
            time=when,
            mode=cur.mode,
            lat=cur.lat if has_fix else None,
            lon=cur.lon if has_fix else None,
            speed=cur.speed if has_fix else None,
            track=cur.track if has_fix else None,
            alt_msl=cur.alt_msl if has_fix else None,
            sats_used=cur.gga_sats if cur.gga_sats is not None else cur.gsa_sats,
            hdop=cur.hdop,
            vdop=cur.vdop,
            pdop=cur.pdop,
            quality=cur.quality,
        )
