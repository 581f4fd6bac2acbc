"""Tests for mxf_remote/remotedwire.py: the launcher/server messages, hostile bytes included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxf_remote import remotedwire as wire


class TestNetstrings:
    """Framing: a reader always knows how much is still to come, and refuses garbage."""

    @given(st.binary(max_size=200))
    def test_round_trip(self, data: bytes) -> None:
        """Any bytes survive a netstring, NULs, colons and commas included."""
        assert wire.unwrap(wire.netstring(data)) == data

    @given(st.lists(st.binary(max_size=40), max_size=20))
    def test_lists_round_trip(self, items: list[bytes]) -> None:
        """A netstring of netstrings comes back as the same list."""
        assert wire.split(wire.unwrap(wire.netstrings(items))) == items

    @pytest.mark.parametrize("prefix", [b"", b"1", b"12", b"12:abc"])
    def test_incomplete_is_none(self, prefix: bytes) -> None:
        """A message cut short: keep reading (None), no error."""
        assert wire.complete_length(prefix) is None

    @pytest.mark.parametrize(
        "garbage",
        [b"x", b"abc:", b"01:x,", b"-1:x,", b"3:abcX", b"1" * 12, b"99999999999:", b" 3:abc,"],
    )
    def test_garbage_is_malformed(self, garbage: bytes) -> None:
        """Not a length, a leading zero, no comma, an endless length: Malformed."""
        with pytest.raises(wire.Malformed):
            wire.complete_length(garbage)

    def test_too_long_is_refused_before_reading_it(self) -> None:
        """A length over MAX_MESSAGE is refused from its digits alone."""
        with pytest.raises(wire.Malformed, match="too long"):
            wire.complete_length(b"%d:" % (wire.MAX_MESSAGE + 1))

    def test_split_refuses_trailing_bytes(self) -> None:
        """Bytes after the last netstring are not silently dropped."""
        with pytest.raises(wire.Malformed):
            wire.split(wire.netstring(b"a") + b"2:b")


class TestMessages:
    """Requests and handoffs."""

    def test_request_round_trip(self) -> None:
        """Start time, where we run from, argv and environment come back as sent."""
        argv = [b"example.org", b"", b"r\xff@x"]
        env = [b"A=1", b"EMPTY=", b"WEIRD=\x01\n"]
        message = wire.encode_request(12.5, b"/opt/bin", argv, env)
        assert wire.complete_length(message) == len(message)
        assert wire.decode_request(message) == (12.5, b"/opt/bin", argv, env)

    @pytest.mark.parametrize(
        "parts",
        [
            [b"mxf-remoted 2", b"1.0", b"/", b"0:,", b"0:,"],
            [wire.MAGIC, b"soon", b"/", b"0:,", b"0:,"],
            [wire.MAGIC, b"1.0", b"/", b"0:,"],
            [wire.MAGIC, b"1.0", b"/", b"x", b"0:,"],
        ],
        ids=["other-version", "bad-time", "missing-part", "argv-not-netstrings"],
    )
    def test_bad_requests(self, parts: list[bytes]) -> None:
        """Another version, a bad time, a missing part, a broken list: Malformed."""
        message = wire.netstring(b"".join(wire.netstring(part) for part in parts))
        with pytest.raises(wire.Malformed):
            wire.decode_request(message)

    def test_handoff_round_trip(self) -> None:
        """Home, argv, environment and the in-process client come back as sent."""
        message = wire.encode_handoff(b"/var/qmail", [b"/bin/x", b"h"], [b"A=1"], b"smtp")
        payload = wire.unwrap(message)
        assert payload[:1] == wire.HANDOFF
        assert wire.decode_handoff(payload[1:]) == (
            b"/var/qmail",
            [b"/bin/x", b"h"],
            [b"A=1"],
            b"smtp",
        )

    def test_an_unknown_in_process_client_is_refused(self) -> None:
        """Only our own clients may run in the launcher: any other name is Malformed."""
        payload = wire.unwrap(wire.encode_handoff(b"/", [b"/bin/x"], [], b"../../evil"))
        with pytest.raises(wire.Malformed):
            wire.decode_handoff(payload[1:])


class TestStatus:
    """The probe's question for the server's state."""

    def test_recognised(self) -> None:
        """The status request is one, a delivery request is not, garbage is not."""
        assert wire.is_status_request(wire.encode_status_request())
        assert not wire.is_status_request(wire.encode_request(1.0, b"/", [b"h"], []))
        assert not wire.is_status_request(b"garbage")
