"""Where an announcement's sound goes, by name (agent.toml's `audio.output`).

- `alsa`: `aplay -q FILE` (the bus's sound card);
- `pulse`: `paplay FILE` (PulseAudio, or PipeWire's pulse server);
- `file`: a WAV per announcement in a folder, named `NNNNNN-YYYYMMDDTHHMMSS-KIND.wav` so that
  their order is visible; the test sink and the operator's proof;
- `none`: nothing (the announcement is still shown and logged).

`play` returns when the sound has been played (the queue starts the next one only then); the
players run as child processes without a shell, with a deadline of the sound's length plus
a margin, so a hung sound server cannot stop the queue for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Final

from onboard.backends import load_backend
from onboard.errors import DeviceError

__all__ = ["OUTPUTS", "FileOutput", "Output", "OutputError", "open_output"]

log = logging.getLogger("busfleet.onboard.audio")

OUTPUTS: Final[dict[str, tuple[str, str]]] = {
    "alsa": ("onboard.audio.outputs", "AlsaOutput"),
    "pulse": ("onboard.audio.outputs", "PulseOutput"),
    "file": ("onboard.audio.outputs", "FileOutput"),
    "none": ("onboard.audio.outputs", "NoOutput"),
}
PLAY_MARGIN_S: Final = 10.0
_FILE = re.compile(r"^(\d{6})-")


class OutputError(DeviceError):
    """The sound could not be played: the player is missing, failed or hung."""


class Output(ABC):
    """A sink for one announcement's WAV at a time."""

    name = "output"

    @classmethod
    def from_dir(cls, out_dir: Path) -> Output:
        """The output; `out_dir` is for those that write files."""
        return cls()

    @abstractmethod
    async def play(self, wav: bytes, seconds: float, label: str) -> str:
        """Play `wav` (`seconds` long) and return when done; a reference (a file name) or ""."""


def open_output(name: str, out_dir: Path) -> Output:
    """The output of that name; BackendError (a ConfigError) if there is none."""
    cls = load_backend("audio output", OUTPUTS, name, Output, key="audio.output")  # type: ignore[type-abstract]
    return cls.from_dir(out_dir)


class _Player(Output):
    """A sound server's command-line player, given a temporary WAV file."""

    argv: tuple[str, ...] = ()

    async def play(self, wav: bytes, seconds: float, label: str) -> str:
        with tempfile.NamedTemporaryFile(prefix="busfleet-", suffix=".wav") as f:
            f.write(wav)
            f.flush()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    f.name,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                raise OutputError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc
            try:
                async with asyncio.timeout(seconds + PLAY_MARGIN_S):
                    _, err = await proc.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise OutputError(f"{self.name}: {self.argv[0]} hung: killed") from None
            finally:
                if proc.returncode is None:  # cancelled: the agent stops
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if proc.returncode != 0:
                text = err.decode("utf-8", "replace").strip()[:300]
                raise OutputError(f"{self.name}: {self.argv[0]} exited {proc.returncode}: {text}")
        return ""


class AlsaOutput(_Player):
    name = "alsa"
    argv = ("aplay", "-q")


class PulseOutput(_Player):
    name = "pulse"
    argv = ("paplay",)


class NoOutput(Output):
    name = "none"

    async def play(self, wav: bytes, seconds: float, label: str) -> str:
        return ""


class FileOutput(Output):
    """A WAV per announcement in `out_dir`, numbered on from the highest number there.

    `realtime`: take as long as the sound lasts, as a speaker would (demos, queue tests)."""

    name = "file"

    def __init__(self, out_dir: Path, *, realtime: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.realtime = realtime
        numbers = (_FILE.match(p.name) for p in self.out_dir.iterdir())
        self.counter = max((int(m.group(1)) for m in numbers if m), default=0)

    @classmethod
    def from_dir(cls, out_dir: Path) -> FileOutput:
        return cls(out_dir)

    async def play(self, wav: bytes, seconds: float, label: str) -> str:
        self.counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
        safe = re.sub(r"[^a-z0-9_]", "_", label.lower())[:20] or "sound"
        path = self.out_dir / f"{self.counter:06d}-{stamp}-{safe}.wav"
        tmp = path.with_suffix(".part")
        try:
            await asyncio.to_thread(_write, tmp, path, wav)
        except OSError as exc:
            raise OutputError(f"file: cannot write {path}: {exc}") from exc
        if self.realtime:
            await asyncio.sleep(seconds)
        return path.name


def _write(tmp: Path, path: Path, data: bytes) -> None:
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
