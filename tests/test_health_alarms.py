"""Fleet health at central (issue 16): the buses' `health` and `agent_start` events through the
real ingest into a real store (both backends), the alarms they raise and clear, the figures the
bus detail and `FleetHealth` answer, and the screen's and the CLI's text for people."""

from __future__ import annotations

from central.config import CentralConfig, parse_central_config
from central.fleet.alarms import ACTIVE, CLEARED
from central.fleet.health import HealthParams, disk_low, figure_lines, packed
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Ctx, Dispatch
from central.service.health_requests import health_params
from central.service.ingest import Ingest
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.requests import Detail, FleetHealth
from protocols.schemas import Event, EventBatch, Presence, Scalar

T0 = 1_800_000_000.0
BUS = "bus-h1"
LOW: dict[str, Scalar] = {
    "disk_free_mb": 0.0,
    "disk_total_mb": 1.0,
    "disk_free_pct": 0.0,
    "data_used_mb": 1.3,
    "clock_synced": True,
    "clock_source": "timedatectl",
    "version": "0.1.0",
    "slot": "b",
}
FINE: dict[str, Scalar] = {**LOW, "disk_free_mb": 800.0, "disk_total_mb": 1000.0}
FINE["disk_free_pct"] = 80.0


class Bus:
    """One bus's events as it sends them: numbered, live or backfilled."""

    def __init__(self, ingest: Ingest, bus: str = BUS) -> None:
        self.ingest, self.bus, self.seq = ingest, bus, 0
        birth = Presence(bus=bus, online=True, session=1, t=T0)
        ingest.handle(topics.presence(bus), codec.encode(birth), T0)
        ingest.take_dirty()  # its fleet entry stored, as the service does every fleet_publish_s

    def send(
        self, kind: str, data: dict[str, Scalar], now: float, *, backfill: bool = False
    ) -> None:
        self.seq += 1
        event = Event(seq=self.seq, t=now if not backfill else now - 86_400, kind=kind, data=data)
        batch = EventBatch(bus=self.bus, events=[event], backfill=backfill)
        self.ingest.handle(topics.events(self.bus), codec.encode(batch), now)


def open_alarms(center: AlarmCenter) -> list[tuple[str, str]]:
    return sorted((a.kind, a.state) for a in center.alarms() if a.state != "closed")


def test_a_disk_low_report_raises_once_and_a_report_with_room_clears_it(central_db: str) -> None:
    ingest = Ingest(open_store(central_db))
    bus = Bus(ingest)
    bus.send("health", FINE, T0)
    assert ingest.alarms.alarms() == []
    bus.send("health", LOW, T0 + 60)
    bus.send("health", LOW, T0 + 120)  # still low: the same alarm, not another
    (alarm,) = ingest.alarms.alarms()
    assert (alarm.kind, alarm.state, alarm.bus) == ("disk_low", ACTIVE, BUS)
    assert alarm.text == "0.0 MB free of 1.0 MB (0 %)"
    out = ingest.alarms.take_outgoing()  # published retained, for every dashboard
    assert [(t, r) for t, _, r in out] == [(topics.alarm(alarm.id), True)]
    bus.send("health", FINE, T0 + 180)
    assert open_alarms(ingest.alarms) == [("disk_low", CLEARED)]
    assert ingest.alarms.counters["raised"] == 1


def test_the_mb_threshold_and_the_share_are_read_from_central_toml() -> None:
    config = parse_central_config(
        "[central]\nhealth_disk_free_pct = 0\nhealth_disk_free_mb = 500\n"
        "health_restarts = 5\nhealth_restart_window_s = 60\n"
    )
    p = health_params(config)
    assert p == HealthParams(disk_free_pct=0.0, disk_free_mb=500.0, restarts=5, restart_window_s=60)
    assert disk_low(FINE, p) is False  # 800 MB free: 80 % no longer matters
    assert disk_low({**FINE, "disk_free_mb": 499.0}, p) is True
    assert disk_low({"disk_free_mb": None}, p) is None  # no figure: no decision


def test_an_unsynchronised_clock_raises_and_clears_and_unknown_says_nothing(
    central_db: str,
) -> None:
    ingest = Ingest(open_store(central_db))
    bus = Bus(ingest)
    bus.send("health", {**FINE, "clock_synced": None}, T0)
    assert ingest.alarms.alarms() == []
    bus.send("health", {**FINE, "clock_synced": False}, T0 + 60)
    assert open_alarms(ingest.alarms) == [("clock_unsynced", ACTIVE)]
    bus.send("health", {**FINE, "clock_synced": None}, T0 + 120)  # unknown: still raised
    assert open_alarms(ingest.alarms) == [("clock_unsynced", ACTIVE)]
    bus.send("health", FINE, T0 + 180)
    assert open_alarms(ingest.alarms) == [("clock_unsynced", CLEARED)]


def test_a_bus_that_keeps_restarting_raises_once_and_clears_when_it_stops(central_db: str) -> None:
    ingest = Ingest(open_store(central_db))
    bus = Bus(ingest)
    start: dict[str, Scalar] = {"version": "0.1.0", "slot": "a"}
    bus.send("agent_start", start, T0)
    bus.send("agent_start", start, T0 + 100)
    ingest.tick(T0 + 101)
    bus.seq -= 1  # the second start sent again (its receipt was lost): it counts once
    bus.send("agent_start", start, T0 + 150)
    ingest.tick(T0 + 151)
    assert ingest.alarms.alarms() == []
    bus.send("agent_start", start, T0 + 200)
    bus.send("agent_start", start, T0 + 300)
    (alarm,) = ingest.alarms.alarms()
    assert (alarm.kind, alarm.state, alarm.severity) == ("restarting", ACTIVE, 3)
    assert alarm.text == "3 starts within 10 min (v0.1.0)"
    ingest.tick(T0 + 650)  # T0+100 .. T0+300 still within 600 s: three
    assert open_alarms(ingest.alarms) == [("restarting", ACTIVE)]
    ingest.tick(T0 + 750)  # only two left in the window
    assert open_alarms(ingest.alarms) == [("restarting", CLEARED)]


