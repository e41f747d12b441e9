"""A fleet updates through central's real release repository (issue 16), end to end.

A real mosquitto; a real `busfleet central serve` whose central.toml names a TUF repository
made by `busfleet release init` with real releases of this project signed in by `busfleet
release add` (central serves it at /releases/); three real buses, each its real launcher
(the test plays systemd's Restart=always) running a real agent from its slots, installed by
hand at 0.1.0, fetching through python-tuf (agent.toml [update] repo_url, trusted_root = the
repository's root.json). Releases are rolled out with the dispatcher's command line in a
process of its own (`busfleet central release rollout ... --to all --waves 1,100%
--halt-on 1`), and what is asserted is what the buses report (their reported state and
presence on the broker), what central stored (events), said (`release status`) and raised
(alarms), and what it published (the retained desired documents).

One story, so that the buses are installed as few times as possible (each install is a real
venv + pip, seconds on a busy machine): (a) 0.2.0 rolled out while bus C is away: A (wave 1)
updates, then B; the rollout waits for C; C returns, takes its retained desired document,
updates; the rollout is done. (b) the broken 0.3.0 is signed in and rolled out: A installs it,
switches, fails, is rolled back by its launcher and reports it; the rollout halts with an
alarm, B and C never hear of 0.3.0. (c) a release whose tar was changed in the repository
after signing is refused (hash/length), and so is an older release (a rollback): each bus
keeps running 0.2.0. No timing is asserted; waits are generous.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from busfleet.broker.launch import Broker, mosquitto_path, run_mosquitto
from central.service.rollout_task import ALARM_KIND, TICK_S
from onboard.update.launcher import read_state, slot_version
from protocols import codec, topics
from protocols.release import target_name
from protocols.schemas import Alarm, DesiredState
from tests import release_helpers
from tests.fleet_helpers import rows, wait_for
from tests.release_helpers import BROKEN, BROKEN_SAYS
from tests.release_repo_helpers import release_tar
from tests.update_helpers import (
    WAIT,
    Central,
    LaunchedBus,
    TopicLog,
    install_all,
    sign,
    signed_repo,
    update_section,
)

releases = release_helpers.releases
# Three real installs of 0.1.0 at once, three of 0.2.0 and one of 0.3.0, each seconds of pip;
# on a busy 2-core machine the story can take longer than the default 180 s.
pytestmark = pytest.mark.timeout(480)
A, B, C = "fu-a", "fu-b", "fu-c"  # sorted: A is the first wave
NEW = "0.2.0"
TAMPERED = "0.4.0"
LEFTOVER = "BUSFLEET_DEV_RELEASES"


@dataclass
class Fleet:
    broker: Broker
    central: Central
    buses: dict[str, LaunchedBus]
    workdir: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, releases: Path) -> Iterator[Fleet]:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"
    workdir = tmp_path_factory.mktemp("fleet-update")
    root = signed_repo(releases, workdir / "repo", ("0.1.0", NEW))
    with run_mosquitto(workdir / "mosquitto") as broker:
        central = Central(broker, workdir, workdir / "repo")
        buses: dict[str, LaunchedBus] = {}
        try:
            central.start()
            update = update_section(central, root, health_timeout_s=120)
            for name in (A, B, C):
                # B's environment still names the unverified folder that agents once took
                # releases from in tests (BUSFLEET_DEV_RELEASES): gone, it must change nothing.
                env = {LEFTOVER: str(workdir / "small")} if name == B else {}
                buses[name] = LaunchedBus(broker, workdir / name, name, update, env)
            install_all(list(buses.values()), releases / target_name("0.1.0"))
            yield Fleet(broker, central, buses, workdir)
        finally:
            for bus in buses.values():
                bus.close()
            central.close()


def known(central: Central) -> set[str]:
    return {str(r[0]) for r in rows(central.db, "SELECT bus FROM buses")}


def desired_versions(log: TopicLog, bus: str) -> list[str | None]:
    """The release of each desired document published for `bus`."""
    docs = [codec.decode(DesiredState, p) for p in log.on(topics.desired(bus))]
    return [d.release.version if d.release is not None else None for d in docs]


def halted_alarm(log: TopicLog, rollout: str) -> list[Alarm]:
    found = [codec.decode(Alarm, p) for t, p in list(log.messages) if "/alarms/" in t and p]
    return [a for a in found if a.kind == ALARM_KIND and a.subject == rollout]


def test_a_fleet_updates_through_tuf_halts_on_a_broken_release_and_refuses_bad_ones(
    fleet: Fleet, releases: Path
) -> None:
    rolled_out(fleet)
    broken_halts(fleet, releases)
    refused(fleet)


def rolled_out(fleet: Fleet) -> None:
    """(a) 0.2.0 to all, in waves 1,100%, while C is away."""
    central, bus = fleet.central, fleet.buses
    for each in bus.values():
        each.start()
    for each in bus.values():
        now = each.runs("0.1.0")
        assert slot_version(now.slot) == "0.1.0"
    wait_for(lambda: known(central) >= {A, B, C}, WAIT, "central knowing the three buses")
    assert bus[C].stop() == 0  # C goes away (the depot, a tunnel): a clean stop

    started = central.rollout(NEW, "--to", "all", "--waves", "1,100%", "--halt-on", "1")
    rollout = str(started["rollout"])
    assert (started["buses"], started["assigned"]) == (3, [A])
    now = bus[A].runs(NEW)  # through TUF: fetched, installed, switched, trial, committed
    assert (now.previous, slot_version(now.slot)) == ("0.1.0", NEW)
    bus[B].runs(NEW)  # the second wave: B, and C which is away
    wait_for(lambda: central.status(rollout)["updated"] == 2, WAIT, "A and B updated")
    status = central.status(rollout)
    assert (status["state"], status["wave"], status["waves"]) == ("running", 2, 2)
    states = {b["bus"]: b["state"] for b in status["bus_states"]}
    assert states == {A: "updated", B: "updated", C: "assigned"}  # the rollout waits for C

    bus[C].start()  # C returns: its retained desired document names 0.2.0
    now = bus[C].runs(NEW)
    assert (now.previous, slot_version(now.slot)) == ("0.1.0", NEW)
    wait_for(lambda: central.status(rollout)["state"] == "done", WAIT, "the rollout done")
    assert central.status(rollout)["updated"] == 3
    assert f"{rollout}  {NEW}  done" in central.cli("release", "status")
    for name, each in bus.items():
        assert each.runs(NEW).running == NEW  # reported state and presence of the new process
        [(severity, data)] = wait_for(
            lambda name=name: central.events(name, "update_ok"), WAIT, f"{name}'s update_ok"
        )
        assert (severity, data["version"], data["previous"]) == (0, NEW, "0.1.0")
        state = read_state(each.slots)
        assert (slot_version(state.current), state.trial) == (NEW, None)
    for name in bus:  # once each: the ingest stored no event twice
        assert len(central.events(name, "update_ok")) == 1


def broken_halts(fleet: Fleet, releases: Path) -> None:
    """(b) the broken 0.3.0 signed in and rolled out: wave 1 fails, the rollout halts."""
    central, bus = fleet.central, fleet.buses
    sign(central.repo, releases / target_name(BROKEN))  # while central serves the repository
    watch = TopicLog(fleet.broker, topics.desired(B), topics.desired(C), topics.all_alarms())
    try:
        started = central.rollout(BROKEN, "--to", "all", "--waves", "1,100%", "--halt-on", "1")
        rollout = str(started["rollout"])
        assert started["assigned"] == [A]
        # A fetches, installs and switches to 0.3.0, which exits at once on trial; its
        # launcher starts 0.2.0 again by itself, which reports the failure.
        now = bus[A].release(lambda r: r.phase == "failed" and r.running == NEW, "rolled back")
        assert now.wanted == BROKEN and "exited with code 1" in now.error
        [(severity, data)] = wait_for(
            lambda: central.events(A, "update_failed"), WAIT, "update_failed at central"
        )
        assert (severity, data["version"], data["previous"]) == (3, BROKEN, NEW)
        assert BROKEN_SAYS in data["log_tail"]
        assert "0.3.0" in read_state(bus[A].slots).failed
        wait_for(lambda: central.status(rollout)["state"] == "halted", WAIT, "the halt")
        status = central.status(rollout)
        assert (status["failed"], status["pending"], status["wave"]) == (1, 2, 1)
        assert f"{A}: " in status["halted_reason"]
        [alarm] = wait_for(lambda: halted_alarm(watch, rollout), WAIT, "the rollout_halted alarm")
        assert (alarm.bus, alarm.state, alarm.severity) == (A, "active", 3)
        wait_for(lambda: len(watch.on(topics.desired(C))) >= 1, WAIT, "C's retained document")
        time.sleep(TICK_S * 4)  # a few of the rollout task's ticks: it must assign nothing
        assert central.status(rollout)["state"] == "halted"
        for name in (B, C):
            assert BROKEN not in desired_versions(watch, name), f"{name} was given {BROKEN}"
            assert desired_versions(watch, name)[-1] == NEW
            now = bus[name].runs(NEW)
            assert (now.wanted, now.phase) == ("", "idle")
        assert bus[A].runs(NEW, phase="failed").wanted == BROKEN  # back on 0.2.0
    finally:
        watch.close()


def refused(fleet: Fleet) -> None:
    """(c) a tampered release and an older one: refused, the buses keep running 0.2.0."""
    central, bus = fleet.central, fleet.buses
    # A release signed in properly, whose bytes in the repository's targets/ are then changed
    # (same length: only the signed sha256 can tell). Never installed: a small tar will do.
    # The untampered tar stays in the folder B's environment names (LEFTOVER): not taken.
    sign(central.repo, release_tar(fleet.workdir / "small", TAMPERED))
    [target] = (central.repo / "targets").glob(f"*.{target_name(TAMPERED)}")
    data = bytearray(target.read_bytes())
    data[-100:] = bytes(b ^ 0xFF for b in data[-100:])
    target.write_bytes(bytes(data))
    assert hashlib.sha256(data).hexdigest() != target.name.split(".", 1)[0]

    started = central.rollout(TAMPERED, "--to", B, "--waves", "100%", "--halt-on", "1")
    now = bus[B].release(lambda r: r.phase == "refused", "the tampered release refused")
    assert (now.running, now.wanted) == (NEW, TAMPERED)
    assert "wrong hash or length" in now.error
    [(severity, reason)] = _refusals(central, B, TAMPERED)
    assert severity == 2 and "wrong hash or length" in reason and "0.4.0" in reason
    assert not list((bus[B].toml.parent / "bus" / "releases" / "targets").iterdir())
    rollout = str(started["rollout"])
    wait_for(lambda: central.status(rollout)["refused"] == 1, WAIT, "B refused")

    # An older release, properly signed (0.1.0): a rollback attack, refused before download.
    started = central.rollout("0.1.0", "--to", C, "--waves", "100%", "--halt-on", "1")
    now = bus[C].release(lambda r: r.phase == "refused", "the older release refused")
    assert (now.running, now.wanted) == (NEW, "0.1.0")
    assert "older release" in now.error
    [(severity, reason)] = _refusals(central, C, "0.1.0")
    assert severity == 2 and "not newer than the running 0.2.0" in reason
    rollout = str(started["rollout"])
    wait_for(lambda: central.status(rollout)["refused"] == 1, WAIT, "C refused")
    for name, each in bus.items():  # every bus still runs 0.2.0, in the process it had
        assert each.running(), f"{name}'s launcher exited: {each.log()}"
        assert each.state is not None and each.state.release is not None
        assert each.state.release.running == NEW
        assert slot_version(read_state(each.slots).current) == NEW
    for each in bus.values():
        assert each.stop() == 0


def _refusals(central: Central, bus: str, version: str) -> list[tuple[int, Any]]:
    found = wait_for(lambda: central.events(bus, "update_refused"), WAIT, f"{bus}'s refusal")
    return [(sev, data["reason"]) for sev, data in found if data["version"] == version]
