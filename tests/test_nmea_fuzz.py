"""Property tests: no input makes the NMEA decoder raise, and bad input never changes good fixes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.errors import NmeaError
from protocols.nmea.decoder import Fix, NmeaDecoder, Sentence, checksum, parse_sentence

DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
CAPTURE = b"".join(
    line
    for line in (DATA / "bu353s4.log").read_bytes().splitlines(keepends=True)
    if not line.startswith(b"#")
)
CAPTURE_LINES = CAPTURE.splitlines(keepends=True)

# Bytes that look like NMEA often enough to reach the field parsers, plus anything at all.
nmeaish = st.lists(
    st.one_of(
        st.sampled_from(CAPTURE_LINES),
        st.sampled_from(CAPTURE_LINES).map(lambda line: line[: len(line) // 2]),
        st.builds(
            lambda body: f"${body}*{checksum(body):02X}\r\n".encode(),
            st.text(alphabet="GPNRMCAVTZDLS0123456789.,-", max_size=90),
        ),
        st.binary(max_size=300),
    ),
    max_size=30,
).map(b"".join)


def drain(decoder: NmeaDecoder) -> list[Fix]:
    fixes = []
    fix = decoder.flush()
    while fix is not None:
        fixes.append(fix)
        fix = decoder.next_fix()
    return fixes


def check_fix(fix: Fix) -> None:
    assert fix.mode in (0, 1, 2, 3)
    if fix.time is not None:
        assert fix.time.utcoffset() is not None
    if fix.lat is not None:
        assert -90.0 <= fix.lat <= 90.0
    if fix.lon is not None:
        assert -180.0 <= fix.lon <= 180.0
    for value in (fix.speed, fix.track, fix.alt_msl, fix.hdop, fix.pdop, fix.vdop):
        assert value is None or math.isfinite(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=nmeaish, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_any_bytes_in_any_chunks_give_fixes_or_are_counted(data: bytes, cuts: list[int]) -> None:
    decoder = NmeaDecoder()
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for a, b in itertools.pairwise(edges):
        decoder.receive_data(data[a:b])
        assert decoder.buffered <= 104
    for fix in drain(decoder):
        check_fix(fix)
    stats = decoder.stats
    nonblank = sum(1 for line in data.split(b"\n") if line.strip())
    # Every line with content was used, ignored or rejected (a junk prefix counts extra).
    assert stats.sentences_ok + stats.ignored + stats.rejected >= nonblank
    assert stats.rejected == sum(stats.rejected_by_reason.values())


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_sentence_on_any_bytes_returns_a_sentence_or_raises_nmea_error(data: bytes) -> None:
    try:
        sentence = parse_sentence(data)
    except NmeaError:
        return
    assert isinstance(sentence, Sentence)


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_parse_sentence_on_any_text_returns_a_sentence_or_raises_nmea_error(text: str) -> None:
    try:
        sentence = parse_sentence(text)
    except NmeaError:
        return
    assert isinstance(sentence, Sentence)


fields = st.lists(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$*,!"),
        max_size=8,
    ),
    max_size=8,
)


@settings(max_examples=300)
@given(
    talker=st.sampled_from(["GP", "GN", "GL", "GA", "GB", "BD"]),
    kind=st.sampled_from(["RMC", "GGA", "VTG", "GSA", "GLL", "ZDA", "GSV", "TXT"]),
    values=fields,
)
def test_a_framed_sentence_parses_back_into_its_fields(
    talker: str, kind: str, values: list[str]
) -> None:
    body = ",".join([talker + kind, *values])
    sentence = parse_sentence(f"${body}*{checksum(body):02X}\r\n")
    assert (sentence.talker, sentence.type) == (talker, kind)
    assert list(sentence.fields) == values
    # Whatever the field contents, feeding it is counted and never raises.
    decoder = NmeaDecoder()
    decoder.receive_line(f"${body}*{checksum(body):02X}")
    drain(decoder)
    stats = decoder.stats
    assert stats.sentences_ok + stats.ignored + stats.rejected == 1


@settings(max_examples=200)
@given(
    junk=st.lists(
        st.binary(min_size=1, max_size=150).map(
            lambda b: b.replace(b"$", b"").replace(b"!", b"").replace(b"\n", b"")
        ),
        max_size=len(CAPTURE_LINES),
    ),
)
def test_junk_lines_between_sentences_do_not_change_the_fixes(junk: list[bytes]) -> None:
    clean = NmeaDecoder()
    clean.receive_data(CAPTURE)
    expected = drain(clean)
    noisy = NmeaDecoder()
    for i, line in enumerate(CAPTURE_LINES):
        if i < len(junk):
            noisy.receive_data(junk[i] + b"\n")
        noisy.receive_data(line)
    assert drain(noisy) == expected
