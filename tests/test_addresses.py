"""Tests for mxf_remote/addresses.py: host literals, RFC 8305 interleaving, local addresses."""

from __future__ import annotations

import fcntl
import socket
import struct

import pytest

from mxf_remote.addresses import (
    canonical_address,
    interleave_families_rfc8305,
    is_ipv6,
    is_local,
    local_addresses,
    parse_literal,
)


def lo_ipv4_address() -> str | None:
    """The IPv4 address configured on ``lo`` (SIOCGIFADDR), or None."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), siocgifaddr, struct.pack("256s", b"lo"))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def ipv6_addresses_from_proc() -> set[str]:
    """Every address in /proc/net/if_inet6, canonical (empty when unavailable)."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            return {
                socket.inet_ntop(socket.AF_INET6, bytes.fromhex(line.split()[0]))
                for line in table
                if line.strip()
            }
    except OSError:
        return set()


class TestParseLiteral:
    """Host literals need no DNS (spec §3)."""

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("[1.2.3.4]", "1.2.3.4"),
            ("1.2.3.4", "1.2.3.4"),
            ("[0.0.0.0]", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("[IPv6:2001:db8::1]", "2001:db8::1"),
            ("[ipv6:2001:db8::1]", "2001:db8::1"),
            ("[IPV6:2001:DB8::1]", "2001:db8::1"),
            ("[iPv6:2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("[IPv6:2001:0db8:0000:0000:0000:0000:0000:0001]", "2001:db8::1"),
            ("[2001:0db8:0:0:0:0:0:1]", "2001:db8::1"),
            ("[::1]", "::1"),
            ("[IPv6:::1]", "::1"),
            ("[::ffff:192.0.2.1]", "::ffff:192.0.2.1"),
            ("[IPv6:::ffff:192.0.2.1]", "::ffff:192.0.2.1"),
            ("[2001:db8:0:0:1:0:0:1]", "2001:db8::1:0:0:1"),
        ],
    )
    def test_literals(self, host: str, address: str) -> None:
        """Every literal form of spec §3 gives its address in canonical form."""
        assert parse_literal(host) == address

    @pytest.mark.parametrize(
        "host",
        [
            "[1.2.3.4",
            "1.2.3.4]",
            "1.2.3",
            "[1.2.3]",
            "1.2.3.4.5",
            "256.1.1.1",
            "[256.1.1.1]",
            "1..2.3",
            "[IPv6:1.2.3.4]",
            "[IPv6:]",
            "[IPv6:example.com]",
            "[IPv4:1.2.3.4]",
            "[]",
            "",
            ".",
            "example.com",
            "[example.com]",
            "2001:db8::1",
            "IPv6:2001:db8::1",
            "[2001:db8::1",
            "[2001:db8::g]",
            "[ 1.2.3.4]",
            "1.2.3.4.example.com",
            "1234",
        ],
    )
    def test_not_literals(self, host: str) -> None:
        """Anything else is a domain name, left to DNS."""
        assert parse_literal(host) is None


class TestCanonicalAddress:
    """The compressed spelling used everywhere (plan keys, TCPREMOTEIP)."""

    @pytest.mark.parametrize(
        ("text", "canonical"),
        [
            ("1.2.3.4", "1.2.3.4"),
            ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("0:0:0:0:0:0:0:0", "::"),
            ("::FFFF:7f00:1", "::ffff:127.0.0.1"),
            ("fe80:0:0:0:0:0:0:1", "fe80::1"),
        ],
    )
    def test_canonical(self, text: str, canonical: str) -> None:
        """IPv4 stays dotted, IPv6 is lower case with the longest zero run compressed."""
        assert canonical_address(text) == canonical

    @pytest.mark.parametrize("text", ["", "example.com", "1.2.3", "::g", "[::1]", "1.2.3.4 "])
    def test_not_addresses(self, text: str) -> None:
        """Anything that is not an address is None."""
        assert canonical_address(text) is None

    @pytest.mark.parametrize(("address", "v6"), [("1.2.3.4", False), ("::1", True)])
    def test_is_ipv6(self, address: str, v6: bool) -> None:
        """The family is told by the colon."""
        assert is_ipv6(address) is v6


