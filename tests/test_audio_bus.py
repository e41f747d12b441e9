"""A simulated bus drives three stops and speaks them: the agent's own wiring, the file output.

The bus is the agent (onboard/agent.py) built in-process, without its network parts: a hw_sim
drive gives one telemetry sample a second into `Agent._track` (what the telemetry loop does),
the journey core tracks the trip, the stop announcer turns its events into utterances, and
the agent's audio task speaks them with espeak-ng into the file output. A recorded
announcement for one stop sits in the ads media cache, as the ads sync leaves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw_sim.drive import Drive, DriveParams
from onboard.agent import Agent
from onboard.audio.api import Utterance
from onboard.audio.engine import EspeakNg
from onboard.audio.runtime import AudioRuntime, NoAudio
from onboard.audio.settings import AudioSection
from onboard.audio.stops import StopAnnouncer
from onboard.audio.wav import Pcm, parse, rms
from onboard.config import (
    AdsSection,
    AgentConfig,
    BusSection,
    CanSection,
    DisplaySection,
    MqttSection,
)
from onboard.gps.settings import GpsSection
from onboard.journey.runtime import JourneyRuntime
from protocols import codec
from protocols.ads.playlist import Item, Playlist, Schedule, encode_playlist
from protocols.geo import offset_m
from protocols.gtfs.feed import Feed, parse_feed
from protocols.schemas import Assignment, DesiredState, Event, Position, TelemetryRecord

BUS = "bus-audio-1"
START = (50.2268, 8.6182)  # Bad Homburg
STOPS = [("S0", "Bahnhof", 0.0), ("S1", "Bad Homburg Kurhaus", 900.0), ("S2", "Höhestraße", 1800.0)]
CALM = DriveParams(traffic_noise=0.0, stop_prob=1.0)


def _feed() -> Feed:
    points = [offset_m(*START, 0.0, d) for d in range(0, 1801, 100)]
    shape = "\n".join(f"E,{la:.6f},{lo:.6f},{i}" for i, (la, lo) in enumerate(points))
    stops = "\n".join(
        f"{sid},{name},{la:.6f},{lo:.6f}"
        for sid, name, d in STOPS
        for la, lo in [offset_m(*START, 0.0, d)]
    )
    times = "\n".join(
        f"T1,08:{3 * k:02d}:00,08:{3 * k:02d}:00,{sid},{k + 1}"
        for k, (sid, _, _) in enumerate(STOPS)
    )
    return parse_feed(
        {
            "agency.txt": "agency_name,agency_url,agency_timezone\nVHT,http://x,Europe/Berlin\n",
            "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,Kur,3\n",
            "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + shape,
            "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n" + stops,
            "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,"
            "sunday,start_date,end_date\nALL,1,1,1,1,1,1,1,20200101,20991231\n",
            "trips.txt": "route_id,service_id,trip_id,direction_id,block_id,shape_id\n"
            "R1,ALL,T1,0,,E\n",
            "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n" + times,
        }
    )


def _recorded(media_dir: Path) -> bytes:
    """A recorded "Nächster Halt: Bad Homburg Kurhaus" (another voice than the engine's) in
    the media cache, and the playlist naming it active, as the ads sync leaves them."""
    wav = EspeakNg({"de": "de+f3"}, rate_wpm=120).synthesize(
        "Nächster Halt: Bad Homburg Kurhaus", "de"
    )
    sha = hashlib.sha256(wav).hexdigest()
    media_dir.mkdir(parents=True)
    (media_dir / f"{sha}.bin").write_bytes(wav)
    item = Item(
        id="ann-s1-de",
        media=sha,
        kind="audio",
        mime="audio/wav",
        size=len(wav),
        duration_s=5.0,
        name="next_stop-S1-de.wav",
    )
    never = Schedule(id="announcements", items=["ann-s1-de"], max_plays_per_hour=0)
    playlist = Playlist(id="city", items=[item], schedules=[never])
    (media_dir / "active.json").write_bytes(encode_playlist(playlist))
    return wav


def _agent(tmp_path: Path, out_dir: Path) -> Agent:
    return Agent(
        AgentConfig(
            bus=BusSection(id=BUS, data_dir=str(tmp_path)),
            mqtt=MqttSection(insecure_dev_broker=True),
            gps=GpsSection(source="none"),
            can=CanSection(interface="none"),
            ads=AdsSection(enabled=True),
            display=DisplaySection(enabled=False, language="de,en"),
            audio=AudioSection(output="file", out_dir=str(out_dir), volume=""),
        )
    )


async def _drive(agent: Agent) -> None:
    """The agent's audio task runs while the bus drives its trip, one sample a second."""
    assert isinstance(agent.audio, AudioRuntime)
    audio = asyncio.create_task(agent.audio.run(), name="audio")
    journey = agent.journey
    assert journey is not None and journey.plan is not None
    plan = journey.plan
    drive = Drive(
        plan.path,
        [(s.stop_id, s.dist_m) for s in plan.stops],
        start_t=plan.first_departure_t - 30.0,
        seed=3,
        params=CALM,
    )
    t, seq = drive.t, 0
    while not drive.finished:
        t += 1.0
        v = drive.step(t)
        pos = Position(lat=v.lat, lon=v.lon, speed=v.speed_mps, track=v.heading_deg, hdop=1.0)
        agent._track(TelemetryRecord(seq=seq, t=t, pos=pos))
        seq += 1
        await asyncio.sleep(0)
    async with asyncio.timeout(60):
        await agent.audio.wait_idle()
    audio.cancel()


class Run:
    def __init__(self, out_dir: Path, events: list[Event], recorded: bytes) -> None:
        self.files = sorted(out_dir.glob("*.wav"))
        self.events = events
        self.recorded = recorded
        self.by_n: dict[int, list[Event]] = {}
        for e in events:
            self.by_n.setdefault(int(str(e.data["n"])), []).append(e)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("audio-bus")
    out_dir = tmp / "announcements"
    recorded = _recorded(tmp / "media")
    agent = _agent(tmp, out_dir)
    try:
        agent.journey = JourneyRuntime(_feed())
        desired = DesiredState(bus=BUS, version=1, assignment=Assignment(trip_id="T1"))
        agent.on_desired(codec.encode(desired))
        asyncio.run(_drive(agent))
        pending = agent.outbox.pending(1000, kind="event")
        events = [codec.decode(Event, p.body) for p in pending]
        yield Run(out_dir, [e for e in events if e.kind == "announcement"], recorded)
    finally:
        agent.outbox.close()


def _words(text: str) -> int:
    return len(text.replace(":", " ").replace(",", " ").split())


EXPECTED = [
    (
        "next_stop",
        "S1",
        {"de": "Nächster Halt: Bad Homburg Kurhaus", "en": "Next stop: Bad Homburg Kurhaus"},
    ),
    ("approaching", "S1", {"de": "Bad Homburg Kurhaus", "en": "Bad Homburg Kurhaus"}),
    (
        "next_stop",
        "S2",
        {
            "de": "Nächster Halt: Höhestraße, Endhaltestelle",
            "en": "Next stop: Höhestraße, final stop",
        },
    ),
    ("approaching", "S2", {"de": "Höhestraße", "en": "Höhestraße"}),
    (
        "terminus",
        "S2",
        {"de": "Endstation, bitte alle aussteigen", "en": "Final stop, please leave the bus"},
    ),
]


def test_each_announcement_of_the_trip_is_one_wav_in_order_german_first(run: Run) -> None:
    assert len(run.files) == len(EXPECTED) == len(run.by_n)
    for n, (path, (kind, ref, texts)) in enumerate(zip(run.files, EXPECTED, strict=True), 1):
        parts = run.by_n[n]
        assert [(p.data["kind"], p.data["ref"]) for p in parts] == [(kind, ref)] * 2
        assert [p.data["lang"] for p in parts] == ["de", "en"]
        assert {str(p.data["lang"]): p.data["text"] for p in parts} == texts
        assert all(p.data["out"] == path.name for p in parts)
        assert path.name.startswith(f"{n:06d}-") and path.name.endswith(f"-{kind}.wav")


def test_every_wav_holds_speech_as_long_as_its_text(run: Run) -> None:
    for n, path in enumerate(run.files, 1):
        pcm = parse(path.read_bytes())
        assert rms(pcm) > 0.02, f"{path.name} is (nearly) silent"
        words = sum(_words(str(p.data["text"])) for p in run.by_n[n])
        speech_s = pcm.seconds - 0.4  # the pause between the languages
        assert 0.8 <= words / speech_s <= 4.5, f"{path.name}: {words} words in {speech_s:.1f} s"
    lengths = [parse(p.read_bytes()).seconds for p in run.files]
    assert lengths[2] > lengths[3]  # "Nächster Halt: Höhestraße, Endhaltestelle" > "Höhestraße"


def _same_speech(a: Pcm, b: bytes) -> bool:
    return a.samples.tobytes().find(parse(b).samples.tobytes()) >= 0


def test_umlauts_are_spoken_not_stripped(run: Run) -> None:
    espeak = EspeakNg()
    out = parse(run.files[2].read_bytes())
    spoken = "Nächster Halt: Höhestraße, Endhaltestelle"
    assert _same_speech(out, espeak.synthesize(spoken, "de"))
    assert not _same_speech(
        out, espeak.synthesize("Nachster Halt: Hohestrasse, Endhaltestelle", "de")
    )
    assert "'ECst" in espeak.phonemes(str(run.by_n[3][0].data["text"]), "de")  # ä as [ɛ]


def test_the_recorded_file_is_played_where_one_exists_and_the_log_says_each_source(
    run: Run,
) -> None:
    first = parse(run.files[0].read_bytes())
    assert _same_speech(first, run.recorded)  # its samples, untouched, in the announcement
    sources = [(int(str(e.data["n"])), e.data["lang"], e.data["source"]) for e in run.events]
    assert sources[:2] == [(1, "de", "recorded"), (1, "en", "espeak-ng")]
    assert {s for n, _, s in sources if n > 1} == {"espeak-ng"}
    recorded = run.by_n[1][0]
    assert recorded.data["media"] == hashlib.sha256(run.recorded).hexdigest()
    assert all("error" not in e.data for e in run.events)


def test_a_stop_request_chimes_once_each_time_it_turns_on_and_german_goes_first() -> None:
    journey = JourneyRuntime(_feed())
    journey.assign(Assignment(trip_id="T1"), [], time.time())
    plan = journey.plan
    assert plan is not None
    announcer = StopAnnouncer(NoAudio(), lambda: ("en", "de"))
    drive = Drive(
        plan.path,
        [(s.stop_id, s.dist_m) for s in plan.stops],
        start_t=plan.first_departure_t - 30.0,
        seed=3,
        params=CALM,
    )
    said: list[Utterance] = []
    t, n = drive.t, 0
    while not drive.finished:
        t, n = t + 1.0, n + 1
        v = drive.step(t)
        pos = Position(lat=v.lat, lon=v.lon, speed=v.speed_mps, track=v.heading_deg, hdop=1.0)
        requested = 20 <= n < 40 or 120 <= n < 125  # the button, twice on this trip
        result = journey.update(t, pos, stop_requested=requested)
        said += announcer.on_journey(t, result.events, journey.state, journey.plan)
    kinds = [u.kind for u in said]
    assert kinds.count("chime") == 2
    assert [k for k in kinds if k != "chime"] == [k for k, _, _ in EXPECTED]
    assert all(list(u.texts) == ["de", "en"] for u in said if u.kind != "chime")
