"""A TCP relay that a test can cut and mend: a bus's uplink that goes down while the bus runs.

The bus connects to the relay's port; the relay connects on to the real broker. `cut()` closes
every relayed connection and, until `mend()`, closes each new one at once (the bus sees its
link drop and its reconnects fail, as in a tunnel); nothing it sent while cut reaches the
broker, and nothing reaches it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttableRelay:
    """127.0.0.1:`port` relayed to `target_port` (a context manager; threads, no event loop)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.is_cut = False
        self.refused = 0  # connections closed at once while cut
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)

    def __enter__(self) -> CuttableRelay:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        # close() alone does not wake an accept() blocked in another thread (Linux); shutdown()
        # does: accept() fails at once and the thread ends.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.cut()
        self._thread.join(5)

    def cut(self) -> None:
        with self._lock:
            self.is_cut = True
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def mend(self) -> None:
        with self._lock:
            self.is_cut = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self.is_cut:
                    self.refused += 1
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
                    self._open.discard(s)
