"""The portal over real HTTP on loopback: probes, terms, acceptance, RFC 8908, feedback.

Each "phone" is an aiohttp client bound to its own loopback address (127.0.0.N), so the
portal sees distinct clients; the null firewall stands in for nftables (tests/
test_portal_netns.py runs the real one). Time is a fake clock the tests move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from busfleet.broker.launch import free_port
from onboard.config import PortalSection
from onboard.errors import ConfigError
from onboard.portal import (
    AdSlot,
    Announcement,
    NullFirewall,
    Portal,
    PortalContent,
    Settings,
    Stop,
    build_portal,
    make_app,
)
from onboard.portal.sessions import Limits
from onboard.portal.store import SessionStore

# What each OS expects from its probe when online (REFERENCE.md section 4).
PROBES = {
    "apple": ("captive.apple.com", "/hotspot-detect.html"),
    "android": ("connectivitycheck.gstatic.com", "/generate_204"),
    "windows": ("www.msftconnecttest.com", "/connecttest.txt"),
    "firefox": ("detectportal.firefox.com", "/success.txt"),
}


def looks_online(os_name: str, status: int, body: str) -> bool:
    if os_name == "android":
        return status == 204
    expected = {"apple": "Success", "windows": "Microsoft Connect Test", "firefox": "success"}
    return status == 200 and expected[os_name] in body


CONTENT = PortalContent(
    line="131",
    destination="Cairns City <Interchange>",
    next_stops=(Stop("Lake St & Shields St"), Stop("Cairns Central", expected=1_700_000_000.0)),
    announcements=(Announcement("Umleitung ab Montag", "Diversion from Monday"),),
    ad=AdSlot("Stadtfest", "Samstag auf dem Marktplatz"),
)


@dataclass
class Rig:
    portal: Portal
    server: TestServer
    firewall: NullFirewall
    store_path: Path
    now: list[float]
    feedback: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def phone(self, n: int) -> aiohttp.ClientSession:
        """A client session from 127.0.0.N: a phone of its own."""
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{n}", 0), force_close=True)
        return aiohttp.ClientSession(self.url, connector=connector)


def mac_of(ip: str, *, fresh: bool = False) -> str:
    return f"02:00:00:00:00:{int(ip.rsplit('.', 1)[1]):02x}"


async def start_rig(
    tmp_path: Path, *, limits: Limits | None = None, content: object = CONTENT
) -> Rig:
    now = [1000.0]
    firewall = NullFirewall()
    store_path = tmp_path / "portal.sqlite"
    feedback: list[tuple[str, str]] = []
    settings = Settings(
        public_url="http://127.0.0.1/",
        limits=limits or Limits(prelogin_idle_s=60, idle_s=120, session_s=3600, max_clients=2),
        feedback_per_hour=3,
        require_mac=True,
    )
    provider = content if callable(content) else (lambda: content)
    portal = Portal(
        settings,
        firewall,
        SessionStore(store_path, boot_id="test-boot"),
        content=provider,  # type: ignore[arg-type]
        on_feedback=lambda c, t: feedback.append((c, t)),
        neighbours=mac_of,
        clock=lambda: now[0],
    )
    await portal.start()
    server = TestServer(make_app(portal), host="127.0.0.1")
    await server.start_server()
    return Rig(portal, server, firewall, store_path, now, feedback)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await start_rig(tmp_path)
    yield r
    await r.server.close()
    r.portal.store.close()


async def probe(phone: aiohttp.ClientSession, os_name: str) -> tuple[int, str, dict[str, str]]:
    host, path = PROBES[os_name]
    async with phone.get(path, headers={"Host": host}, allow_redirects=False) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


async def csrf(phone: aiohttp.ClientSession, path: str = "/") -> str:
    """The form token of the page at `path`, as the phone's browser would submit it."""
    async with phone.get(path) as resp:
        found = CSRF.search(await resp.text())
    assert found, f"no form token on {path}"
    return found.group(1)


async def accept(phone: aiohttp.ClientSession, lang: str = "de") -> aiohttp.ClientResponse:
    form = {"accept": "yes", "lang": lang, "csrf": await csrf(phone)}
    async with phone.post("/accept", data=form, allow_redirects=False) as resp:
        await resp.read()
        return resp


@pytest.mark.parametrize("os_name", sorted(PROBES))
async def test_before_acceptance_every_os_probe_is_sent_to_the_portal(
    rig: Rig, os_name: str
) -> None:
    async with rig.phone(2) as phone:
        status, body, headers = await probe(phone, os_name)
    assert status == 302
    assert headers["Location"] == "http://127.0.0.1/"
    assert not looks_online(os_name, status, body)


