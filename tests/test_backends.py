"""Hardware backends from one table per room, and the one onboard backoff policy."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import get_args

import pytest

from onboard.backends import load_backend
from onboard.backoff import Backoff
from onboard.config import PortalSection, parse_config
from onboard.errors import BackendError, ConfigError
from onboard.gps.backends import BACKENDS as GPS_BACKENDS
from onboard.gps.backends import GpsSourceName
from onboard.portal.firewall import NullFirewall
from onboard.portal.firewalls import FIREWALLS, FirewallName, open_firewall
from onboard.vehicle.backends import BACKENDS as CAN_BACKENDS
from onboard.vehicle.backends import CanInterfaceName, frame_source
from onboard.vehicle.pycan import VirtualFrames
from onboard.vehicle.replay import ReplayFrames


@pytest.mark.parametrize(
    ("names", "table"),
    [(GpsSourceName, GPS_BACKENDS), (CanInterfaceName, CAN_BACKENDS), (FirewallName, FIREWALLS)],
)
def test_the_names_a_config_may_spell_are_the_table_keys(names: object, table: object) -> None:
    assert isinstance(table, dict)
    assert set(get_args(names)) == set(table)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[gps]\nsource = 'glonass'", "gps.source"),
        ("[can]\ninterface = 'pcan'", "can.interface"),
        ("[portal]\nfirewall = 'iptables'", "portal.firewall"),
    ],
)
def test_a_name_outside_its_table_is_refused_with_its_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.key == key


def test_an_unknown_backend_is_a_typed_lookup_error_listing_the_known_ones() -> None:
    with pytest.raises(BackendError) as info:
        frame_source("pcan", "can0")
    err = info.value
    assert isinstance(err, LookupError) and isinstance(err, ConfigError)
    assert (err.name, err.key) == ("pcan", "can.interface")
    assert set(err.known) == set(CAN_BACKENDS)


def test_a_backend_whose_module_is_missing_says_so() -> None:
    table = {"ghost": ("onboard.no_such_module", "Ghost")}
    with pytest.raises(BackendError, match=r"cannot load onboard\.no_such_module"):
        load_backend("gps", table, "ghost", object)


def test_a_table_entry_that_is_not_a_backend_is_refused() -> None:
    with pytest.raises(BackendError, match="is not a"):
        load_backend("can", {"x": ("onboard.backoff", "Backoff")}, "x", ReplayFrames)


def test_each_name_gives_its_backend() -> None:
    assert isinstance(frame_source("virtual", "vcan-test"), VirtualFrames)
    assert isinstance(frame_source("replay", "/tmp/x.log"), ReplayFrames)
    assert isinstance(open_firewall(PortalSection(firewall="null")), NullFirewall)


def test_the_tables_load_no_backend_library_until_one_is_chosen() -> None:
    code = (
        "import sys, onboard.config, onboard.gps, onboard.vehicle; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('can', 'serial', 'aiohttp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_backoff_bound_grows_by_half_and_stops_at_the_cap() -> None:
    policy = Backoff(cap_s=10.0, rng=random.Random(1))
    bounds = []
    for _ in range(12):
        bounds.append(policy.bound())
        delay = policy.next_delay()
        assert 0.0 <= delay <= bounds[-1]
    assert bounds[:3] == [1.0, 1.5, 2.25]
    assert max(bounds) == 10.0 and bounds[-1] == 10.0
    policy.reset()
    assert policy.bound() == 1.0


def test_the_exponent_stops_at_ten() -> None:
    policy = Backoff(cap_s=1e6)
    policy.attempt = 40
    assert policy.bound() == pytest.approx(1.5**10)


async def test_iterating_tries_at_once_and_then_sleeps_between_attempts() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = Backoff(cap_s=5.0, first_s=2.0, rng=random.Random(7), sleep=sleep)
    attempts = []
    async for attempt in policy:
        attempts.append(attempt)
        if len(attempts) == 4:
            break
    assert attempts == [0, 1, 2, 3]
    assert len(slept) == 3
    assert all(0.0 <= s <= b for s, b in zip(slept, [2.0, 3.0, 4.5], strict=True))


def test_a_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(cap_s=0)
