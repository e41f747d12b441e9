"""Rollouts at central (issue 16): waves, and the engine fed as central feeds it.

The wave rules are pure (central/rollouts.py). The engine runs here on both backends with the
service's own parts: dispatchers' requests through `Dispatch`, the buses' reported states and
update events through `Ingest` (as central stores them), the leader's `RolloutTask` step, and
what central would publish (desired documents, alarms). tests/test_rollouts_live.py does the
same with mosquitto, `central serve` and the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.config import CentralConfig
from central.rollouts import RolloutError, parse_waves, split_waves, wave_sizes
from central.service.alarm_center import Outgoing
from central.service.dispatch import Dispatch
from central.service.ingest import Ingest
from central.service.rollout_task import ALARM_KIND, RolloutTask
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.release import EVENT_UPDATE_FAILED, EVENT_UPDATE_OK, target_name
from protocols.release_requests import BusReleases, CancelRollout, RolloutStatus, StartRollout
from protocols.requests import DispatchReply, DispatchRequest, Request, SetGroup
from protocols.schemas import (
    Alarm,
    DesiredState,
    Event,
    EventBatch,
    ReleaseState,
    ReportedState,
)

T0 = 1_800_000_000.0
BUSES = ["bus-1", "bus-2", "bus-3", "bus-4"]


# -- waves -----------------------------------------------------------------------------------------
def sizes(spec: str, n: int) -> list[int]:
    return wave_sizes(parse_waves(spec), n)


def test_waves_are_cumulative_and_each_takes_at_least_one_bus() -> None:
    assert sizes("1,10%,100%", 100) == [1, 9, 90]
    assert sizes("1,10%,100%", 4) == [1, 1, 2]  # 10% of 4 rounds up to 1: one more bus
    assert sizes("1,50%,100%", 4) == [1, 1, 2]
    assert sizes("1,10%,100%", 1) == [1]  # every bus reached after the first wave
    assert sizes("2,5,100%", 3) == [2, 1]
    assert sizes("100%", 7) == [7]
    assert sizes("1,3", 3) == [1, 2]  # counts reaching every bus are enough


@pytest.mark.parametrize(
    ("spec", "n", "says"),
    [
        ("", 4, "give sizes"),
        ("1,,100%", 4, "give sizes"),
        ("0,100%", 4, "neither a number"),
        ("x,100%", 4, "neither a number"),
        ("1,150%", 4, "at most 100%"),
        ("1,0%", 4, "over 0%"),
        ("50%,10%,100%", 4, "cumulative"),
        ("5,2,100%", 4, "cumulative"),
        ("100%,1", 4, "nothing can come after"),
        ("1,10%", 100, "reach 10 of 100 buses"),
        ("1,2,3", 10, "reach 3 of 10"),
        ("100%", 0, "no bus"),
        (",".join(str(i) for i in range(1, 30)), 30, "at most 20 waves"),
    ],
)
def test_bad_waves_are_refused_with_the_reason(spec: str, n: int, says: str) -> None:
    with pytest.raises(RolloutError, match=says):
        sizes(spec, n)


@st.composite
def specs(draw: st.DrawFn) -> str:
    counts = sorted(set(draw(st.lists(st.integers(1, 50), max_size=4))))
    percents = sorted(set(draw(st.lists(st.integers(1, 99), max_size=4))))
    items = [str(c) for c in counts] + [f"{p}%" for p in percents]
    return ",".join([*items, "100%"])


@given(specs(), st.integers(1, 500))
def test_any_waves_cover_every_bus_once_in_order_each_wave_one_or_more(spec: str, n: int) -> None:
    got = sizes(spec, n)
    assert sum(got) == n and all(s >= 1 for s in got) and len(got) <= len(spec.split(","))
    buses = [f"b{i:04d}" for i in range(n)]
    waves = split_waves(reversed(buses), got)
    assert [b for wave in waves for b in wave] == buses  # stable: sorted bus ids
    assert [len(w) for w in waves] == got


# -- the engine, on both backends ------------------------------------------------------------
@dataclasses.dataclass
class Central:
    dispatch: Dispatch
    ingest: Ingest
    task: RolloutTask
    now: float = T0

    async def ask(self, request: Request) -> tuple[DispatchReply, list[Outgoing]]:
        envelope = DispatchRequest(id="r-1", t=self.now, request=request)
        out = await self.dispatch.handle(
            topics.dispatch_request("alice"), codec.encode(envelope), self.now
        )
        *rest, (_topic, body, _retain) = out
        return codec.decode(DispatchReply, body), rest

    def bus_says(self, bus: str, release: ReleaseState, version: int = 1) -> None:
        """The bus publishes its reported state (as an agent does)."""
        self.now += 1
        doc = ReportedState(bus=bus, version=version, t=self.now, release=release)
        self.ingest.handle(topics.reported(bus), codec.encode(doc), self.now)

    def bus_records(self, bus: str, seq: int, kind: str, severity: int, **data: str) -> None:
        self.now += 1
        batch = EventBatch(
            bus=bus, events=[Event(seq=seq, t=self.now, kind=kind, severity=severity, data=data)]
        )
        self.ingest.handle(topics.events(bus), codec.encode(batch), self.now)

    def tick(self) -> dict[str, DesiredState]:
        """One step of the leader's rollout task: the desired documents it would publish."""
        self.now += 1
        published = self.task.step(self.now)
        return {bus: codec.decode(DesiredState, body) for bus, (_v, body) in published.items()}

    def alarms(self) -> list[Alarm]:
        return [a for a in self.dispatch.alarms.alarms() if a.kind == ALARM_KIND]

    async def status(self, rollout: str | None = None) -> list[dict[str, object]]:
        reply, _ = await self.ask(RolloutStatus(rollout=rollout))
        assert reply.ok, reply.error
        return reply.records