@pytest.mark.parametrize("os_name", sorted(PROBES))
async def test_after_acceptance_every_os_probe_reports_online(rig: Rig, os_name: str) -> None:
    async with rig.phone(2) as phone:
        resp = await accept(phone)
        assert resp.status == 303 and resp.headers["Location"].startswith("/status")
        status, body, _ = await probe(phone, os_name)
    assert looks_online(os_name, status, body)
    (client,) = rig.firewall.allowed
    assert (client.ip, client.mac) == ("127.0.0.2", mac_of("127.0.0.2"))


async def test_the_terms_page_speaks_german_unless_the_phone_prefers_english(rig: Rig) -> None:
    async with rig.phone(2) as phone:
        async with phone.get("/") as resp:
            german = await resp.text()
        async with phone.get("/", headers={"Accept-Language": "fr-FR, en;q=0.8, de;q=0.5"}) as r:
            english = await r.text()
        async with phone.get("/?lang=de", headers={"Accept-Language": "en"}) as r:
            asked = await r.text()
    assert resp.status == 200 and '<html lang="de">' in german and "Nutzungsbedingungen" in german
    assert '<html lang="en">' in english and "Terms of use" in english
    assert '<html lang="de">' in asked
    assert 'name="viewport"' in german  # mobile first
    assert "Content-Security-Policy" in resp.headers


async def test_acceptance_needs_the_box_ticked(rig: Rig) -> None:
    async with rig.phone(2) as phone:
        form = {"lang": "en", "csrf": await csrf(phone)}
        async with phone.post("/accept", data=form, allow_redirects=False) as resp:
            body = await resp.text()
        status, _, _ = await probe(phone, "android")
    assert resp.status == 400 and "tick the box" in body
    assert status == 302 and rig.firewall.allowed == {}


async def test_the_captive_portal_api_follows_rfc_8908(rig: Rig) -> None:
    async with rig.phone(3) as phone:
        async with phone.get("/api/captive") as before:
            before_json = json.loads(await before.text())
        await accept(phone)
        rig.now[0] += 600
        async with phone.get("/api/captive") as after:
            after_json = json.loads(await after.text())
    assert before.headers["Content-Type"] == "application/captive+json"
    assert before.headers["Cache-Control"] == "private"
    assert before_json["captive"] is True
    assert before_json["user-portal-url"] == "http://127.0.0.1/"
    assert after_json["captive"] is False
    assert after_json["seconds-remaining"] == 3600 - 600
    assert after_json["can-extend-session"] is False
    assert "bytes-remaining" not in after_json  # no volume limit set


async def test_a_full_bus_turns_the_next_phone_away_until_a_place_is_free(rig: Rig) -> None:
    async with rig.phone(2) as a, rig.phone(3) as b, rig.phone(4) as c:
        assert (await accept(a)).status == 303
        assert (await accept(b)).status == 303
        form = {"accept": "yes", "lang": "en", "csrf": await csrf(c)}
        async with c.post("/accept", data=form) as full:
            text = await full.text()
        assert full.status == 503 and "full" in text
        form = {"lang": "en", "csrf": await csrf(a, "/status")}
        async with a.post("/logout", data=form, allow_redirects=False) as out:
            assert out.status == 303
        assert (await accept(c)).status == 303
    assert sorted(cl.ip for cl in rig.firewall.allowed) == ["127.0.0.3", "127.0.0.4"]


async def test_the_status_page_shows_the_bus_from_local_data_escaped(rig: Rig) -> None:
    async with rig.phone(2) as phone:
        await accept(phone, "en")
        async with phone.get("/status?lang=en") as resp:
            page = await resp.text()
    assert "You are online" in page
    assert "131" in page and html.escape("Cairns City <Interchange>") in page
    assert "<Interchange>" not in page
    assert "Lake St &amp; Shields St" in page and "Cairns Central" in page
    assert "Diversion from Monday" in page and "Stadtfest" in page
    assert "http://" not in page.replace('"http://127.0.0.1/"', "")  # nothing from the internet


async def test_a_failing_content_provider_leaves_the_pages_working(tmp_path: Path) -> None:
    def broken() -> PortalContent:
        raise RuntimeError("journey tracker down")

    r = await start_rig(tmp_path, content=broken)
    try:
        async with r.phone(2) as phone, phone.get("/status") as resp:
            assert resp.status == 200 and "Noch nicht verbunden" in await resp.text()
    finally:
        await r.server.close()
        r.portal.store.close()


def form_token(page: str) -> str:
    start = page.index('name="token" value="') + len('name="token" value="')
    return page[start : page.index('"', start)]


