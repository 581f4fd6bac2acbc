"""The message on fd 0 (clients/message.py): SIZE and the SMTP wire form, on real files."""

from __future__ import annotations

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from mxf_remote.clients.message import Message, encode_smtp_data

LINE_BYTES = st.binary(max_size=60).map(lambda raw: bytes(b"a\r\n."[byte % 4] for byte in raw))
"""Messages made of the bytes that matter here: a letter, CR, LF and dot."""


def wire_without_stuffing(message: bytes) -> bytes:
    """What RFC 1870 counts: every line end as CRLF (bare CR and bare LF alike)."""
    return message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def scan(message: bytes, chunk_size: int) -> tuple[int, bool]:
    """Message.scan over a real file, read in chunks of ``chunk_size``."""
    with tempfile.TemporaryFile() as file:
        file.write(message)
        file.flush()
        found = Message(file.fileno())
        chunks = found.chunks
        found.chunks = lambda size=chunk_size: chunks(chunk_size)  # type: ignore[method-assign]
        return found.scan()


class TestSize:
    """RFC 1870 SIZE is the CRLF wire form's length: never short."""

    def test_bare_carriage_returns_count(self) -> None:
        """Each bare CR goes out as CRLF, so it adds a byte (SIZE was short by one each)."""
        message = b"a\rb\rc\r\n"
        size, _ = scan(message, 65536)
        assert size == len(b"a\r\nb\r\nc\r\n") == len(message) + 2

    def test_crlf_adds_nothing_and_lf_adds_one(self) -> None:
        """An existing CRLF stays two bytes; a bare LF becomes two."""
        assert scan(b"x\r\ny\n", 65536)[0] == len(b"x\r\ny\r\n") == 6

    def test_crlf_split_across_chunks(self) -> None:
        """A CR at the end of one chunk and its LF at the start of the next is one CRLF."""
        assert scan(b"ab\r\ncd\r\n", 3)[0] == 8

    @settings(max_examples=300)
    @given(LINE_BYTES, st.integers(min_value=1, max_value=7))
    def test_size_is_the_wire_length(self, message: bytes, chunk_size: int) -> None:
        """For any message and chunking, SIZE equals the length of its CRLF form."""
        assert scan(message, chunk_size)[0] == len(wire_without_stuffing(message))

    @given(LINE_BYTES)
    def test_size_never_below_what_goes_out(self, message: bytes) -> None:
        """SIZE is at least the DATA bytes sent, once the stuffed dots are taken off."""
        stuffed = encode_smtp_data(message)
        dots_added = len(stuffed) - len(encode_smtp_data(message.replace(b".", b"a")))
        assert scan(message, 65536)[0] >= len(stuffed) - dots_added

    def test_eight_bit(self) -> None:
        """A byte above 127 anywhere asks for BODY=8BITMIME."""
        assert scan(b"plain\n", 4)[1] is False
        assert scan(b"caf\xc3\xa9\n", 4)[1] is True


def test_scan_leaves_the_offset_alone() -> None:
    """Scanning reads by offset: fd 0's shared offset stays at 0 for the conversation."""
    with tempfile.TemporaryFile() as file:
        file.write(b"a\r\nb\n")
        file.seek(0)
        Message(file.fileno()).scan()
        assert os.lseek(file.fileno(), 0, os.SEEK_CUR) == 0
