"""The one announcement queue: priorities, one at a time, stale ones dropped, errors survived."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import pytest

from onboard.agent import Agent
from onboard.audio.api import AD, LIVE, STOP, Utterance
from onboard.audio.engine import MAX_CHARS, EspeakNg, clean_text
from onboard.audio.outputs import FileOutput
from onboard.audio.queue import AnnouncementQueue
from onboard.audio.runtime import AudioRuntime, NoAudio
from onboard.audio.settings import AudioSection
from onboard.audio.sources import Sources
from onboard.audio.volume import VolumeSchedule
from onboard.audio.wav import parse, rms
from onboard.config import AgentConfig, BusSection, CanSection, DisplaySection, MqttSection
from onboard.errors import ConfigError
from onboard.gps.settings import GpsSection
from protocols.schemas import Scalar

Log = list[tuple[str, dict[str, Scalar]]]


def _runtime(out: Path, log: Log, *, engine: EspeakNg | None = None, **kw: object) -> AudioRuntime:
    return AudioRuntime(
        Sources(engine or EspeakNg()),
        FileOutput(out, realtime=True),  # takes as long as the sound, like a speaker
        lambda kind, data: log.append((kind, data)),
        **kw,  # type: ignore[arg-type]
    )


async def _until_idle(rt: AudioRuntime) -> None:
    async with asyncio.timeout(60):
        await rt.wait_idle()
    assert rt.idle


def test_a_live_announcement_goes_first_then_stops_then_ads_never_two_at_once(
    tmp_path: Path,
) -> None:
    log: Log = []
    rt = _runtime(tmp_path, log)
    begun: list[tuple[str, float]] = []  # (text, when it began)
    first = asyncio.Event()

    def started(u: Utterance) -> None:
        assert rt.playing is u  # on_start comes as its playback begins
        begun.append((u.texts["de"], time.monotonic()))
        first.set()

    async def main() -> None:
        task = asyncio.create_task(rt.run())
        rt.say(Utterance(kind="next_stop", texts={"de": "Nächster Halt: Rathaus"}), started)
        await first.wait()
        # While the first plays, in reverse order of importance:
        rt.say(Utterance(kind="ad", texts={"de": "Werbung eins"}, priority=AD), started)
        rt.say(Utterance(kind="approaching", texts={"de": "Rathaus"}, priority=STOP), started)
        rt.say(Utterance(kind="ad", texts={"de": "Werbung zwei"}, priority=AD), started)
        rt.say(Utterance(kind="live", texts={"de": "Achtung, Umleitung"}, priority=LIVE), started)
        await _until_idle(rt)
        task.cancel()

    asyncio.run(main())
    order = [text for text, _ in begun]
    assert order == [
        "Nächster Halt: Rathaus",
        "Achtung, Umleitung",
        "Rathaus",
        "Werbung eins",
        "Werbung zwei",
    ]
    # One WAV per utterance, each whole: none was cut short by the next one starting.
    sounds = [parse(p.read_bytes()) for p in sorted(tmp_path.glob("*.wav"))]
    assert len(sounds) == len(order) and all(sound.seconds > 0.3 for sound in sounds)
    assert [d["text"] for _, d in log] == order


def test_a_stop_announcement_that_waited_too_long_is_dropped_and_logged(tmp_path: Path) -> None:
    log: Log = []
    now = [1000.0]
    rt = _runtime(tmp_path, log, max_wait_s=60.0, clock=lambda: now[0])
    shown: list[str] = []

    async def main() -> None:
        rt.say(
            Utterance(kind="next_stop", texts={"de": "Nächster Halt: Alt"}, ref="S1"),
            lambda u: shown.append(u.ref),
        )
        rt.say(
            Utterance(kind="live", texts={"de": "Durchsage"}, priority=LIVE, ref="a1"),
            lambda u: shown.append(u.ref),
        )
        now[0] += 61.0  # the bus stood in a jam: "next stop" is history, city hall's word is not
        task = asyncio.create_task(rt.run())
        await _until_idle(rt)
        task.cancel()

    asyncio.run(main())
    assert shown == ["a1"]
    assert [(k, d["ref"]) for k, d in log] == [
        ("announcement", "a1"),
        ("announcement_dropped", "S1"),
    ]
    assert log[1][1]["why"] == "stale" and rt.dropped == 1


def test_a_full_queue_drops_the_lowest_priority_oldest_and_says_so() -> None:
    q = AnnouncementQueue(limit=2)
    assert q.put(Utterance(kind="ad", texts={"de": "a"}, priority=AD), None, 0.0) is None
    assert q.put(Utterance(kind="s", texts={"de": "b"}), None, 0.0) is None
    dropped = q.put(Utterance(kind="live", texts={"de": "c"}, priority=LIVE), None, 0.0)
    assert dropped is not None and dropped.utterance.texts == {"de": "a"}
    item, stale = q.pop(0.0)
    assert item is not None and item.utterance.kind == "live" and stale == []


def test_a_missing_engine_is_a_logged_error_the_announcement_still_shown(tmp_path: Path) -> None:
    log: Log = []
    rt = _runtime(tmp_path, log, engine=EspeakNg(binary="/nonexistent/espeak-ng"))
    shown: list[str] = []

    async def main() -> None:
        task = asyncio.create_task(rt.run())
        rt.say(
            Utterance(kind="live", texts={"de": "Hallo"}, priority=LIVE),
            lambda u: shown.append(u.kind),
        )
        rt.say(Utterance(kind="chime"))
        await _until_idle(rt)
        task.cancel()

    asyncio.run(main())
    assert shown == ["live"]
    (kind, speech), (_, chime) = log
    assert (kind, speech["source"], speech["text"]) == ("announcement", "none", "Hallo")
    assert "not installed" in str(speech["error"])
    assert chime["source"] == "chime" and "error" not in chime  # the next one plays on
    assert rt.failed == 1 and len(list(tmp_path.glob("*.wav"))) == 1


def test_hostile_text_is_cleaned_bounded_and_never_an_option(tmp_path: Path) -> None:
    espeak = EspeakNg()
    assert clean_text("Halt\x00\x1b[31m\u202e rot\r\n\tda") == "Halt [31m rot da"
    huge = clean_text("Wort " * 20_000)  # 100 kB
    assert len(huge) <= MAX_CHARS and huge.endswith("Wort")
    # A leading "-" is spoken text: espeak-ng reads it on stdin, not as an option.
    trap = tmp_path / "trap.wav"
    assert "h'Elp" in espeak.phonemes(f"--help -w {trap}", "de")
    espeak.synthesize(f"-w {trap} --version", "de")
    assert not trap.exists()
    log: Log = []
    rt = _runtime(tmp_path, log)
    rt.output = FileOutput(tmp_path)  # as fast as it can

    async def main() -> None:
        task = asyncio.create_task(rt.run())
        rt.say(Utterance(kind="live", texts={"de": "-v en --stdout " + "\x07" * 50}, priority=LIVE))
        rt.say(Utterance(kind="live", texts={"de": "Lang " * 20_000}, priority=LIVE))
        await _until_idle(rt)
        task.cancel()

    asyncio.run(main())
    assert [d["source"] for _, d in log] == ["espeak-ng", "espeak-ng"]
    assert log[0][1]["text"] == "-v en --stdout"
    assert len(str(log[1][1]["text"])) <= MAX_CHARS
    for path in sorted(tmp_path.glob("*.wav")):
        assert rms(parse(path.read_bytes())) > 0.02


def test_the_volume_follows_the_time_of_day(tmp_path: Path) -> None:
    schedule = VolumeSchedule.parse("06:00-22:00=80, 22:00-06:00=25")
    assert [schedule.percent_at(datetime(2024, 1, 1, h).time()) for h in (5, 6, 21, 22, 23)] == [
        25,
        80,
        80,
        25,
        25,
    ]
    assert VolumeSchedule.parse("").percent_at(datetime(2024, 1, 1, 3).time()) == 100
    for bad in ("6-22=80", "06:00-22:00=180", "06:00-22:00", "25:00-01:00=5"):
        with pytest.raises(ConfigError) as info:
            VolumeSchedule.parse(bad)
        assert info.value.key == "audio.volume"
    loud, quiet = [], []
    for hour, into in ((12, loud), (23, quiet)):
        log: Log = []
        out = tmp_path / str(hour)
        rt = _runtime(out, log, volume=schedule, local_time=lambda h=hour: datetime(2024, 1, 1, h))
        rt.output = FileOutput(out)

        async def main(rt: AudioRuntime = rt) -> None:
            task = asyncio.create_task(rt.run())
            rt.say(Utterance(kind="approaching", texts={"de": "Kurhaus"}))
            await _until_idle(rt)
            task.cancel()

        asyncio.run(main())
        (path,) = out.glob("*.wav")
        into.append(rms(parse(path.read_bytes())))
    assert quiet[0] == pytest.approx(loud[0] * 25 / 80, rel=0.02)


def _agent(tmp_path: Path, audio: AudioSection) -> Agent:
    return Agent(
        AgentConfig(
            bus=BusSection(id="bus-audio-2", data_dir=str(tmp_path)),
            mqtt=MqttSection(insecure_dev_broker=True),
            gps=GpsSection(source="none"),
            can=CanSection(interface="none"),
            display=DisplaySection(enabled=False),
            audio=audio,
        )
    )


def test_an_agent_without_audio_still_has_a_speaker_that_shows_at_once(tmp_path: Path) -> None:
    agent = _agent(tmp_path, AudioSection(enabled=False))
    try:
        assert isinstance(agent.audio, NoAudio)
        shown: list[str] = []
        agent.audio.say(
            Utterance(kind="live", texts={"de": "Hallo"}, priority=LIVE),
            lambda u: shown.append(u.kind),
        )
        assert shown == ["live"]
    finally:
        agent.outbox.close()


@pytest.mark.parametrize(
    ("audio", "key"),
    [
        (AudioSection(output="hdmi"), "audio.output"),
        (AudioSection(engine="festival"), "audio.engine"),
        (AudioSection(volume="loud"), "audio.volume"),
        (AudioSection(voices="de"), "audio.voices"),
    ],
)
def test_a_wrong_audio_setting_stops_the_agent_with_its_key(
    tmp_path: Path, audio: AudioSection, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _agent(tmp_path, audio)
    assert info.value.key == key
