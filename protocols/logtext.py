"""Log text as it travels in a `logs` command's answer: zlib, then base64 (an event's data
holds text only). Pure.

The bus packs (onboard/logs/reader.py); central's tools unpack, never more than a given
number of bytes: the answer comes from a bus, and a few kB of zlib can inflate to gigabytes.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from protocols.errors import CodecError

__all__ = ["MAX_UNPACKED", "pack", "packed_size", "unpack"]

MAX_UNPACKED = 16 * 2**20  # the most a reader inflates: far above what a bus sends (2 MiB)


def pack(text: str, level: int = 9) -> str:
    """`text` (UTF-8) compressed and base64-encoded."""
    return base64.b64encode(zlib.compress(text.encode(), level)).decode("ascii")


def packed_size(compressed: int) -> int:
    """The characters of base64 for `compressed` bytes."""
    return 4 * ((compressed + 2) // 3)


def unpack(packed: str, max_bytes: int = MAX_UNPACKED) -> str:
    """The text of `pack`'s output; CodecError if it is not one or inflates beyond
    `max_bytes`."""
    try:
        raw = base64.b64decode(packed.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CodecError(f"log: not base64: {exc}") from exc
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(raw, max_bytes)
    except zlib.error as exc:
        raise CodecError(f"log: not zlib: {exc}") from exc
    if inflater.unconsumed_tail:
        raise CodecError(f"log: inflates beyond {max_bytes} bytes")
    if not inflater.eof:
        raise CodecError("log: the compressed text is cut short")
    return text.decode("utf-8", errors="replace")
