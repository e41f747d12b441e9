"""The bus detail screen shows a bus's health report (issue 16): in 80 columns, the bus's
texts as written (markup in an operator name stays text)."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path

from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.messages import BusAction
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.requests import DispatchReply, DispatchRequest
from protocols.schemas import FleetEntry

T0 = 1_800_000_000.0
REPORT = {
    "disk_free_mb": 0.0,
    "disk_total_mb": 1.0,
    "disk_free_pct": 0.0,
    "data_used_mb": 2.0,
    "mem_avail_mb": 1942.0,
    "mem_total_mb": 3884.0,
    "load1": 0.42,
    "load5": 0.3,
    "load15": 0.2,
    "temp_c": 55.5,
    "uptime_s": 90_000,
    "agent_uptime_s": 42,
    "version": "0.1.0",
    "slot": "b",
    "clock_synced": False,
    "clock_source": "chrony",
    "modem_signal_pct": 58,
    "modem_tech": "lte",
    "modem_operator": "[@click=app.quit]Telekom[/]",
}


def text_of(app: DashboardApp, path: Path) -> str:
    app.save_screenshot(str(path))
    parts = re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), re.S)
    return html.unescape("".join(parts)).replace("\xa0", " ")


async def test_the_bus_detail_shows_the_health_figures_in_80_columns(
    tmp_path: Path, output_dir: Path
) -> None:
    db = tmp_path / "central.sqlite"
    store = CentralStore(db)
    store.add_events([("bus-07", 1, T0 - 90, "health", 0, json.dumps(REPORT), 0, T0 - 89)])
    dispatch = Dispatch(store, dataclasses.replace(CentralConfig(), db=str(db)), AlarmCenter(store))

    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), T0)
        return codec.decode(DispatchReply, out[-1][1])

    app = create_app(CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=handler)
    async with app.run_test(size=(80, 60)) as pilot:
        app.apply_update([FleetEntry(bus="bus-07", online=True, last_seen=T0)], None, {})
        app.post_message(BusAction("bus-07", "open"))
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, BusDetailScreen) and screen.detail is not None
        text = text_of(app, output_dir / "bus-detail-health.svg")
    store.close()
    flat = re.sub(r"\s+", " ", text)
    shown = [
        "Machine",
        "(90 s ago)",
        "disk 0.0 MB free of 1.0 MB (0 %), data 2.0 MB",
        "memory 1,942 MB available of 3,884 MB",
        "load 0.42 0.30 0.20",
        "CPU temp 55.5 °C",
        "uptime 25 h 0 min",
        "version 0.1.0 (slot b)",
        "clock NOT synchronised (chrony)",
        "modem signal 58 %, lte, [@click=app.quit]Telekom",  # literal, cut to 24
    ]
    assert [s for s in shown if s not in flat] == []
