"""agent.toml's [audio] section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AudioSection:
    enabled: bool = True  # spoken stop and live announcements
    # where sound goes: alsa (aplay) | pulse (paplay: PulseAudio or PipeWire) | file (a WAV per
    # announcement in out_dir: tests, proof) | none
    output: str = "alsa"
    out_dir: str = ""  # the file output's folder; empty: {bus.data_dir}/announcements
