"""Our NMEA decoder agrees with gpsd on gpsd's own regression captures (data/nmea/*.log).

Each `.log.chk` holds the input sentences interleaved with the JSON gpsd printed after each
one. gpsd reports a TPV whenever it thinks a cycle may be complete, so one receiver epoch
(same UTC time) often gets several TPVs that fill in as its sentences arrive (GGA, then GSA,
then RMC...). The decoder emits one fix per epoch once all its sentences are in, so we compare
each of our fixes with **the last TPV gpsd printed carrying the same time**: that is gpsd's most
complete view of the epoch. TPVs without a time (gpsd had no date yet: before the first valid
RMC or ZDA) cannot be tied to an epoch and are not compared; neither are our fixes without one.

Compared: the set of epoch times, mode, and where gpsd gives them lat/lon (1e-6 degree),
speed (0.01 m/s), track (0.1 degree) and altitude above MSL (1 mm). gpsd leaves position,
speed and track out of a TPV without a fix (mode < 2); so must we.

Documented differences, read off the .chk files (not off our output):
- neo-m8n.log: gpsd's times are 1024 weeks (7168 days) after the RMC dates (2034-11-01 for
  `180315`). Recent gpsd "corrects" any NMEA date before 2017 as a GPS week-rollover bug unless
  it learned the leap seconds for the capture's date from a `# Date:` header line; this capture
  writes `# Date = 2015-03-18`, the others with pre-2017 dates write `# Date:` and are not
  shifted. The receiver's date is right; we compare against gpsd's time minus 1024 weeks.
  rst39.log (2014, no date header) likewise.
- Epochs gpsd never reported with a time (listed below): the last, cut-off epoch of a capture
  (gpsd only reports at the cycle end it has learned, which never came; our `flush()` reports
  it), and haicom's first dated epoch (gpsd printed its TPV at the GGA, before the RMC brought
  the date, and not again). These must be exactly our extra epochs. Likewise, read off the
  .chk files:
  - receivers whose sentences of one second disagree on the time: garmin48 sends its fix every
    2 s with the GLL one second ahead of the RMC and GGA; gpsd reports the GLL-started cycles
    (GLL ends its cycle, then $PGRMZ) and never the RMC/GGA ones. tn204's RMC is one second
    behind its GGA and GLL: gpsd reports at the RMC, the GGA/GLL second 23:01:49 never. rst39
    (10 Hz GGA) before gpsd learned its cycle end (the first 0.1 s epoch).
  - bt451 is pieced together from three sessions: the .5 s epoch cut off at the end of the
    first, and the first epoch of the second (only GLL and ZDA) before its cycle end came.
  - gp-320fw cold boot: one GGA with a no-fix time between two RMC "V" dates, never reported.
- Where gpsd's reports and our fixes come from: the NMEA cycle detector (protocols/nmea/cycle.py)
  mirrors gpsd's, and each fix is the epoch as gpsd last reported it at a learned cycle end.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocols.nmea.decoder import Fix, NmeaDecoder

DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
CAPTURES = sorted(DATA.glob("*.log"))

LATLON_TOLERANCE = 1e-6  # degrees
SPEED_TOLERANCE = 0.01  # m/s
TRACK_TOLERANCE = 0.1  # degrees
ALT_TOLERANCE = 0.001  # metres; gpsd prints four decimals

# Within one gpsd cycle (times at most 10 ms apart, gpsd's rule) each timed sentence sets the
# fix time, so gpsd may print one cycle under two times (Magellan 315: its GLL at .523, then
# its GGA and RMC at .520). The cycle is one epoch, known by its last TPV's time, as ours is by
# its last timed sentence.
GPSD_CYCLE = timedelta(milliseconds=10)
GPSD_TIME_SHIFT = {"neo-m8n.log": timedelta(weeks=1024), "rst39.log": timedelta(weeks=1024)}
GPSD_SILENT_EPOCHS = {
    "bt451.log": {
        "2009-12-09T14:33:08.500Z",
        "2009-12-09T15:25:04.500Z",
        "2009-12-09T15:25:08.500Z",
    },
    "ch-4701.log": {"2008-05-29T12:35:00.000Z"},
    "foretrex-201.log": {"2010-08-26T20:00:16.000Z"},
    "garmin48.log": {
        "2001-06-06T22:53:10.000Z",
        "2001-06-06T22:53:12.000Z",
        "2001-06-06T22:53:14.000Z",
        "2001-06-06T22:53:16.000Z",
        "2001-06-06T22:53:18.000Z",
        "2001-06-06T22:53:34.000Z",
    },
    "gp-320fw-2019-04-07-coldboot.log": {"2019-04-07T00:04:10.000Z"},
    "gps-360.log": {"2006-07-28T02:16:25.949Z"},
    "haicom-305N.log": {"2007-04-08T09:53:04.802Z"},
    "neo-m8n.log": {"2015-03-18T17:19:48.000Z"},
    "pharos-360.log": {"2006-07-28T02:16:33.948Z"},
    "quectel-l76k-nmea.log": {"2026-08-05T05:53:04.000Z"},
    "rst39.log": {"2014-02-19T20:41:32.100Z"},
    "st-teseo-liv3f.log": {"2026-03-16T20:35:20.000Z"},
    "tn204.log": {"2002-10-26T23:01:49.000Z"},
}


def iso(fix: Fix) -> str:
    assert fix.time is not None
    return iso_time(fix.time)


def iso_time(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode_capture(path: Path) -> list[Fix]:
    decoder = NmeaDecoder()
    fixes: list[Fix] = []
    with path.open("rb") as stream:
        for line in stream:
            if line.startswith(b"#"):
                continue
            decoder.receive_data(line)
            while (fix := decoder.next_fix()) is not None:
                fixes.append(fix)
    fix = decoder.flush()
    while fix is not None:
        fixes.append(fix)
        fix = decoder.next_fix()
    return fixes


def gpsd_last_tpv_per_time(path: Path, shift: timedelta) -> dict[str, dict[str, Any]]:
    """gpsd's last TPV of each cycle, by its time (see GPSD_CYCLE)."""
    last: dict[str, dict[str, Any]] = {}
    previous: datetime | None = None
    for raw in path.read_bytes().splitlines():
        line = raw.decode("latin-1").strip()
        if not line.startswith("{"):
            continue
        report = json.loads(line)
        if report.get("class") != "TPV" or "time" not in report:
            continue
        when = datetime.fromisoformat(report["time"].replace("Z", "+00:00")) - shift
        if previous is not None and when != previous and abs(when - previous) <= GPSD_CYCLE:
            del last[iso_time(previous)]
        last[iso_time(when)] = report
        previous = when
    return last