async def test_feedback_is_escaped_sent_once_and_rate_limited_per_phone(rig: Rig) -> None:
    hostile = '<img src=x onerror="alert(1)"> Sitz\x00 kaputt'
    async with rig.phone(2) as phone, rig.phone(3) as other:
        async with phone.get("/feedback") as form:
            token = form_token(await form.text())
        data = {"token": token, "category": "cleanliness", "text": hostile, "lang": "de"}
        for _ in range(2):  # the same form twice (a reload): one message
            async with phone.post("/feedback", data=data) as resp:
                thanks = await resp.text()
                assert resp.status == 200
        assert "<img" not in thanks and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in thanks
        for i in range(2):
            async with phone.get("/feedback") as form:
                token = form_token(await form.text())
            async with phone.post("/feedback", data={"token": token, "text": f"m{i}"}) as resp:
                assert resp.status == 200
        async with phone.get("/feedback") as form:
            token = form_token(await form.text())
        async with phone.post("/feedback", data={"token": token, "text": "spam"}) as limited:
            assert limited.status == 429
        async with other.get("/feedback") as form:
            token = form_token(await form.text())
        async with other.post("/feedback", data={"token": token, "text": "ok"}) as resp:
            assert resp.status == 200
    assert rig.feedback == [
        ("cleanliness", '<img src=x onerror="alert(1)"> Sitz kaputt'),
        ("", "m0"),
        ("", "m1"),
        ("", "ok"),
    ]


async def test_an_oversized_form_is_refused(rig: Rig) -> None:
    async with rig.phone(2) as phone, phone.post("/feedback", data={"text": "x" * 100_000}) as r:
        assert r.status == 413
    assert rig.feedback == []


async def test_after_the_idle_timeout_the_phone_is_captive_again(rig: Rig) -> None:
    async with rig.phone(2) as phone:
        await accept(phone)
        rig.now[0] += 119
        await rig.portal.sync()
        assert looks_online("android", *(await probe(phone, "android"))[:2])
        rig.now[0] += 121  # nothing since the probe
        await rig.portal.sync()
        status, _, _ = await probe(phone, "android")
    assert status == 302 and rig.firewall.allowed == {}


async def test_a_restarted_portal_keeps_the_session(tmp_path: Path) -> None:
    first = await start_rig(tmp_path)
    async with first.phone(5) as phone:
        await accept(phone)
    await first.server.close()
    first.portal.store.close()
    second = await start_rig(tmp_path)
    try:
        async with second.phone(5) as phone, phone.get("/api/captive") as resp:
            assert json.loads(await resp.text())["captive"] is False
        async with second.phone(6) as stranger, stranger.get("/api/captive") as resp:
            assert json.loads(await resp.text())["captive"] is True
        # The null firewall forgot the client in the restart; its next visit re-allows it.
        assert [c.ip for c in second.firewall.allowed] == ["127.0.0.5"]
    finally:
        await second.server.close()
        second.portal.store.close()


