"""The plan: which (protocol, exchanger, address, port) to try, in which order.

Planning is pure: ``build_plan`` maps what the control files said and what DNS has
answered *so far* to an ordered tuple of entries, and is simply run again whenever a new
answer arrives.  An entry is an ``Attempt``, or a ``Waiting`` marker that stands where
the attempts of a still-outstanding lookup will go; the race (``race.py``) holds later
attempts back behind a marker for at most one connection delay.

The order, spec §4, in the words of the standards behind it:

1. **SRV first** (RFC 2782), protocol by protocol in ``control/protocols`` order:
   priority ascending, weighted random within a priority.  A lone SRV record with
   target "." says the domain does not offer that protocol at all: it is dropped from
   the whole plan, MX included.
2. **Then MX** (RFC 5321 §5.1): preference ascending, equal preferences in random order.
   MXPS (cr.yp.to/im/mxps.html) gives preferences 12800..13055 a *slice*, ``p & 15``;
   an exchanger in slice s is tried with the protocols serving s, then (s != 0) with the
   slice-0 protocols, the "if QMTP does not connect, use SMTP on the same host" rule.
3. **Implicit MX**: no MX records and no SRV target: the host itself, preference 0,
   with every protocol ("in default of any response to SRV or MX records, all
   protocols are tried").
4. Within one exchanger, protocol-major; addresses interleaved IPv6 first (RFC 8305 §4),
   or as the destination's family policy says (``control/addressfamilies``: which family
   leads, and which are left out -- an address of a family left out is never planned).
5. **Self-check**: an address of this machine is never tried, and if one belongs to an
   exchanger of MX preference p, every MX target of preference >= p goes too (qmail's
   ipme cut: only strictly better exchangers may get the message).
6. An (address, port) is tried once; the plan holds at most 64 attempts.
7. In mxf-remoted, an (address, port) that failed lately (``history.py``, qmail's
   tcpto) goes behind the other addresses of its exchanger: tried later, never dropped.
8. With DANE or MTA-STS (``tlspolicy.py``): an attempt its TLS policy refuses is
   dropped (and named in the facts); one that cannot carry TLS (QMTP) and whose policy
   is still unknown (a TLSA or the MTA-STS policy outstanding) waits behind a marker.

Random choices (equal MX preferences, SRV weights) are made once, when the answer
arrives (``order_mx_rfc5321``, ``order_srv_rfc2782``), so that re-planning never
reshuffles attempts that are already under way.

Beside the entries, a plan carries its ``Facts``: what the planner decided on the way
(declined services, the SRV and MX targets and the state of their addresses, the cap,
a null MX, the self-check's cut).  When nothing connects, ``explain.py`` chooses the
report from those facts alone, and the probe shows them: the rules are applied here,
once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import NamedTuple

from mxf_remote.addresses import (
    DEFAULT_FAMILIES,
    family_of,
    interleave_families_rfc8305,
    is_local,
)
from mxf_remote.control import Protocol
from mxf_remote.destination import Destination
from mxf_remote.knowledge import HARD, MX, SRV, Answer, Knowledge, Status
from mxf_remote.tlspolicy import Refusal, Verdict, Wait

MAX_ATTEMPTS = 64
MAX_EXCHANGERS = 32
"""Exchangers resolved per MX answer or per SRV answer: bounds the queries we send."""

MXPS_FIRST, MXPS_LAST = 12800, 13055


class Attempt(NamedTuple):
    """One connection attempt of the plan."""

    protocol: Protocol
    exchanger: str
    """The exchanger's name (SNI and ``MXFHOST``), or the address for a literal."""
    address: str
    port: int
    source: str
    """Where it came from: ``srv``, ``mx``, ``implicit``, ``route`` or ``literal``."""
    preference: int
    """MX preference, SRV priority, or 0."""
    named: bool = True
    """False for a host literal: no name to verify a certificate against."""

    @property
    def key(self) -> tuple[str, int]:
        """What makes two attempts the same connection."""
        return (self.address, self.port)


class Waiting(NamedTuple):
    """Where attempts of a still-outstanding lookup will go."""

    lookup: str


Entry = Attempt | Waiting


