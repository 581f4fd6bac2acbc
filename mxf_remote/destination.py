"""What one delivery is addressed to, decided once, before any DNS.

``mxf-remote host ...`` names a host; the control files decide what it means:

* a **route**: some protocol's ``control/<service>routes`` has a relay for the host (the
  routes lookup rules are qmail's, in ``control.lookup_route``).  Then only the routed
  protocols count, each to its relay: a name (looked up for AAAA and A only) or an
  address literal, and maybe a port;
* a **literal**: ``[1.2.3.4]``, bare ``1.2.3.4``, ``[IPv6:...]`` -- no DNS at all;
* otherwise a **domain**: SRV, MX, AAAA and A.

Everything that later steps need to know about a relay -- its name as DNS stores it,
its literal address, its port, and the text as the admin wrote it (reports name it) --
is parsed here once, so that the resolver, the planner and the report choice read the
same answer.

The address families policy (``control/addressfamilies``, looked up for the host as
given with the routes rules) is decided here too: which families count for this
delivery, the first one leading the RFC 8305 interleave.  The resolution asks no
question of a family the policy leaves out (for the host, its exchangers and its
relays), and the planner connects to no address of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from mxf_remote.addresses import DEFAULT_FAMILIES, family_of, parse_literal
from mxf_remote.control import Protocol, Route, lookup_route, lookup_sender_route
from mxf_remote.credentials import AUTH_SERVICE
from mxf_remote.knowledge import dns_name


class Relay(NamedTuple):
    """Where one routed protocol goes, parsed once."""

    protocol: Protocol
    written: str
    """The relay as the routes file spells it (reports name it so)."""
    name: str | None
    """Its DNS name (lower case, no trailing dot), or None for a literal."""
    literal: str | None
    """Its address when it is a literal."""
    port: int
    """The route's port, else the protocol's default port."""
    user: str | None = None
    """The SMTP AUTH user of the route (never the password: the client reads that)."""


class Destination(NamedTuple):
    """What one delivery is addressed to."""

    host: str
    """As given on the command line (reports name it so)."""
    protocols: tuple[Protocol, ...]
    """The usable protocols, in ``control/protocols`` order."""
    literal: str | None = None
    """The address when ``host`` is a literal."""
    relays: tuple[Relay, ...] = ()
    """Non-empty when a routes file sends this host to relays: then only these count."""
    families: tuple[str, ...] = DEFAULT_FAMILIES
    """The address families to query and connect (``control/addressfamilies``), the
    leading one first."""

    def allows(self, address: str) -> bool:
        """True when the family policy lets us connect to ``address``."""
        return family_of(address) in self.families

    def allows_family(self, family: str) -> bool:
        """True when the family policy lets us query and connect ``family``."""
        return family in self.families

    @property
    def forbidden_literal(self) -> str | None:
        """The address literal the family policy forbids, when nothing else is left.

        The host's own literal; or, for a routed host whose relays are all literals, the
        first of them when every one is of a forbidden family.  (A forbidden literal relay
        beside usable ones is simply not planned.)
        """
        if self.literal is not None:
            return None if self.allows(self.literal) else self.literal
        if self.relays and all(relay.literal is not None for relay in self.relays):
            literals = [relay.literal for relay in self.relays if relay.literal is not None]
            if not any(self.allows(address) for address in literals):
                return literals[0]
        return None

    @property
    def name(self) -> str:
        """The host as DNS stores it (lower case, no trailing dot)."""
        return dns_name(self.host)

    @property
    def needs_dns(self) -> bool:
        """False for a literal, or when every relay it is routed to is a literal."""
        if self.literal is not None:
            return False
        if self.relays:
            return any(relay.name is not None for relay in self.relays)
        return True


def parse_relay(protocol: Protocol, route: Route) -> Relay:
    """One route's relay: a literal address or a DNS name, and the port to use."""
    literal = parse_literal(route.relay)
    name = None if literal is not None else dns_name(route.relay)
    port = route.port or protocol.default_port
    return Relay(protocol, route.relay, name, literal, port, route.user)


def make_destination(
    host: str,
    protocols: tuple[Protocol, ...],
    routes: Mapping[str, dict[bytes, Route | None]],
    address_families: Mapping[bytes, tuple[str, ...]] | None = None,
    *,
    sender: str | None = None,
    sender_routes: Mapping[bytes, Route | None] | None = None,
) -> Destination:
    """Routes first (a literal can be a routes key, as in qmail), then literal, then DNS.

    The sender's route comes before every other: ``sender_routes``
    (``control/authsenders``) looked up for ``sender`` (the address, ``@domain``, then the
    empty key) sends the delivery to that relay over the ``smtp`` protocol only, whatever
    the routes files say about the host (when ``smtp`` is not usable, the sender's route
    is not either, and the host's routes decide).

    ``address_families`` (``control/addressfamilies``) is looked up for ``host`` with the
    routes rules; no line for it (and no default line) means both, IPv6 first.
    """
    families = (lookup_route(address_families, host) if address_families else None) or (
        DEFAULT_FAMILIES
    )
    if sender is not None and sender_routes:
        sender_route = lookup_sender_route(sender_routes, sender)
        smtp = [protocol for protocol in protocols if protocol.service == AUTH_SERVICE]
        if sender_route is not None and smtp:
            relay = parse_relay(smtp[0], sender_route)
            return Destination(host, protocols, relays=(relay,), families=families)
    relays = []
    for protocol in protocols:
        table = routes.get(protocol.service)
        route = lookup_route(table, host) if table else None
        if route is not None:
            relays.append(parse_relay(protocol, route))
    if relays:
        return Destination(host, protocols, relays=tuple(relays), families=families)
    return Destination(host, protocols, literal=parse_literal(host), families=families)
