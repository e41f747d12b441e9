"""Named people and what they may do (issue 18): each broker account's role at central, checked
before a request is carried out, and the audit log of every change and every refusal.

The rules (central/roles.py) alone; then on central's dispatch over both databases; then the
whole way: the production broker config (TLS, passwords, the city ACL), central serving on
both databases, and each person asking with the CLI under their own broker account.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from busfleet.broker.accounts import CITY_ACL
from busfleet.broker.provision import read_password_file
from busfleet.broker.secure import SecureBroker, run_secure_mosquitto
from busfleet.cli import main
from central import roles
from central.config import CentralConfig
from central.dashboard.app import create_app
from central.dashboard.screens.audit import AuditScreen
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store import audit
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.people_requests import AuditLog, ListPeople, SetRole
from protocols.release_requests import StartRollout
from protocols.requests import (
    Assign,
    AssignPlaylist,
    Detail,
    DispatchReply,
    DispatchRequest,
    ImportMedia,
    ListMedia,
    PlaysReport,
    Request,
    SendMessage,
    SetConfig,
)
from tests.ads_helpers import png
from tests.fleet_helpers import Procs, wait_for
from tests.secure_fleet import central_toml
from tests.test_dashboard_live import until

T0 = 1_800_000_000.0
PEOPLE = {"ada": "admin", "vera": "viewer", "adam": "ads", "dora": "dispatcher"}


def test_service_user_makes_a_persons_broker_account_and_says_how_central_learns_the_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acl = tmp_path / "city.acl"
    acl.write_text(CITY_ACL.read_text())
    for name, role in PEOPLE.items():
        argv = ["bus", "service-user", name, "--role", role, "--acl-file", str(acl)]
        argv += ["--password-file", str(tmp_path / "pw"), "--secret-file", str(tmp_path / name)]
        assert main(argv) == 0
        assert f"busfleet central people set {name} {role}" in capsys.readouterr().out
        assert f"user {name}" not in acl.read_text().splitlines()  # the dispatchers' patterns
    assert set(read_password_file(tmp_path / "pw")) == set(PEOPLE)
    with pytest.raises(SystemExit):
        main(
            [
                "bus",
                "service-user",
                "x",
                "--role",
                "boss",
                "--password-file",
                "p",
                "--secret-file",
                "s",
            ]
        )


def test_each_role_may_send_what_its_desk_needs_and_nothing_more() -> None:
    read = [Detail(bus="b"), ListMedia(), PlaysReport(first="2026-01-01", last="2026-01-02")]
    ads = [AssignPlaylist(bus="b", playlist="p"), ImportMedia(files=[])]
    operate = [Assign(bus="b", trip="t"), SendMessage(text_de="x", text_en="x", targets=["all"])]
    operate += [StartRollout(version="1.0", to=["all"]), SetConfig(buses=["b"], values={})]
    admin = [SetRole(name="x", role="viewer")]
    allowed = {
        "viewer": read,
        "ads": read + ads,
        "dispatcher": read + ads + operate,
        "admin": read + ads + operate + admin,
    }
    everything = read + ads + operate + admin
    for role, may in allowed.items():
        for request in everything:
            assert roles.may(role, request) == (request in may), (role, request)
    assert not any(roles.may(None, r) for r in everything)  # no role: nothing
    assert not any(roles.may("central", r) for r in everything)  # no such role at central


@pytest.fixture
def dispatch(tmp_path: Path, central_db: str) -> Iterator[Dispatch]:
    config = dataclasses.replace(CentralConfig(), db=central_db, media_dir=str(tmp_path / "m"))
    store = open_store(config.db)
    try:
        yield Dispatch(store, config, AlarmCenter(store))
    finally:
        store.close()


async def ask(d: Dispatch, user: str, request: Request, t: float = T0) -> DispatchReply:
    envelope = DispatchRequest(id=f"{user}-{request.__struct_config__.tag}", t=t, request=request)
    out = await d.handle(topics.dispatch_request(user), codec.encode(envelope), t)
    topic, body, _ = out[-1]
    assert topic == topics.dispatch_reply(user)
    return codec.decode(DispatchReply, body)


async def test_before_any_role_nobody_is_checked_and_the_first_role_is_an_admins(
    dispatch: Dispatch,
) -> None:
    assert (await ask(dispatch, "alice", Assign(bus="bus-1", route="R1"))).ok  # as before roles
    first = await ask(dispatch, "alice", SetRole(name="vera", role="viewer"))
    assert not first.ok and "no admin is recorded yet" in first.error
    assert (await ask(dispatch, "alice", SetRole(name="alice", role="admin"))).ok
    stranger = await ask(dispatch, "bob", Assign(bus="bus-1", route="R1"))
    assert not stranger.ok and "'bob' has no role at central" in stranger.error
    last = await ask(dispatch, "alice", SetRole(name="alice", role="viewer"))
    assert not last.ok and "alice is the last admin" in last.error
    assert (await ask(dispatch, "alice", SetRole(name="bob", role="ads"))).ok
    assert (await ask(dispatch, "alice", SetRole(name="bob", role="none"))).ok
    assert audit.role_of(dispatch.store, "bob") is None
    people = await ask(dispatch, "alice", ListPeople())
    assert [(p["name"], p["role"], p["by"]) for p in people.records] == [
        ("alice", "admin", "alice")
    ]


async def test_roles_are_checked_before_the_handler_and_every_change_and_refusal_audited(
    dispatch: Dispatch,
) -> None:
    for name, role in PEOPLE.items():
        assert (await ask(dispatch, "ada", SetRole(name=name, role=role))).ok
    refused = await ask(dispatch, "vera", Assign(bus="bus-1", trip="T1"), T0 + 1)
    assert not refused.ok and not refused.failed
    assert "vera has the role viewer and may only read: not assign" in refused.error
    assert dispatch.store.desired("bus-1") is None  # refused before the handler ran
    assert (await ask(dispatch, "vera", Detail(bus="bus-1"), T0 + 2)).ok  # a viewer reads
    assert (await ask(dispatch, "adam", AssignPlaylist(bus="bus-1", playlist="none"), T0 + 3)).ok
    trip = await ask(dispatch, "adam", Assign(bus="bus-1", trip="T1"), T0 + 4)
    assert not trip.ok and "adam has the role ads" in trip.error
    assert (await ask(dispatch, "dora", Assign(bus="bus-1", trip="T1"), T0 + 5)).ok
    rows = audit.audit_rows(dispatch.store, since=T0 + 1)
    said = [(r["account"], r["role"], r["request"], r["ok"]) for r in rows]
    assert said == [  # vera's Detail, a read that went through, is not audited
        ("vera", "viewer", "assign", False),
        ("adam", "ads", "playlist", True),
        ("adam", "ads", "assign", False),
        ("dora", "dispatcher", "assign", True),
    ]
    assert "trip='T1'" in rows[0]["summary"] and "viewer" in rows[0]["answer"]
    assert '"version"' in rows[3]["answer"]
    mine = await ask(dispatch, "ada", AuditLog(user="adam", since=T0))
    assert [r["request"] for r in mine.records] == ["playlist", "assign"]
    assert len(audit.audit_rows(dispatch.store)) == 8  # with ada's four SetRole


# -- the whole way: the production broker, central serving, the CLI ----------------------------


class Desk:
    """Central serving on `db` behind the secure broker; each person a broker account of the
    city listener (a dispatcher's in the ACL) with a central.toml of their own."""

    def __init__(self, broker: SecureBroker, workdir: Path, db: str) -> None:
        self.broker = broker
        self.workdir = workdir
        self.db = db
        self.procs = Procs(workdir, broker.port)
        for name in PEOPLE:
            broker.add_account(name, "dispatcher")
        self.procs.start("central", "central", "serve", "--config", str(self.toml("central")))

    def toml(self, user: str) -> Path:
        config = self.broker.central_config(
            user,
            db=self.db,
            media_dir=str(self.workdir / "media"),
            media_url="http://127.0.0.1:9/media",
        )
        path = self.workdir / f"{user}.toml"
        path.write_text(central_toml(config))
        return path

    def cli(self, user: str, *argv: str) -> int:
        """`busfleet central ARGV...` as `user`, in this process (pytest captures the output)."""
        return main(["central", argv[0], *argv[1:], "--config", str(self.toml(user))])


@pytest.fixture
def desk(tmp_path: Path, central_db: str) -> Iterator[Desk]:
    with run_secure_mosquitto(tmp_path / "broker", buses=("bus-01",)) as broker:
        desk = Desk(broker, tmp_path, central_db)
        try:
            yield desk
        finally:
            desk.procs.close()


def test_on_the_real_broker_a_viewer_is_refused_and_an_ads_user_assigns_playlists_only(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first role, recorded as soon as central answers: the admin's, by the admin.
    wait_for(lambda: desk.cli("ada", "people", "set", "ada", "admin") == 0, 60, "central")
    for name, role in PEOPLE.items():
        assert desk.cli("ada", "people", "set", name, role) == 0
    capsys.readouterr()

    assert desk.cli("vera", "assign", "bus-01", "--trip", "T1") == 2
    err = capsys.readouterr().err
    assert "vera has the role viewer and may only read: not assign" in err

    (tmp_path / "ad.png").write_bytes(png(4, 4, (200, 10, 10)))
    (tmp_path / "spring.toml").write_text(
        'id = "spring"\ntimezone = "UTC"\n'
        '[[items]]\nid = "a"\nmedia = "ad.png"\nduration_s = 8\n'
        '[[schedules]]\nid = "all"\nitems = ["a"]\n'
    )
    assert desk.cli("adam", "media", "import", str(tmp_path / "ad.png")) == 0
    assert desk.cli("adam", "playlist", "import", str(tmp_path / "spring.toml")) == 0
    assert desk.cli("adam", "playlist", "assign", "spring", "bus-01") == 0
    assert desk.cli("adam", "assign", "bus-01", "--trip", "T1") == 2
    assert (
        "adam has the role ads and may only read and run the advertising" in capsys.readouterr().err
    )

    assert desk.cli("dora", "assign", "bus-01", "--trip", "T1") == 0
    capsys.readouterr()

    assert desk.cli("ada", "audit", "--since", "1h", "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said = [(r["account"], r["role"], r["request"], r["ok"]) for r in rows]
    # ada's own first, then the four (the role written is the one after the request)
    assert said.count(("ada", "admin", "set_role", True)) == len(PEOPLE) + 1
    assert [s for s in said if s[2] != "set_role"] == [
        ("vera", "viewer", "assign", False),
        ("adam", "ads", "import_media", True),
        ("adam", "ads", "import_playlist", True),
        ("adam", "ads", "playlist", True),
        ("adam", "ads", "assign", False),
        ("dora", "dispatcher", "assign", True),
    ]
    assert desk.cli("vera", "audit", "--user", "vera") == 0  # a viewer reads the log
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "vera (viewer)" in lines[0] and "NOT DONE" in lines[0]
    assert "Assign(bus='bus-01', trip='T1'" in lines[0]


async def test_the_dashboards_audit_screen_shows_the_refusal_newest_first(
    dispatch: Dispatch,
) -> None:
    for name, role in PEOPLE.items():
        assert (await ask(dispatch, "ada", SetRole(name=name, role=role))).ok
    marked = "[b]x[/b] [@click=app.quit]"  # a person's words: literal, never markup
    assert not (await ask(dispatch, "vera", Assign(bus="bus-1", trip=marked), T0 + 1)).ok

    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("dora"), codec.encode(request), T0 + 2)
        return codec.decode(DispatchReply, out[-1][1])

    app = create_app(CentralConfig(), user="dora", connect=False, clock=lambda: T0, handler=handler)
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen), "the Audit screen")
        table = app.screen.query_one("#audit", DataTable)
        await until(pilot, lambda: table.row_count == len(PEOPLE) + 1, "the audit rows")
        newest = [str(c) for c in table.get_row_at(0)]
        assert newest[1:4] == ["vera", "viewer", "assign"]
        assert newest[4].startswith("NOT DONE: vera has the role")
        detail = str(app.screen.query_one("#audit-detail", Static).render())
        assert marked in detail and "NOT DONE" in detail
