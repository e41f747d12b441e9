"""A bus updates its own software (issue 16), end to end: real releases of this project signed
into central's real TUF repository (`busfleet release init|add`), a real `busfleet central
serve` serving it (central.toml `release_repo`), real slots (virtual environments), the real
launcher as systemd runs it, a real agent in each slot fetching through python-tuf (agent.toml
[update] repo_url and trusted_root = the repository's root.json), a real mosquitto.

Central's wish is a retained desired document that names a release, published as central
publishes it (tests/test_update_fleet.py rolls releases out with `central release rollout`).
The test plays systemd: it starts the launcher, cuts the power (kill -9 of the launcher's whole
session, agent included) and starts it again.

Each install is a real `python -m venv` + `pip install` of ~50 wheels (~10 s on a busy
machine), so one bus goes through the whole story: 0.1.0 installed by hand, 0.2.0 by the
agent (switch, trial, commit), 0.3.0 (broken) cut mid-install, installed again, cut right
after the switch, then started, failing, rolled back to 0.2.0 and reported to central.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.broker.launch import Broker
from onboard.update.launcher import FAILURE_FILE, read_state, slot_version
from protocols.release import target_name
from tests import release_helpers
from tests.fleet_helpers import wait_for
from tests.release_helpers import BROKEN, BROKEN_SAYS, GOOD
from tests.update_helpers import WAIT, Central, LaunchedBus, signed_repo, update_section

releases = release_helpers.releases
BUS = "bus-u1"


@pytest.fixture
def central(mosquitto: Broker, tmp_path: Path, releases: Path) -> Iterator[Central]:
    """central serving a repository with 0.1.0, 0.2.0 and the broken 0.3.0 signed in."""
    signed_repo(releases, tmp_path / "repo", (*GOOD, BROKEN))
    the_central = Central(mosquitto, tmp_path, tmp_path / "repo")
    try:
        the_central.start()
        yield the_central
    finally:
        the_central.close()


@pytest.fixture
def bus(mosquitto: Broker, tmp_path: Path, central: Central) -> Iterator[LaunchedBus]:
    root = central.repo / "metadata" / "root.json"
    update = update_section(central, root, health_timeout_s=60)
    the_bus = LaunchedBus(mosquitto, tmp_path / BUS, BUS, update)
    try:
        yield the_bus
    finally:
        the_bus.close()


def test_a_bus_updates_itself_rolls_a_broken_release_back_and_survives_power_cuts(
    central: Central, bus: LaunchedBus, releases: Path
) -> None:
    work = bus.toml.parent / "bus" / "releases"  # the TUF client's metadata and download
    bus.install(releases / target_name("0.1.0"))
    bus.start()
    now = bus.release(lambda r: r.running == "0.1.0", "0.1.0 running")
    assert now.phase == "idle" and slot_version(now.slot) == "0.1.0" and now.previous == ""
    assert not work.exists()  # nothing fetched yet

    # 0.2.0: fetched through central's repository (python-tuf: root, timestamp, snapshot,
    # targets, then the tar by its hash), installed beside 0.1.0, switched to, started on
    # trial by the launcher; the new process proves itself (connected, desired state,
    # telemetry stored) and commits.
    bus.want("0.2.0")
    now = bus.release(lambda r: r.running == "0.2.0" and r.phase == "idle", "0.2.0 committed")
    assert (now.previous, slot_version(now.slot), now.error) == ("0.1.0", "0.2.0", "")
    state = read_state(bus.slots)
    assert (state.current, state.trial) == (now.slot, None)
    assert slot_version(state.previous) == "0.1.0"
    [(severity, data)] = wait_for(
        lambda: central.events(BUS, "update_ok"), 60, "update_ok at central"
    )
    assert data == {"version": "0.2.0", "previous": "0.1.0", "slot": now.slot}
    assert "starting " + now.slot + " on trial" in bus.log()
    seen = {p.name for p in (work / "metadata").iterdir()}
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= seen
    assert list((work / "targets").iterdir()) == []  # the tar went once installed

    # 0.3.0 (broken). A power cut in the middle of its install: a partial slot only.
    bus.want(BROKEN)
    wait_for(lambda: list(bus.slots.glob(".tmp-0.3.0-*/bin")), WAIT, "the 0.3.0 install")
    bus.power_cut()
    assert read_state(bus.slots).current == now.slot  # still 0.2.0
    bus.start()  # systemd's Restart=always: the launcher removes the partial install
    bus.release(lambda r: r.running == "0.2.0", "0.2.0 back after the cut")
    # It fetches and installs 0.3.0 again and switches; cut right after the switch.
    wait_for(lambda: read_state(bus.slots).trial, WAIT, "the switch to 0.3.0")
    bus.power_cut()
    switched = read_state(bus.slots)
    assert slot_version(switched.current) in ("0.3.0", "0.2.0")  # one of the two
    bus.start()
    # 0.3.0 starts on trial, fails at once; the launcher rolls back to 0.2.0 by itself and
    # 0.2.0 reports the failure with the broken version's last lines.
    now = bus.release(lambda r: r.running == "0.2.0" and r.phase == "failed", "rolled back")
    assert now.wanted == "0.3.0" and "exited with code 1" in now.error
    [(severity, data)] = wait_for(
        lambda: central.events(BUS, "update_failed"), 60, "update_failed at central"
    )
    assert severity == 3 and data["version"] == "0.3.0" and data["previous"] == "0.2.0"
    assert "exited with code 1 before it proved itself healthy" in data["reason"]
    assert BROKEN_SAYS in data["log_tail"]
    state = read_state(bus.slots)
    assert (state.current, state.trial) == (now.slot, None)
    assert "0.3.0" in state.failed
    wait_for(lambda: not (bus.slots / FAILURE_FILE).exists(), 30, "the record cleared")
    assert [slot_version(n) for n in bus.slot_names()] == ["0.2.0"]
    assert bus.stop() == 0
