"""WAV in and out, pure: parse, join, scale, measure. No audioop (gone in Python 3.13).

Everything inside the audio is 16-bit PCM: the engines write it (espeak-ng: 22,050 Hz mono), a
recorded file in another PCM format is converted once (`to_s16`), parts of one announcement
are joined at the highest rate among them (`join`), and the volume scales the samples
(`scale`). A file that is not PCM WAV is a `WavError`, never a crash.
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass

__all__ = ["Pcm", "WavError", "join", "parse", "rms", "scale", "silence", "tone"]

MAX_SECONDS = 600.0  # an announcement longer than this is not one: refused


class WavError(ValueError):
    """Bytes that are not a PCM WAV file we can play."""


@dataclass(frozen=True, slots=True)
class Pcm:
    """Signed 16-bit little-endian samples, interleaved by channel."""

    rate: int
    channels: int
    samples: array[int]  # typecode "h"

    @property
    def seconds(self) -> float:
        return len(self.samples) / (self.rate * self.channels) if self.rate else 0.0

    def wav(self) -> bytes:
        """The samples as a WAV file."""
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(self.channels)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(_le(self.samples).tobytes())
        return out.getvalue()


def parse(data: bytes) -> Pcm:
    """A WAV file's samples as 16-bit PCM; WavError if it is not a PCM WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            if not 1_000 <= rate <= 192_000 or not 1 <= channels <= 8:
                raise WavError(f"unusual WAV format: {rate} Hz, {channels} channels")
            if w.getnframes() > MAX_SECONDS * rate:
                raise WavError(f"longer than {MAX_SECONDS:.0f} s")
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(f"not a PCM WAV file: {exc}") from exc
    return Pcm(rate, channels, to_s16(raw, width))


def to_s16(raw: bytes, width: int) -> array[int]:
    """Little-endian PCM of `width` bytes per sample (8-bit: unsigned) as 16-bit samples."""
    if width == 1:
        return array("h", ((b - 128) << 8 for b in raw))
    if width not in (2, 3, 4):
        raise WavError(f"{width * 8}-bit samples")
    n = len(raw) // width
    two = bytearray(2 * n)  # the two most significant bytes of each sample
    two[0::2] = raw[width - 2 :: width][:n]
    two[1::2] = raw[width - 1 :: width][:n]
    return _le(array("h", bytes(two)))


def _le(samples: array[int]) -> array[int]:
    """`samples` in little-endian order (a no-op on the little-endian machines we run on)."""
    if sys.byteorder == "little":
        return samples
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped


def mono(pcm: Pcm) -> Pcm:
    """The channels averaged into one."""
    if pcm.channels == 1:
        return pcm
    ch = pcm.channels
    lanes = [pcm.samples[c::ch] for c in range(ch)]
    return Pcm(pcm.rate, 1, array("h", (sum(v) // ch for v in zip(*lanes, strict=False))))


def resample(pcm: Pcm, rate: int) -> Pcm:
    """Mono `pcm` at `rate` Hz, by linear interpolation (speech needs no better)."""
    pcm = mono(pcm)
    if pcm.rate == rate or not pcm.samples:
        return Pcm(rate, 1, pcm.samples) if pcm.rate == rate else Pcm(rate, 1, array("h"))
    src, step = pcm.samples, pcm.rate / rate
    last = len(src) - 1
    out = array("h", bytes(2 * int(len(src) / step)))
    for i in range(len(out)):
        x = i * step
        j = int(x)
        k = min(j + 1, last)
        out[i] = int(src[j] + (src[k] - src[j]) * (x - j))
    return Pcm(rate, 1, out)


def silence(rate: int, seconds: float) -> Pcm:
    return Pcm(rate, 1, array("h", bytes(2 * int(rate * seconds))))


def join(parts: list[Pcm], gap_s: float = 0.4) -> Pcm:
    """The parts one after another, `gap_s` of silence between them, mono at the highest rate."""
    if not parts:
        raise WavError("nothing to join")
    rate = max(p.rate for p in parts)
    out = array("h")
    for n, part in enumerate(parts):
        if n:
            out.extend(silence(rate, gap_s).samples)
        out.extend(resample(part, rate).samples)
    return Pcm(rate, 1, out)


def scale(pcm: Pcm, percent: float) -> Pcm:
    """Every sample times `percent`/100, clipped to 16 bits."""
    if percent == 100:
        return pcm
    f = max(0.0, percent) / 100.0
    return Pcm(
        pcm.rate,
        pcm.channels,
        array("h", (max(-32768, min(32767, int(v * f))) for v in pcm.samples)),
    )


def rms(pcm: Pcm) -> float:
    """Root mean square of the samples, 0 (silence) to 1 (full scale)."""
    if not pcm.samples:
        return 0.0
    return math.sqrt(sum(v * v for v in pcm.samples) / len(pcm.samples)) / 32768.0


def tone(freqs: list[tuple[float, float]], rate: int = 22_050, level: float = 0.4) -> Pcm:
    """Sine tones one after another, (Hz, seconds) each, with a soft decay: a chime."""
    out = array("h")
    for hz, seconds in freqs:
        n = int(rate * seconds)
        for i in range(n):
            env = math.exp(-3.0 * i / n) * min(1.0, i / (0.01 * rate))
            out.append(int(32767 * level * env * math.sin(2 * math.pi * hz * i / rate)))
    return Pcm(rate, 1, out)
