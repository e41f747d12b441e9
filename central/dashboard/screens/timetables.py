"""Timetable versions (issue 14): list them, see what one changed, publish one to buses.

Every GTFS import is a version at central (`busfleet central import-gtfs`, or `g` here). The
screen lists them (`ListTimetables`: when, from where, counts, how many buses were given
each) and shows what the selected one changed against the version before it
(`ShowTimetable`). `p` posts `PublishVersion` up; the app asks for valid-from and the targets
with `publish_form` and sends what `publish_request` makes of the answers, so the rules of
the form live here and the app only decides. A refusal comes back as a notification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.messages import PublishVersion
from central.dashboard.screens.base import DispatchScreen
from central.dashboard.screens.form import Field, FormScreen
from central.dashboard.text import clock, line, lines, plain
from central.when import parse_when
from protocols.requests import (
    DispatchReply,
    ListGroups,
    ListTimetables,
    PublishTimetable,
    Record,
    ShowTimetable,
)

__all__ = [
    "TimetablesScreen",
    "diff_text",
    "parse_valid_from",
    "publish_form",
    "publish_request",
]

KINDS = ("routes", "stops", "trips")
MAX_PAGES = 50  # a central that keeps answering "next" is not followed forever


def parse_valid_from(text: str, now: float) -> float | None:
    """When buses switch, from the form: empty or "now" at once (None), else as
    central/when.py reads it. ValueError says what is allowed."""
    text = text.strip()
    if text in ("", "now"):
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise ValueError(f"valid from: {exc} (or empty for now)") from None


def publish_form(version: int, buses: Sequence[str], groups: Sequence[str]) -> FormScreen:
    """The dialog that asks from when and to whom timetable `version` goes."""
    targets = ["all", *(f"group:{g}" for g in groups), *(f"bus:{b}" for b in buses)]
    fields = [
        Field("valid_from", "Valid from (empty: now; HH:MM, +30m or ISO 8601)"),
        Field("to", "Targets: all, bus:B, group:G (comma-separated)", "all", suggestions=targets),
    ]
    note = "Buses download it ahead and switch at valid-from by their own clock."
    return FormScreen(f"Publish timetable version {version}", fields, note=note)


def publish_request(version: int, values: Mapping[str, str], now: float) -> PublishTimetable:
    """The request the publish form's answers make; ValueError says what is wrong."""
    valid_from = parse_valid_from(values.get("valid_from", ""), now)
    to = [t.strip() for t in values.get("to", "").split(",") if t.strip()]
    if not to:
        raise ValueError("give a target: all, bus:B or group:G")
    return PublishTimetable(version=version, valid_from=valid_from, to=to)


def published_text(request: PublishTimetable) -> str:
    """What the dispatcher is told when central took it ({buses}: filled from the reply)."""
    when = request.valid_from
    since = "at once" if when is None else f"from {clock(when, '%Y-%m-%d %H:%M')}"
    return f"timetable v{request.version} to {{buses}} buses, {since}"


def _count(summary: object, key: str) -> str:
    return str(summary.get(key, "")) if isinstance(summary, dict) else ""


def _ids(value: object) -> str:
    if not isinstance(value, list):
        return ""
    return ", ".join(str(v) for v in value)


def diff_text(record: Mapping[str, Any]) -> Text:
    """One version and what changed against the one before it, as literal text."""
    version = record.get("version")
    size = record.get("size")
    head = [
        f"v{version}",
        f"imported {clock(record.get('imported'), '%Y-%m-%d %H:%M')}",
        f"from {record.get('source') or '?'}",
        f"{size:,} bytes" if isinstance(size, int) else "",
        f"sha256 {str(record.get('sha256') or '')[:16]}…",
    ]
    out = [plain(" · ".join(h for h in head if h), "bold")]
    previous = record.get("previous")
    if previous is None:
        out.append(plain("the first version: everything in it is new"))
    else:
        out.append(plain(f"changed against v{previous}:"))
    for kind in KINDS:
        c = record.get(kind)
        if not isinstance(c, dict):
            continue
        counts = ", ".join(f"{c.get(w, 0)} {w}" for w in ("added", "removed", "changed"))
        out.append(line((f"{kind:<7}", "bold"), f" {counts}"))
        for what in ("added", "removed", "changed"):
            ids = _ids(c.get(f"{what}_ids"))
            if ids:
                more = "…" if isinstance(c.get(what), int) and c[what] > ids.count(",") + 1 else ""
                out.append(plain(f"  {what}: {ids}{more}"[:300]))
    return lines(out)


