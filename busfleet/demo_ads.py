"""The demo's ads, made in code: two SVG posters and one PNG, bytes in memory.

They enter central's media library as any marketing team's files do (uploaded, sniffed from
their bytes, an SVG checked for anything active: central/media.py), so the demo goes the
production way: library, playlist, desired state, download on the bus, proof of play.
Pure: no file is written here.
"""

from __future__ import annotations

import struct
import zlib
from xml.sax.saxutils import escape

__all__ = ["AD_SECONDS", "demo_ads", "png", "svg_poster"]

AD_SECONDS = 8.0  # each ad's time on screen: a 120 s demo sees each of them several times
WIDTH, HEIGHT = 640, 360  # 16:9, the display's ad slot


def svg_poster(headline: str, line: str, background: str, accent: str) -> bytes:
    """A plain SVG poster: a coloured field, a stripe, a headline and a line of text."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" \
viewBox="0 0 {WIDTH} {HEIGHT}">
  <rect width="{WIDTH}" height="{HEIGHT}" fill="{background}"/>
  <rect y="{HEIGHT - 60}" width="{WIDTH}" height="60" fill="{accent}"/>
  <circle cx="{WIDTH - 90}" cy="90" r="60" fill="{accent}" opacity="0.6"/>
  <text x="40" y="150" font-family="sans-serif" font-size="48" font-weight="bold" \
fill="#ffffff">{escape(headline)}</text>
  <text x="40" y="210" font-family="sans-serif" font-size="26" fill="#ffffff">{escape(line)}</text>
  <text x="40" y="{HEIGHT - 22}" font-family="sans-serif" font-size="20" \
fill="#ffffff">busfleet demo</text>
</svg>
""".encode()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """An 8-bit RGB PNG: a diagonal gradient from sea blue to reef green with a sun."""
    rows = []
    sun_x, sun_y, sun_r2 = width * 3 // 4, height // 3, (height // 6) ** 2
    for y in range(height):
        row = bytearray(b"\x00")  # filter: none
        for x in range(width):
            if (x - sun_x) ** 2 + (y - sun_y) ** 2 <= sun_r2:
                row += b"\xff\xd0\x40"
                continue
            share = (x + y) / (width + height)
            row += bytes((int(20 + 30 * share), int(90 + 120 * share), int(200 - 90 * share)))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bit, RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )


def demo_ads() -> dict[str, bytes]:
    """The demo's ads by file name."""
    return {
        "reef-trips.svg": svg_poster(
            "Reef day trips", "Daily from the Marlin Marina", "#0b6e99", "#f2a81d"
        ),
        "night-market.svg": svg_poster(
            "Night Markets", "Open every evening, 5 to 11 pm", "#5b2a86", "#e84a5f"
        ),
        "esplanade.png": png(),
    }