def section(tmp_path: Path, **changes: object) -> PortalSection:
    base = PortalSection(
        enabled=True, listen_host="127.0.0.1", listen_port=0, address="127.0.0.1",
        sync_every_s=0.05, stats_every_s=0.1,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_the_service_serves_and_reports_statistics_without_personal_data(
    tmp_path: Path,
) -> None:
    stats: list[dict[str, int]] = []
    service = build_portal(section(tmp_path), data_dir=tmp_path, on_stats=stats.append)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        host, port = service.addresses[0]
        async with aiohttp.ClientSession(f"http://{host}:{port}") as phone:
            form = {"accept": "yes", "csrf": await csrf(phone)}
            async with phone.post("/accept", data=form) as resp:
                assert resp.status == 200  # followed to the status page
            for _ in range(100):
                if any(s["accepted"] for s in stats):
                    break
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sum(s["accepted"] for s in stats) == 1
    assert stats[-1]["clients"] == 1
    assert "127.0.0.1" not in json.dumps(stats)


async def test_with_a_certificate_the_api_is_also_served_over_https(tmp_path: Path) -> None:
    from busfleet.broker.tls import make_dev_certificates

    certs = make_dev_certificates(tmp_path / "tls", hosts=["localhost", "127.0.0.1"])
    conf = section(
        tmp_path,
        hostname="localhost",
        tls_port=0,
        tls_cert=str(certs.cert_file),
        tls_key=str(certs.key_file),
    )
    service = build_portal(conf, data_dir=tmp_path)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        ports = {port for _, port in service.addresses}
        verify = ssl.create_default_context(cafile=str(certs.ca_file))
        answers = []
        for port in ports:
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"https://localhost:{port}/api/captive", ssl=verify) as resp,
                ):
                    answers.append((resp.headers["Content-Type"], json.loads(await resp.text())))
            except aiohttp.ClientError:
                continue  # the plain HTTP port
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert answers == [
        (
            "application/captive+json",
            {
                "captive": True,
                "user-portal-url": "http://localhost/",
                "venue-info-url": "http://localhost/status",
            },
        )
    ]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"walled_garden": "city.example.org"}, "portal"),
        ({"firewall": "nftables", "passenger_if": "wlan0; flush ruleset"}, "portal"),
        ({"tls_cert": "/nonexistent.pem"}, "portal.tls_cert"),
    ],
)
def test_a_bad_portal_section_is_a_config_error(
    tmp_path: Path, changes: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_portal(section(tmp_path, **changes), data_dir=tmp_path)
    assert info.value.key == key


def test_the_agent_turns_feedback_and_statistics_into_outbox_events(tmp_path: Path) -> None:
    from onboard.agent import Agent
    from onboard.config import parse_config
    from protocols import codec
    from protocols.schemas import Event

    config = parse_config(
        f'[bus]\ndata_dir = "{tmp_path}"\n[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        '[portal]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = 0\n'
        "[mqtt]\ninsecure_dev_broker = true\n"
    )
    agent = Agent(config)
    try:
        assert agent.portal is not None
        assert agent.portal.on_feedback is not None and agent.portal.on_stats is not None
        agent.portal.on_feedback("wifi", "slow <b>")
        agent.portal.on_stats({"clients": 3, "accepted": 5})
        events = [codec.decode(Event, p.body) for p in agent.outbox.pending(10, kind="event")]
    finally:
        agent.outbox.close()
    assert [(e.kind, e.data) for e in events] == [
        ("passenger_feedback", {"category": "wifi", "text": "slow <b>"}),
        ("portal_stats", {"clients": 3, "accepted": 5}),
    ]


async def test_a_portal_without_the_nftables_firewall_is_a_warning_in_the_log_and_to_central(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from onboard.agent import Agent
    from onboard.config import parse_config
    from protocols import codec
    from protocols.schemas import Event

    config = parse_config(
        f'[bus]\ndata_dir = "{tmp_path}"\n[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        "[display]\nenabled = false\n[driver]\nenabled = false\n[ads]\nenabled = false\n"
        '[portal]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = 0\nfirewall = "null"\n'
        f"[mqtt]\nport = {free_port()}\ninsecure_dev_broker = true\n"
    )
    agent = Agent(config)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(0.5)  # the check runs first thing in run(); give it a margin
        events = [codec.decode(Event, p.body) for p in agent.outbox.pending(50, kind="event")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    found = [(e.kind, e.severity, e.data) for e in events if e.kind == "portal_unenforced"]
    assert found == [("portal_unenforced", 2, {"firewall": "null"})]
    logged = [r for r in caplog.records if "NOTHING IS ENFORCED" in r.getMessage()]
    assert [r.levelname for r in logged] == ["WARNING"]


@pytest.mark.parametrize("path", ["/accept", "/logout"])
async def test_a_cross_site_post_to_accept_or_logout_is_refused(rig: Rig, path: str) -> None:
    async with rig.phone(2) as phone:
        assert (await accept(phone)).status == 303  # online; the forged POSTs below change nothing
        token = await csrf(phone, "/status")
        forged = [
            ({}, {"accept": "yes", "lang": "en"}),  # a form on another site: no token
            ({}, {"accept": "yes", "csrf": "0" * 32}),  # a guessed token
            ({"Origin": "http://evil.test"}, {"accept": "yes", "csrf": token}),  # another site
        ]
        for headers, form in forged:
            async with phone.post(path, data=form, headers=headers, allow_redirects=False) as r:
                body = await r.text()
            assert r.status == 403, (headers, form)
            assert CSRF.search(body), "the refusal offers the form again, with a fresh token"
        async with rig.phone(3) as other:  # another phone's token is not this phone's
            other_token = await csrf(other)
        async with phone.post(path, data={"accept": "yes", "csrf": other_token}) as r:
            assert r.status == 403
        assert [c.ip for c in rig.firewall.allowed] == ["127.0.0.2"]  # still online
        # The portal's own form (Origin "null" under no-referrer, or the portal's own origin).
        for origin in ("null", rig.url):
            form = {"accept": "yes", "lang": "en", "csrf": token}
            headers = {"Origin": origin}
            async with phone.post(path, data=form, headers=headers, allow_redirects=False) as r:
                assert r.status == 303, origin