async def every_record(
    ask: Callable[[Any], Awaitable[DispatchReply]], request: ListTimetables | ListGroups
) -> tuple[list[Record], str]:
    """All pages of a listing: (records, "") or (what came, central's refusal)."""
    records: list[Record] = []
    for _ in range(MAX_PAGES):
        reply = await ask(request)
        if not reply.ok:
            return records, reply.error
        records.extend(reply.records)
        after = reply.result.get("next")
        if not isinstance(after, int) or after <= request.offset:
            break
        request = msgspec.structs.replace(request, offset=after)
    return records, ""


class TimetablesScreen(DispatchScreen):
    FOLLOWS_FLEET = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "publish", "Publish version"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.versions: list[Record] = []
        self.groups: list[str] = []
        self.shown: Record | None = None  # the selected version's changes, as central said
        self._mounted = False

    def body(self) -> ComposeResult:
        yield Static("Timetable versions (p: publish the selected one to buses)", classes="section")
        yield DataTable(id="versions", cursor_type="row")
        yield Static("What it changed", classes="section")
        yield Static("", id="diff")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#versions", DataTable)
        table.add_columns("version", "imported", "source", *KINDS, "bytes", "buses")
        table.focus()
        self._mounted = True
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="timetables", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        versions, error = await every_record(self.dashboard.ask, ListTimetables())
        groups, _ = await every_record(self.dashboard.ask, ListGroups())
        self.groups = [str(g.get("name")) for g in groups]
        self.versions = versions
        table = self.query_one("#versions", DataTable)
        selected = self.selected_version()
        table.clear()
        for v in versions:
            summary = v.get("summary")
            cells = (
                v.get("version"),
                clock(v.get("imported"), "%Y-%m-%d %H:%M"),
                v.get("source"),
                *(_count(summary, k) for k in KINDS),
                v.get("size"),
                v.get("buses"),
            )
            table.add_row(*map(plain, cells), key=str(v.get("version")))
        if error:
            self.query_one("#diff", Static).update(plain(f"cannot list: {error}", "red"))
            return
        if not versions:
            self.query_one("#diff", Static).update(
                plain("no timetable yet: import a GTFS feed (g, or busfleet central import-gtfs)")
            )
            return
        keys = [str(v.get("version")) for v in versions]
        row = keys.index(str(selected)) if str(selected) in keys else len(keys) - 1
        table.move_cursor(row=row)  # the newest version, first: the one to publish
        self._show(int(keys[row]))

    def selected_version(self) -> int | None:
        table = self.query_one("#versions", DataTable)
        if not table.rows:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return int(key) if key and key.isdigit() else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key and key.isdigit():
            self._show(int(key))

    @work(group="timetable-diff", exclusive=True, exit_on_error=False)
    async def _show(self, version: int) -> None:
        reply = await self.dashboard.ask(ShowTimetable(version=version))
        diff = self.query_one("#diff", Static)
        if not reply.ok or not reply.records:
            diff.update(plain(f"cannot show v{version}: {reply.error or 'no answer'}", "red"))
            return
        self.shown = reply.records[0]
        diff.update(diff_text(self.shown))

    def action_publish(self) -> None:
        version = self.selected_version()
        if version is None:
            self.notify("no timetable version to publish: import a feed first", timeout=5)
            return
        self.post_message(PublishVersion(version, list(self.groups)))

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._mounted:  # shown again: a version may have been imported or published
            self.action_reload()
