"""The fix of an epoch is the one gpsd last reported for it (gpsd's end-of-cycle detector).

A receiver (seen in gpsd's bundg_zeus_9 capture, a chart plotter's multiplexed feed) sends
sentences of one second that disagree: its GLL carries the *next* second's time. gpsd then
starts the new cycle at that GLL, reports at it (GLL is the cycle ender it learned), and does
not report again when the RMC and GGA of that same second arrive later: its fix for that second
is the GLL's position. Ours must be too. The sentences are written here, not copied.
"""

from __future__ import annotations

from protocols.nmea.decoder import Fix, NmeaDecoder, checksum


def sentence(body: str) -> bytes:
    return f"${body}*{checksum(body):02X}\r\n".encode()


def second(hhmmss: str, lat_min: float, gll_time: str | None = None) -> list[bytes]:
    """RMC, GGA, GLL, GSA of one second; the GLL may carry another time."""
    lat = f"5251.{lat_min:04.0f}"
    return [
        sentence(f"GPRMC,{hhmmss},A,{lat},N,00518.8000,E,5.0,230.0,200818,1.4,E,A"),
        sentence(f"GPGGA,{hhmmss},{lat},N,00518.8000,E,1,12,0.60,-4,M,46.8,M,,"),
        sentence(f"GPGLL,{lat},N,00518.8000,E,{gll_time or hhmmss},A,A"),
        sentence("GPGSA,A,3,07,08,10,16,20,21,26,27,29,,,,1.10,0.60,0.90"),
    ]


def decode(lines: list[bytes]) -> dict[str, Fix]:
    decoder = NmeaDecoder()
    decoder.receive_data(b"".join(lines))
    fixes = []
    fix = decoder.flush()
    while fix is not None:
        fixes.append(fix)
        fix = decoder.next_fix()
    assert decoder.stats.rejected == 0
    return {f.time.strftime("%H%M%S"): f for f in fixes if f.time is not None}


def test_gll_ahead_of_its_second_gives_the_epoch_gpsd_reported() -> None:
    lines = second("094736", 100) + second("094737", 90) + second("094738", 80)
    # From 094739 on, each GLL comes with the next second's time (as in the capture).
    lines += second("094739", 70, gll_time="094740") + second("094740", 60, gll_time="094741")
    lines += second("094741", 50, gll_time="094742")
    fixes = decode(lines)

    def lat(minutes: float) -> float:
        return round(52 + minutes / 60, 7)

    # 094740 opened at the early GLL (5251.0070) and gpsd reported it there; the RMC and GGA of
    # 094740 (5251.0060) came after that report, with no cycle ender after them.
    assert round(fixes["094740"].lat or 0.0, 7) == lat(51.0070)
    assert round(fixes["094741"].lat or 0.0, 7) == lat(51.0060)
    # Ordinary seconds are whole: the last position of the second, mode 3 from the GSA.
    assert round(fixes["094738"].lat or 0.0, 7) == lat(51.0080)
    assert fixes["094738"].mode == 3
    assert sorted(fixes) == ["094736", "094737", "094738", "094739", "094740", "094741", "094742"]


def garmin_second(hhmmss: str, *, bod_before_pgrmz: bool) -> list[bytes]:
    """A Garmin's second: RMC, GGA (altitude 14.7 m), GSA, GLL, then its $PGRMZ (48 ft)."""
    lines = [
        sentence(f"GPRMC,{hhmmss},A,4527.458,S,16709.165,E,000.0,094.5,060601,024.1,E"),
        sentence(f"GPGGA,{hhmmss},4527.458,S,16709.165,E,1,05,2.2,14.7,M,1.1,M,,"),
        sentence("GPGSA,A,3,01,,,,13,20,22,,,,28,,3.2,2.2,2.1"),
        sentence(f"GPGLL,4527.458,S,16709.165,E,{hhmmss},A"),
    ]
    if bod_before_pgrmz:
        lines.append(sentence("GPBOD,,T,,M,,"))
    return [*lines, sentence("PGRMZ,48,f,3")]


def test_garmin_altitude_counts_unless_a_sentence_gpsd_skips_ended_the_cycle_first() -> None:
    """gpsd reads $PGRMZ (whole feet) and reports it right after the cycle ender (GLL)...

    ...but a sentence gpsd has no decoder for (`$GPBOD`, as a Foretrex sends) right after GLL
    keeps GLL's "continues the cycle" flag, takes the ender role and reports; the PGRMZ after it
    is merged but never reported: gpsd's fix keeps the GGA's altitude.
    """
    seconds = ("225312", "225313", "225314")
    plain = decode([line for t in seconds for line in garmin_second(t, bod_before_pgrmz=False)])
    assert plain["225313"].alt_msl == 48 * 0.3048
    assert plain["225313"].mode == 3

    with_bod = decode([line for t in seconds for line in garmin_second(t, bod_before_pgrmz=True)])
    assert with_bod["225313"].alt_msl == 14.7
