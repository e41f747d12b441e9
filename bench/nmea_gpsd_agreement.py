"""How often `busfleet gps decode` agrees with gpsd, epoch by epoch, on gpsd's captures.

    python bench/nmea_gpsd_agreement.py [DIR_OR_LOG ...]   (default: data/nmea)

For each `X.log` with gpsd's `X.log.chk` beside it, the epochs are the UTC times gpsd reported
in a TPV. One agrees when we emitted a fix of that time whose fields compared by
tests/test_nmea_gpsd_agreement.py (mode, lat/lon, speed, track, altMSL) match gpsd's last TPV
of that time within the same tolerances. Epochs only we report (gpsd printed no TPV with their
time: the capture's cut-off last epoch, an epoch before gpsd learned the cycle end or had a
date) are counted apart, in the last column; `-v` lists every one and every disagreement.
Prints one line per capture and the total; exits 0 whatever the figure (it measures only).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.nmea.decoder import Fix, NmeaDecoder

CYCLE = timedelta(milliseconds=10)
TOLERANCES = {"lat": 1e-6, "lon": 1e-6, "speed": 0.01, "track": 0.1, "altMSL": 0.001}


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def our_fixes(path: Path) -> dict[str, Fix]:
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
    return {iso(f.time): f for f in fixes if f.time is not None}


def gpsd_tpvs(path: Path, shift: timedelta) -> dict[str, dict[str, Any]]:
    """gpsd's last TPV of each cycle, by its time.

    Within one cycle (times less than 10 ms apart, gpsd's own rule) each timed sentence sets
    the fix time, so gpsd may print one cycle under two times (a GLL at .523, then the GGA at
    .520): the cycle is one epoch, known by the time of its last TPV, as ours is by its last
    timed sentence.
    """
    last: dict[str, dict[str, Any]] = {}
    previous: datetime | None = None
    for raw in path.read_bytes().splitlines():
        line = raw.decode("latin-1").strip()
        if not line.startswith("{"):
            continue
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if report.get("class") != "TPV" or "time" not in report:
            continue
        when = datetime.fromisoformat(report["time"].replace("Z", "+00:00")) - shift
        if previous is not None and when != previous and abs(when - previous) <= CYCLE:
            last.pop(iso(previous), None)
        last[iso(when)] = report
        previous = when
    return last


def differences(fix: Fix, tpv: dict[str, Any]) -> list[str]:
    out = []
    if fix.mode != tpv["mode"]:
        out.append(f"mode {fix.mode} gpsd {tpv['mode']}")
    ours = {"lat": fix.lat, "lon": fix.lon, "speed": fix.speed, "track": fix.track}
    ours["altMSL"] = fix.alt_msl
    for key, tolerance in TOLERANCES.items():
        mine, theirs = ours[key], tpv.get(key)
        if mine is None and theirs is None:
            continue
        if mine is None or theirs is None or abs(mine - theirs) > tolerance:
            out.append(f"{key} {mine} gpsd {theirs}")
    return out


def compare(log: Path, verbose: bool = False) -> tuple[int, int, int]:
    """(agreeing epochs, epochs gpsd reported with a time, epochs only we report)."""
    ours = our_fixes(log)
    chk = log.with_name(log.name + ".chk")
    # Recent gpsd moves pre-2017 dates by 1024 weeks unless a `# Date:` header tells it
    # otherwise (see the agreement test): take whichever reading matches our epochs best.
    gpsd = max(
        (gpsd_tpvs(chk, shift) for shift in (timedelta(0), timedelta(weeks=1024))),
        key=lambda tpvs: len(set(tpvs) & set(ours)),
    )
    agree = 0
    for when in sorted(set(gpsd) | set(ours)):
        if when not in gpsd:
            if verbose:
                print(f"  {when}: only ours (gpsd reported no TPV with this time)")
            continue
        diff = (
            ["we have no such epoch"] if when not in ours else differences(ours[when], gpsd[when])
        )
        agree += not diff
        if diff and verbose:
            print(f"  {when}: {'; '.join(diff)}")
    return agree, len(gpsd), len(set(ours) - set(gpsd))


def main(argv: list[str]) -> None:
    verbose = "-v" in argv
    default = Path(__file__).resolve().parent.parent / "data" / "nmea"
    args = [Path(a) for a in argv if a != "-v"] or [default]
    logs: list[Path] = []
    for arg in args:
        logs += sorted(arg.glob("*.log")) if arg.is_dir() else [arg]
    total_agree = total = total_extra = 0
    print(f"{'capture':40} {'agree/gpsd epochs':>17}          only ours")
    for log in logs:
        if not log.with_name(log.name + ".chk").is_file():
            continue
        agree, epochs, extra = compare(log, verbose)
        total_agree += agree
        total += epochs
        total_extra += extra
        share = 100 * agree / epochs if epochs else 100.0
        print(f"{log.name:40} {agree:8}/{epochs:<8} {share:6.1f} % {extra:6}")
    share = 100 * total_agree / max(total, 1)
    print(f"{'total':40} {total_agree:8}/{total:<8} {share:6.1f} % {total_extra:6}")


if __name__ == "__main__":
    main(sys.argv[1:])
