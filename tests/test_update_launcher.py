"""The launcher (onboard/update/launcher.py): the stable piece systemd runs, which starts the
agent from the current slot and rolls a failed trial back like a bootloader's boot counter.

The launcher runs for real, as a process of the system's python3; the slots hold stand-in
agents (each slot's bin/python a small script that follows its plan: exit with a code, commit
or switch the state file through the launcher's own functions, wait for SIGTERM), so every
rule is seen at process level in a second or two. The real agent from real releases is
tests/test_update_agent.py.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onboard.update import launcher
from onboard.update.launcher import (
    FAILURE_FILE,
    RESTART_EXIT,
    STATE_FILE,
    TRIAL_FAILED_EXIT,
    SlotState,
    Trial,
    read_failure,
    read_state,
    write_state,
)
from tests.fleet_helpers import wait_for

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(getattr(sys, "_base_executable", sys.executable))  # no venv: like /usr/bin/python3
OLD, NEW = "0.1.0-aaaaaaaa", "0.2.0-bbbbbbbb"

STAND_IN = """#!{python}
# A stand-in agent: follows the next plan of its slot (plans.json), logs its start.
import json, os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from onboard.update.launcher import SlotState, Trial, read_state, write_state
slot = Path(__file__).resolve().parent.parent
slots = Path(os.environ["BUSFLEET_SLOTS"])
count = slot / "count"
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
plans = json.loads((slot / "plans.json").read_text())
plan = plans[min(n, len(plans) - 1)]
start = dict(slot=os.environ["BUSFLEET_SLOT"], trial=os.environ.get("BUSFLEET_TRIAL", ""),
             watchdog_pid=os.environ.get("WATCHDOG_PID", ""), argv=sys.argv[1:], pid=os.getpid())
with (slots.parent / "starts.log").open("a") as f:
    f.write(json.dumps(start) + "\\n")
print(plan.get("say", "stand-in " + start["slot"]), file=sys.stderr, flush=True)
state = read_state(slots)
if plan.get("commit"):
    write_state(slots, SlotState(current=state.current, previous=state.previous))
if plan.get("switch_to"):
    trial = Trial(since=time.time(), timeout_s=plan.get("timeout_s", 60.0), desired=1)
    write_state(slots, SlotState(current=plan["switch_to"], previous=state.current, trial=trial))
if plan.get("wait"):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(plan.get("on_term", 0)))
    (slots.parent / "waiting").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)
