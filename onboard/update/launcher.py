"""The launcher: the stable piece systemd runs, which starts the agent from its current slot
and falls back to the previous slot when a new version fails its trial (issue 16).

Standard library ONLY (tests/test_update_launcher.py checks): it runs with the system's
python3 whatever the slots hold, and `busfleet slots install` copies this one file to
/opt/busfleet/launcher.py, so it must stand alone. It owns the slots' state file format too
(`SlotState`), which onboard/update/slots.py reads and writes through it.

The slots directory (deploy/README.md, "Software updates")::

    slots/
      state.json          which slot is current, which previous, the trial (written atomically)
      failure.json        a rolled-back trial, until the previous agent has reported it
      0.2.0-1a2b3c4d/     a slot: a virtual environment with busfleet 0.2.0 installed
      0.1.0-9f8e7d6c/
      .tmp-0.3.0-.../     an install in progress (removed at the next start)

Like a bootloader's boot counter (RAUC, Mender): after a switch the new slot runs on trial.
The launcher rolls back (previous becomes current again, a failure record is written) when
the agent on trial exits with an error before it committed, when it has not committed within
the trial's time (health_timeout_s, stored in the state at the switch, plus GRACE_S), or when
it was started more than `max_starts` times on trial (power cuts, kill -9: a version that
takes the machine down). A power cut at any moment leaves state.json naming a complete slot:
every write is temp + fsync + rename + fsync of the directory.

Exit codes of the agent (`busfleet agent`): 0 a clean stop (or a restart command: started
again), RESTART_EXIT to be started again at once from the (new) current slot, anything else
a failure: on trial a rollback, else the launcher exits with it and systemd's Restart=always
runs the launcher again after RestartSec.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

STATE_FILE = "state.json"
FAILURE_FILE = "failure.json"
TMP_PREFIX = ".tmp-"
RESTART_EXIT = 75  # the agent asks to be started again from the current slot (a switch)
TRIAL_FAILED_EXIT = 70  # the agent on trial could not prove itself healthy in time
MAX_TRIAL_STARTS = 3
GRACE_S = 30.0  # past the trial's time the launcher stops the agent itself
TAIL_LINES = 100
MAX_FAILED = 10  # failed versions remembered (never tried again)
STOP_WAIT_S = 15.0  # SIGTERM, then SIGKILL (systemd's TimeoutStopSec)

log_prefix = "busfleet-launcher:"


class SlotError(Exception):
    """The slots directory cannot be used: no state, no slot to run. A human is needed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Trial:
    """A switched-to slot that has not yet proved itself healthy."""

    since: float  # wall clock of the switch
    timeout_s: float  # health_timeout_s at the switch
    desired: int  # the desired state version that named the release
    starts: int = 0  # how often the launcher started it on trial
    max_starts: int = MAX_TRIAL_STARTS


@dataclasses.dataclass(frozen=True, slots=True)
class SlotState:
    current: str
    previous: str = ""
    trial: Trial | None = None
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # version -> why
    refused: dict[str, str] = dataclasses.field(default_factory=dict)  # version -> why


def slot_version(name: str) -> str:
    """The version a slot holds, from its name ("0.2.0-1a2b3c4d" -> "0.2.0")."""
    return name.split("-", 1)[0]


def slot_python(slots: Path, name: str) -> Path:
    """The slot's interpreter; the agent runs as `python -m busfleet.cli` (a venv's scripts
    name the temporary directory it was built in; its interpreter works from any name)."""
    return slots / name / "bin" / "python"


def slot_ok(slots: Path, name: str) -> bool:
    return bool(name) and not name.startswith(".") and slot_python(slots, name).exists()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a power cut leaves the old file or the new one, never a torn one."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(slots: Path) -> SlotState:
    """The state file; SlotError when there is none or it is not a state."""
    path = slots / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        trial = raw.get("trial")
        return SlotState(
            current=str(raw["current"]),
            previous=str(raw.get("previous", "")),
            trial=Trial(**trial) if trial else None,
            failed={str(k): str(v) for k, v in dict(raw.get("failed", {})).items()},
            refused={str(k): str(v) for k, v in dict(raw.get("refused", {})).items()},
        )
    except FileNotFoundError:
        raise SlotError(f"{path}: no slot installed (busfleet slots install)") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SlotError(f"{path}: unreadable: {exc}") from exc


