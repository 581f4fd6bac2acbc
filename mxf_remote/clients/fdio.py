"""Talking to the peer over two file descriptors, every wait bounded by timeoutremote.

A UCSPI client gets its connection as two descriptors: fd 6 to read, fd 7 to write.  With
plain TCP they are two dups of one socket; under a TLS client they are pipes; after a
STARTTLS they become ``SSLREADFD``/``SSLWRITEFD``.  So this module knows nothing about
sockets: it uses ``os.read``/``os.write`` and ``select.poll`` only, which also keeps the
import cheap (each delivery is a fresh interpreter).

Timeouts follow qmail-remote's ``timeoutread``/``timeoutwrite``: ``control/timeoutremote``
bounds each wait for the peer -- for the next bytes to arrive, or for room to write the
next bytes.  A peer that makes progress is never cut off; a peer that stalls for the
whole timeout is taken for dead (``connection died``).

Writes never block: the write descriptor is switched to non-blocking mode for our
lifetime (``restore_blocking`` puts it back, for a hand-over such as UCSPI-TLS).  A
blocking write of a large buffer to a socket that has *some* room would otherwise wait
for all of it, beyond any timeout.

Reads are line-oriented with a hard cap on the line length, so a peer sending an endless
line costs at most ``limit`` bytes of memory before we give up on it.
"""

from __future__ import annotations

import os
import select

READ_SIZE = 65536
WRITE_SIZE = 262144


class ConnectionDied(Exception):
    """The peer closed, reset, or stayed silent for the whole timeout."""


class LineTooLong(Exception):
    """The peer sent more than the allowed bytes without a line feed."""

    def __init__(self, start: bytes) -> None:
        super().__init__("line too long")
        self.start = start
        """The first bytes of the line, for the report."""


class Connection:
    """A connection on a read descriptor and a write descriptor, with per-wait timeouts."""

    def __init__(self, read_fd: int, write_fd: int, timeout: float) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.timeout = timeout
        self._buffer = bytearray()
        self._was_blocking = os.get_blocking(write_fd)
        os.set_blocking(write_fd, False)

    def restore_blocking(self) -> None:
        """Give the write descriptor back in the blocking mode we found it in."""
        os.set_blocking(self.write_fd, self._was_blocking)

    def switch(self, read_fd: int, write_fd: int) -> None:
        """Go on over other descriptors (after a STARTTLS); unread input is dropped.

        The old descriptors are left alone: call ``restore_blocking`` *before* handing
        them over (the TLS engine shares their open file description, and may have made
        it non-blocking for itself by now).
        """
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer.clear()
        self._was_blocking = os.get_blocking(write_fd)
        os.set_blocking(write_fd, False)

    # -- waiting ------------------------------------------------------------------------

    def _wait(self, fd: int, events: int) -> None:
        """Wait until ``fd`` is ready for ``events``, at most ``timeout`` seconds."""
        poller = select.poll()
        poller.register(fd, events)
        while True:
            try:
                ready = poller.poll(int(self.timeout * 1000))
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            if not ready:
                raise ConnectionDied("timeout")
            if ready[0][1] & select.POLLNVAL:
                raise ConnectionDied("descriptor not open")
            return

    # -- writing ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write every byte of ``data``, or raise ConnectionDied."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.write_fd, view[:WRITE_SIZE])
            except BlockingIOError:
                self._wait(self.write_fd, select.POLLOUT)
                continue
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError as error:
                raise ConnectionDied(error.strerror or str(error)) from None
            view = view[written:]

    def write_nowait(self, data: bytes) -> None:
        """Try once to write ``data`` (QUIT); whatever happens is ignored."""
        try:  # noqa: SIM105 - contextlib costs an import at every start-up
            os.write(self.write_fd, data)
        except OSError:
            pass

    # -- reading ------------------------------------------------------------------------

    def _fill(self) -> None:
        """Append what the peer sends next to the buffer; ConnectionDied at EOF."""
        while True:
            try:
                data = os.read(self.read_fd, READ_SIZE)
            except BlockingIOError:
                self._wait(self.read_fd, select.POLLIN)
                continue
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError as error:
                raise ConnectionDied(error.strerror or str(error)) from None
            if not data:
                raise ConnectionDied("end of file")
            self._buffer += data
            return

    def _fill_bounded(self) -> None:
        """Wait for input (bounded by the timeout), then read what is there."""
        self._wait(self.read_fd, select.POLLIN)
        self._fill()

    def read_line(self, limit: int) -> bytes:
        """The next line without its LF; LineTooLong after ``limit`` bytes without one."""
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            scanned = len(self._buffer)
            if scanned > limit:
                raise LineTooLong(bytes(self._buffer[:limit]))
            self._fill_bounded()

    def read_exact(self, count: int) -> bytes:
        """Exactly ``count`` bytes (the caller bounds ``count``)."""
        while len(self._buffer) < count:
            self._fill_bounded()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def read_byte(self) -> int:
        """One byte."""
        if not self._buffer:
            self._fill_bounded()
        byte = self._buffer[0]
        del self._buffer[:1]
        return byte


def read_until_eof(fd: int, timeout: float, limit: int) -> bytes | None:
    """Everything ``fd`` delivers until EOF (each wait bounded by ``timeout``).

    None when the peer stays silent for ``timeout`` or sends more than ``limit`` bytes;
    a read error counts as EOF.  For short messages such as the UCSPI-TLS environment
    block, whose end is the writer closing its side.
    """
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) <= limit:
        try:
            ready = poller.poll(int(timeout * 1000))
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if not ready:
            return None
        try:
            chunk = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):  # pragma: no cover - spurious wake-up
            continue
        except OSError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk
    return None
