"""A pseudo-terminal that looks like a serial GPS receiver, and a writer that never blocks.

A reader (pyserial, gpsd, `cat`) opens the slave path as if it were /dev/ttyUSB0. We keep
only the master: with nobody on the slave, Linux still buffers a few kilobytes and then
answers EAGAIN; when a reader opens the slave the stale buffer is discarded, so each new
reader starts with fresh sentences, as with a real receiver on a real port.
"""

from __future__ import annotations

import errno
import os
import tty
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PtyWriter", "WriteStats", "open_pty"]


def open_pty() -> tuple[int, str]:
    """Open a pty pair: (non-blocking master fd, slave path such as /dev/pts/3).

    The slave is put in raw mode (no echo, no line editing, 8-bit clean); the setting stays
    for every later opener. The caller owns the master fd and closes it.
    """
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
    finally:
        # Holding the slave open ourselves would make the kernel keep our output for a reader
        # that opens later, who would then read seconds-old positions first.
        os.close(slave)
    os.set_blocking(master, False)
    return master, path


@dataclass(slots=True)
class WriteStats:
    """What a writer did with the sentences it was given."""

    sentences_written: int = 0
    sentences_dropped: int = 0  # buffer full (nobody reading) or the write failed
    bytes_written: int = 0
    input_discarded: int = 0  # bytes the reader sent us (e.g. gpsd probing the receiver)


class PtyWriter:
    """Writes whole NMEA sentences to a non-blocking fd, dropping (and counting) on EAGAIN.

    A sentence the kernel takes only partly is finished first on the next write, so that a
    reader sees complete lines except when it opened the port in the middle of one.
    """

    def __init__(self, fd: int, stats: WriteStats | None = None) -> None:
        self.fd = fd
        self.stats = stats if stats is not None else WriteStats()
        self._pending = b""

    def _write(self, data: bytes) -> int | None:
        """Bytes written, or None if the fd cannot take any now."""
        try:
            n = os.write(self.fd, data)
        except BlockingIOError:
            return None
        except OSError as exc:
            # EIO: the pty is being hung up or reopened; the next epoch will try again.
            if exc.errno in (errno.EIO, errno.EPIPE):
                return None
            raise
        self.stats.bytes_written += n
        return n

    def write_sentences(self, sentences: Iterable[bytes]) -> int:
        """Write what fits now; returns the number of whole sentences written."""
        todo = list(sentences)
        if self._pending:
            n = self._write(self._pending)
            if n is None or n < len(self._pending):
                self._pending = self._pending[n or 0 :]
                self.stats.sentences_dropped += len(todo)
                return 0
            self._pending = b""
            self.stats.sentences_written += 1
        done = 0
        for i, s in enumerate(todo):
            n = self._write(s)
            if n is None or n < len(s):
                if n:
                    self._pending = s[n:]
                self.stats.sentences_dropped += len(todo) - i - (1 if n else 0)
                break
            done += 1
        self.stats.sentences_written += done
        return done

    def drain_input(self) -> int:
        """Read and discard whatever the reader wrote to the port; returns the byte count."""
        total = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, OSError):
                # EAGAIN: nothing to read; EIO: no reader has the slave open.
                break
            if not data:
                break
            total += len(data)
        self.stats.input_discarded += total
        return total
