"""The control files mxf-remote reads: timeouts, the protocols table, the routes.

Each file is read with the primitives of ``controlfile.py`` (qmail's reading rules).  A
file that exists but cannot be read or parsed is a ``ControlError`` naming the file, the
line and the problem; mxf-remote turns it into ``ZUnable to read control files.
(#4.3.0)`` plus that line: the message is deferred, never bounced, and the log tells the
administrator exactly what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from mxf_remote.addresses import (
    IPV4,
    IPV4_UNSPECIFIED,
    IPV6,
    IPV6_UNSPECIFIED,
    Sources,
    canonical_address,
    family_label,
    family_of,
)
from mxf_remote.controlfile import (
    DEFAULT_HOME,
    ControlError,
    parse_decimal,
    program_directory,
    qmail_home,
    read_first_line,
    read_lines,
    read_number,
)
from mxf_remote.credentials import (
    AUTHSENDERS,
    lookup_host,
    lookup_sender,
    route_key,
    split_value,
)

__all__ = [
    "DEFAULT_HOME",
    "Control",
    "ControlError",
    "Protocol",
    "Route",
    "Sources",
    "check_sources_local",
    "lookup_route",
    "lookup_sender_route",
    "parse_address_families",
    "parse_decimal",
    "program_directory",
    "qmail_home",
    "read_control",
    "read_first_line",
    "read_lines",
    "read_number",
]

S6_COMMAND_DIR = "/package/net/s6-networking/command"

MAX_PROTOCOLS = 16

DANE = "dane"
MTASTS = "mtasts"

DEFAULT_PROTOCOLS = (
    "qmtps:6209:-1:Y:N:mxf-remote-qmtpc\n"
    "qmtp:209:1:N:N:mxf-remote-qmtpc\n"
    "smtp:25:0:N:Y:mxf-remote-smtpc\n"
)


# ---------------------------------------------------------------------------------------
# Programs


def is_executable_file(path: str) -> bool:
    """True for a regular file we may execute (what ``execv`` needs)."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_program(
    name: str, beside: str, *, home: str = "", search_path: str | None = None
) -> str | None:
    """Where the program ``name`` is: a path as given (a relative one from the qmail
    ``home``), else beside us, else on ``search_path`` (default: our ``PATH``)."""
    if "/" in name:
        path = os.path.join(home, name)
        return path if is_executable_file(path) else None
    if search_path is None:
        search_path = os.environ.get("PATH", os.defpath)
    for directory in [beside, *search_path.split(os.pathsep)]:
        candidate = os.path.join(directory or ".", name)
        if is_executable_file(candidate):
            return os.path.abspath(candidate)
    return None


def tls_client_default(s6_name: str, ours: str) -> str:
    """s6-networking's client when installed (slashpackage), else the one we ship."""
    s6_path = os.path.join(S6_COMMAND_DIR, s6_name)
    return s6_path if is_executable_file(s6_path) else ours


# ---------------------------------------------------------------------------------------
# control/protocols


class Protocol(NamedTuple):
    """One line of ``control/protocols``, with its programs found on this machine."""

    service: str
    default_port: int
    slice: int
    implicit_tls: bool
    explicit_tls: bool
    program: str
    """The program as written in the file."""
    program_path: str | None = None
    tls_client_path: str | None = None
    """The implicit or explicit TLS client this protocol runs under, when it needs one."""
    unusable_reason: str | None = None

    @property
    def usable(self) -> bool:
        """True when the program (and its TLS client, if any) is installed."""
        return self.unusable_reason is None


def parse_yes_no(name: str, line: int, text: str, what: str) -> bool:
    """``Y`` or ``N`` (either case), or a ControlError."""
    if text in ("Y", "y"):
        return True
    if text in ("N", "n"):
        return False
    raise ControlError(name, line, f"{what} must be Y or N, not {text[:20]!r}")


def _valid_service(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-")
    )


