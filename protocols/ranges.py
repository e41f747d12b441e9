"""Sequence-number ranges: the compact way receipts and drop notes name many records."""

from __future__ import annotations

from collections.abc import Iterable


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]; duplicates and order do not matter."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def expand(seq_ranges: Iterable[tuple[int, int]]) -> list[int]:
    return [s for first, last in seq_ranges for s in range(first, last + 1)]
