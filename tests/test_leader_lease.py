"""The live role of a group of central instances: one holder at a time, by a lease in the
database (central/store/lease.py, central/service/leader.py), on both backends."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.service.leader import Leadership
from central.store import lease
from central.store.db import CentralStore
from central.store.pg_store import open_store


@pytest.fixture
def stores(central_db: str) -> Iterator[tuple[CentralStore, CentralStore]]:
    """Two instances' connections to one database."""
    one = open_store(central_db)
    two = open_store(central_db)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def test_a_lease_has_one_holder_until_it_expires_or_is_released(
    stores: tuple[CentralStore, CentralStore],
) -> None:
    one, two = stores
    assert lease.hold(one, "live", "a", 1000.0, 10.0) == ("a", 1010.0)
    assert lease.hold(two, "live", "b", 1005.0, 10.0) == ("a", 1010.0)  # not b's while a holds
    assert lease.hold(one, "live", "a", 1008.0, 10.0) == ("a", 1018.0)  # renewed
    assert lease.hold(two, "live", "b", 1017.0, 10.0) == ("a", 1018.0)
    assert lease.hold(two, "live", "b", 1019.0, 10.0) == ("b", 1029.0)  # expired: b's now
    assert lease.hold(one, "live", "a", 1020.0, 10.0) == ("b", 1029.0)
    assert not lease.release(one, "live", "a")  # only the holder releases it
    assert lease.release(two, "live", "b")
    assert lease.hold(one, "live", "a", 1021.0, 10.0) == ("a", 1031.0)  # free at once
    assert lease.hold(two, "other", "b", 1021.0, 10.0) == ("b", 1031.0)  # leases are by name


def test_only_one_of_two_instances_plays_the_role_and_the_other_takes_it_once_released(
    stores: tuple[CentralStore, CentralStore],
) -> None:
    one, two = stores
    a = Leadership(one, "a", lease_s=10.0)
    b = Leadership(two, "b", lease_s=10.0)
    assert a.step() and not b.step()
    assert a.holds() and not b.holds()
    assert a.step() and not b.step()  # renewals keep it a's
    a.release()
    assert not a.holds()
    assert b.step() and not a.step()


def test_a_holder_that_cannot_renew_gives_the_role_up_before_its_lease_expires(
    tmp_path: Path,
) -> None:
    db = tmp_path / "central.sqlite"
    store = CentralStore(db)
    try:
        a = Leadership(store, "a", lease_s=1.5, safety_s=0.5)
        assert a.step()
        taken = time.monotonic()
        # Another process holds the database's write lock past the store's busy timeout: the
        # renewal fails, and by then the holder's own deadline has passed.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            assert not a.step()
            assert time.monotonic() - taken > 1.0
            assert not a.holds()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        expires = store.db.execute("SELECT expires FROM leases WHERE name = 'live'").fetchone()
        assert expires is not None  # the row still names a: the role was given up by a's clock
    finally:
        store.close()


def test_two_instances_contending_for_the_role_never_both_play_it(central_db: str) -> None:
    roles: dict[str, Leadership] = {}
    stop = threading.Event()
    ready = threading.Barrier(3)

    def contend(name: str) -> None:
        store = open_store(central_db)
        try:
            role = roles[name] = Leadership(store, name, lease_s=0.6, safety_s=0.2)
            ready.wait()
            steps = 0
            while not stop.is_set():
                steps += 1
                if role.step() and steps % 25 == 0:
                    # Stalls past its lease now and then (a released role would hand over at
                    # once: two samples a moment apart could then see both): the other takes it.
                    stop.wait(0.7)
                time.sleep(0.005)
        finally:
            store.close()

    threads = [threading.Thread(target=contend, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    ready.wait()
    seen: set[str] = set()
    both = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        playing = {n for n, r in roles.items() if r.holds()}
        seen |= playing
        both += len(playing) > 1
    stop.set()
    for t in threads:
        t.join()
    assert seen == {"a", "b"}  # the role moved between them
    assert both == 0