def parse_protocols(lines: list[str], name: str = "protocols") -> list[Protocol]:
    """The protocol table: ``service:defport:slice:implicitTLS:explicitTLS:program``."""
    protocols: list[Protocol] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 6:
            raise ControlError(
                name,
                number,
                f"{len(fields)} fields, expected 6 "
                "(service:defport:slice:implicitTLS:explicitTLS:program)",
            )
        service, port_text, slice_text, implicit_text, explicit_text, program = fields
        if not _valid_service(service):
            raise ControlError(name, number, f"service {service[:40]!r} is not a DNS label")
        if service.lower() in seen:
            raise ControlError(name, number, f"service {service} is listed twice")
        port = parse_decimal(name, number, port_text, low=1, high=65535, unit="(port)")
        if slice_text == "-1":
            mxps_slice = -1
        else:
            mxps_slice = parse_decimal(name, number, slice_text, low=0, high=15, unit="(slice)")
        implicit = parse_yes_no(name, number, implicit_text, "implicitTLS")
        explicit = parse_yes_no(name, number, explicit_text, "explicitTLS")
        if implicit and explicit:
            raise ControlError(name, number, "implicitTLS and explicitTLS are both Y")
        if not program:
            raise ControlError(name, number, "the program field is empty")
        if len(protocols) == MAX_PROTOCOLS:
            raise ControlError(name, number, f"more than {MAX_PROTOCOLS} protocols")
        seen.add(service.lower())
        protocols.append(Protocol(service.lower(), port, mxps_slice, implicit, explicit, program))
    return protocols


def install_protocol(
    protocol: Protocol,
    beside: str,
    tls_client: str,
    ucspi_tls_client: str,
    *,
    home: str = "",
    search_path: str | None = None,
) -> Protocol:
    """The protocol with its programs looked up; unusable when one is not installed."""
    program_path = find_program(protocol.program, beside, home=home, search_path=search_path)
    if program_path is None:
        return _unusable(protocol, f"program {protocol.program} is not installed")
    tls_name = (
        tls_client if protocol.implicit_tls else ucspi_tls_client if protocol.explicit_tls else ""
    )
    tls_path = None
    if tls_name:
        tls_path = find_program(tls_name, beside, home=home, search_path=search_path)
        if tls_path is None:
            return _unusable(protocol, f"TLS client {tls_name} is not installed")
    return protocol._replace(program_path=program_path, tls_client_path=tls_path)


def _unusable(protocol: Protocol, reason: str) -> Protocol:
    return protocol._replace(unusable_reason=reason)


# ---------------------------------------------------------------------------------------
# control/<service>routes


class Route(NamedTuple):
    """Where a routes file sends a host: a relay (name or literal) and maybe a port.

    ``user`` is the SMTP AUTH user of a ``relay[:port]|user|password`` line; the password
    is never kept here (the SMTP client reads it itself, ``credentials.find_credentials``),
    so no repr, trace or report made from a Route can show it.
    """

    relay: str
    port: int | None
    user: str | None = None


