"""Resolution: every DNS question at once, answers recorded as they arrive.

What is asked, and when (spec §3):

* at once and together: ``MX host``, ``SRV _<service>._tcp.host`` for each usable
  protocol, and ``AAAA host`` and ``A host``.  The host's own addresses are needed only
  for the implicit MX, but asking early makes that case cost no extra round trip;
* each exchanger's AAAA and A as soon as the MX or SRV answer naming it arrives, so no
  exchanger waits for another's lookups;
* for a routed host, only the relays' AAAA and A; for a literal, nothing.

RFC 8305 §3's Resolution Delay lives here: when a name's A answer arrives while its
AAAA is still outstanding, the A answer is held back for up to 50 ms, so that a slightly
slower AAAA still gets IPv6 tried first.  The planner simply sees the A lookup as
outstanding until it is released.

One ``timeoutdns`` deadline covers all of resolution; a lookup still outstanding then
becomes a temporary failure.  c-ares keeps its own per-try timeouts (adaptive, down to
250 ms after a few fast answers, see happy-eyeballs-and-dns.md §2.6), so it is given
``tries=3`` and a generous first timeout, and our deadline is the real bound.

``Lookup`` is the seam between this module and c-ares: ``CaresLookup`` asks real DNS
servers through aiodns; tests plug in a scripted lookup with virtual time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from mxf_remote.addresses import canonical_address, parse_literal
from mxf_remote.knowledge import MX, SRV, Answer, Knowledge, Status, dns_name
from mxf_remote.plan import (
    Destination,
    order_mx_rfc5321,
    order_srv_rfc2782,
    relay_name,
    usable_exchangers,
    usable_srv_targets,
)
from mxf_remote.trace import Trace

RESOLUTION_DELAY = 0.050
"""RFC 8305 §3: how long an A answer waits for a pending AAAA answer."""

CARES_FIRST_TIMEOUT = 2.0
CARES_TRIES = 3

MAX_CNAME_RESTARTS = 8
"""Follow-up questions for one lookup whose answer ends in an unanswered CNAME."""


class Lookup(Protocol):
    """One DNS question: ``rtype`` is ``MX``, ``SRV``, ``AAAA`` or ``A``.

    The answer's records are ``MX``/``SRV`` objects or canonical address strings, names
    normalised with ``dns_name``.  Never raises for a DNS failure: it is a status.
    """

    def __call__(self, name: str, rtype: str) -> Awaitable[Answer[Any]]:
        """Ask and wait for the answer."""
        ...


class Resolution:
    """The lookups for one destination, and the knowledge they build up."""

    def __init__(
        self,
        destination: Destination,
        lookup: Lookup,
        *,
        timeout: float,
        on_change: Callable[[], None],
        trace: Trace,
        rng: random.Random | None = None,
        resolution_delay: float = RESOLUTION_DELAY,
    ) -> None:
        self.destination = destination
        self.knowledge = Knowledge()
        self._lookup = lookup
        self._timeout = timeout
        self._on_change = on_change
        self._trace = trace
        self._rng = rng or random.Random()
        self._resolution_delay = resolution_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._held_ipv4: dict[str, tuple[Answer[str], asyncio.TimerHandle]] = {}
        self._deadline: asyncio.TimerHandle | None = None
        self.expired = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Send the first questions and arm the ``timeoutdns`` deadline."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._timeout, self.expire)
        destination = self.destination
        if destination.literal is not None:
            return
        if destination.routes:
            for _, route in destination.routes:
                if parse_literal(route.relay) is None:
                    self._resolve_addresses(relay_name(route.relay))
            return
        host = relay_name(destination.host)
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
        """``timeoutdns`` passed: every outstanding lookup becomes a temporary failure."""
        self.expired = True
        for name in list(self._held_ipv4):
            self._release_ipv4(name)
        knowledge = self.knowledge
        tempfail: Answer[Any] = Answer(Status.TEMPFAIL)
        if knowledge.mx is not None and knowledge.mx.pending:
            knowledge.mx = tempfail
        for table in (knowledge.srv, knowledge.ipv6, knowledge.ipv4):
            for key, answer in table.items():
                if answer.pending:
                    table[key] = tempfail
        self._trace.event("dns_timeout")
        self._cancel_tasks()
        self._on_change()

    async def close(self) -> None:
        """Stop every lookup and timer; nothing of resolution outlives this."""
        if self._deadline is not None:
            self._deadline.cancel()
        for _, timer in self._held_ipv4.values():
            timer.cancel()
        self._held_ipv4.clear()
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
        self._trace.event("query", name=name, type=rtype)
        try:
            answer = await self._lookup(name, rtype)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a resolver bug must not leave a lookup pending forever
            self._trace.event("query_error", name=name, type=rtype, error=repr(error))
            answer = Answer(Status.TEMPFAIL)
        if self.expired:
            return
        self._trace.event(
            "answer",
            name=name,
            type=rtype,
            status=answer.status.value,
            records=[_describe(r) for r in answer.records[:16]],
        )
        handler(answer)
        self._on_change()

    def _resolve_addresses(self, name: str) -> None:
        """Ask AAAA and A for ``name`` unless already asked (a dotted quad needs neither)."""
        knowledge = self.knowledge
        if name in knowledge.ipv4:
            return
        literal = parse_literal(name)
        if literal is not None and ":" not in literal:
            # qmail quirk kept: an MX or SRV target spelt as a dotted quad is used as is.
            knowledge.ipv6[name] = Answer(Status.NODATA)
            knowledge.ipv4[name] = Answer(Status.OK, (literal,))
            return
        knowledge.ipv6[name] = Answer(Status.PENDING)
        knowledge.ipv4[name] = Answer(Status.PENDING)
        self._ask(name, "AAAA", lambda answer: self._got_ipv6(name, answer))
        self._ask(name, "A", lambda answer: self._got_ipv4(name, answer))

    # -- answers -----------------------------------------------------------------------

    def _got_mx(self, answer: Answer[MX]) -> None:
        if answer.status is Status.OK:
            answer = Answer(Status.OK, order_mx_rfc5321(answer.records, self._rng))
            for record in usable_exchangers(answer.records):
                self._resolve_addresses(record.exchange)
        self.knowledge.mx = answer

    def _srv_handler(self, service: str) -> Callable[[Answer[SRV]], None]:
        def got_srv(answer: Answer[SRV]) -> None:
            if answer.status is Status.OK:
                answer = Answer(Status.OK, order_srv_rfc2782(answer.records, self._rng))
                for record in usable_srv_targets(answer.records):
                    self._resolve_addresses(record.target)
            self.knowledge.srv[service] = answer

        return got_srv

    def _got_ipv6(self, name: str, answer: Answer[str]) -> None:
        self.knowledge.ipv6[name] = answer
        if name in self._held_ipv4:
            self._release_ipv4(name)

    def _got_ipv4(self, name: str, answer: Answer[str]) -> None:
        if self.knowledge.ipv6[name].pending and answer.status is Status.OK:
            timer = asyncio.get_running_loop().call_later(
                self._resolution_delay, self._release_ipv4_and_notify, name
            )
            self._held_ipv4[name] = (answer, timer)
            return
        self.knowledge.ipv4[name] = answer

    def _release_ipv4(self, name: str) -> None:
        answer, timer = self._held_ipv4.pop(name)
        timer.cancel()
        self.knowledge.ipv4[name] = answer

    def _release_ipv4_and_notify(self, name: str) -> None:
        if name in self._held_ipv4:
            self._release_ipv4(name)
            self._trace.event("resolution_delay_over", name=name)
            self._on_change()


def _describe(record: object) -> object:
    if isinstance(record, MX):
        return [record.preference, record.exchange]
    if isinstance(record, SRV):
        return [record.priority, record.weight, record.port, record.target]
    return record


# ---------------------------------------------------------------------------------------
# Nameservers


def parse_nameserver(text: str) -> str:
    """One server as c-ares takes it: ``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6."""
    text = text.strip()
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        address = canonical_address(inside)
        port = rest[1:] if rest.startswith(":") else None
        if address is None or ":" not in address or (rest and port is None):
            raise ValueError(f"{text!r} is not an address")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        address = canonical_address(host)
        if address is None or ":" in address:
            raise ValueError(f"{text!r} is not an address")
    else:
        address, port = canonical_address(text), None
        if address is None:
            raise ValueError(f"{text!r} is not an address")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{text!r} has a bad port")
    if ":" in address:
        return f"[{address}]:{port or 53}"
    return f"{address}:{port or 53}"


def nameservers_from_env(value: str) -> list[str]:
    """``MXF_NAMESERVERS``: comma-separated servers; ValueError names the bad one."""
    servers = [parse_nameserver(part) for part in value.split(",") if part.strip()]
    if not servers:
        raise ValueError("MXF_NAMESERVERS is empty")
    return servers


def configured_nameservers(environ: Mapping[str, str]) -> list[str]:
    """``MXF_NAMESERVERS`` when set (ValueError, naming it, when malformed), else resolv.conf."""
    configured = environ.get("MXF_NAMESERVERS")
    if configured is None:
        return nameservers_from_resolv_conf()
    try:
        return nameservers_from_env(configured)
    except ValueError as error:
        raise ValueError(f"MXF_NAMESERVERS: {error}") from None


def nameservers_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[str]:
    """The ``nameserver`` lines of resolv.conf (bad ones skipped, as libc does).

    With none at all, libc's default applies: a server on this machine (127.0.0.1).
    """
    servers: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as conf:
            for line in conf:
                words = line.split("#", 1)[0].split(";", 1)[0].split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        servers.append(parse_nameserver(words[1]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return servers or ["127.0.0.1:53"]


# ---------------------------------------------------------------------------------------
# c-ares through aiodns

_CARES_HARD = {4: Status.NXDOMAIN, 1: Status.NODATA, 8: Status.NXDOMAIN}
"""ARES_ENOTFOUND, ARES_ENODATA, ARES_EBADNAME; every other error is temporary."""


class CaresLookup:
    """``Lookup`` over one aiodns resolver with explicit nameservers."""

    def __init__(self, nameservers: list[str], loop: asyncio.AbstractEventLoop) -> None:
        import aiodns

        self._aiodns = aiodns
        self._resolver = aiodns.DNSResolver(
            nameservers=nameservers, loop=loop, timeout=CARES_FIRST_TIMEOUT, tries=CARES_TRIES
        )

    async def __call__(self, name: str, rtype: str) -> Answer[Any]:
        """Ask c-ares; map its result to an ``Answer``.

        c-ares does not chase CNAMEs: an answer may end in an alias whose records are not
        in it (an authoritative server stops after a few hops, or at its zone's edge).  As
        a recursive resolver would, the question is asked again for the end of the chain,
        at most ``MAX_CNAME_RESTARTS`` times.  A chain that loops, and an answer holding
        only records of another type, are broken DNS: a temporary failure, never the hard
        "no such record" that would bounce the message.
        """
        seen = {dns_name(name)}
        for _ in range(MAX_CNAME_RESTARTS + 1):
            try:
                result = await self._resolver.query_dns(name, rtype)
            except self._aiodns.error.DNSError as error:
                code = error.args[0] if error.args and isinstance(error.args[0], int) else -1
                return Answer(_CARES_HARD.get(code, Status.TEMPFAIL))
            except (ValueError, UnicodeError):
                return Answer(Status.NXDOMAIN)
            records = _records(result, rtype)
            if records:
                return Answer(Status.OK, records)
            end = _chain_end(result, name, seen)
            if end is None:
                return Answer(Status.TEMPFAIL)
            if end == dns_name(name):
                return Answer(Status.NODATA)
            name = end
        return Answer(Status.TEMPFAIL)

    async def close(self) -> None:
        """Cancel what is outstanding and release the channel (before the loop closes)."""
        await self._resolver.close()


def _chain_end(result: Any, name: str, seen: set[str]) -> str | None:
    """Where the answer's CNAME chain from ``name`` ends; None for a loop or a wrong type.

    ``name`` itself when the answer has no CNAME for it (a plain NODATA).  Every name
    passed is added to ``seen``, so a loop across follow-up questions is caught too.
    """
    import pycares

    aliases: dict[str, str] = {}
    other = False
    for record in result.answer:
        if record.type == pycares.QUERY_TYPE_CNAME:
            aliases[dns_name(str(record.name))] = dns_name(str(record.data.cname))
        else:
            other = True
    current = dns_name(name)
    while current in aliases:
        current = aliases.pop(current)
        if current in seen:
            return None
        seen.add(current)
    if current == dns_name(name) and other:
        return None
    return current


def _records(result: Any, rtype: str) -> tuple[Any, ...]:
    import pycares

    wanted = {
        "MX": pycares.QUERY_TYPE_MX,
        "SRV": pycares.QUERY_TYPE_SRV,
        "A": pycares.QUERY_TYPE_A,
        "AAAA": pycares.QUERY_TYPE_AAAA,
    }[rtype]
    records: list[Any] = []
    for record in result.answer:
        if record.type != wanted:
            continue  # a CNAME in the chain, or a record of another type
        data = record.data
        if rtype == "MX":
            records.append(MX(int(data.priority), dns_name(data.exchange)))
        elif rtype == "SRV":
            records.append(
                SRV(int(data.priority), int(data.weight), int(data.port), dns_name(data.target))
            )
        else:
            address = canonical_address(data.addr)
            if address is not None and (":" in address) == (rtype == "AAAA"):
                records.append(address)
    return tuple(records)
