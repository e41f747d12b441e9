"""The agent's side of a software update (issue 16): fetch, install, switch, prove, commit.

When the applied desired state names a release other than the one running, the runtime
fetches it (the injected fetch: python-tuf against central's repository, onboard/update/
fetch.py; in a thread, retried with onboard/backoff.py while it cannot be fetched; a refused
release is reported once and never tried again), installs it into a new slot (a thread: pip
takes seconds, the loop runs on), waits for a safe moment (no trip running, inside
update.maintenance_window if one is set), switches the slots' state (the new slot current,
on trial) and asks the agent to exit with RESTART_EXIT: the launcher starts the new slot.

Started on trial (BUSFLEET_TRIAL), the new version must prove itself healthy within the
trial's time: connected to the broker, a desired state applied in this process at least as
new as the one that named the release, and a telemetry record of this process stored by
central (its outbox receipt). Then it commits (the trial ends, the previous slot is kept) and
records `update_ok`; if it cannot, it exits with TRIAL_FAILED_EXIT and the launcher rolls
back. The previous agent, started again, finds the launcher's failure record and reports it
as `update_failed` (with the log tail), clearing the record only once the event is in the
outbox.

Without a launcher (no BUSFLEET_SLOTS: a developer's `busfleet agent`) a wanted release is
reported as failed with the reason, and nothing else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Protocol

from onboard.backoff import Backoff
from onboard.config import AgentConfig
from onboard.errors import FetchFailed, ReleaseRefused, UpdateError
from onboard.link.mqtt import Link
from onboard.link.outbox import Outbox
from onboard.remote import AgentCommands
from onboard.telemetry import Telemetry
from onboard.update import slots as slotdir
from onboard.update.fetch import fetch_release
from onboard.update.launcher import (
    RESTART_EXIT,
    TRIAL_FAILED_EXIT,
    SlotError,
    SlotState,
    clear_failure,
    read_failure,
    read_state,
    remember,
    slot_version,
    write_state,
)
from onboard.update.settings import UpdateSection
from onboard.update.window import in_window
from protocols.errors import CodecError
from protocols.release import (
    EVENT_UPDATE_FAILED,
    EVENT_UPDATE_OK,
    EVENT_UPDATE_REFUSED,
    parse_version,
)
from protocols.schemas import DesiredState, ReleaseRef, ReleaseState, Scalar

__all__ = ["Health", "UpdateRuntime", "make_fetch", "running_version"]

log = logging.getLogger("busfleet.onboard.update")

Fetch = Callable[[ReleaseRef], Path]  # the verified release tar of a ref (blocking)
RecordEvent = Callable[[str, dict[str, Scalar], int], int]
NOT_INSTALLED = "not installed in slots (see deploy/README.md)"
SAFE_POLL_S = 5.0  # how often a waiting switch looks whether the moment is safe
PROVE_POLL_S = 0.5
MAX_TAIL = 4000  # characters of a failed version's log tail in its event
MAX_ERROR = 2000  # ReleaseState.error


def running_version() -> str:
    """The busfleet version this process runs (the slot's installed distribution)."""
    try:
        return importlib.metadata.version("busfleet")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def make_fetch(settings: UpdateSection, work_dir: Path, running: str) -> Fetch | None:
    """The fetch the runtime uses: central's TUF repository (update.repo_url, verified against
    update.trusted_root); None: updates are off. There is no other way in."""
    if not settings.repo_url:
        return None
    return partial(
        fetch_release,
        repo_url=settings.repo_url,
        trusted_root=Path(settings.trusted_root),
        work_dir=work_dir,
        running=running,
    )


class AgentParts(Protocol):
    """What the runtime takes from the agent (onboard/agent.py)."""

    config: AgentConfig
    link: Link
    outbox: Outbox
    telemetry: Telemetry
    remote: AgentCommands

    def record_event(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int: ...


def receipted(outbox: Outbox, telemetry: Telemetry) -> Callable[[], bool]:
    """Whether the first telemetry record this process stored has central's receipt."""

    def check() -> bool:
        seq = telemetry.first_seq
        if seq is None:
            return False
        waiting = outbox.pending(1, after=seq - 1, kind="telemetry")
        return not (waiting and waiting[0].seq == seq)

    return check


@dataclasses.dataclass(slots=True)
class Health:
    """What the new version must show before it commits (the agent's parts answer)."""

    connected: Callable[[], bool]
    telemetry_stored: Callable[[], bool]  # a record of this process has central's receipt


class UpdateRuntime:
    """One bus's software: the update of the release the desired state names."""

    def __init__(
        self,
        settings: UpdateSection,
        *,
        fetch: Fetch | None,
        record_event: RecordEvent,
        on_change: Callable[[], None],
        trip_running: Callable[[], bool],
        restart: asyncio.Event,
        health: Health,
        environ: Mapping[str, str] | None = None,
        running: str | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.fetch = fetch
        self.record_event = record_event
        self.on_change = on_change
        self.trip_running = trip_running
        self.restart = restart
        self.health = health
        self.running = running or running_version()
        self.slots = Path(env["BUSFLEET_SLOTS"]) if env.get("BUSFLEET_SLOTS") else None
        self.slot = env.get("BUSFLEET_SLOT", "")
        self.on_trial = env.get("BUSFLEET_TRIAL") == "1"
        self.wanted: ReleaseRef | None = None
        self.desired_version = 0  # of the applied document that names `wanted`
        self.live_version = 0  # the newest desired version applied in this process
        self.changed = asyncio.Event()
        self.phase = "trial" if self.on_trial else "idle"
        self.error = ""
        self.tried: dict[str, str] = {}  # versions failed in this process (install), why
        self.said: set[tuple[str, str]] = set()  # (version, reason) of refusals reported
        self.exit_code: int | None = None  # what `busfleet agent` exits with, when set
        self.previous = ""
        self.poll_s = SAFE_POLL_S

    @classmethod
    def of_agent(
        cls, agent: AgentParts, trip_running: Callable[[], bool], on_change: Callable[[], None]
    ) -> UpdateRuntime:
        """The runtime of the agent's bus, wired to its parts."""
        config = agent.config
        running = running_version()
        work_dir = Path(config.bus.data_dir) / "releases"
        return cls(
            config.update,
            fetch=make_fetch(config.update, work_dir, running),
            record_event=lambda kind, data, severity: agent.record_event(
                kind, data, severity=severity
            ),
            on_change=on_change,
            trip_running=trip_running,
            restart=agent.remote.restart_requested,
            health=Health(agent.link.connected.is_set, receipted(agent.outbox, agent.telemetry)),
            running=running,
        )

    # -- what the agent hands in ----------------------------------------------------------
    def offer(self, applied: DesiredState | None, *, live: bool = True) -> None:
        """The applied desired state (at start from disk, then each one from central)."""
        if applied is not None and live:
            self.live_version = max(self.live_version, applied.version)
        ref = applied.release if applied is not None else None
        if ref != self.wanted:
            self.wanted = ref
            self.desired_version = applied.version if applied is not None else 0
            self.changed.set()

    def report(self) -> ReleaseState:
        wanted = self.wanted.version if self.wanted is not None else ""
        return ReleaseState(
            running=self.running[:64],
            slot=self.slot[:128],
            previous=self.previous[:64],
            wanted=wanted if wanted != self.running else "",
            phase=self.phase,
            error=self.error[:MAX_ERROR],
        )

    def _set(self, phase: str, error: str = "") -> None:
        if (phase, error) != (self.phase, self.error):
            self.phase, self.error = phase, error
            self.on_change()

    # -- the task ---------------------------------------------------------------------------
    async def run(self) -> None:
        if self.slots is not None:
            state = self._state()
            if state is not None:
                self.previous = slot_version(state.previous) if state.previous else ""
            self._report_failure()
            trial = self.on_trial and state is not None and state.trial is not None
            if trial and state is not None and not await self._prove(state):
                return
            if state is not None and state.trial is None:
                await self._prune(state)
        if self.phase == "trial":
            self._set("idle")
        while True:
            await self.changed.wait()
            self.changed.clear()
            await self._follow()

    async def _prune(self, state: SlotState) -> None:
        """Slots a power cut left behind (cut between a switch and its prune): all but the
        current, the previous and one of the wanted version (installed, not yet switched to).
        In a thread: a slot is a virtual environment of thousands of files on flash."""
        assert self.slots is not None
        wanted = self.wanted.version if self.wanted is not None else ""
        keep = slotdir.installed(self.slots, wanted) if wanted else None
        kept = (keep,) if keep else ()
        for name in await asyncio.to_thread(slotdir.prune, self.slots, state, keep=kept):
            log.info("removed the slot %s (neither current nor previous)", name)

    def _state(self) -> SlotState | None:
        assert self.slots is not None
        try:
            return read_state(self.slots)
        except SlotError as exc:
            log.error("slots: %s", exc)
            return None

    def _report_failure(self) -> None:
        """A trial the launcher rolled back: reported by the agent it fell back to, once the
        event is in the outbox the record goes (at least once, never lost)."""
        assert self.slots is not None
        record = read_failure(self.slots)
        if record is None or record.get("slot") == self.slot:
            return
        version = record.get("version", "?")
        reason = record.get("reason", "")
        data: dict[str, Scalar] = {
            "version": version,
            "previous": self.running,
            "reason": reason,
            "log_tail": record.get("log_tail", "")[-MAX_TAIL:],
        }
        self.record_event(EVENT_UPDATE_FAILED, data, 3)
        clear_failure(self.slots)
        log.error("release %s was rolled back: %s", version, reason)

    async def _prove(self, state: SlotState) -> bool:
        """On trial: healthy within the trial's time -> commit; else exit for a rollback."""
        assert self.slots is not None and state.trial is not None
        trial = state.trial
        self._set("trial")
        deadline = time.monotonic() + trial.timeout_s
        while time.monotonic() < deadline:
            if self._healthy(trial.desired):
                await asyncio.to_thread(slotdir.commit, self.slots, self.slot)
                previous = slot_version(state.previous) if state.previous else ""
                data: dict[str, Scalar] = {
                    "version": self.running,
                    "previous": previous,
                    "slot": self.slot,
                }
                self.record_event(EVENT_UPDATE_OK, data, 0)
                log.info("release %s committed (previous %s)", self.running, previous)
                self._set("idle")
                return True
            await asyncio.sleep(PROVE_POLL_S)
        why = self._unhealthy(trial.desired)
        log.error("not healthy within %g s (%s): exiting for a rollback", trial.timeout_s, why)
        self.exit_code = TRIAL_FAILED_EXIT
        self.restart.set()
        return False

    def _healthy(self, desired: int) -> bool:
        return not self._unhealthy(desired)

    def _unhealthy(self, desired: int) -> str:
        if not self.health.connected():
            return "not connected to the broker"
        if self.live_version < desired:
            return f"desired state {desired} not applied"
        if not self.health.telemetry_stored():
            return "no telemetry stored at central"
        return ""

    async def _follow(self) -> None:
        """Work on the wanted release until it runs, fails or another is wanted."""
        ref = self.wanted
        if ref is None or ref.version == self.running:
            self._set("idle")
            return
        why = self._not_now(ref)
        if why is not None:
            phase, error = why
            self._set(phase, error)
            return
        assert self.slots is not None and self.fetch is not None
        release = await self._fetch(ref)
        if release is None or ref != self.wanted:
            return
        self._set("installing")
        try:
            name = await asyncio.to_thread(slotdir.install_release, release, self.slots)
        except UpdateError as exc:
            self._fail(ref, f"install failed: {exc}")
            return
        finally:
            self._discard(release)
        if await self._wait_safe(ref):
            await self._switch(ref, name)

    def _not_now(self, ref: ReleaseRef) -> tuple[str, str] | None:
        """Why the wanted release is not worked on, as (phase, error), or None."""
        try:
            parse_version(ref.version)
        except CodecError as exc:
            return "refused", str(exc)
        if self.slots is None:
            return "failed", NOT_INSTALLED
        state = self._state()
        if state is None:
            return "failed", f"{NOT_INSTALLED}: no readable state in {self.slots}"
        if ref.version in state.refused:
            return "refused", state.refused[ref.version]
        if ref.version in state.failed:
            return "failed", state.failed[ref.version]
        if ref.version in self.tried:
            return "failed", self.tried[ref.version]
        if self.fetch is None:
            return "failed", "software updates are off on this bus (update.repo_url is empty)"
        return None

    async def _fetch(self, ref: ReleaseRef) -> Path | None:
        assert self.fetch is not None and self.slots is not None
        self._set("fetching")
        retries = Backoff(cap_s=300.0, first_s=2.0)
        async for attempt in retries:
            if ref != self.wanted:
                return None
            try:
                return await asyncio.to_thread(self.fetch, ref)
            except ReleaseRefused as exc:
                if exc.lasting:
                    self._refuse(ref, str(exc))
                    return None
                # The repository cannot be trusted now (expired or badly signed metadata, a
                # rollback, no such target yet): refused and reported, never remembered; the
                # same release may be good once central's repository is.
                self._refuse(ref, str(exc), lasting=False)
            except (FetchFailed, OSError) as exc:
                log.warning("release %s: cannot fetch (attempt %d): %s", ref.version, attempt, exc)
                self._set("fetching", f"cannot fetch yet: {exc}")
        return None  # pragma: no cover - the backoff iterates forever

    def _refuse(self, ref: ReleaseRef, reason: str, *, lasting: bool = True) -> None:
        assert self.slots is not None
        if (ref.version, reason) not in self.said:  # a passing refusal, reported once per reason
            self.said.add((ref.version, reason))
            log.error("release %s refused: %s", ref.version, reason)
            self.record_event(EVENT_UPDATE_REFUSED, {"version": ref.version, "reason": reason}, 2)
        if lasting:
            self._remember(refused=(ref.version, reason))
        self._set("refused", reason)

    def _fail(self, ref: ReleaseRef, reason: str) -> None:
        log.error("release %s: %s", ref.version, reason)
        data: dict[str, Scalar] = {
            "version": ref.version,
            "previous": self.running,
            "reason": reason,
            "log_tail": "",
        }
        self.record_event(EVENT_UPDATE_FAILED, data, 3)
        self.tried[ref.version] = reason  # not again in this process (a full disk may clear)
        self._set("failed", reason)

    def _remember(self, *, refused: tuple[str, str]) -> None:
        """A refused version, in the state file: never fetched again, restarts or not."""
        assert self.slots is not None
        state = self._state()
        if state is not None:
            table = remember(state.refused, *refused)
            write_state(self.slots, dataclasses.replace(state, refused=table))

    def _discard(self, release: Path) -> None:
        """The fetched tar once installed (the TUF fetch's copy in the bus's work dir)."""
        with contextlib.suppress(OSError):
            release.unlink()

    async def _wait_safe(self, ref: ReleaseRef) -> bool:
        """Until no trip runs and the maintenance window is open; False if another release
        is wanted meanwhile."""
        while ref == self.wanted:
            try:
                inside = in_window(self.settings.maintenance_window, time.localtime())
            except ValueError as exc:
                self._set("waiting", f"update.maintenance_window: {exc}")
                inside = False
            else:
                trip = self.trip_running()
                window = self.settings.maintenance_window
                if trip:
                    self._set("waiting", "a trip is running")
                elif not inside:
                    self._set("waiting", f"outside the maintenance window {window}")
                else:
                    return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self.changed.wait()
            if ref != self.wanted:
                return False
            self.changed.clear()
        return False

    async def _switch(self, ref: ReleaseRef, name: str) -> None:
        """The state file points at the new slot (on trial), the slot before last goes (in a
        thread: thousands of files), and the agent stops to be started in the new one."""
        assert self.slots is not None
        timeout_s, desired = self.settings.health_timeout_s, self.desired_version
        state = await asyncio.to_thread(
            slotdir.switch, self.slots, name, timeout_s=timeout_s, desired=desired
        )
        await asyncio.to_thread(slotdir.prune, self.slots, state)
        log.info("switched to %s (release %s): restarting into it", name, ref.version)
        self._set("trial")
        self.exit_code = RESTART_EXIT
        self.restart.set()
