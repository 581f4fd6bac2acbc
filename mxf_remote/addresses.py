"""IP addresses: host literals, family interleaving, and "is this address us?".

Host literals need no DNS (spec §3): ``[1.2.3.4]``, a bare ``1.2.3.4`` (qmail accepts
it), ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3) and ``[2001:db8::1]`` (s/qmail's form).
Parsing uses ``inet_pton``, which accepts exactly the canonical spellings, so a string
like ``1.2.3`` or ``[1.2.3.4`` is not a literal and goes to DNS like any other name.

The self-check set ("ipme") follows qmail: the addresses configured on this machine's
interfaces, plus the unspecified addresses ``0.0.0.0`` and ``::``.  As in qmail, an
address that is merely routed locally (``127.0.0.2`` through the 127/8 loopback route)
is not "us": qmail-remote connects to it, and so do we.  IPv4 interface addresses come
from ``SIOCGIFCONF`` (the ioctl qmail's ``ipme.c`` uses), IPv6 ones from
``/proc/net/if_inet6``.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

IPV4_UNSPECIFIED = "0.0.0.0"  # noqa: S104 - a value to compare with, never bound
IPV6_UNSPECIFIED = "::"


def canonical_address(text: str) -> str | None:
    """The compressed spelling of an IPv4 or IPv6 address, or None if ``text`` is not one."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def is_ipv6(address: str) -> bool:
    """True for an IPv6 address (it has a colon), False for IPv4."""
    return ":" in address


def parse_literal(host: str) -> str | None:
    """The address a host literal names, or None when ``host`` is a domain name."""
    if host.startswith("[") and host.endswith("]"):
        inside = host[1:-1]
        if inside[:5].lower() == "ipv6:":
            inside = inside[5:]
            return canonical_address(inside) if is_ipv6(inside) else None
        return canonical_address(inside)
    if host and all(c.isdigit() or c == "." for c in host):
        try:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host))
        except OSError:
            return None
    return None


IPV4, IPV6 = "ipv4", "ipv6"
"""The address families as ``control/addressfamilies`` spells them."""
DEFAULT_FAMILIES: tuple[str, ...] = (IPV6, IPV4)
"""Without ``control/addressfamilies``: both families, IPv6 leading the interleave."""


def family_of(address: str) -> str:
    """``ipv6`` or ``ipv4``: the family of a canonical address."""
    return IPV6 if is_ipv6(address) else IPV4


def family_label(family: str) -> str:
    """``IPv4`` or ``IPv6``, as reports and people write them."""
    return "IPv6" if family == IPV6 else "IPv4"


def interleave_families_rfc8305(
    addresses: list[str], families: tuple[str, ...] = DEFAULT_FAMILIES
) -> list[str]:
    """RFC 8305 §4 with First Address Family Count 1: IPv6, IPv4, IPv6, IPv4, ...

    ``families`` (``control/addressfamilies``) says which families count and which one
    leads: an address of a family it does not list is dropped.  Order within a family is
    kept (DNS answer order); the first family goes first whatever the answer order, and a
    family that runs out lets the other continue.
    """
    by_family = [[a for a in addresses if family_of(a) == family] for family in families]
    mixed: list[str] = []
    for position in range(max((len(f) for f in by_family), default=0)):
        mixed.extend(family[position] for family in by_family if position < len(family))
    return mixed


class Sources(NamedTuple):
    """The local addresses connections bind to (``control/outgoingip``, ``outgoingip6``).

    None for a family: the system chooses, as without the file.
    """

    ipv4: str | None = None
    ipv6: str | None = None

    def for_address(self, address: str) -> str | None:
        """The source address a connection to ``address`` binds to, or None."""
        return self.ipv6 if is_ipv6(address) else self.ipv4

    def bound(self) -> list[tuple[str, str]]:
        """(control file, address) for each family that binds."""
        found = [("outgoingip", self.ipv4), ("outgoingip6", self.ipv6)]
        return [(name, address) for name, address in found if address is not None]


def _ipv4_interface_addresses() -> set[str]:
    import array
    import fcntl
    import struct

    siocgifconf = 0x8912
    ifreq_size = 40  # struct ifreq on LP64 Linux
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        slots = 64
        while True:
            buffer = array.array("B", b"\0" * (ifreq_size * slots))
            address, _ = buffer.buffer_info()
            request = struct.pack("iL", len(buffer), address)
            used = struct.unpack("iL", fcntl.ioctl(probe.fileno(), siocgifconf, request))[0]
            if used < len(buffer) or slots >= 4096:
                break
            slots *= 4
        raw = buffer.tobytes()[:used]
    for offset in range(0, used, ifreq_size):
        found.add(socket.inet_ntoa(raw[offset + 20 : offset + 24]))
    return found


def _ipv6_interface_addresses() -> set[str]:
    found: set[str] = set()
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                hex_address = line.split(" ", 1)[0]
                if len(hex_address) == 32:
                    packed = bytes.fromhex(hex_address)
                    found.add(socket.inet_ntop(socket.AF_INET6, packed))
    except OSError:
        pass
    return found


def local_addresses() -> frozenset[str]:
    """This machine's addresses as qmail's ipme sees them (IPv6 added), canonical form.

    Raises OSError when the IPv4 interface list cannot be read: without it we could
    connect to ourselves, so the caller defers the message instead (as qmail does).
    """
    found = {IPV4_UNSPECIFIED, IPV6_UNSPECIFIED}
    found |= _ipv4_interface_addresses()
    found |= _ipv6_interface_addresses()
    return frozenset(found)


def is_local(address: str, local: frozenset[str]) -> bool:
    """True when ``address`` (canonical) is one of ours, IPv4-mapped IPv6 included."""
    if address in local:
        return True
    if address.startswith("::ffff:") and "." in address:
        return address[7:] in local
    return False
