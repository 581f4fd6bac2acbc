"""Resolution: every DNS question at once, answers recorded as they arrive.

What is asked, and when (spec §3):

* at once and together: ``MX host``, ``SRV _<service>._tcp.host`` for each usable
  protocol, and ``AAAA host`` and ``A host``.  The host's own addresses are needed only
  for the implicit MX, but asking early makes that case cost no extra round trip;
* each exchanger's AAAA and A as soon as the MX or SRV answer naming it arrives, so no
  exchanger waits for another's lookups;
* for a routed host, only the relays' AAAA and A; for a literal, nothing;
* of AAAA and A, only the families the destination's policy allows
  (``control/addressfamilies``): the other is recorded as NODATA without a question, as
  if the name had no such addresses;
* with ``control/dane`` on, ``TLSA _<port>._tcp.<name>`` beside each exchanger's (or
  relay's) AAAA and A, for the ports of the STARTTLS protocols (RFC 7672 §2.2): it goes out
  in the same flight, so DANE costs no round trip.  The race does not wait for it; the
  handoff does (``tlspolicy.py``);
* (``TXT _mta-sts.<host>`` goes out at the same moment, from ``stsflow.py``.)

RFC 8305 §3's Resolution Delay lives here: when a name's A answer arrives while its
AAAA is still outstanding, the A answer is held back for up to 50 ms, so that a slightly
slower AAAA still gets IPv6 tried first.  The planner simply sees the A lookup as
outstanding until it is released.  When ``control/addressfamilies`` lets IPv4 lead
(``ipv4,ipv6``), the roles swap: an early AAAA answer waits for the A answer.

One ``timeoutdns`` deadline covers all of resolution; a lookup still outstanding then
becomes a temporary failure.

Two records come out: the ``Knowledge`` (what DNS said, which the planner reads) and
the ``queries`` (every question with the times it was sent and answered, which the
probe and the trace show).  Times are milliseconds on the clock the caller gives.

``Lookup`` is the seam between this module and c-ares: ``cares.CaresLookup`` asks real
DNS servers through aiodns; tests plug in a scripted lookup with virtual time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mxf_remote.addresses import IPV4, IPV6, parse_literal
from mxf_remote.destination import Destination
from mxf_remote.knowledge import MX, SRV, TLSA, Answer, Knowledge, Status
from mxf_remote.plan import (
    order_mx_rfc5321,
    order_srv_rfc2782,
    usable_exchangers,
    usable_srv_targets,
)

RESOLUTION_DELAY = 0.050
"""RFC 8305 §3: how long an A answer waits for a pending AAAA answer (or, when
``control/addressfamilies`` lets IPv4 lead, an AAAA answer for a pending A answer)."""


class Lookup(Protocol):
    """One DNS question: ``rtype`` is ``MX``, ``SRV``, ``AAAA`` or ``A``.

    The answer's records are ``MX``/``SRV`` objects or canonical address strings, names
    normalised with ``dns_name``.  Never raises for a DNS failure: it is a status.
    """

    def __call__(self, name: str, rtype: str) -> Awaitable[Answer[Any]]:
        """Ask and wait for the answer."""
        ...


class Query:
    """One question and its answer, as it happened (times in ms on the caller's clock)."""

    __slots__ = (
        "answered",
        "cached",
        "error",
        "name",
        "records",
        "rtype",
        "secure",
        "sent",
        "status",
    )

    def __init__(self, name: str, rtype: str, sent: float) -> None:
        self.name = name
        self.rtype = rtype
        self.sent = sent
        self.answered: float | None = None
        """None while outstanding, and for a question cut off by ``timeoutdns``."""
        self.status: Status = Status.PENDING
        self.records: tuple[Any, ...] = ()
        self.error: str | None = None
        """A lookup that raised instead of answering (a resolver bug): what it raised."""
        self.cached = False
        """True when a cache gave the answer (``Answer.cached``), not a DNS server."""
        self.secure = False
        """DNSSEC: the validating resolver authenticated the answer (``Answer.secure``)."""


class Resolution:
    """The lookups for one destination, and the knowledge they build up."""

    def __init__(
        self,
        destination: Destination,
        lookup: Lookup,
        *,
        timeout: float,
        changed: Callable[[], None],
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        resolution_delay: float = RESOLUTION_DELAY,
        dane: bool = False,
    ) -> None:
        self.destination = destination
        self._tlsa_services = {p.service for p in destination.protocols if p.explicit_tls}
        """Services whose exchangers get TLSA questions: the STARTTLS protocols, when
        ``control/dane`` is on."""
        if not dane:
            self._tlsa_services = set()
        self.knowledge = Knowledge()
        self.queries: list[Query] = []
        """Every question asked, in the order asked."""
        self.delays_over: list[tuple[str, float]] = []
        """(name, when): an answer held back for the Resolution Delay was released."""
        self.expired_at: float | None = None
        """When ``timeoutdns`` ran out, if it did."""
        self._lookup = lookup
        self._timeout = timeout
        self._on_change = changed
        self._clock = clock
        self._rng = rng or random.Random()
        self._resolution_delay = resolution_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, tuple[str, Answer[str], asyncio.TimerHandle]] = {}
        """(family, answer, timer) by name: an answer held for the Resolution Delay."""
        self._deadline: asyncio.TimerHandle | None = None
        self.expired = False

    def _now_ms(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time() * 1000

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Send the first questions and arm the ``timeoutdns`` deadline."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._timeout, self.expire)
        destination = self.destination
        if destination.literal is not None:
            return
        if destination.relays:
            for relay in destination.relays:
                if relay.name is not None:
                    self._resolve_addresses(relay.name)
                    if relay.protocol.service in self._tlsa_services:
                        self._resolve_tlsa(relay.name, relay.port)
            return
        host = destination.name
        self.knowledge.mx = Answer(Status.PENDING)
        self._ask(host, "MX", self._got_mx)
        for protocol in destination.protocols:
            self.knowledge.srv[protocol.service] = Answer(Status.PENDING)
            srv_name = f"_{protocol.service}._tcp.{host}"
            self._ask(srv_name, "SRV", self._srv_handler(protocol.service))
        self._resolve_addresses(host)

    @property
    def over(self) -> bool:
        """True when no lookup is outstanding (answered, failed or expired)."""
        return self.knowledge.outstanding() == 0

    def expire(self) -> None:
        """``timeoutdns`` passed: every outstanding lookup becomes a temporary failure.

        Nothing happens when resolution is over already (the race may outlast it).
        """
        if self.over and not self._held:
            return
        self.expired = True
        for name in list(self._held):
            self._release_held(name)
        knowledge = self.knowledge
        tempfail: Answer[Any] = Answer(Status.TEMPFAIL)
        if knowledge.mx is not None and knowledge.mx.pending:
            knowledge.mx = tempfail
        tables: tuple[dict[Any, Answer[Any]], ...] = (
            knowledge.srv,
            knowledge.ipv6,
            knowledge.ipv4,
            knowledge.tlsa,
        )
        for table in tables:
            for key, answer in table.items():
                if answer.pending:
                    table[key] = tempfail
        self.expired_at = self._now_ms()
        self._cancel_tasks()
        self._on_change()

    async def close(self) -> None:
        """Stop every lookup and timer; nothing of resolution outlives this."""
        if self._deadline is not None:
            self._deadline.cancel()
        for _, _, timer in self._held.values():
            timer.cancel()
        self._held.clear()
        tasks = self._cancel_tasks()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _cancel_tasks(self) -> list[asyncio.Task[None]]:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    # -- asking ------------------------------------------------------------------------

    def _ask(self, name: str, rtype: str, handler: Callable[[Answer[Any]], None]) -> None:
        task = asyncio.get_running_loop().create_task(self._question(name, rtype, handler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _question(
        self, name: str, rtype: str, handler: Callable[[Answer[Any]], None]
    ) -> None:
        query = Query(name, rtype, self._now_ms())
        self.queries.append(query)
        try:
            answer = await self._lookup(name, rtype)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a resolver bug must not leave a lookup pending forever
            query.error = repr(error)
            answer = Answer(Status.TEMPFAIL)
        if self.expired:
            return
        query.answered, query.status, query.records = self._now_ms(), answer.status, answer.records
        query.cached, query.secure = answer.cached, answer.secure
        handler(answer)
        self._on_change()

    def _resolve_addresses(self, name: str) -> None:
        """Ask AAAA and A for ``name`` unless already asked (a dotted quad needs neither).

        A family the destination's policy leaves out is not asked: NODATA stands for it.
        """
        knowledge = self.knowledge
        if name in knowledge.ipv4:
            return
        ask_ipv6 = self.destination.allows_family(IPV6)
        ask_ipv4 = self.destination.allows_family(IPV4)
        literal = parse_literal(name)
        if literal is not None and ":" not in literal:
            # qmail quirk kept: an MX or SRV target spelt as a dotted quad is used as is.
            knowledge.ipv6[name] = Answer(Status.NODATA)
            knowledge.ipv4[name] = (
                Answer(Status.OK, (literal,)) if ask_ipv4 else Answer(Status.NODATA)
            )
            return
        knowledge.ipv6[name] = Answer(Status.PENDING if ask_ipv6 else Status.NODATA)
        knowledge.ipv4[name] = Answer(Status.PENDING if ask_ipv4 else Status.NODATA)
        if ask_ipv6:
            self._ask(name, "AAAA", lambda answer: self._got_ipv6(name, answer))
        if ask_ipv4:
            self._ask(name, "A", lambda answer: self._got_ipv4(name, answer))

    def _resolve_tlsa(self, name: str, port: int) -> None:
        """Ask ``TLSA _<port>._tcp.<name>`` unless already asked (never for a dotted quad)."""
        key = (name, port)
        if key in self.knowledge.tlsa or parse_literal(name) is not None:
            return
        self.knowledge.tlsa[key] = Answer(Status.PENDING)

        def got_tlsa(answer: Answer[TLSA]) -> None:
            self.knowledge.tlsa[key] = answer

        self._ask(f"_{port}._tcp.{name}", "TLSA", got_tlsa)

    def _follow_alias(self, name: str, target: str) -> None:
        """RFC 7672 §2.2.2: ``name``'s addresses came through a secure CNAME chain to
        ``target``, so the TLSA base domain is ``target`` first: ask its TLSA too, at every
        port ``name``'s was asked for.  (Only in DANE mode: no TLSA was asked otherwise.)"""
        if name in self.knowledge.aliases:
            return
        self.knowledge.aliases[name] = target
        for host, port in list(self.knowledge.tlsa):
            if host == name:
                self._resolve_tlsa(target, port)

    def _resolve_exchanger(self, name: str, services: set[str], port: int | None) -> None:
        """An exchanger's addresses, and its TLSA for every STARTTLS protocol.

        ``port`` is the SRV record's, for the protocols of ``services``; the others (and
        every protocol of an MX exchanger, ``port`` None) at their default port.  A target
        found only through ``_qmtp._tcp`` SRV gets its ``_25._tcp`` TLSA too: were its SMTP
        protected, QMTP must not reach it (no downgrade through the race), whether or not
        the MX answer that would name it has come yet.
        """
        self._resolve_addresses(name)
        for protocol in self.destination.protocols:
            if protocol.service in self._tlsa_services:
                own = port if port and protocol.service in services else None
                self._resolve_tlsa(name, own or protocol.default_port)

    # -- answers -----------------------------------------------------------------------

    def _got_mx(self, answer: Answer[MX]) -> None:
        services = {p.service for p in self.destination.protocols}
        if answer.status is Status.OK:
            answer = Answer(
                Status.OK, order_mx_rfc5321(answer.records, self._rng), secure=answer.secure
            )
            for record in usable_exchangers(answer.records):
                self._resolve_exchanger(record.exchange, services, None)
        elif answer.status is Status.NODATA:  # the implicit MX: the host itself
            self._resolve_exchanger(self.destination.name, services, None)
        self.knowledge.mx = answer

    def _srv_handler(self, service: str) -> Callable[[Answer[SRV]], None]:
        def got_srv(answer: Answer[SRV]) -> None:
            if answer.status is Status.OK:
                answer = Answer(
                    Status.OK, order_srv_rfc2782(answer.records, self._rng), secure=answer.secure
                )
                for record in usable_srv_targets(answer.records):
                    self._resolve_exchanger(record.target, {service}, record.port)
            self.knowledge.srv[service] = answer

        return got_srv

    def _got_ipv6(self, name: str, answer: Answer[str]) -> None:
        self._got_addresses(name, IPV6, answer)

    def _got_ipv4(self, name: str, answer: Answer[str]) -> None:
        self._got_addresses(name, IPV4, answer)

    def _table(self, family: str) -> dict[str, Answer[str]]:
        return self.knowledge.ipv6 if family == IPV6 else self.knowledge.ipv4

    def _got_addresses(self, name: str, family: str, answer: Answer[str]) -> None:
        """Record an AAAA or A answer, holding the trailing family's for the leading one.

        The leading family is the destination's first (IPv6 unless
        ``control/addressfamilies`` says otherwise): its answer releases a held one.
        """
        if answer.canonical and answer.secure and answer.status is Status.OK:
            self._follow_alias(name, answer.canonical)
        leading = self.destination.families[0]
        if family != leading:
            if self._table(leading)[name].pending and answer.status is Status.OK:
                timer = asyncio.get_running_loop().call_later(
                    self._resolution_delay, self._release_held_and_notify, name
                )
                self._held[name] = (family, answer, timer)
                return
            self._table(family)[name] = answer
            return
        self._table(family)[name] = answer
        if name in self._held:
            self._release_held(name)

    def _release_held(self, name: str) -> None:
        family, answer, timer = self._held.pop(name)
        timer.cancel()
        self._table(family)[name] = answer

    def _release_held_and_notify(self, name: str) -> None:
        if name in self._held:
            self._release_held(name)
            self.delays_over.append((name, self._now_ms()))
            self._on_change()