@pytest.fixture
def central(tmp_path: Path, central_db: str) -> Central:
    config = dataclasses.replace(CentralConfig(), db=central_db, media_dir=str(tmp_path / "media"))
    store = open_store(config.db)
    ingest = Ingest(store)
    # The buses are known to central: they have been online (fleet entries in the store).
    store.save_buses((bus, True, 1, T0, "{}") for bus in BUSES)
    dispatch = Dispatch(store, config, ingest.alarms, ingest.on_desired)
    return Central(dispatch, ingest, RolloutTask(store, ingest.alarms))


def releases(out: list[Outgoing]) -> dict[str, str | None]:
    """Bus -> the release version in each desired document published."""
    docs = {t: codec.decode(DesiredState, p) for t, p, _r in out if t.endswith("/desired")}
    return {d.bus: d.release.version if d.release else None for d in docs.values()}


def running(version: str) -> ReleaseState:
    return ReleaseState(running=version, slot="b", previous="0.1.0")


async def test_a_rollout_assigns_wave_one_and_the_next_wave_when_it_reports_the_version(
    central: Central,
) -> None:
    reply, out = await central.ask(StartRollout(version="0.2.0", to=["all"], waves="1,50%,100%"))
    assert reply.ok, reply.error
    rollout = str(reply.result["rollout"])
    assert releases(out) == {"bus-1": "0.2.0"}
    doc = codec.decode(DesiredState, out[0][1])
    assert doc.release is not None and doc.release.target == target_name("0.2.0")
    assert doc.release.rollout == rollout
    assert central.tick() == {}  # bus-1 has not reported the version yet
    central.bus_says("bus-1", ReleaseState(running="0.1.0", wanted="0.2.0", phase="fetching"))
    assert central.tick() == {}
    central.bus_says("bus-1", running("0.2.0"))
    assert set(central.tick()) == {"bus-2"}  # wave 2: 50% of 4 is 2, one more bus
    central.bus_records("bus-2", 1, EVENT_UPDATE_OK, 0, version="0.2.0", previous="0.1.0")
    wave3 = central.tick()
    assert set(wave3) == {"bus-3", "bus-4"}
    assert all(d.release and d.release.version == "0.2.0" for d in wave3.values())
    [status] = await central.status()
    assert (status["state"], status["wave"], status["waves"]) == ("running", 3, 3)
    assert (status["updated"], status["assigned"], status["pending"]) == (2, 2, 0)
    for bus in ("bus-3", "bus-4"):
        central.bus_says(bus, running("0.2.0"))
    central.tick()
    [status] = await central.status(rollout)
    assert status["state"] == "done" and status["updated"] == 4
    assert [b["state"] for b in status["bus_states"]] == ["updated"] * 4  # type: ignore[union-attr]
    reply, _ = await central.ask(BusReleases())
    by_bus = {r["bus"]: r for r in reply.records}
    assert by_bus["bus-3"]["running"] == "0.2.0" and by_bus["bus-3"]["desired"] == "0.2.0"
    assert central.alarms() == []


async def test_a_broken_release_halts_at_the_threshold_and_the_next_wave_never_gets_it(
    central: Central,
) -> None:
    reply, _ = await central.ask(StartRollout(version="0.3.0", to=["all"], waves="1,50%,100%"))
    rollout = str(reply.result["rollout"])
    central.bus_records(
        "bus-1", 1, EVENT_UPDATE_FAILED, 3, version="0.3.0", previous="0.2.0",
        reason="not healthy in 300 s", log_tail="Traceback ...",
    )  # fmt: skip
    assert central.tick() == {}  # halted: nobody else gets it
    [status] = await central.status(rollout)
    assert status["state"] == "halted" and status["failed"] == 1 and status["pending"] == 3
    assert "bus-1: not healthy in 300 s" in str(status["halted_reason"])
    [alarm] = central.alarms()
    assert (alarm.bus, alarm.subject, alarm.state) == ("bus-1", rollout, "active")
    assert alarm.severity == 3
    central.bus_says("bus-1", ReleaseState(running="0.2.0", wanted="0.3.0", phase="failed"))
    assert central.tick() == {} and len(central.alarms()) == 1  # once
    for bus in BUSES[1:]:
        assert central.dispatch.store.desired(bus) is None  # no document, no release
    reply, _ = await central.ask(CancelRollout(rollout=rollout))
    assert reply.ok and reply.result["state"] == "cancelled"
    central.tick()
    [alarm] = central.alarms()
    assert alarm.state == "cleared"  # the dispatcher dealt with it


