"""candump log lines: what a technician's capture looks like, and what is not a frame."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.j1939.candump import format_candump_line, parse_candump, parse_candump_line


def test_a_log_line_with_an_extended_id_is_parsed() -> None:
    line = "(1436509052.249713) can0 0CF00400#FF7D7D40187DFFFF\n"
    assert parse_candump_line(line) == (
        1436509052.249713,
        "can0",
        0x0CF00400,
        bytes.fromhex("FF7D7D40187DFFFF"),
    )
    frame = parse_candump(line)
    assert frame is not None and frame.extended


def test_a_standard_id_is_marked_as_not_extended() -> None:
    frame = parse_candump("(1.5) vcan0 123#0102")
    assert frame is not None and not frame.extended and frame.can_id == 0x123
    assert frame.data == b"\x01\x02"


def test_the_screen_format_with_absolute_time_is_read_too() -> None:
    frame = parse_candump("(1436509052.249713)  can0  18FEF100   [8]  FF 00 20 FF FF FF FF FF")
    assert frame is not None
    assert frame.can_id == 0x18FEF100 and frame.data == bytes.fromhex("FF0020FFFFFFFFFF")


def test_lines_that_are_not_frames_give_none() -> None:
    for line in [
        "",
        "# comment",
        "(1.0) can0 0CF00400#FF7",  # odd number of hex digits
        "(1.0) can0 0CF00400#R",  # remote frame
        "(1.0) can0 0CF00400##1FF",  # CAN FD
        "(1.0) can0 FFFFFFFF#00",  # id over 29 bits
        "(1.0) can0 18FEF100   [3]  FF 00",  # DLC does not match
        "garbage \x00\xff",
    ]:
        assert parse_candump_line(line) is None, line


@given(
    t=st.floats(0, 2e9, allow_nan=False).map(lambda x: round(x, 6)),
    can_id=st.integers(0, 0x1FFFFFFF),
    data=st.binary(max_size=8),
)
def test_format_then_parse_round_trips(t: float, can_id: int, data: bytes) -> None:
    parsed = parse_candump_line(format_candump_line(t, "can1", can_id, data))
    assert parsed is not None
    assert parsed[1:] == ("can1", can_id, data)
    assert abs(parsed[0] - t) < 1e-6


@given(st.text(max_size=80))
def test_any_text_parses_or_gives_none(line: str) -> None:
    result = parse_candump_line(line)
    assert result is None or len(result[3]) <= 8
