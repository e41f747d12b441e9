"""NMEA 0183, sans-IO: bytes in, one fix per receiver epoch out; fixes in, sentences out.

    framing     one line checked and split (start, length, checksum, address)
    sentences   the fields of RMC, GGA, GNS, VTG, GSA, GLL, ZDA, GSV
    cycle       gpsd's end-of-cycle detector: when a cycle starts, when gpsd reports
    epoch       sentences of one epoch merged into a fix, by gpsd's rules
    decoder     the decoder: any chunking of bytes in, fixes out; counts what it rejects
    encode      fixes to sentences (the GPS simulator)

The cut follows the data: framing sits below both the decoder and the epoch assembler, so that
neither imports the other. Nothing here raises on bad input except `parse_sentence`.
"""

from protocols.nmea.decoder import NmeaDecoder, NmeaStats
from protocols.nmea.epoch import Fix
from protocols.nmea.framing import InvalidSentence, Sentence, checksum, parse_sentence

__all__ = [
    "Fix",
    "InvalidSentence",
    "NmeaDecoder",
    "NmeaStats",
    "Sentence",
    "checksum",
    "parse_sentence",
]
