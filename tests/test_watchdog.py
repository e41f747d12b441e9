"""sd_notify over a real unix datagram socket, as systemd hands it to a Type=notify service."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.broker.launch import free_port
from busfleet.watchdog import Notifier, keep_alive, supervise, watchdog_interval
from onboard.agent import Agent
from onboard.config import parse_config


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """What systemd listens on: a datagram socket; its path goes in NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_a_notifier_sends_state_lines_as_one_datagram(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, path = systemd_socket
    notifier = Notifier(path)
    assert notifier.ready("ingesting")
    assert received(sock) == ["READY=1", "STATUS=ingesting"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.sent == 2


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"busfleet-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).stopping()
        assert received(sock) == ["STOPPING=1"]


def test_without_systemd_every_call_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.watchdog()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone")).watchdog() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_comes_from_systemds_environment(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == expected


async def test_keep_alive_pings_while_healthy_and_withholds_pings_when_not(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, path = systemd_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    healthy = True
    task = asyncio.create_task(keep_alive(Notifier(path), 0.02, lambda: healthy))
    try:
        for _ in range(3):
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            assert data == b"WATCHDOG=1"
        healthy = False
        while True:  # drain what was sent before the change
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.1)  # five intervals: a healthy loop would have pinged
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        task.cancel()


async def test_supervise_says_ready_pings_and_says_stopping_when_cancelled(
    systemd_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = systemd_socket
    sock.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(supervise(Notifier(path)))
    assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 5) == b"READY=1"
    assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 5) == b"WATCHDOG=1"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = []
    while True:
        try:
            lines.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert lines[-1] == b"STOPPING=1"


async def test_an_agent_whose_telemetry_loop_stopped_withholds_the_watchdog_ping(
    systemd_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = systemd_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    config = parse_config(
        f'[bus]\ndata_dir = "{tmp_path}"\n[mqtt]\nport = {free_port()}\n'
        "insecure_dev_broker = true\n"
        '[gps]\nsource = "none"\n[can]\ninterface = "none"\n[telemetry]\ninterval_s = 0.05\n'
        "[display]\nenabled = false\n[driver]\nenabled = false\n[ads]\nenabled = false\n"
    )
    agent = Agent(config)
    running = asyncio.create_task(agent.run(), name="agent")
    pinging = asyncio.create_task(keep_alive(Notifier(path), 0.1, agent.healthy))
    try:
        for _ in range(3):  # sampling: pings
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), 5) == b"WATCHDOG=1"
        # The telemetry loop dies (a hung sample looks the same from outside: no tick).
        (telemetry,) = [t for t in asyncio.all_tasks() if t.get_name() == "telemetry"]
        telemetry.cancel()
        for _ in range(600):  # until the agent sees it: 10 intervals without a tick
            if not agent.healthy():
                break
            await asyncio.sleep(0.05)
        while True:  # drain what was sent before the loop went stale
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.3)  # six ping periods: a healthy agent would have pinged
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
        assert not agent.healthy() and not running.done()
    finally:
        pinging.cancel()
        running.cancel()
        await asyncio.gather(pinging, running, return_exceptions=True)


def test_central_asks_systemd_for_time_before_a_schema_upgrade_and_not_otherwise(
    systemd_socket: tuple[socket.socket, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from busfleet.commands.central import _extend_start_for_upgrade
    from central.store.db import CentralStore, _statements
    from central.store.schema import MIGRATIONS

    sock, path = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    old = tmp_path / "old.sqlite"  # a database of the previous release: one migration behind
    with sqlite3.connect(old) as conn:
        for script in MIGRATIONS[:-1]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    _extend_start_for_upgrade(str(old))
    lines = received(sock)
    assert lines[0].startswith("EXTEND_TIMEOUT_USEC=")
    assert int(lines[0].partition("=")[2]) >= 60_000_000
    assert lines[1] == "STATUS=upgrading the database schema (migrations to run: 1)"
    CentralStore(old).close()  # upgraded: the next start asks for nothing
    _extend_start_for_upgrade(str(old))
    _extend_start_for_upgrade(str(tmp_path / "new.sqlite"))  # created in no time
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
