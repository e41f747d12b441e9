"""tests/tcp_cut.py, the relay the live timetable test cuts: it relays, it cuts, and it stops."""

from __future__ import annotations

import socket

from tests.tcp_cut import CuttableRelay


def test_the_relay_relays_cuts_and_its_accept_thread_ends_with_the_block() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with CuttableRelay(server.getsockname()[1]) as relay:
            bus = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
            broker, _ = server.accept()
            broker.settimeout(10)
            bus.sendall(b"hello")
            assert broker.recv(5) == b"hello"
            relay.cut()
            assert bus.recv(5) == b""  # the bus's link dropped
            broker.close()
            bus.close()
            thread = relay._thread
        # The block ended: the thread that accepted is gone, not blocked in accept() (where
        # closing the listening socket alone leaves it).
        thread.join(0)  # no wait: __exit__ joined it
        assert not thread.is_alive()
