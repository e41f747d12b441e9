"""A/B slots (onboard/update/slots.py) and the agent's update runtime (onboard/update/runtime.py)
on a real slots directory: a real release of this project installed into a real virtual
environment (once for the module: pip takes seconds), bad releases that must leave nothing
behind, and the runtime's rules (a trip and the maintenance window hold a switch back; a
refused release is reported once; the new version commits only once healthy, or exits for
a rollback; the previous version reports a rollback) with events in a real outbox.

The launcher and the real agent processes: tests/test_update_launcher.py, test_update_agent.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from onboard.errors import ReleaseRefused, UpdateError
from onboard.link.outbox import Outbox
from onboard.recorder import EventRecorder
from onboard.update import slots as slotdir
from onboard.update.launcher import (
    FAILURE_FILE,
    RESTART_EXIT,
    TRIAL_FAILED_EXIT,
    SlotState,
    Trial,
    read_failure,
    read_state,
    roll_back,
    write_state,
)
from onboard.update.runtime import NOT_INSTALLED, Health, UpdateRuntime
from onboard.update.settings import UpdateSection
from onboard.update.window import in_window
from protocols import codec
from protocols.release import MANIFEST, target_name
from protocols.schemas import DesiredState, Event, ReleaseRef
from tests import release_helpers
from tests.release_helpers import folder_fetch

releases = release_helpers.releases
OLD = "0.1.0-aaaaaaaa"
BUS = "bus-u2"


@pytest.fixture(scope="module")
def installed(
    releases: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """A slots directory with release 0.2.0 installed (the module's one real install)."""
    slots = tmp_path_factory.mktemp("installed") / "slots"
    name = slotdir.install_release(releases / target_name("0.2.0"), slots)
    yield slots, name


def fake_slot(slots: Path, name: str) -> None:
    """A slot as the state file sees it (its interpreter present); never run here."""
    (slots / name / "bin").mkdir(parents=True)
    (slots / name / "bin" / "python").write_text("")


def rewrite(release: Path, out: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A copy of a release tar with some members' bytes changed."""
    with tarfile.open(release) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            data = change(member.name, data)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def leftovers(slots: Path) -> list[str]:
    return sorted(p.name for p in slots.iterdir()) if slots.exists() else []


# -- slots ----------------------------------------------------------------------------------------


def test_a_release_installs_into_a_slot_named_for_its_version_and_runs_from_it(
    installed: tuple[Path, str], releases: Path
) -> None:
    slots, name = installed
    assert name.startswith("0.2.0-") and len(name) == len("0.2.0-") + 8
    assert leftovers(slots) == [name]  # no temporary directory left behind
    python = slots / name / "bin" / "python"
    probe = "import importlib.metadata as m, busfleet.cli; print(m.version('busfleet'))"
    out = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, cwd=slots)
    assert out.stdout.strip() == "0.2.0", out.stderr
    # The same release again: the complete slot is used as it is.
    assert slotdir.install_release(releases / target_name("0.2.0"), slots) == name
    assert slotdir.installed(slots, "0.2.0") == name and slotdir.installed(slots, "0.1.0") is None


def test_a_wheel_that_does_not_match_the_manifest_is_never_installed(
    releases: Path, tmp_path: Path
) -> None:
    def tamper(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name.startswith("wheels/msgspec") else data

    bad = rewrite(releases / target_name("0.2.0"), tmp_path / target_name("0.2.0"), tamper)
    slots = tmp_path / "slots"
    with pytest.raises(slotdir.InstallFailed, match=r"msgspec.* does not match its sha256"):
        slotdir.install_release(bad, slots)
    assert leftovers(slots) == []


def test_a_release_for_another_python_or_that_pip_cannot_install_leaves_nothing(
    releases: Path, tmp_path: Path
) -> None:
    def manifest(**changes: str) -> Callable[[str, bytes], bytes]:
        def change(name: str, data: bytes) -> bytes:
            return (
                json.dumps({**json.loads(data), **changes}).encode() if name == MANIFEST else data
            )

        return change

    slots = tmp_path / "slots"
    other = rewrite(releases / target_name("0.2.0"), tmp_path / "a.tar", manifest(python="3.99"))
    with pytest.raises(slotdir.InstallFailed, match=r"is for Python 3\.99"):
        slotdir.install_release(other, slots)
    unsatisfiable = manifest(requirement="busfleet==9.9.9")
    broken = rewrite(releases / target_name("0.2.0"), tmp_path / "b.tar", unsatisfiable)
    with pytest.raises(slotdir.InstallFailed, match=r"failed: .*busfleet==9\.9\.9"):
        slotdir.install_release(broken, slots)
    assert leftovers(slots) == []
    with pytest.raises(slotdir.InstallFailed, match="not a release"):
        slotdir.install_release(tmp_path / "a.tar.missing", slots)


def test_switch_commit_and_prune_keep_the_current_and_the_previous_slot(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    for name in ("0.0.9-99999999", OLD, "0.2.0-bbbbbbbb"):
        fake_slot(slots, name)
    write_state(slots, SlotState(current=OLD, previous="0.0.9-99999999"))
    state = slotdir.switch(slots, "0.2.0-bbbbbbbb", timeout_s=30, desired=4)
    assert (state.current, state.previous) == ("0.2.0-bbbbbbbb", OLD)
    assert state.trial is not None and (state.trial.desired, state.trial.starts) == (4, 0)
    assert read_state(slots) == state
    state = slotdir.commit(slots, "0.2.0-bbbbbbbb")
    assert state.trial is None and read_state(slots) == state
    assert leftovers(slots) == [OLD, "0.2.0-bbbbbbbb", "state.json"]  # 0.0.9 pruned
    with pytest.raises(UpdateError, match="not current"):
        slotdir.commit(slots, OLD)
    # By hand (`busfleet slots rollback`): the previous one is current again.
    state = slotdir.roll_back_by_hand(slots)
    assert (state.current, state.previous) == (OLD, "0.2.0-bbbbbbbb")


@pytest.mark.parametrize(
    ("window", "hour", "minute", "inside"),
    [
        ("", 12, 0, True),
        ("01:00-04:30", 1, 0, True),
        ("01:00-04:30", 4, 29, True),
        ("01:00-04:30", 4, 30, False),
        ("01:00-04:30", 0, 59, False),
        ("22:00-05:00", 23, 10, True),  # across midnight
        ("22:00-05:00", 4, 0, True),
        ("22:00-05:00", 12, 0, False),
    ],
)
def test_the_maintenance_window_is_local_time_and_may_cross_midnight(
    window: str, hour: int, minute: int, inside: bool
) -> None:
    now = time.struct_time((2026, 12, 3, hour, minute, 0, 3, 337, -1))
    assert in_window(window, now) is inside


def test_an_unreadable_maintenance_window_is_an_error_not_any_time() -> None:
    now = time.localtime()
    for bad in ("1:00-4:00", "25:00-04:00", "night"):
        with pytest.raises(ValueError, match="is not a window like"):
            in_window(bad, now)


# -- the runtime ----------------------------------------------------------------------------------


class Bus:
    """An update runtime on a slots directory, its events in a real outbox."""

    def __init__(self, tmp_path: Path, slots: Path | None, releases: Path, **env: str) -> None:
        self.outbox = Outbox(tmp_path / "agent.sqlite")
        self.recorder = EventRecorder(self.outbox, lambda: None)
        self.trip = False
        self.connected = True
        self.stored = True
        self.restart = asyncio.Event()
        self.phases: list[str] = []
        environ = {"BUSFLEET_SLOTS": str(slots), **env} if slots is not None else {}
        self.runtime = UpdateRuntime(
            UpdateSection(health_timeout_s=30),
            fetch=partial(folder_fetch, releases, running=env.get("running", "0.1.0")),
            record_event=lambda k, d, s: self.recorder.record(k, d, severity=s),
            on_change=lambda: self.phases.append(self.runtime.phase),
            trip_running=lambda: self.trip,
            restart=self.restart,
            health=Health(lambda: self.connected, lambda: self.stored),
            environ=environ,
            running=env.get("running", "0.1.0"),
        )
        self.runtime.poll_s = 0.05

    def want(self, version: str, desired: int = 3, *, live: bool = True) -> None:
        ref = ReleaseRef(version=version, target=target_name(version))
        self.runtime.offer(DesiredState(bus=BUS, version=desired, release=ref), live=live)

    def events(self, kind: str) -> list[Event]:
        found = [codec.decode(Event, p.body) for p in self.outbox.pending(1000)]
        return [e for e in found if e.kind == kind]


async def until(check: Callable[[], Any], what: str) -> None:
    """Poll `check` on the running loop (the runtime's task runs meanwhile), 120 s at most."""
    try:
        async with asyncio.timeout(120.0):
            # What is polled lives in files and in the runtime's fields: no event to wait on.
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def closed_window() -> str:
    """A maintenance window that is not now (two to three hours ahead)."""
    later = time.localtime(time.time() + 2 * 3600)
    end = time.localtime(time.time() + 3 * 3600)
    return f"{later.tm_hour:02d}:{later.tm_min:02d}-{end.tm_hour:02d}:{end.tm_min:02d}"


def test_a_bus_on_a_trip_waits_until_it_ends_and_for_its_window_then_switches(
    installed: tuple[Path, str], releases: Path, tmp_path: Path
) -> None:
    slots, name = installed
    fake_slot(slots, OLD)
    write_state(slots, SlotState(current=OLD))
    bus = Bus(tmp_path, slots, releases, BUSFLEET_SLOT=OLD)
    rt = bus.runtime
    rt.settings = dataclasses.replace(rt.settings, maintenance_window=closed_window())
    bus.trip = True

    async def scenario() -> None:
        task = asyncio.create_task(rt.run())
        bus.want("0.2.0", desired=3)
        await until(lambda: rt.phase == "waiting", "waiting")
        assert rt.error == "a trip is running"
        assert rt.report().wanted == "0.2.0"
        bus.trip = False  # the trip ends; the window is still closed
        await until(lambda: rt.error.startswith("outside the maintenance window"), "window")
        assert read_state(slots) == SlotState(current=OLD) and not bus.restart.is_set()
        rt.settings = dataclasses.replace(rt.settings, maintenance_window="")  # now it opens
        await until(bus.restart.is_set, "the switch")
        task.cancel()

    asyncio.run(scenario())
    state = read_state(slots)
    assert (state.current, state.previous) == (name, OLD)
    assert state.trial is not None and (state.trial.desired, state.trial.timeout_s) == (3, 30)
    assert rt.exit_code == RESTART_EXIT  # `busfleet agent` exits with it: the launcher restarts
    assert bus.phases[:3] == ["fetching", "installing", "waiting"] and bus.phases[-1] == "trial"
    assert bus.events("update_failed") == [] and bus.events("update_refused") == []


def test_a_repository_not_trusted_now_is_refused_reported_once_and_tried_again(
    installed: tuple[Path, str], releases: Path, tmp_path: Path
) -> None:
    """Expired or badly signed metadata is the repository's state, not the release's (central
    down past its timestamp's day, a bus clock ahead): refused and reported once, never
    remembered, and the same release installs once the repository is good again."""
    slots, name = installed
    old = "0.1.0-cccccccc"
    fake_slot(slots, old)
    write_state(slots, SlotState(current=old))
    bus = Bus(tmp_path, slots, releases, BUSFLEET_SLOT=old)
    rt = bus.runtime
    good = rt.fetch
    assert good is not None
    calls: list[str] = []

    def repository_expired_twice(ref: ReleaseRef) -> Path:
        calls.append(ref.version)
        if len(calls) <= 2:
            raise ReleaseRefused("expired metadata: timestamp.json expired", lasting=False)
        return good(ref)

    rt.fetch = repository_expired_twice

    async def scenario() -> None:
        task = asyncio.create_task(rt.run())
        bus.want("0.2.0", desired=3)
        await until(lambda: rt.phase == "refused", "refused")
        assert read_state(slots).refused == {}  # not remembered: looked at again
        await until(bus.restart.is_set, "the switch, once the repository is good")
        task.cancel()

    asyncio.run(scenario())
    assert len(calls) == 3 and read_state(slots).current == name
    refused = bus.events("update_refused")
    assert [(e.severity, e.data["version"]) for e in refused] == [(2, "0.2.0")]  # once


def test_an_older_release_is_refused_reported_once_and_never_fetched_again(
    releases: Path, tmp_path: Path
) -> None:
    slots = tmp_path / "slots"
    fake_slot(slots, "0.2.0-bbbbbbbb")
    write_state(slots, SlotState(current="0.2.0-bbbbbbbb"))

    async def wanted_by_a_new_runtime() -> UpdateRuntime:
        bus = Bus(tmp_path, slots, releases, BUSFLEET_SLOT="0.2.0-bbbbbbbb", running="0.2.0")
        task = asyncio.create_task(bus.runtime.run())
        bus.want("0.1.0")
        await until(lambda: bus.runtime.phase == "refused", "refused")
        task.cancel()
        bus.outbox.close()
        return bus.runtime

    first = asyncio.run(wanted_by_a_new_runtime())
    assert first.error == "0.1.0 is not newer than the running 0.2.0"
    again = asyncio.run(wanted_by_a_new_runtime())  # the agent started again: no second try
    assert again.error == first.error
    assert read_state(slots).refused == {"0.1.0": first.error}
    box = Outbox(tmp_path / "agent.sqlite")
    refused = [codec.decode(Event, p.body) for p in box.pending(100)]
    box.close()
    assert [(e.kind, e.severity, e.data) for e in refused] == [
        ("update_refused", 2, {"version": "0.1.0", "reason": first.error})
    ]


def test_without_a_launcher_a_wanted_release_is_reported_failed_and_the_agent_runs_on(
    releases: Path, tmp_path: Path
) -> None:
    bus = Bus(tmp_path, None, releases)

    async def scenario() -> None:
        task = asyncio.create_task(bus.runtime.run())
        bus.want("0.2.0")
        await until(lambda: bus.runtime.phase == "failed", "failed")
        await asyncio.sleep(0.1)
        assert not task.done()  # never a crash
        task.cancel()

    asyncio.run(scenario())
    report = bus.runtime.report()
    assert (report.running, report.wanted, report.error) == ("0.1.0", "0.2.0", NOT_INSTALLED)


def on_trial(tmp_path: Path, timeout_s: float) -> Path:
    slots = tmp_path / "slots"
    fake_slot(slots, OLD)
    fake_slot(slots, "0.2.0-bbbbbbbb")
    trial = Trial(since=time.time(), timeout_s=timeout_s, desired=3, starts=1)
    write_state(slots, SlotState(current="0.2.0-bbbbbbbb", previous=OLD, trial=trial))
    return slots


def test_a_new_version_commits_once_connected_desired_applied_and_telemetry_stored(
    releases: Path, tmp_path: Path
) -> None:
    slots = on_trial(tmp_path, 60)
    env = {"BUSFLEET_SLOT": "0.2.0-bbbbbbbb", "BUSFLEET_TRIAL": "1", "running": "0.2.0"}
    bus = Bus(tmp_path, slots, releases, **env)
    rt = bus.runtime
    bus.connected = bus.stored = False
    bus.want("0.2.0", desired=3, live=False)  # from agent.sqlite: not applied by this process

    async def scenario() -> None:
        task = asyncio.create_task(rt.run())
        await until(lambda: rt.phase == "trial", "trial")
        assert rt._unhealthy(3) == "not connected to the broker"
        bus.connected = True
        assert rt._unhealthy(3) == "desired state 3 not applied"
        bus.want("0.2.0", desired=3)  # the retained desired document, received now
        assert rt._unhealthy(3) == "no telemetry stored at central"
        assert read_state(slots).trial is not None  # not committed yet
        bus.stored = True
        await until(lambda: read_state(slots).trial is None, "the commit")
        task.cancel()

    asyncio.run(scenario())
    state = read_state(slots)
    assert (state.current, state.previous) == ("0.2.0-bbbbbbbb", OLD)  # the previous kept
    [ok] = bus.events("update_ok")
    assert ok.data == {"version": "0.2.0", "previous": "0.1.0", "slot": "0.2.0-bbbbbbbb"}
    assert rt.phase == "idle" and rt.exit_code is None and not bus.restart.is_set()


def test_a_new_version_that_cannot_prove_itself_in_time_exits_for_a_rollback(
    releases: Path, tmp_path: Path
) -> None:
    slots = on_trial(tmp_path, 0.3)
    env = {"BUSFLEET_SLOT": "0.2.0-bbbbbbbb", "BUSFLEET_TRIAL": "1", "running": "0.2.0"}
    bus = Bus(tmp_path, slots, releases, **env)
    bus.connected = False
    asyncio.run(asyncio.wait_for(bus.runtime.run(), 30))  # it returns: the agent stops
    assert bus.restart.is_set() and bus.runtime.exit_code == TRIAL_FAILED_EXIT
    assert read_state(slots).trial is not None  # the launcher rolls back, not the agent
    assert bus.events("update_ok") == []


def test_the_previous_version_reports_a_rolled_back_trial_and_then_clears_the_record(
    releases: Path, tmp_path: Path
) -> None:
    slots = on_trial(tmp_path, 60)
    roll_back(slots, read_state(slots), "exited with code 1", "line 1\nTraceback: boom\n")
    assert read_failure(slots) is not None
    bus = Bus(tmp_path, slots, releases, BUSFLEET_SLOT=OLD)
    bus.want("0.2.0", live=False)

    async def scenario() -> None:
        task = asyncio.create_task(bus.runtime.run())
        await until(lambda: bus.runtime.phase == "failed", "failed")
        task.cancel()

    asyncio.run(scenario())
    [failed] = bus.events("update_failed")
    assert failed.severity == 3
    assert failed.data == {
        "version": "0.2.0",
        "previous": "0.1.0",
        "reason": "exited with code 1",
        "log_tail": "line 1\nTraceback: boom\n",
    }
    assert not (slots / FAILURE_FILE).exists()
    assert bus.runtime.report().error == "exited with code 1"  # and it is not tried again
    assert read_state(slots).failed == {"0.2.0": "exited with code 1"}


def test_the_slots_command_shows_the_state_and_rolls_back_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from busfleet.cli import main

    slots = on_trial(tmp_path, 60)
    assert main(["slots", "status", "--slots", str(slots)]) == 0
    out = capsys.readouterr().out
    assert "current:  0.2.0-bbbbbbbb" in out and f"previous: {OLD}" in out
    assert "trial:    1/3 starts, 60 s to prove itself" in out
    assert main(["slots", "rollback", "--slots", str(slots)]) == 0
    state = read_state(slots)
    assert (state.current, state.previous, state.trial) == (OLD, "0.2.0-bbbbbbbb", None)
    assert main(["slots", "status", "--slots", str(tmp_path / "none")]) == 1
    assert "no slot installed (busfleet slots install)" in capsys.readouterr().err
