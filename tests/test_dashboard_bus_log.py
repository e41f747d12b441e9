"""The bus log view of the dashboard: `l` on a bus's detail asks the bus for its log and shows
the lines, literal (markup in a bus's line stays text). Central is its real dispatch code on a
real store; the bus is the agent's real `logs` handler on a real log file and outbox, its
answer stored at central as the ingest stores it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from textual.widgets import RichLog

from central.config import CentralConfig
from central.dashboard.app import create_app
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.bus_log import BusLogScreen
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from onboard.link.commands import Commands
from onboard.link.outbox import Outbox
from onboard.logs.redact import Redactor
from onboard.logs.remote import LogCommands
from protocols import codec, topics
from protocols.requests import DispatchReply, DispatchRequest
from protocols.schemas import Event

BUS = "bus-07"


def write_log(path: Path, now: float) -> None:
    path.parent.mkdir(parents=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now - 5))
    path.write_text(
        f"{stamp} {BUS} INFO busfleet.onboard.agent: agent {BUS} starting\n"
        f"{stamp} {BUS} WARNING busfleet.onboard.link: [bold]not markup[/] [@click=app.quit]x\n"
        f"{stamp} {BUS} INFO busfleet.onboard.link: link up password=s3cr3t\n"
    )


async def test_l_on_the_bus_detail_shows_the_bus_log_literally(tmp_path: Path) -> None:
    now = time.time()
    log_file = tmp_path / "bus" / "logs" / "agent.log"
    write_log(log_file, now)
    outbox = Outbox(tmp_path / "bus" / "agent.sqlite")
    bus = Commands(outbox, LogCommands(log_file, outbox, Redactor()).handlers())
    config = dataclasses.replace(CentralConfig(), db=str(tmp_path / "central.sqlite"))
    store = CentralStore(config.db)
    dispatch = Dispatch(store, config, AlarmCenter(store))

    def deliver(payload: bytes) -> None:
        """The bus runs the command; its answer reaches central's store as ingest puts it."""
        bus.receive(payload)
        for row in outbox.pending(10, kind="cmd_ack"):
            event = codec.decode(Event, row.body)
            data = codec.encode_json(event.data)
            store.add_events([(BUS, event.seq, event.t, event.kind, 0, data, 0, time.time())])
            store.answer_command(BUS, str(event.data["id"]), "ok", None, event.t)
            outbox.confirm([(row.seq, row.seq)])

    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request))
        for topic, payload, _ in out[:-1]:
            if topic == topics.command(BUS):
                deliver(payload)
        return codec.decode(DispatchReply, out[-1][1])

    app = create_app(CentralConfig(), user="eve", connect=False, handler=handler)
    try:
        async with app.run_test(size=(150, 40)) as pilot:
            app.push_screen(BusDetailScreen(BUS))
            await pilot.pause(0.2)
            await pilot.press("l")
            for _ in range(50):
                await pilot.pause(0.1)
                screen = app.screen
                if isinstance(screen, BusLogScreen) and screen.lines:
                    break
            screen = app.screen
            assert isinstance(screen, BusLogScreen)
            assert len(screen.lines) == 3
            assert f"agent {BUS} starting" in screen.lines[0]
            assert "[bold]not markup[/] [@click=app.quit]x" in screen.lines[1]
            assert "s3cr3t" not in "\n".join(screen.lines)
            view = screen.query_one("#log-lines", RichLog)
            shown = "\n".join(strip.text for strip in view.lines)
            assert "[bold]not markup[/]" in shown  # drawn as written
            await pilot.press("escape")
            assert isinstance(app.screen, BusDetailScreen)
    finally:
        store.close()
        outbox.close()
