"""systemd's notify protocol without libsystemd: READY=1, WATCHDOG=1, STOPPING=1, STATUS=.

The units in deploy/systemd/ say `Type=notify` and `WatchdogSec=`: systemd then hands the
service a datagram socket in NOTIFY_SOCKET and the interval in WATCHDOG_USEC, and restarts the
service when the pings stop. Pinging from a task of the service's own event loop means a hung
loop (a blocking call, a deadlock) stops the pings and gets the process restarted; a
`healthy` callable can make the ping depend on more (the agent's telemetry loop ticking).

It lives in busfleet/ (composition) so that both the agent and central can use it through
the service runner; without NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("busfleet.watchdog")


class Notifier:
    """Sends state lines to systemd's notify socket; a no-op when there is none."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        # "@name" is a socket in the abstract namespace (systemd's usual choice).
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` ("READY=1", ...) as one datagram; False if there is no socket or it fails.

        Never raises: the service must keep running whatever happens to systemd's socket.
        """
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        """The service is up: systemd ends `start` here for Type=notify units."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def extend_start(self, seconds: float, status: str) -> bool:
        """Ask systemd for `seconds` more before it gives up on the start (a long, known task
        such as a schema upgrade, which TimeoutStartSec did not foresee)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}", f"STATUS={status}")


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """systemd's watchdog timeout in seconds (WATCHDOG_USEC), or None if it asked for none.

    WATCHDOG_PID, when set, names the process that must ping: a child that inherited the
    environment does not.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


async def keep_alive(
    notifier: Notifier,
    timeout_s: float,
    healthy: Callable[[], bool] = lambda: True,
) -> None:
    """Ping WATCHDOG=1 at half the timeout while `healthy()` holds; runs until cancelled.

    Half the timeout is what sd_watchdog_enabled(3) recommends: one late ping is not a restart.
    """
    while True:
        if healthy():
            notifier.watchdog()
        else:
            log.warning("not healthy: watchdog ping withheld")
        await asyncio.sleep(timeout_s / 2)


async def supervise(
    notifier: Notifier | None = None, healthy: Callable[[], bool] = lambda: True
) -> None:
    """READY=1 now, then the watchdog pings if systemd asked for them; STOPPING=1 when cancelled.

    Run it as one more named task beside the service's own, e.g. in the service runner.
    """
    notifier = notifier or Notifier()
    if not notifier.enabled:
        return
    notifier.ready()
    interval = watchdog_interval()
    try:
        if interval is not None:
            await keep_alive(notifier, interval, healthy)
        else:
            await asyncio.Event().wait()  # nothing to ping; stay to say STOPPING at the end
    finally:
        with contextlib.suppress(Exception):
            notifier.stopping()