sys.exit(plan.get("exit", 0))
"""


def make_slot(slots: Path, name: str, *plans: dict[str, Any]) -> Path:
    slot = slots / name
    (slot / "bin").mkdir(parents=True)
    script = slot / "bin" / "python"
    script.write_text(STAND_IN.format(python=PYTHON, repo=str(REPO)))
    script.chmod(0o755)
    (slot / "plans.json").write_text(json.dumps(list(plans)))
    return slot


def starts(slots: Path) -> list[dict[str, Any]]:
    log = slots.parent / "starts.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines]


def launch(slots: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The launcher as systemd starts it (its own session: a kill -9 of the group is a power
    cut of everything it runs)."""
    argv = [PYTHON, launcher.__file__, "--slots", str(slots), "--config", "/etc/agent.toml"]
    return subprocess.Popen(
        [*argv, *extra],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(f"the launcher did not exit: {err}") from None
    return proc.returncode, err


@pytest.fixture
def slots(tmp_path: Path) -> Path:
    path = tmp_path / "slots"
    path.mkdir()
    return path


def test_the_launcher_imports_the_standard_library_only() -> None:
    tree = ast.parse(Path(launcher.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import: the launcher is copied alone"
            imported.add((node.module or "").split(".")[0])
    assert imported, "no import found: the check would pass anything"
    assert sorted(imported - set(sys.stdlib_module_names)) == []
    # And it runs alone: a copy outside the project, with python3 -I (no site, no PYTHONPATH).
    proc = subprocess.run([PYTHON, "-I", launcher.__file__, "--help"], capture_output=True)
    assert proc.returncode == 0 and b"--slots" in proc.stdout, proc.stderr


def test_it_runs_the_current_slot_with_its_name_and_ends_with_the_agents_failure(
    slots: Path,
) -> None:
    make_slot(slots, OLD, {"exit": 7, "say": "old agent says hello"})
    write_state(slots, SlotState(current=OLD))
    (slots / ".tmp-0.2.0-cccccccc-x").mkdir()  # an install a power cut interrupted
    rc, err = finish(launch(slots, env={"WATCHDOG_PID": "1"}))
    assert rc == 7  # not on trial: systemd's Restart=always runs the launcher again
    assert "old agent says hello" in err  # the agent's stderr goes on to the journal
    [start] = starts(slots)
    assert start["slot"] == OLD and start["trial"] == ""
    assert start["argv"] == ["-I", "-m", "busfleet.cli", "agent", "--config", "/etc/agent.toml",
                             "--log-level", "INFO"]  # fmt: skip
    assert start["watchdog_pid"] == ""  # so that the agent's own pings count
    assert not list(slots.glob(".tmp-*"))
    assert read_state(slots) == SlotState(current=OLD)


def test_a_switch_restarts_into_the_new_slot_on_trial_which_commits(slots: Path) -> None:
    make_slot(slots, OLD, {"switch_to": NEW, "exit": RESTART_EXIT})
    make_slot(slots, NEW, {"commit": True, "exit": 9})
    write_state(slots, SlotState(current=OLD))
    rc, err = finish(launch(slots))
    assert rc == 9, err
    assert [(s["slot"], s["trial"]) for s in starts(slots)] == [(OLD, ""), (NEW, "1")]
    state = read_state(slots)
    assert (state.current, state.previous, state.trial) == (NEW, OLD, None)
    assert read_failure(slots) is None


def test_a_trial_that_exits_before_committing_is_rolled_back_with_its_log_tail(
    slots: Path,
) -> None:
    make_slot(slots, OLD, {"switch_to": NEW, "exit": RESTART_EXIT}, {"exit": 9})
    make_slot(slots, NEW, {"exit": 1, "say": "Traceback: the new version is broken"})
    write_state(slots, SlotState(current=OLD))
    rc, err = finish(launch(slots))
    assert rc == 9, err
    assert [(s["slot"], s["trial"]) for s in starts(slots)] == [(OLD, ""), (NEW, "1"), (OLD, "")]
    state = read_state(slots)
    assert (state.current, state.previous, state.trial) == (OLD, "", None)
    assert "exited with code 1" in state.failed["0.2.0"]
    failure = read_failure(slots)
    assert failure is not None
    assert (failure["version"], failure["slot"], failure["previous"]) == ("0.2.0", NEW, "0.1.0")
    assert "exited with code 1 before it proved itself healthy" in failure["reason"]
    assert "Traceback: the new version is broken" in failure["log_tail"]
    assert not (slots / NEW).exists()  # the failed slot is gone; the old one kept


def test_an_agent_that_cannot_prove_itself_says_so_and_is_rolled_back(slots: Path) -> None:
    make_slot(slots, OLD, {"exit": 9})
    make_slot(slots, NEW, {"exit": TRIAL_FAILED_EXIT})
    write_state(slots, SlotState(current=NEW, previous=OLD, trial=Trial(0, 60, 1)))
    rc, err = finish(launch(slots))
    assert rc == 9, err
    assert read_failure(slots)["reason"] == "could not prove itself healthy in time"  # type: ignore[index]


def test_a_trial_past_its_time_is_stopped_and_rolled_back(slots: Path) -> None:
    make_slot(slots, OLD, {"exit": 9})
    make_slot(slots, NEW, {"wait": True, "on_term": 0})  # runs, never commits
    write_state(slots, SlotState(current=NEW, previous=OLD, trial=Trial(0, 0.5, 1)))
    rc, err = finish(launch(slots, "--trial-grace-s", "0.5"))
    assert rc == 9, err
    assert [s["slot"] for s in starts(slots)] == [NEW, OLD]
    assert read_failure(slots)["reason"] == "not healthy within 0.5 s"  # type: ignore[index]
    assert read_state(slots).current == OLD


def test_a_trial_started_too_often_is_rolled_back_without_starting_it(slots: Path) -> None:
    """Power cuts (or a version that takes the machine down) during a trial: the boot counter."""
    make_slot(slots, OLD, {"exit": 9})
    make_slot(slots, NEW, {"exit": 9})
    write_state(slots, SlotState(current=NEW, previous=OLD, trial=Trial(0, 60, 1, starts=3)))
    rc, _ = finish(launch(slots))
    assert rc == 9
    assert [s["slot"] for s in starts(slots)] == [OLD]
    assert "started 3 times on trial" in read_failure(slots)["reason"]  # type: ignore[index]


def test_sigterm_stops_the_agent_and_the_launcher_without_a_rollback(slots: Path) -> None:
    make_slot(slots, OLD, {"exit": 9})
    make_slot(slots, NEW, {"wait": True, "on_term": 0})
    write_state(slots, SlotState(current=NEW, previous=OLD, trial=Trial(0, 60, 1)))
    proc = launch(slots)
    wait_for(lambda: (slots.parent / "waiting").exists(), 30, "the agent running")
    proc.send_signal(signal.SIGTERM)  # systemctl stop: the launcher passes it on
    rc, err = finish(proc)
    assert rc == 0, err
    state = read_state(slots)
    assert (state.current, state.trial) == (NEW, Trial(0, 60, 1, starts=1))  # still on trial
    assert read_failure(slots) is None


def test_a_power_cut_at_each_step_of_a_switch_comes_back_on_one_of_the_two(slots: Path) -> None:
    """kill -9 of the launcher and its agent (the whole session, as a power cut) at each step
    of an update: the next start runs the old slot, or the new one on trial."""
    make_slot(slots, OLD, {"wait": True})
    make_slot(slots, NEW, {"wait": True})
    write_state(slots, SlotState(current=OLD))

    def cut_and_start_again(expect: str) -> subprocess.Popen[str]:
        waiting = slots.parent / "waiting"
        waiting.unlink(missing_ok=True)
        proc = launch(slots)
        wait_for(waiting.exists, 30, f"{expect} running")
        assert starts(slots)[-1]["slot"] == expect
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc

    cut_and_start_again(OLD)  # before anything: the old one
    (slots / ".tmp-0.2.0-bbbbbbbb-x" / "bin").mkdir(parents=True)  # mid-install
    cut_and_start_again(OLD)
    assert not list(slots.glob(".tmp-*"))
    # Switched (the state file names the new slot on trial) and cut before the restart.
    write_state(slots, SlotState(current=NEW, previous=OLD, trial=Trial(0, 60, 1)))
    for start in (1, 2, 3):
        cut_and_start_again(NEW)  # the boot counter counts each start on trial
        trial = read_state(slots).trial
        assert trial is not None and trial.starts == start
    cut_and_start_again(OLD)  # the fourth start: rolled back without running it
    assert read_state(slots).current == OLD
    assert "started 3 times" in read_failure(slots)["reason"]  # type: ignore[index]
    # A torn write cannot happen: only whole files were ever renamed into place.
    assert sorted(p.name for p in slots.iterdir()) == [OLD, FAILURE_FILE, STATE_FILE]