class TestInterleave:
    """RFC 8305 §4 with First Address Family Count 1: IPv6 first, families alternate."""

    @pytest.mark.parametrize(
        ("addresses", "expected"),
        [
            ([], []),
            (["1.1.1.1"], ["1.1.1.1"]),
            (["::1"], ["::1"]),
            (["1.1.1.1", "::1"], ["::1", "1.1.1.1"]),
            (["::1", "1.1.1.1"], ["::1", "1.1.1.1"]),
            (
                ["1.1.1.1", "2.2.2.2", "3.3.3.3", "::a", "::b"],
                ["::a", "1.1.1.1", "::b", "2.2.2.2", "3.3.3.3"],
            ),
            (
                ["::a", "::b", "::c", "1.1.1.1"],
                ["::a", "1.1.1.1", "::b", "::c"],
            ),
            (
                ["::a", "1.1.1.1", "::b", "2.2.2.2"],
                ["::a", "1.1.1.1", "::b", "2.2.2.2"],
            ),
            (["3.3.3.3", "1.1.1.1", "2.2.2.2"], ["3.3.3.3", "1.1.1.1", "2.2.2.2"]),
            (["::c", "::a", "::b"], ["::c", "::a", "::b"]),
        ],
    )
    def test_interleave(self, addresses: list[str], expected: list[str]) -> None:
        """IPv6 first, alternating, order within a family kept, leftovers at the end."""
        assert interleave_families_rfc8305(addresses) == expected

    def test_input_untouched(self) -> None:
        """The argument list is not modified."""
        addresses = ["1.1.1.1", "::1"]
        interleave_families_rfc8305(addresses)
        assert addresses == ["1.1.1.1", "::1"]


class TestIsLocal:
    """Whether an address (canonical) is one of this machine's."""

    LOCAL = frozenset({"0.0.0.0", "::", "127.0.0.1", "192.0.2.2", "::1", "2001:db8::2"})

    @pytest.mark.parametrize(
        ("address", "local"),
        [
            ("127.0.0.1", True),
            ("192.0.2.2", True),
            ("0.0.0.0", True),
            ("::", True),
            ("::1", True),
            ("2001:db8::2", True),
            ("::ffff:127.0.0.1", True),
            ("::ffff:192.0.2.2", True),
            ("::ffff:0.0.0.0", True),
            ("127.0.0.2", False),
            ("192.0.2.3", False),
            ("::ffff:192.0.2.3", False),
            ("2001:db8::3", False),
            ("::2", False),
            ("::ffff:7f00:1", False),
        ],
    )
    def test_is_local(self, address: str, local: bool) -> None:
        """Members are local, and so is the IPv4-mapped IPv6 form of an IPv4 member."""
        assert is_local(address, self.LOCAL) is local

    def test_empty_set(self) -> None:
        """Nothing is local in an empty set."""
        assert not is_local("127.0.0.1", frozenset())


class TestLocalAddresses:
    """This machine's addresses as qmail's ipme sees them, plus IPv6."""

    def test_unspecified_addresses(self) -> None:
        """0.0.0.0 and :: are always "us" (qmail's ipme has 0.0.0.0)."""
        local = local_addresses()
        assert "0.0.0.0" in local
        assert "::" in local

    def test_loopback(self) -> None:
        """127.0.0.1 is included when lo carries it."""
        address = lo_ipv4_address()
        if address is None:
            pytest.skip("lo has no IPv4 address here")
        assert address in local_addresses()

    def test_ipv6_interfaces(self) -> None:
        """Every IPv6 interface address (/proc/net/if_inet6) is included."""
        assert ipv6_addresses_from_proc() <= local_addresses()

    def test_canonical(self) -> None:
        """Every address is in canonical form, so membership tests work."""
        for address in local_addresses():
            assert canonical_address(address) == address

    def test_frozen(self) -> None:
        """The set is immutable (it is shared by every plan)."""
        assert isinstance(local_addresses(), frozenset)