class Target(NamedTuple):
    """An exchanger (or relay, or the host itself) the plan considered, and its addresses."""

    name: str
    source: str
    """``srv``, ``mx``, ``implicit`` or ``route``."""
    preference: int
    """MX preference, SRV priority, or 0."""
    has_addresses: bool
    """An AAAA or A answer gave it addresses."""
    temporary: bool
    """A lookup of its addresses failed temporarily, or is still outstanding."""
    permanent: bool
    """Every lookup of its addresses failed hard (NXDOMAIN or NODATA)."""


class Facts(NamedTuple):
    """What the planner decided on the way, so that nobody has to work it out again.

    ``explain.py`` chooses the report from these alone; the probe shows them.
    """

    kind: str
    """``literal``, ``route`` or ``dns``."""
    host: str
    """The name a report about the destination uses: the host as given, or for a routed
    host the first relay as the routes file spells it."""
    mx: Status | None = None
    """The MX answer's status; None when MX is not asked (a literal or a route)."""

    @property
    def mx_answered(self) -> bool:
        """The MX lookup succeeded (it has records)."""
        return self.mx is Status.OK

    @property
    def mx_unknown(self) -> bool:
        """No MX answer to go by: not asked, failed temporarily, or still outstanding."""
        return self.mx in (None, Status.TEMPFAIL, Status.PENDING)

    null_mx: bool = False
    """RFC 7505: the MX answer is a single ``MX 0 .``."""
    declined: frozenset[str] = frozenset()
    """Services whose SRV answer is a lone "." (RFC 2782: not offered here)."""
    offered: tuple[str, ...] = ()
    """The usable services that are not declined, in protocol order."""
    targets: tuple[Target, ...] = ()
    """SRV targets, MX exchangers (every one resolved, also those the self-check cut),
    the host itself for the implicit MX, or the named relays of a route."""
    beyond_cap: bool = False
    """An MX or SRV answer named more exchangers than are resolved (MAX_EXCHANGERS)."""
    self_cut: bool = False
    """The self-check removed something (one of our addresses, or worse exchangers)."""
    cut_preference: int | None = None
    """The MX preference at which we are listed, when the self-check cut MX targets."""
    behind: tuple[tuple[str, int], ...] = ()
    """(address, port) moved behind their siblings by the connection history."""
    refused: tuple[tuple[Attempt, Refusal], ...] = ()
    """Attempts their TLS policy (DANE, MTA-STS) refused, and why (``tlspolicy.py``)."""

    def targets_from(self, *sources: str) -> tuple[Target, ...]:
        """The targets that came from these sources, in plan order."""
        return tuple(t for t in self.targets if t.source in sources)


class Plan(NamedTuple):
    """The ordered entries, and the facts behind them."""

    entries: tuple[Entry, ...]
    facts: Facts

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """The attempts alone, in order."""
        return tuple(e for e in self.entries if isinstance(e, Attempt))

    @property
    def waiting(self) -> tuple[Waiting, ...]:
        """The lookups still holding later attempts back."""
        return tuple(e for e in self.entries if isinstance(e, Waiting))

    @property
    def self_cut(self) -> bool:
        """The self-check removed something."""
        return self.facts.self_cut


# ---------------------------------------------------------------------------------------
# Ordering rules (applied once, when an answer arrives)


def order_mx_rfc5321(records: Iterable[MX], rng: random.Random) -> tuple[MX, ...]:
    """RFC 5321 §5.1: preference ascending; equal preferences in random order."""
    keyed = [(mx.preference, rng.random(), mx) for mx in records]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return tuple(mx for _, _, mx in keyed)