def parse_route_value(name: str, line: int, value: str) -> Route | None:
    """``relay[:port]`` or ``[ipv6]:port``, maybe followed by ``|user|password``; an empty
    value means "no route" (None).

    No error text shows anything after the first ``|`` (the credentials).
    """
    entry = split_value(name, line, value)
    value = entry.route
    if not value:
        return None
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise ControlError(name, line, f"relay {value[:60]!r} has [ without ]")
        relay, rest = value[: close + 1], value[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ControlError(name, line, f"unexpected {rest[:20]!r} after {relay}")
        port_text = rest[1:] if rest else None
    else:
        relay, _, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if ":" in value else None
    if not relay:
        raise ControlError(name, line, "a port without a relay")
    if any(c.isspace() for c in relay) or not relay.isprintable():
        raise ControlError(name, line, f"relay {relay[:60]!r} contains blanks or control bytes")
    port = None
    if port_text is not None:
        port = parse_decimal(name, line, port_text, low=1, high=65535, unit="(port)")
    credentials = entry.credentials
    user = None if credentials is None else os.fsdecode(credentials.user)
    return Route(relay, port, user)


def parse_routes(lines: list[str], name: str) -> dict[bytes, Route | None]:
    """A routes table keyed by the lower-cased domain or ``.suffix`` (bytes, ASCII case).

    As in qmail's ``constmap``: the key is everything before the first colon, lines
    without a colon are ignored, and for a key given twice the last line wins.  The same
    reading makes the ``control/authsenders`` table (keyed by sender, ``@domain`` or
    ``""``; ``lookup_sender_route``).
    """
    table: dict[bytes, Route | None] = {}
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        table[_route_key(key)] = parse_route_value(name, number, value)
    return table


_route_key = route_key


V = TypeVar("V")


def lookup_route(table: Mapping[bytes, V], host: str) -> V | None:
    """qmail's smtproutes lookup: exact host, ``.suffix`` longest first, then ``""``.

    The first key found decides, also when its relay is empty (which means "no route,
    use DNS"): ``.af.mil:`` before ``:heaven.af.mil`` keeps *.af.mil on their MX.  The
    same rules look ``control/addressfamilies`` up (any table keyed by ``_route_key``);
    None when no key matches.  (``credentials.lookup_host``: the SMTP client looks its
    credentials up with the very same function.)
    """
    return lookup_host(table, host)


def lookup_sender_route(table: Mapping[bytes, Route | None], sender: str) -> Route | None:
    """The ``control/authsenders`` route of ``sender``: the address, then ``@domain``, then
    the empty key; the first key found decides; None for no key or an empty relay."""
    return lookup_sender(table, sender)


# ---------------------------------------------------------------------------------------
# control/addressfamilies

FAMILY_CHOICES = "ipv6,ipv4, ipv4,ipv6, ipv4 or ipv6"


def parse_families(name: str, line: int, value: str) -> tuple[str, ...]:
    """``ipv6,ipv4``, ``ipv4,ipv6``, ``ipv4`` or ``ipv6`` (any case, blanks around commas)."""
    if not value.strip(" \t"):
        raise ControlError(name, line, f"no families after the colon (expected {FAMILY_CHOICES})")
    families: list[str] = []
    for item in value.split(","):
        family = item.strip(" \t").lower()
        if family not in (IPV4, IPV6):
            shown = repr(item.strip(" \t")[:20]) if item.strip(" \t") else "an empty family"
            raise ControlError(name, line, f"{shown} is not ipv4 or ipv6 (in {value[:60]!r})")
        if family in families:
            raise ControlError(name, line, f"{family} is listed twice (in {value[:60]!r})")
        families.append(family)
    return tuple(families)


def parse_address_families(
    lines: list[str], name: str = "addressfamilies"
) -> dict[bytes, tuple[str, ...]]:
    """The families table, keyed like a routes table (``control.lookup_route`` reads it).

    Lines are ``domain:families``; blank lines and lines starting with ``#`` are ignored.
    The domain is everything before the *last* colon (families have none), so an address
    literal such as ``[IPv6:2001:db8::1]`` can be a key.  Unlike a routes file, a line
    without a colon, a domain with blanks and a domain given twice are errors: this file is
    new, and a typo in it would silently change where mail goes.
    """
    table: dict[bytes, tuple[str, ...]] = {}
    where: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise ControlError(
                name, number, f"{line[:60]!r} has no colon (expected domain:families)"
            )
        domain, _, value = line.rpartition(":")
        if any(c.isspace() for c in domain) or not domain.isprintable():
            raise ControlError(
                name, number, f"domain {domain[:60]!r} contains blanks or control bytes"
            )
        families = parse_families(name, number, value)
        key = _route_key(domain)
        if key in table:
            shown = repr(domain[:60]) if domain else "the default (empty domain)"
            problem = f"{shown} is listed twice (first on line {where[key]})"
            raise ControlError(name, number, problem)
        table[key], where[key] = families, number
    return table


# ---------------------------------------------------------------------------------------
# control/outgoingip, control/outgoingip6


def parse_source_address(name: str, text: str, family: str) -> str | None:
    """The first line of ``outgoingip``/``outgoingip6``: an address of ``family``, or None
    for the unspecified address (``0.0.0.0``/``::``: the system's choice)."""
    label = family_label(family)
    unspecified = IPV6_UNSPECIFIED if family == IPV6 else IPV4_UNSPECIFIED
    if not text:
        raise ControlError(
            name, 1, f"empty, expected an {label} address ({unspecified} for the system's choice)"
        )
    address = canonical_address(text)
    if address is None:
        raise ControlError(name, 1, f"{text[:60]!r} is not an {label} address")
    if family_of(address) != family:
        other = "outgoingip6" if family == IPV4 else "outgoingip"
        raise ControlError(
            name,
            1,
            f"{address} is an {family_label(family_of(address))} address, expected {label}"
            f" (control/{other} is for that family)",
        )
    return None if address == unspecified else address


def read_sources(home: str) -> Sources:
    """The source addresses of ``control/outgoingip`` and ``control/outgoingip6``."""
    found: dict[str, str | None] = {}
    for name, family in (("outgoingip", IPV4), ("outgoingip6", IPV6)):
        text = read_first_line(home, name)
        found[family] = None if text is None else parse_source_address(name, text, family)
    return Sources(ipv4=found[IPV4], ipv6=found[IPV6])


def check_sources_local(sources: Sources, local: frozenset[str]) -> None:
    """ControlError unless every configured source address is one of this machine's.

    Binding to another address fails (EADDRNOTAVAIL) on every connect; the admin must
    hear about the file, not about a connection that never happened.
    """
    for name, address in sources.bound():
        if address not in local:
            raise ControlError(name, 1, f"{address} is not an address of this machine")


# ---------------------------------------------------------------------------------------
# Everything mxf-remote reads


class Control(NamedTuple):
    """What ``mxf-remote`` needs from the control files, every default applied."""

    home: str
    timeout_connect: float
    """Seconds: the whole connection race, from its first attempt."""
    connect_delay: float
    """Seconds: RFC 8305 Connection Attempt Delay (read in ms, clamped to 10..2000)."""
    timeout_dns: float
    """Seconds: the whole resolution phase."""
    protocols: tuple[Protocol, ...]
    """Every protocol of ``control/protocols`` in order, usable or not."""
    routes: Mapping[str, dict[bytes, Route | None]] = MappingProxyType({})
    """Routes tables by service, for the usable protocols whose routes file exists."""
    sources: Sources = Sources()
    """The local addresses connections bind to, per family (``outgoingip``/``outgoingip6``)."""
    address_families: Mapping[bytes, tuple[str, ...]] = MappingProxyType({})
    """``control/addressfamilies``, keyed like a routes table (``lookup_route``)."""
    sender_routes: Mapping[bytes, Route | None] = MappingProxyType({})
    """``control/authsenders``: SMTP routes by sender (``lookup_sender_route``)."""
    dane: bool = False
    """``control/dane`` says ``on``: DNSSEC-validated lookups and DANE (RFC 7672)."""
    mtasts: str | None = None
    """``control/mtasts``: the MTA-STS policy cache directory (RFC 8461); None: off."""

    @property
    def usable_protocols(self) -> tuple[Protocol, ...]:
        """The protocols that are installed, in preference order."""
        return tuple(p for p in self.protocols if p.usable)


def read_dane(home: str) -> bool:
    """``control/dane``: first line ``on`` or ``off``; absent is off.

    ``on`` declares that the configured nameservers validate DNSSEC, so that their AD bit
    is believed.  Anything else is a ControlError rather than a guess: reading a typo as
    ``off`` would silently deliver without the checks the admin asked for.
    """
    text = read_first_line(home, DANE)
    if text is None or text == "off":
        return False
    if text == "on":
        return True
    raise ControlError(DANE, 1, f"{text[:40]!r} is neither on nor off")


def read_mtasts(home: str) -> str | None:
    """``control/mtasts``: the absolute path of the policy cache directory; None when absent.

    Its existence turns MTA-STS on.  A relative path would name a directory inside the
    qmail home by accident (we run there), so it is refused, as is an empty first line.
    """
    text = read_first_line(home, MTASTS)
    if text is None:
        return None
    if not text.startswith("/") or "\0" in text:
        raise ControlError(MTASTS, 1, f"{text[:60]!r} is not an absolute directory path")
    return text


def read_control(home: str, beside: str, *, search_path: str | None = None) -> Control:
    """Read every control file mxf-remote uses; ControlError on the first bad one.

    Programs are looked up beside us, then on ``search_path`` (default: our ``PATH``).
    """
    timeout_connect = read_number(home, "timeoutconnect", 60, low=1, high=86400, unit="seconds")
    delay_ms = read_number(home, "connectdelay", 250, low=0, high=10**9, unit="milliseconds")
    timeout_dns = read_number(home, "timeoutdns", 30, low=1, high=86400, unit="seconds")
    tls_client = read_first_line(home, "tlsclient") or tls_client_default(
        "s6-tlsc", "mxf-remote-tlsc"
    )
    ucspi_tls_client = read_first_line(home, "ucspitlsclient") or tls_client_default(
        "s6-ucspitlsc", "mxf-remote-ucspitlsc"
    )
    lines = read_lines(home, "protocols")
    if lines is None:
        lines = DEFAULT_PROTOCOLS.splitlines()
    protocols = tuple(
        install_protocol(
            p, beside, tls_client, ucspi_tls_client, home=home, search_path=search_path
        )
        for p in parse_protocols(lines)
    )
    routes: dict[str, dict[bytes, Route | None]] = {}
    for protocol in protocols:
        if protocol.usable:
            route_lines = read_lines(home, f"{protocol.service}routes")
            if route_lines is not None:
                routes[protocol.service] = parse_routes(route_lines, f"{protocol.service}routes")
    family_lines = read_lines(home, "addressfamilies")
    address_families = {} if family_lines is None else parse_address_families(family_lines)
    sender_lines = read_lines(home, AUTHSENDERS)
    sender_routes = {} if sender_lines is None else parse_routes(sender_lines, AUTHSENDERS)
    return Control(
        home=home,
        timeout_connect=float(timeout_connect),
        connect_delay=min(max(delay_ms, 10), 2000) / 1000,
        timeout_dns=float(timeout_dns),
        protocols=protocols,
        routes=routes,
        sources=read_sources(home),
        address_families=address_families,
        sender_routes=sender_routes,
        dane=read_dane(home),
        mtasts=read_mtasts(home),
    )