def test_every_capture_has_gpsd_output_to_compare_with() -> None:
    assert CAPTURES, "no captures in data/nmea"
    for capture in CAPTURES:
        assert capture.with_name(capture.name + ".chk").is_file(), capture.name


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_each_epoch_fix_matches_gpsds_last_tpv_of_that_time(capture: Path) -> None:
    shift = GPSD_TIME_SHIFT.get(capture.name, timedelta(0))
    gpsd = gpsd_last_tpv_per_time(capture.with_name(capture.name + ".chk"), shift)
    assert gpsd, "gpsd reported no timed TPV"
    ours = {iso(fix): fix for fix in decode_capture(capture) if fix.time is not None}

    assert set(ours) - set(gpsd) == GPSD_SILENT_EPOCHS.get(capture.name, set())
    assert set(gpsd) - set(ours) == set()

    problems: list[str] = []
    for when, tpv in sorted(gpsd.items()):
        fix = ours[when]
        if fix.mode != tpv["mode"]:
            problems.append(f"{when}: mode {fix.mode}, gpsd {tpv['mode']}")
        for key, ours_value, tolerance in (
            ("lat", fix.lat, LATLON_TOLERANCE),
            ("lon", fix.lon, LATLON_TOLERANCE),
            ("speed", fix.speed, SPEED_TOLERANCE),
            ("track", fix.track, TRACK_TOLERANCE),
            ("altMSL", fix.alt_msl, ALT_TOLERANCE),
        ):
            theirs = tpv.get(key)
            if theirs is None and ours_value is None:
                continue
            if theirs is None or ours_value is None or abs(ours_value - theirs) > tolerance:
                problems.append(f"{when}: {key} {ours_value}, gpsd {theirs}")
    assert not problems, "\n".join(problems[:20])


def test_the_agreement_covers_positions_speeds_tracks_and_no_fix_epochs() -> None:
    """Guard against a comparison that passes because there is nothing to compare."""
    seen = {"lat": 0, "speed": 0, "track": 0, "no_fix": 0}
    for capture in CAPTURES:
        shift = GPSD_TIME_SHIFT.get(capture.name, timedelta(0))
        for tpv in gpsd_last_tpv_per_time(capture.with_name(capture.name + ".chk"), shift).values():
            for key in ("lat", "speed", "track"):
                seen[key] += key in tpv
            seen["no_fix"] += tpv["mode"] < 2
    assert seen["lat"] > 300
    assert seen["speed"] > 300
    assert seen["track"] > 200
    assert seen["no_fix"] > 50