async def test_halt_on_tolerates_fewer_failures_and_a_refused_bus_counts_as_one(
    central: Central,
) -> None:
    reply, _ = await central.ask(
        StartRollout(version="0.3.0", to=["bus-1", "bus-2", "bus-3"], waves="2,100%", halt_on=2)
    )
    rollout = str(reply.result["rollout"])
    central.bus_records("bus-1", 1, "update_refused", 2, version="0.3.0", reason="expired")
    central.bus_says("bus-2", running("0.3.0"))
    assert set(central.tick()) == {"bus-3"}  # one failure of two allowed: the next wave
    central.bus_says(
        "bus-3", ReleaseState(running="0.2.0", wanted="0.3.0", phase="failed", error="crash"), 2
    )
    central.tick()
    [status] = await central.status(rollout)
    assert (status["state"], status["refused"], status["failed"]) == ("halted", 1, 1)


async def test_a_bad_rollout_is_refused_and_a_new_one_supersedes_the_old(
    central: Central,
) -> None:
    for bad, says in [
        (StartRollout(version="latest", to=["all"]), "not a release version"),
        (StartRollout(version="0.2.0", to=["group:none"]), "no group"),
        (StartRollout(version="0.2.0", to=["all"], waves="1,10%"), "reach 2 of 4"),
        (StartRollout(version="0.2.0", to=["all"], halt_on=0), "1 or more failed"),
        (CancelRollout(rollout="nope"), "no rollout"),
    ]:
        reply, out = await central.ask(bad)
        assert not reply.ok and says in reply.error and out == []
    reply, _ = await central.ask(SetGroup(name="depot", buses=["bus-3", "bus-4"]))
    first, _ = await central.ask(StartRollout(version="0.2.0", to=["all"], waves="1,100%"))
    second, out = await central.ask(StartRollout(version="0.2.1", to=["group:depot"], waves="100%"))
    assert second.result["superseded"] == first.result["rollout"]
    assert releases(out) == {"bus-3": "0.2.1", "bus-4": "0.2.1"}
    old = await central.status(str(first.result["rollout"]))
    assert old[0]["state"] == "cancelled"
    central.bus_says("bus-1", running("0.2.0"))
    assert central.tick() == {}  # the cancelled rollout assigns nothing more
    reply, _ = await central.ask(CancelRollout(rollout=str(first.result["rollout"])))
    assert not reply.ok and "cancelled already" in reply.error


def test_a_rollout_names_a_release_of_centrals_repository_when_one_is_configured(
    tmp_path: Path,
) -> None:
    """With `release_repo` set, only a version signed into it can be rolled out; a repository
    that cannot be read refuses with the reason."""
    from central.releases import repository
    from central.rollouts import check_release
    from tests.release_repo_helpers import release_tar

    repo = tmp_path / "repo"
    repository.init(repo)
    repository.add(repo, release_tar(tmp_path / "tars", "0.2.0"))
    config = CentralConfig(release_repo=str(repo))
    check_release(config, "0.2.0")
    with pytest.raises(RolloutError, match=r"0\.3\.0 is not in the release repository.*0\.2\.0"):
        check_release(config, "0.3.0")
    with pytest.raises(RolloutError, match="cannot read the release repository"):
        check_release(CentralConfig(release_repo=str(tmp_path / "nowhere")), "0.2.0")
    check_release(CentralConfig(), "0.3.0")  # no repository: the bus's TUF client checks


def test_a_buss_words_reach_the_operators_terminal_inert() -> None:
    """A halt reason, a failure detail or an error is the bus's text: an escape sequence in
    it (OSC 52 writes the clipboard, CSI rewrites lines) is shown, never obeyed."""
    from busfleet.commands._common import terminal_text
    from busfleet.commands.release_central import progress_line

    hostile = "update failed\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2K\x9b31m"
    line = progress_line({"id": "r1", "version": "0.3.0", "halted_reason": hostile})
    assert "update failed" in line
    assert not any(ch in line for ch in "\x1b\x07\x9b")
    assert terminal_text(hostile).count("\N{REPLACEMENT CHARACTER}") == 4