def test_backfilled_health_and_starts_raise_nothing_but_are_the_figures_shown(
    central_db: str,
) -> None:
    store = open_store(central_db)
    ingest = Ingest(store)
    bus = Bus(ingest)
    for i in range(5):
        bus.send("agent_start", {"version": "0.1.0"}, T0 + i, backfill=True)
    bus.send("health", {**LOW, "clock_synced": False}, T0 + 10, backfill=True)
    ingest.tick(T0 + 11)
    assert ingest.alarms.alarms() == []
    dispatch = Dispatch(store, CentralConfig(db=central_db), ingest.alarms)
    c = Ctx(store=store, user="tester", now=T0 + 20)
    result, _ = dispatch.handlers[Detail](c, Detail(bus=BUS))
    assert result["health.disk_free_mb"] == 0.0
    assert result["health.clock_synced"] is False
    assert result["health.backfill"] is True
    dispatch.handlers[FleetHealth](c, FleetHealth())
    (record,) = c.records
    assert record["bus"] == BUS and record["data_used_mb"] == 1.3 and record["backfill"] is True
    # a live report afterwards is the newest one, and it alarms
    bus.send("health", LOW, T0 + 30)
    assert open_alarms(ingest.alarms) == [("disk_low", ACTIVE)]
    result, _ = dispatch.handlers[Detail](c, Detail(bus=BUS))
    assert result["health.backfill"] is False and result["health.clock_synced"] is True


def test_a_central_restarted_clears_the_alarms_the_one_before_left_open(central_db: str) -> None:
    store = open_store(central_db)
    bus = Bus(Ingest(store))
    bus.send("health", {**LOW, "clock_synced": False}, T0)
    for i in range(3):
        bus.send("agent_start", {}, T0 + i)
    store.close()
    store = open_store(central_db)
    again = Ingest(store)  # another central on the same database
    assert open_alarms(again.alarms) == [
        ("clock_unsynced", ACTIVE),
        ("disk_low", ACTIVE),
        ("restarting", ACTIVE),
    ]
    bus.ingest = again
    bus.send("health", LOW, T0 + 60)  # disk still low: not raised twice
    assert again.alarms.counters["raised"] == 0
    bus.send("health", FINE, T0 + 120)
    again.tick(T0 + 130)  # it cannot know the starts: the restarting alarm waits a window
    assert open_alarms(again.alarms) == [
        ("clock_unsynced", CLEARED),
        ("disk_low", CLEARED),
        ("restarting", ACTIVE),
    ]
    again.tick(T0 + 729)
    assert ("restarting", ACTIVE) in open_alarms(again.alarms)
    again.tick(T0 + 731)  # a whole window without a start since it took over
    assert ("restarting", CLEARED) in open_alarms(again.alarms)


def test_the_figures_read_for_people_fit_eighty_columns_and_keep_the_bus_text_literal() -> None:
    data: dict[str, Scalar] = {
        **LOW,
        "mem_avail_mb": 1942.0,
        "mem_total_mb": 3884.0,
        "load1": 0.5,
        "load5": 0.25,
        "load15": 0.1,
        "temp_c": 55.5,
        "uptime_s": 90_000,
        "agent_uptime_s": 42,
        "clock_synced": False,
        "modem_signal_pct": 67,
        "modem_tech": "lte",
        "modem_operator": "[bold]Op[/]" + "x" * 100,
        "slot": "y" * 200,
    }
    rows = dict(figure_lines(data, T0 - 30, T0))
    assert rows["disk"] == "0.0 MB free of 1.0 MB (0 %), data 1.3 MB"
    assert rows["memory"] == "1,942 MB available of 3,884 MB"
    assert rows["load"] == "0.50 0.25 0.10"
    assert rows["CPU temp"] == "55.5 °C"
    assert rows["uptime"] == "25 h 0 min" and rows["agent up"] == "42 s"
    assert rows["clock"] == "NOT synchronised (timedatectl)"
    assert rows["modem"].startswith("signal 67 %, lte, [bold]Op[/]")
    assert rows["report"].endswith("(30 s ago)")
    text = packed(figure_lines(data, T0 - 30, T0))
    assert all(len(line) <= 74 for line in text)
    assert dict(figure_lines({}, None, T0)) == {"report": "none yet"}


def test_the_bus_detail_screen_shows_the_figures_as_literal_text() -> None:
    from central.dashboard.screens.bus_detail import machine_text

    result: dict[str, Scalar] = {f"health.{k}": v for k, v in LOW.items()}
    result.update({"health.t": T0 - 5, "now": T0, "health.modem_operator": "[red]x[/red]"})
    text = machine_text(result)
    assert "disk 0.0 MB free of 1.0 MB (0 %)" in text.plain
    assert "[red]x[/red]" in text.plain  # shown as written, not as markup
    assert all(len(line) <= 76 for line in text.plain.splitlines())