def order_srv_rfc2782(records: Iterable[SRV], rng: random.Random) -> tuple[SRV, ...]:
    """RFC 2782: priority ascending; within a priority, repeated weighted random choice.

    Zero-weight records are put first, so that they keep a small chance when others
    have weight; a draw in [0, total] takes the first record whose running sum reaches
    it, which is removed before the next draw.
    """
    by_priority: dict[int, list[SRV]] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    ordered: list[SRV] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        remaining = [r for r in group if r.weight == 0] + [r for r in group if r.weight]
        while remaining:
            draw = rng.randint(0, sum(r.weight for r in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= draw:
                    ordered.append(remaining.pop(index))
                    break
    return tuple(ordered)


def srv_declines_service(records: tuple[SRV, ...]) -> bool:
    """RFC 2782: a single record with target "." — the service is decidedly not offered."""
    return len(records) == 1 and records[0].target == ""


def usable_srv_targets(records: tuple[SRV, ...]) -> tuple[SRV, ...]:
    """The records worth resolving: a real target and a port other than 0."""
    return tuple(r for r in records if r.target and r.port)[:MAX_EXCHANGERS]


def is_null_mx(records: tuple[MX, ...]) -> bool:
    """RFC 7505: the domain's MX set is a single ``MX 0 .``."""
    return len(records) == 1 and records[0].exchange == ""


def usable_exchangers(records: tuple[MX, ...]) -> tuple[MX, ...]:
    """The MX records worth resolving (a null target among others is skipped)."""
    return tuple(r for r in records if r.exchange)[:MAX_EXCHANGERS]


def mxps_slice(preference: int) -> int:
    """MXPS: preference 12800..13055 is in slice ``p & 15``; any other is slice 0."""
    return preference & 15 if MXPS_FIRST <= preference <= MXPS_LAST else 0


def protocols_for_slice(preference: int, protocols: tuple[Protocol, ...]) -> list[Protocol]:
    """The protocols to try on an MX exchanger, in order (MXPS, with SMTP fallback).

    A slice no protocol serves is treated as slice 0.
    """
    wanted = mxps_slice(preference)
    serving = [p for p in protocols if p.slice == wanted]
    if wanted == 0 or not serving:
        return [p for p in protocols if p.slice == 0]
    return serving + [p for p in protocols if p.slice == 0]


# ---------------------------------------------------------------------------------------
# Building the plan


class _Builder:
    """Collects entries in order, applying the self-check, dedup and the cap."""

    def __init__(
        self,
        knowledge: Knowledge,
        local: frozenset[str],
        penalized: Callable[[str, int], bool] | None = None,
        families: tuple[str, ...] = DEFAULT_FAMILIES,
        tls: Callable[[Attempt], Verdict] | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.tls = tls
        self.refused: list[tuple[Attempt, Refusal]] = []
        self.tls_waits: set[str] = set()
        self.local = local
        self.families = families
        self.penalized = penalized
        self.behind: list[tuple[str, int]] = []
        self.entries: list[Entry] = []
        self.seen: set[tuple[str, int]] = set()
        self.count = 0
        self.self_cut = False
        self.cut_preference: int | None = None

    def full(self) -> bool:
        return self.count >= MAX_ATTEMPTS

    def addresses(self, name: str) -> tuple[list[str], bool]:
        """Known addresses of ``name`` (interleaved) and whether a lookup is outstanding."""
        ipv6, ipv4 = self.knowledge.address_answers(name)
        found = list(ipv6.records) + list(ipv4.records)
        return interleave_families_rfc8305(found, self.families), ipv6.pending or ipv4.pending

    def add_target(
        self,
        name: str,
        protocols: Iterable[Protocol],
        *,
        port: int | None,
        source: str,
        preference: int,
        check_self: bool = True,
    ) -> None:
        addresses, pending = self.addresses(name)
        for protocol in protocols:
            target_port = port or protocol.default_port
            for address in self.siblings_order(addresses, target_port):
                self.add(
                    Attempt(protocol, name, address, target_port, source, preference), check_self
                )
            if pending:
                self.entries.append(Waiting(f"addresses of {name}"))

    def siblings_order(self, addresses: list[str], port: int) -> list[str]:
        """``addresses`` with the penalized ones (connection history) moved behind."""
        if self.penalized is None:
            return addresses
        behind = [a for a in addresses if self.penalized(a, port)]
        if not behind:
            return addresses
        self.behind.extend((a, port) for a in behind if (a, port) not in self.behind)
        return [a for a in addresses if a not in behind] + behind

    def add(self, attempt: Attempt, check_self: bool = True) -> None:
        if self.full() or attempt.key in self.seen:
            return
        if family_of(attempt.address) not in self.families:
            return  # control/addressfamilies: never connected
        if check_self and is_local(attempt.address, self.local):
            self.self_cut = True
            return
        if self.tls is not None and not self.tls_allows(attempt):
            return
        self.seen.add(attempt.key)
        self.entries.append(attempt)
        self.count += 1

    def tls_allows(self, attempt: Attempt) -> bool:
        """Rule 8: False for a refused attempt, or one without TLS whose policy is unknown."""
        assert self.tls is not None
        decided = self.tls(attempt)
        if isinstance(decided, Refusal):
            if (attempt, decided) not in self.refused:
                self.refused.append((attempt, decided))
            return False
        if isinstance(decided, Wait) and not attempt.protocol.explicit_tls:
            if decided.what not in self.tls_waits:
                self.tls_waits.add(decided.what)
                self.entries.append(Waiting(decided.what))
            return False
        return True

    def target(self, name: str, source: str, preference: int) -> Target:
        """The fact about ``name``'s addresses, as the knowledge has it now."""
        ipv6, ipv4 = self.knowledge.address_answers(name)
        answers = (ipv6, ipv4)
        return Target(
            name,
            source,
            preference,
            has_addresses=bool(ipv6.records or ipv4.records),
            temporary=any(a.status in (Status.TEMPFAIL, Status.PENDING) for a in answers),
            permanent=all(a.status in HARD for a in answers),
        )

    def plan(self, facts: Facts) -> Plan:
        return Plan(
            tuple(self.entries),
            facts._replace(
                self_cut=self.self_cut,
                cut_preference=self.cut_preference,
                behind=tuple(self.behind),
                refused=tuple(self.refused),
            ),
        )


def build_plan(
    destination: Destination,
    knowledge: Knowledge,
    local: frozenset[str],
    penalized: Callable[[str, int], bool] | None = None,
    tls: Callable[[Attempt], Verdict] | None = None,
) -> Plan:
    """The plan for ``destination`` given what DNS has answered so far (spec §4).

    ``penalized`` (mxf-remoted's connection history) says which (address, port) failed
    lately: those go behind the other addresses of their exchanger.  ``tls``: each
    attempt's TLS policy verdict (``tlspolicy.verdict``), when DANE or MTA-STS is on.
    """
    builder = _Builder(knowledge, local, penalized, destination.families, tls)
    if destination.literal is not None:
        for protocol in destination.protocols:
            builder.add(
                Attempt(
                    protocol,
                    destination.literal,
                    destination.literal,
                    protocol.default_port,
                    "literal",
                    0,
                    named=False,
                )
            )
        return builder.plan(Facts("literal", destination.host))
    if destination.relays:
        return builder.plan(_plan_routes(builder, destination))
    return builder.plan(_plan_dns(builder, destination, knowledge))


def _plan_routes(builder: _Builder, destination: Destination) -> Facts:
    """Routed: each routed protocol to its relay, A/AAAA only, no self-check."""
    targets = []
    for relay in destination.relays:
        if relay.name is None:
            assert relay.literal is not None
            attempt = Attempt(
                relay.protocol, relay.literal, relay.literal, relay.port, "route", 0, named=False
            )
            builder.add(attempt, check_self=False)
        else:
            targets.append(builder.target(relay.name, "route", 0))
            builder.add_target(
                relay.name,
                [relay.protocol],
                port=relay.port,
                source="route",
                preference=0,
                check_self=False,
            )
    return Facts("route", destination.relays[0].written, targets=tuple(targets))


def declined_services(knowledge: Knowledge) -> set[str]:
    """Services whose SRV answer is a lone "." (not offered by this domain)."""
    return {
        s
        for s, a in knowledge.srv.items()
        if a.status is Status.OK and srv_declines_service(a.records)
    }


def names_more_than_resolved(answer: Answer[MX] | Answer[SRV] | None) -> bool:
    """True when an OK MX or SRV answer names more exchangers than MAX_EXCHANGERS."""
    if answer is None or answer.status is not Status.OK:
        return False
    named = sum(1 for r in answer.records if (r.exchange if isinstance(r, MX) else r.target))
    return named > MAX_EXCHANGERS


def _plan_dns(builder: _Builder, destination: Destination, knowledge: Knowledge) -> Facts:
    declined = declined_services(knowledge)
    offered = tuple(p for p in destination.protocols if p.service not in declined)
    mx = knowledge.mx
    srv_answers = [knowledge.srv.get(p.service) for p in offered]
    facts = Facts(
        "dns",
        destination.host,
        mx=None if mx is None else mx.status,
        null_mx=mx is not None and mx.status is Status.OK and is_null_mx(mx.records),
        declined=frozenset(declined),
        offered=tuple(p.service for p in offered),
        beyond_cap=any(names_more_than_resolved(answer) for answer in [*srv_answers, mx]),
    )
    targets: list[Target] = []
    for protocol, answer in zip(offered, srv_answers, strict=True):
        if answer is None:
            continue
        if answer.pending:
            builder.entries.append(Waiting(f"SRV _{protocol.service}._tcp"))
            continue
        for srv in usable_srv_targets(answer.records):
            targets.append(builder.target(srv.target, "srv", srv.priority))
            builder.add_target(
                srv.target, [protocol], port=srv.port, source="srv", preference=srv.priority
            )
    if mx is None or mx.status is Status.TEMPFAIL:
        return facts._replace(targets=tuple(targets))
    if mx.pending:
        builder.entries.append(Waiting("MX"))
        return facts._replace(targets=tuple(targets))
    exchangers = usable_exchangers(mx.records)
    if exchangers:
        targets += [builder.target(r.exchange, "mx", r.preference) for r in exchangers]
        cut = self_cut_preference(exchangers, knowledge, builder.local)
        builder.cut_preference = cut
        for record in exchangers:
            if cut is not None and record.preference >= cut:
                builder.self_cut = True
                break
            builder.add_target(
                record.exchange,
                protocols_for_slice(record.preference, offered),
                port=None,
                source="mx",
                preference=record.preference,
            )
    elif not mx.records and not targets:
        host = destination.name
        targets.append(builder.target(host, "implicit", 0))
        ipv6, ipv4 = knowledge.address_answers(host)
        if any(is_local(a, builder.local) for a in ipv6.records + ipv4.records):
            builder.self_cut = True
        else:
            builder.add_target(host, offered, port=None, source="implicit", preference=0)
    return facts._replace(targets=tuple(targets))


def self_cut_preference(
    exchangers: tuple[MX, ...], knowledge: Knowledge, local: frozenset[str]
) -> int | None:
    """qmail's ``prefme``: the best preference at which one of our addresses is listed."""
    best: int | None = None
    for record in exchangers:
        ipv6, ipv4 = knowledge.address_answers(record.exchange)
        if any(is_local(a, local) for a in ipv6.records + ipv4.records) and (
            best is None or record.preference < best
        ):
            best = record.preference
    return best


def self_check_verdict(
    attempt: Attempt, knowledge: Knowledge, local: frozenset[str]
) -> bool | None:
    """May ``attempt`` win, as far as the self-check knows: True, False, or None (not yet).

    The race may start an attempt to MX 20 while MX 10's addresses are still being looked
    up (a slow lookup holds later attempts back only for one connection delay).  If MX 10
    then turns out to be us, qmail's rule says MX 20 must not get the message: it is no
    closer to the destination than we are, and delivering there can loop.  So a connection
    from an MX (or implicit-MX) attempt may only win once every exchanger at least as
    good is known not to be us; until then the race keeps it open and waits for DNS.

    "Known not to be us" means: none of its known addresses is ours, and its A answer is
    in with addresses (qmail-remote's own view: its ipme and its lookups are IPv4 only),
    or both its lookups are over.  Waiting for a slow AAAA of an exchanger whose IPv4
    addresses are known to be elsewhere would throw away the 50 ms Resolution Delay.
    """
    if attempt.source == "implicit":
        candidates = [attempt.exchanger]
    elif attempt.source == "mx" and knowledge.mx is not None:
        candidates = [
            record.exchange
            for record in usable_exchangers(knowledge.mx.records)
            if record.preference <= attempt.preference
        ]
    else:
        return True
    unknown = False
    for name in candidates:
        ipv6, ipv4 = knowledge.address_answers(name)
        if any(is_local(a, local) for a in ipv6.records + ipv4.records):
            return False
        if not ipv4.records:
            unknown = unknown or ipv6.pending or ipv4.pending
    return None if unknown else True