def write_state(slots: Path, state: SlotState) -> None:
    write_json(slots / STATE_FILE, dataclasses.asdict(state))


def read_failure(slots: Path) -> dict[str, str] | None:
    """A rolled-back trial not yet reported (version, slot, previous, reason, log_tail)."""
    try:
        raw = json.loads((slots / FAILURE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"version": "?", "slot": "", "reason": f"unreadable failure record: {exc}"}
    return {str(k): str(v) for k, v in dict(raw).items()}


def clear_failure(slots: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (slots / FAILURE_FILE).unlink()
        fsync_dir(slots)


def remember(table: dict[str, str], version: str, why: str) -> dict[str, str]:
    """`table` with version -> why added, the oldest entries dropped beyond MAX_FAILED."""
    items = [(k, v) for k, v in table.items() if k != version] + [(version, why)]
    return dict(items[-MAX_FAILED:])


def roll_back(slots: Path, state: SlotState, reason: str, tail: str) -> SlotState:
    """The previous slot is current again; the failure is written first, for the previous
    agent to report (a power cut between the two writes repeats the rollback, never loses it)."""
    failed = state.current
    version = slot_version(failed)
    back = state.previous if slot_ok(slots, state.previous) else ""
    if not back:
        # Nothing to fall back to: keep running it, without the trial (said loudly).
        _say(f"{failed} failed its trial ({reason}) but there is no previous slot to run")
        new = dataclasses.replace(state, trial=None, failed=remember(state.failed, version, reason))
        write_state(slots, new)
        return new
    record = {
        "version": version,
        "slot": failed,
        "previous": slot_version(back),
        "reason": reason,
        "log_tail": tail,
        "t": str(time.time()),
    }
    write_json(slots / FAILURE_FILE, record)
    new = SlotState(
        current=back,
        previous="",
        trial=None,
        failed=remember(state.failed, version, reason),
        refused=state.refused,
    )
    write_state(slots, new)
    _say(f"rolled back from {failed} to {back}: {reason}")
    with contextlib.suppress(OSError):
        shutil.rmtree(slots / failed)
    return new


def state_timeout(state: SlotState) -> float:
    return state.trial.timeout_s if state.trial is not None else 0.0


def remove_temporary(slots: Path) -> list[str]:
    """Installs a power cut or kill interrupted: partial slots, never run, never named."""
    gone = []
    for path in slots.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        gone.append(path.name)
    return gone


def _say(text: str) -> None:
    print(f"{log_prefix} {text}", file=sys.stderr, flush=True)


class Launcher:
    """Runs the agent from the current slot, again and again, rolling back failed trials."""

    def __init__(self, slots: Path, agent_args: list[str], *, grace_s: float = GRACE_S) -> None:
        self.slots = slots
        self.agent_args = agent_args
        self.grace_s = grace_s
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.deadlines: dict[str, float] = {}  # slot on trial -> monotonic deadline

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        child = self.child
        if child is not None and child.poll() is None:
            with contextlib.suppress(OSError):
                child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        for name in remove_temporary(self.slots):
            _say(f"removed the unfinished install {name}")
        while not self.stopping:
            state = self.prepare(read_state(self.slots))
            if self.stopping:
                break
            rc = self.run_child(state)
            if self.stopping:
                return rc if rc >= 0 else 0
            after = read_state(self.slots)
            trial = after.trial is not None and after.current == state.current
            if trial and rc not in (0, RESTART_EXIT):
                why = f"exited with code {rc} before it proved itself healthy"
                if rc == TRIAL_FAILED_EXIT:
                    why = "could not prove itself healthy in time"
                self.roll_back(after, why)
                continue
            if rc == RESTART_EXIT:
                continue
            if rc == 0:
                time.sleep(1.0)  # a restart command: run it again, but never in a tight loop
                continue
            _say(f"the agent exited with code {rc}")
            return rc if rc > 0 else 1
        return 0

    def prepare(self, state: SlotState) -> SlotState:
        """Count a start on trial (rolling back past max_starts); fall back when the current
        slot is missing. Returns the state to run."""
        if state.trial is not None:
            if not slot_ok(self.slots, state.current):
                return self.roll_back(state, "its slot is missing or incomplete")
            if state.trial.starts >= state.trial.max_starts:
                why = f"started {state.trial.starts} times on trial without proving itself"
                return self.roll_back(state, why)
            trial = dataclasses.replace(state.trial, starts=state.trial.starts + 1)
            state = dataclasses.replace(state, trial=trial)
            write_state(self.slots, state)
            self.deadlines.setdefault(
                state.current, time.monotonic() + trial.timeout_s + self.grace_s
            )
            return state
        if not slot_ok(self.slots, state.current):
            if not slot_ok(self.slots, state.previous):
                raise SlotError(f"{self.slots}: neither slot {state.current!r} nor a previous one")
            _say(f"slot {state.current} is missing: running {state.previous}")
            state = dataclasses.replace(state, current=state.previous, previous="")
            write_state(self.slots, state)
        return state

    def roll_back(self, state: SlotState, reason: str) -> SlotState:
        self.deadlines.pop(state.current, None)
        return roll_back(self.slots, state, reason, "".join(self.tail))

    def run_child(self, state: SlotState) -> int:
        slot = state.current
        env = dict(os.environ)
        env.pop("WATCHDOG_PID", None)  # the agent pings systemd itself (NotifyAccess=all)
        env.update(BUSFLEET_SLOT=slot, BUSFLEET_SLOTS=str(self.slots))
        env.pop("BUSFLEET_TRIAL", None)
        if state.trial is not None:
            env["BUSFLEET_TRIAL"] = "1"
        # -I: the slot's own packages only (not the working directory's, not PYTHONPATH).
        argv = [str(slot_python(self.slots, slot)), "-I", "-m", "busfleet.cli", "agent"]
        _say(f"starting {slot}" + (" on trial" if state.trial else ""))
        self.tail.clear()
        self.child = child = subprocess.Popen(
            [*argv, *self.agent_args], env=env, stderr=subprocess.PIPE, cwd=self.slots / slot
        )
        assert child.stderr is not None
        reader = threading.Thread(target=self._pass_through, args=(child.stderr,), daemon=True)
        reader.start()
        while True:
            try:
                rc = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            deadline = self.deadlines.get(slot)
            if deadline is not None and time.monotonic() > deadline and not self.stopping:
                now = read_state(self.slots)
                if now.trial is None or now.current != slot:
                    self.deadlines.pop(slot, None)  # committed meanwhile
                    continue
                _say(f"{slot} did not prove itself healthy in time: stopping it")
                rc = self.stop_child(child)
                reader.join(5.0)
                self.roll_back(now, f"not healthy within {state_timeout(now):g} s")
                return rc
        reader.join(5.0)
        self.child = None
        return rc

    def stop_child(self, child: subprocess.Popen[bytes]) -> int:
        child.terminate()
        try:
            return child.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    def _pass_through(self, stream: IO[bytes]) -> None:
        """The agent's stderr to ours (the journal), its last lines kept for a failure."""
        out = sys.stderr.buffer
        for line in iter(stream.readline, b""):
            with contextlib.suppress(OSError, ValueError):
                out.write(line)
                out.flush()
            self.tail.append(line.decode("utf-8", "replace"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launcher.py",
        description="Run the busfleet agent from its current slot; roll back a failed update.",
    )
    parser.add_argument("--slots", required=True, help="the slots directory")
    parser.add_argument("--config", required=True, help="agent TOML file")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--trial-grace-s",
        type=float,
        default=GRACE_S,
        help=f"past a trial's time, stop the agent after this much more (default {GRACE_S:g})",
    )
    return parser


def agent_args(args: argparse.Namespace) -> list[str]:
    """What follows `busfleet agent` in the command the launcher runs."""
    return ["--config", args.config, "--log-level", args.log_level]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return Launcher(Path(args.slots), agent_args(args), grace_s=args.trial_grace_s).run()
    except SlotError as exc:
        _say(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
