"""The portal's session table, its store, feedback checks, statistics and the ruleset template.

Pure parts with time passed in; the store on a real SQLite file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onboard.portal.content import Announcement, content_from_state
from onboard.portal.feedback import (
    CATEGORIES,
    MAX_TEXT,
    FeedbackDesk,
    FeedbackRejected,
    clean_text,
    validate,
)
from onboard.portal.firewall import (
    Client,
    FirewallError,
    Ruleset,
    parse_listing,
    parse_networks,
    render_ruleset,
)
from onboard.portal.sessions import (
    TRANSITIONS,
    Event,
    Limits,
    SessionError,
    SessionTable,
    State,
    next_state,
    stored,
)
from onboard.portal.stats import PortalStats
from onboard.portal.store import SessionStore
from protocols.schemas import Assignment, DesiredState, PassengerMessage

MAC = "02:00:00:00:00:01"
MAC2 = "02:00:00:00:00:02"
LIMITS = Limits(prelogin_idle_s=60, idle_s=300, session_s=3600, max_clients=3, max_pending=5)


def table(limits: Limits = LIMITS) -> SessionTable:
    return SessionTable(limits, b"salt" * 8)


# -- the state machine ----------------------------------------------------------------------
def test_a_client_seen_for_the_first_time_is_pending_and_nothing_is_let_through() -> None:
    t = table()
    session, changes = t.seen(MAC, "10.0.0.2", now=0.0)
    assert session.state is State.PENDING
    assert changes == []
    assert not t.is_authorised(session.key)


def test_accepting_the_terms_authorises_the_client_once() -> None:
    t = table()
    t.seen(MAC, "10.0.0.2", 0.0)
    outcome, changes = t.accept(MAC, "10.0.0.2", 5.0)
    assert outcome == "accepted"
    assert [(c.before, c.session.state) for c in changes] == [(State.PENDING, State.AUTHORISED)]
    assert t.seconds_remaining(changes[0].session, 5.0) == LIMITS.session_s
    again, more = t.accept(MAC, "10.0.0.2", 6.0)
    assert again == "already" and more == []


def test_a_pending_client_is_forgotten_after_the_prelogin_idle_timeout_unless_it_returns() -> None:
    t = table()
    t.seen(MAC, "10.0.0.2", 0.0)
    t.seen(MAC2, "10.0.0.3", 0.0)
    t.seen(MAC2, "10.0.0.3", 50.0)  # came back to the portal
    ended = t.tick(LIMITS.prelogin_idle_s + 1)
    assert [(c.event, c.session.ip) for c in ended] == [(Event.PRELOGIN_IDLE, "10.0.0.2")]
    assert t.count(State.PENDING) == 1


def test_an_authorised_session_without_traffic_ends_after_the_idle_timeout() -> None:
    t = table()
    _, changes = t.accept(MAC, "10.0.0.2", 0.0)
    key = changes[0].session.key
    t.counters(key, 1000, 5000, now=100.0)  # traffic keeps it alive
    assert t.tick(100.0 + LIMITS.idle_s - 1) == []
    t.counters(key, 1000, 5000, now=200.0)  # the same counters: no traffic since
    ended = t.tick(100.0 + LIMITS.idle_s)
    assert [c.event for c in ended] == [Event.IDLE]
    assert ended[0].session.state is State.ENDED and t.get(key) is None


def test_a_session_ends_at_its_hard_limit_however_busy_it_is() -> None:
    t = table()
    _, changes = t.accept(MAC, "10.0.0.2", 0.0)
    key = changes[0].session.key
    for minute in range(1, 60):
        t.counters(key, minute * 1000, minute * 1000, now=minute * 60.0)
        assert t.tick(minute * 60.0) == []
    assert [c.event for c in t.tick(LIMITS.session_s)] == [Event.EXPIRED]


def test_the_volume_limit_counts_both_directions_and_survives_a_counter_restart() -> None:
    t = table(Limits(volume_bytes=10_000))
    _, changes = t.accept(MAC, "10.0.0.2", 0.0)
    key = changes[0].session.key
    t.counters(key, 3000, 3000, 1.0)
    t.counters(key, 1000, 0, 2.0)  # the element was added again: counters restarted
    session = t.get(key)
    assert session is not None and session.bytes_used == 7000
    assert t.bytes_remaining(session) == 3000
    changes = t.counters(key, 2000, 2500, 3.0)
    assert [c.event for c in changes] == [Event.ACTIVITY, Event.VOLUME]
    assert sum(c.bytes_up + c.bytes_down for c in changes) == 3500
    assert t.get(key) is None


def test_when_the_bus_is_full_acceptance_is_refused_until_a_place_is_free() -> None:
    t = table()
    keys = [t.accept(f"02:00:00:00:00:1{i}", f"10.0.0.{10 + i}", 0.0)[1][0].session.key
            for i in range(LIMITS.max_clients)]  # fmt: skip
    outcome, _ = t.accept(MAC, "10.0.0.2", 1.0)
    assert outcome == "full"
    assert t.get(t.key_for(MAC, "10.0.0.2")) is not None  # still pending: may try again
    t.logout(keys[0])
    assert t.accept(MAC, "10.0.0.2", 2.0)[0] == "accepted"


def test_too_many_pending_clients_push_out_the_longest_silent_one() -> None:
    t = table()
    for i in range(LIMITS.max_pending):
        t.seen(f"02:00:00:00:01:{i:02x}", f"10.0.1.{i}", now=float(i))
    _, changes = t.seen(MAC, "10.0.0.2", now=100.0)
    assert [(c.event, c.session.ip) for c in changes] == [(Event.EVICTED, "10.0.1.0")]
    assert t.count(State.PENDING) == LIMITS.max_pending


def test_a_new_ip_or_a_new_mac_is_a_new_client() -> None:
    t = table()
    _, changes = t.accept(MAC, "10.0.0.2", 0.0)
    assert t.is_authorised(t.key_for(MAC, "10.0.0.2"))
    assert not t.is_authorised(t.key_for(MAC, "10.0.0.3"))
    assert not t.is_authorised(t.key_for(MAC2, "10.0.0.2"))
    assert MAC not in changes[0].session.key and "10.0.0.2" not in changes[0].session.key


def test_every_event_outside_the_transition_table_is_refused() -> None:
    for state in State:
        for event in Event:
            if (state, event) in TRANSITIONS:
                assert next_state(state, event) is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(SessionError):
                    next_state(state, event)
    assert not [key for key in TRANSITIONS if key[0] is State.ENDED]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["seen", "accept", "traffic", "logout", "tick"]),
        st.integers(0, 6),  # which client
        st.floats(0, 400),  # seconds since the last operation
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_no_sequence_of_events_breaks_the_limits(ops: list[tuple[str, int, float]]) -> None:
    limits = Limits(prelogin_idle_s=100, idle_s=200, session_s=900, max_clients=3, max_pending=4)
    t, now = table(limits), 0.0
    fw_bytes = dict.fromkeys(range(7), 0)
    for op, n, dt in ops:
        now += dt
        mac, ip = f"02:00:00:00:00:{n:02x}", f"10.0.0.{n}"
        if op == "seen":
            t.seen(mac, ip, now)
        elif op == "accept":
            t.accept(mac, ip, now)
        elif op == "traffic":
            fw_bytes[n] += 100
            t.counters(t.key_for(mac, ip), fw_bytes[n], 0, now)
        elif op == "logout":
            t.logout(t.key_for(mac, ip))
        else:
            for change in t.tick(now):
                assert change.session.state is State.ENDED
            for s in t.sessions():  # nothing overdue survives a tick
                if s.state is State.AUTHORISED:
                    assert s.accepted is not None and now - s.accepted < limits.session_s
                    assert now - s.last_seen < limits.idle_s
                else:
                    assert now - s.last_seen < limits.prelogin_idle_s
        assert t.count(State.AUTHORISED) <= limits.max_clients
        assert t.count(State.PENDING) <= limits.max_pending
        assert all(s.state is not State.ENDED for s in t.sessions())


# -- the store ------------------------------------------------------------------------------
def test_an_agent_restart_keeps_the_sessions_and_recognises_their_clients(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "portal.sqlite", boot_id="boot-1")
    t = SessionTable(LIMITS, store.salt)
    _, changes = t.accept(MAC, "10.0.0.2", 100.0)
    t.counters(changes[0].session.key, 500, 700, 150.0)
    store.save([stored(s) for s in t.sessions()])
    store.close()

    again = SessionStore(tmp_path / "portal.sqlite", boot_id="boot-1")
    t2 = SessionTable(LIMITS, again.salt)
    t2.restore(again.load(), now=400.0)
    session = t2.attach(MAC, "10.0.0.2", fw_up=500, fw_down=700)
    assert session is not None and session.state is State.AUTHORISED
    assert session.accepted == 100.0 and session.bytes_used == 1200
    assert t2.tick(400.0 + LIMITS.idle_s - 1) == []  # the restart counted as activity
    assert t2.attach(MAC2, "10.0.0.2") is None


def test_a_restored_client_that_the_firewall_lost_is_let_through_again_on_its_next_visit(
    tmp_path: Path,
) -> None:
    store = SessionStore(tmp_path / "portal.sqlite", boot_id="b")
    t = SessionTable(LIMITS, store.salt)
    t.accept(MAC, "10.0.0.2", 0.0)
    store.save([stored(s) for s in t.sessions()])
    t2 = SessionTable(LIMITS, store.salt)
    t2.restore(store.load(), now=10.0)
    session, changes = t2.seen(MAC, "10.0.0.2", 11.0)
    assert session.state is State.AUTHORISED
    assert [c.event for c in changes] == [Event.REATTACH]


def test_after_a_reboot_every_session_is_forgotten_under_a_new_salt(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "portal.sqlite", boot_id="boot-1")
    t = SessionTable(LIMITS, store.salt)
    t.accept(MAC, "10.0.0.2", 0.0)
    store.save([stored(s) for s in t.sessions()])
    old_salt = store.salt
    store.close()
    rebooted = SessionStore(tmp_path / "portal.sqlite", boot_id="boot-2")
    assert rebooted.load() == []
    assert rebooted.salt != old_salt


def test_no_mac_or_ip_address_is_ever_written_to_disk(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "portal.sqlite", boot_id="b")
    t = SessionTable(Limits(max_clients=50), store.salt)
    clients = [(f"02:ab:cd:ef:00:{i:02x}", f"10.9.8.{i}") for i in range(20)]
    for mac, ip in clients:
        t.accept(mac, ip, 0.0)
    store.save([stored(s) for s in t.sessions()])
    ended = [t.key_for(*c) for c in clients[:10]]
    store.delete(ended)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for mac, ip in clients:
        for form in (mac, mac.replace(":", ""), ip):
            assert form.encode() not in raw
        assert bytes.fromhex(mac.replace(":", "")) not in raw
    for key in ended:  # secure_delete: an ended session's row is overwritten, not left behind
        assert key.encode() not in raw


# -- feedback -------------------------------------------------------------------------------
def test_hostile_feedback_is_cleaned_and_bounded() -> None:
    text = "Bus\x00 dirty\u202e\x1b[31m  seat \r\n\r\n\r\n\r\nrow 3 <script>alert(1)</script>"
    feedback = validate("cleanliness", text)
    assert feedback.text == "Bus dirty[31m seat\n\nrow 3 <script>alert(1)</script>"
    with pytest.raises(FeedbackRejected, match="too_long"):
        validate("", "x" * (MAX_TEXT + 1))
    with pytest.raises(FeedbackRejected, match="empty"):
        validate("", " \n\t\x00 ")
    with pytest.raises(FeedbackRejected, match="category"):
        validate("'; DROP TABLE events; --", "fine")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=1500), st.sampled_from(["", *CATEGORIES, "bogus"]))
def test_feedback_either_passes_clean_or_is_rejected(text: str, category: str) -> None:
    try:
        feedback = validate(category, text)
    except FeedbackRejected as exc:
        assert exc.reason in ("empty", "too_long", "category")
        return
    assert 0 < len(feedback.text) <= MAX_TEXT
    assert feedback.category in ("", *CATEGORIES)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\u200e\u202a-\u202e]", feedback.text)
    assert clean_text(feedback.text) == feedback.text


def test_one_form_sent_twice_reaches_central_once() -> None:
    sent: list[tuple[str, str]] = []
    desk = FeedbackDesk(lambda c, t: sent.append((c, t)), per_hour=5)
    token = desk.tokens.issue("client-a")
    assert desk.submit("client-a", token, "wifi", "slow", now=0.0) == "sent"
    assert desk.submit("client-a", token, "wifi", "slow", now=1.0) == "duplicate"
    assert sent == [("wifi", "slow")]
    with pytest.raises(FeedbackRejected, match="expired"):  # a token of another client
        desk.submit("client-b", desk.tokens.issue("client-a"), "", "hi", now=2.0)


def test_each_client_may_send_a_few_messages_an_hour() -> None:
    sent: list[tuple[str, str]] = []
    desk = FeedbackDesk(lambda c, t: sent.append((c, t)), per_hour=2)
    for i in range(2):
        desk.submit("a", desk.tokens.issue("a"), "", f"m{i}", now=float(i))
    with pytest.raises(FeedbackRejected, match="rate"):
        desk.submit("a", desk.tokens.issue("a"), "", "m2", now=10.0)
    desk.submit("b", desk.tokens.issue("b"), "", "other phone", now=10.0)
    desk.submit("a", desk.tokens.issue("a"), "", "an hour later", now=3601.0)
    assert [t for _, t in sent] == ["m0", "m1", "other phone", "an hour later"]


# -- statistics -----------------------------------------------------------------------------
def test_statistics_are_counts_for_the_period_and_name_nobody() -> None:
    t, stats = table(), PortalStats()
    for i in range(3):
        _, changes = t.accept(f"02:00:00:00:00:2{i}", f"10.0.0.{20 + i}", 0.0)
        stats.observe(changes)
        stats.observe(t.counters(changes[0].session.key, 100, 1000, 1.0))
    stats.clients(t.count(State.AUTHORISED))
    stats.observe(t.logout(t.key_for("02:00:00:00:00:20", "10.0.0.20")))
    stats.clients(t.count(State.AUTHORISED))
    snap = stats.snapshot()
    assert (snap["accepted"], snap["ended_logout"], snap["clients"], snap["clients_max"]) == (
        3, 1, 2, 3,
    )  # fmt: skip
    assert (snap["bytes_up"], snap["bytes_down"]) == (300, 3000)
    assert all(isinstance(v, int) for v in snap.values())
    dumped = json.dumps(snap)
    assert "10.0.0" not in dumped and "02:00" not in dumped
    assert not any(s.key in dumped for s in t.sessions())
    after = stats.snapshot()
    assert after["accepted"] == 0 and after["clients"] == 2


# -- the ruleset template -------------------------------------------------------------------
RULES = Ruleset(passenger_if="br0", address="10.42.0.1", port=8480, uplink_if="wwan0")


def test_the_rendered_ruleset_fills_every_placeholder_and_lists_the_clients() -> None:
    text = render_ruleset(RULES, [(Client("10.42.0.7", MAC), 99.2)])
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "{{" in line]
    assert f"elements = {{ 10.42.0.7 . {MAC} timeout 100s }}" in text
    assert 'iifname "br0" jump passenger_nat' in text
    assert "redirect to :8480" in text
    assert "rate_up" not in text  # no rate limit configured: the block is left out
    assert "masquerade" in "\n".join(code)


def test_optional_blocks_follow_the_settings() -> None:
    limited = Ruleset(passenger_if="br0", address="10.42.0.1", port=8480, rate_kbytes=250)
    text = render_ruleset(limited)
    assert "limit rate over 250 kbytes/second" in text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "masquerade" not in "\n".join(code)  # no uplink_if: NAT is someone else's


@pytest.mark.parametrize(
    "bad",
    [
        {"passenger_if": 'br0" accept; flush ruleset; "'},
        {"address": "10.42.0.1; flush ruleset"},
        {"garden": ("0.0.0.0/0 } ; flush ruleset",)},
        {"table": "t; flush ruleset"},
    ],
)
def test_a_setting_cannot_smuggle_statements_into_the_ruleset(bad: dict[str, object]) -> None:
    values: dict[str, object] = {"passenger_if": "br0", "address": "10.42.0.1", "port": 8480}
    with pytest.raises(FirewallError):
        Ruleset(**{**values, **bad})  # type: ignore[arg-type]
    with pytest.raises(FirewallError):
        render_ruleset(RULES, [(Client("10.42.0.7", "02:00:00:00:00:01 } ; flush ruleset"), 5)])


def test_network_lists_are_checked_and_normalised() -> None:
    assert parse_networks(" 192.0.2.7, 198.51.100.0/24 ,") == ("192.0.2.7/32", "198.51.100.0/24")
    with pytest.raises(FirewallError):
        parse_networks("example.org")


def test_the_listing_gives_each_client_its_counters_in_both_directions() -> None:
    # The shape `nft -j list table` prints (nftables 1.0.6), trimmed to what matters.
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"set": {"name": "clients", "elem": [
                {"elem": {"val": {"concat": ["10.42.0.7", "02:AA:00:00:00:07"]}, "timeout": 60,
                          "expires": 50, "counter": {"packets": 3, "bytes": 180}}},
                {"elem": {"val": {"concat": ["10.42.0.8", "02:aa:00:00:00:08"]}, "timeout": 60,
                          "expires": 50, "counter": {"packets": 0, "bytes": 0}}},
            ]}},
            {"set": {"name": "clients_down", "elem": [
                {"elem": {"val": "10.42.0.7", "counter": {"packets": 2, "bytes": 4000}}},
            ]}},
            {"set": {"name": "garden", "elem": [{"prefix": {"addr": "192.0.2.0", "len": 24}}]}},
        ]
    }  # fmt: skip
    allowed = parse_listing(json.dumps(listing))
    assert [(a.client, a.bytes_up, a.bytes_down) for a in allowed] == [
        (Client("10.42.0.7", "02:aa:00:00:00:07"), 180, 4000),
        (Client("10.42.0.8", "02:aa:00:00:00:08"), 0, 0),
    ]
    with pytest.raises(FirewallError):
        parse_listing("not json")


# -- content from the agent's own state -----------------------------------------------------
def test_the_portal_shows_central_messages_valid_now_by_the_bus_clock() -> None:
    state = DesiredState(
        bus="bus-7",
        version=3,
        assignment=Assignment(route_id="131"),
        messages=[
            PassengerMessage(id="a", text_de="Alt", valid_to=100.0),
            PassengerMessage(id="b", text_de="Später", valid_from=300.0),
            PassengerMessage(id="c", text_de="Jetzt", text_en="Now", priority=1),
            PassengerMessage(id="d", text_de="Auch jetzt", valid_from=100.0, valid_to=300.0),
        ],
    )
    live = Announcement("Umleitung ab Kurhaus", "Diversion from Kurhaus")  # city hall, live
    content = content_from_state(state, [live], now=200.0)
    assert content.line == "131"
    assert [a.text("en") for a in content.announcements] == [
        "Now",
        "Auch jetzt",
        "Diversion from Kurhaus",
    ]
    assert content.announcements[-1].text("de") == "Umleitung ab Kurhaus"
    assert content_from_state(None, [], now=0.0).announcements == ()
