"""The queued message on fd 0, and its SMTP wire form.

qmail-rspawn gives us the queue file itself on fd 0: a regular file opened at offset 0,
LF line ends, starting with qmail-queue's ``Received:`` line.  We read it with
``os.pread`` at explicit offsets, so the shared file offset is never moved and the file
is never loaded whole: a 10 MB message costs a few 64 KiB chunks of memory.

SMTP wire form (RFC 5321 §4.5.2 and §2.3.8), decided against qmail-remote:

* Line ends become CRLF.  An existing CRLF is kept, not doubled (``\\r\\n`` stays
  ``\\r\\n``, never ``\\r\\r\\n``).
* A bare CR -- one not followed by LF -- is a line end too and goes out as CRLF.  This
  is what notqmail does (its ``tests/unittest_qmail-remote.c``); RFC 5321 forbids a bare
  CR in the data, and servers that reject or reinterpret one make it a smuggling
  vector.  notqmail forgets to dot-stuff the line that follows such a CR (``a\\r.\\n``
  would end the DATA early) and leaks a CR for ``\\r\\r\\n``; we treat every wire line
  alike, so neither can happen here.
* Every wire line that starts with ``.`` gets another ``.`` (dot-stuffing).
* A message whose last line is not ended (the file ends in neither LF nor CR) cannot be
  sent: qmail-remote's ``#5.6.2`` "partial final lines" failure.  An empty message is
  fine and is sent as an empty DATA.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterator

CHUNK_SIZE = 65536


class MessageUnreadable(Exception):
    """fd 0 cannot be read (closed, not a file, an I/O error, or it shrank)."""


class Message:
    """The message file on a descriptor, read by offset."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        try:
            info = os.fstat(fd)
        except OSError as error:
            raise MessageUnreadable(error.strerror) from None
        if not stat.S_ISREG(info.st_mode):
            raise MessageUnreadable("not a regular file")
        self.size = info.st_size

    def _read(self, count: int, offset: int) -> bytes:
        try:
            return os.pread(self.fd, count, offset)
        except OSError as error:
            raise MessageUnreadable(error.strerror) from None

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The first ``size`` bytes in chunks; MessageUnreadable if the file is shorter."""
        offset = 0
        while offset < self.size:
            data = self._read(min(chunk_size, self.size - offset), offset)
            if not data:
                raise MessageUnreadable("the file is shorter than its size")
            offset += len(data)
            yield data

    def has_partial_final_line(self) -> bool:
        """True when the last byte is neither LF nor CR (and the message is not empty)."""
        if self.size == 0:
            return False
        last = self._read(1, self.size - 1)
        if not last:
            raise MessageUnreadable("the file is shorter than its size")
        return last not in (b"\n", b"\r")

    def scan(self) -> tuple[int, bool]:
        """``(smtp_size, eight_bit)``: RFC 1870 SIZE, and whether BODY=8BITMIME.

        SIZE is the message in its CRLF wire form without the dot-stuffing (RFC 1870 §3):
        the file size, plus one byte for each line end that grows to CRLF -- a bare LF
        and a bare CR each do, an existing CRLF does not.  Counted as LFs + CRs - 2 x
        CRLFs, with a CRLF split across two chunks counted too.  Exact, so never short.
        """
        line_ends = 0
        crlf = 0
        eight_bit = False
        last = b""
        for data in self.chunks():
            line_ends += data.count(b"\n") + data.count(b"\r")
            crlf += data.count(b"\r\n") + (last == b"\r" and data[:1] == b"\n")
            last = data[-1:]
            if not eight_bit and not data.isascii():
                eight_bit = True
        return self.size + line_ends - 2 * crlf, eight_bit


class SmtpDataEncoder:
    """Turns the message, chunk by chunk, into dot-stuffed CRLF lines (module doc)."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._held_cr = False

    def encode(self, data: bytes) -> bytes:
        """The wire bytes for the next chunk of the message."""
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r"):
            # CR LF may be split across chunks: decide about this CR with the next chunk.
            data = data[:-1]
            self._held_cr = True
        return self._stuff(data)

    def finish(self) -> bytes:
        """The wire bytes still held back, then the end-of-data line ``.``."""
        tail = self._stuff(b"\r") if self._held_cr else b""
        self._held_cr = False
        return tail

    @property
    def complete(self) -> bool:
        """True when everything encoded so far ends with a whole line (or is empty)."""
        return self._at_line_start and not self._held_cr

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return b""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_line_start and data[:1] == b".":
            data = b"." + data
        data = data.replace(b"\n.", b"\n..")
        self._at_line_start = data.endswith(b"\n")
        return data.replace(b"\n", b"\r\n")


def encode_smtp_data(message: bytes) -> bytes:
    """The whole wire form of ``message`` (without the final ``.``), for tests and tools."""
    encoder = SmtpDataEncoder()
    return encoder.encode(message) + encoder.finish()
