"""``DnssecLookup``: the ``Lookup`` for ``control/dane``, judging each answer by its AD bit.

DANE (RFC 7672) needs to know whether the MX answer, each exchanger's addresses and its
TLSA records were validated.  The local validating resolver says so with the AD bit of
its answer -- but only when the question carries AD=1 (RFC 6840 §5.7), and c-ares sends
RD alone and hides the answer's header (dane-mta-sts.md §1: measured with pycares 5.2.1,
c-ares 1.34.9).  So in DANE mode every question of a delivery goes through this small
stdlib client instead, one lookup for the whole delivery: mixing c-ares for the race
with a second, validated lookup would let two different answers meet.

How it asks (``dnsmessage`` builds and parses): one UDP datagram with RD=1, AD=1, EDNS0
at 1232 octets, DO=0 (no RRSIGs to carry), on a connected socket of its own, so the
kernel drops datagrams from any other address and reports a closed port at once.  Each
try waits ``timeout`` seconds; ``tries`` rounds go over the servers in order, as c-ares
does.  A datagram that is not the answer -- another ID, another question, QR=0, an
opcode other than QUERY, garbage -- is ignored and the wait goes on (it may be a late
answer to an earlier try, or a spoofer's guess).  TC=1 asks again over TCP on the same
server (two-octet length, a read bounded by that length and the try's time), where a
mismatched or broken answer fails the try.  A SERVFAIL, REFUSED or other error RCODE
also fails the try, as in c-ares, so the next server is asked; a validating resolver
says SERVFAIL for bogus data, with an Extended DNS Error (RFC 8914) that ``last_error``
keeps for the probe and the logs.

What the answer means, as ``cares.CaresLookup`` decides it (the same statuses, TTLs and
CNAME restarts, so the two are interchangeable behind the seam): NOERROR with records of
the type at the end of the CNAME chain from the name asked is OK, NOERROR without is
NODATA, NXDOMAIN is NXDOMAIN, everything else TEMPFAIL.  An unfinished chain is asked
again at its end, at most ``MAX_CNAME_RESTARTS`` times.  Only records owned by the chain's
end are used, so a server cannot slip in addresses for another name (c-ares takes every
record of the type); an answer with records but none of ours is broken DNS (TEMPFAIL),
never the NODATA that would say "no such record".  ``secure`` is True
only when every response used had AD=1.  Unlike c-ares, the SOA of a negative answer is
in sight, so NXDOMAIN and NODATA carry RFC 2308 §5's TTL when the server sent the SOA.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from mxf_remote import dnsmessage
from mxf_remote.cares import MAX_CNAME_RESTARTS, NEGATIVE_TTL, ascii_name
from mxf_remote.dnsmessage import MalformedMessage, Message, Question
from mxf_remote.knowledge import Answer, Status, dns_name

UDP_RECEIVE = 65535
"""Largest datagram read: more than we offer (1232), so an oversized answer is seen whole
(and then parsed or rejected) rather than cut by the kernel."""


def parse_server(text: str) -> tuple[int, tuple[str, int]]:
    """(address family, socket address) of a nameserver in ``nameservers``' form."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return socket.AF_INET6, (address, int(port))
    address, _, port = text.rpartition(":")
    return socket.AF_INET, (address, int(port))


COMPANION_TYPES = frozenset((dnsmessage.TYPE_CNAME, 39, 46))
"""What may stand in an answer beside (or instead of) the records asked for: CNAME, DNAME
(RFC 6672: its synthesized CNAME is what the chain follows) and RRSIG.  Anything else
there is broken DNS."""


class DnssecLookup:
    """``Lookup`` with AD=1 on every question; ``Answer.secure`` from the answers' AD bits."""

    def __init__(self, nameservers: list[str], *, timeout: float = 2.0, tries: int = 3) -> None:
        self._servers = [parse_server(server) for server in nameservers]
        self._timeout = timeout
        self._tries = tries
        self._callers: set[asyncio.Task[Any]] = set()
        self.last_error: str | None = None
        """Why the latest failed try failed (server, RCODE, EDE, ...): for diagnostics."""

    async def __call__(self, name: str, rtype: str) -> Answer[Any]:
        """Ask ``name``/``rtype`` (MX SRV A AAAA TLSA TXT), following CNAMEs; never raises."""
        task = asyncio.current_task()
        if task is not None:
            self._callers.add(task)
        try:
            return await self._lookup(name, rtype)
        finally:
            if task is not None:
                self._callers.discard(task)

    async def close(self) -> None:
        """Stop the lookups still running (their sockets close as they end)."""
        current = asyncio.current_task()
        callers = [task for task in self._callers if task is not current and not task.done()]
        for task in callers:
            task.cancel()
        if callers:
            await asyncio.wait(callers)

    async def _lookup(self, name: str, rtype: str) -> Answer[Any]:
        asked = ascii_name(name)
        if isinstance(asked, Status):
            return Answer(asked, ttl=None if asked is Status.TEMPFAIL else NEGATIVE_TTL)
        qtype = dnsmessage.TYPES[rtype]
        current = first = dns_name(asked)
        seen = {current}
        chain_ttl: int | None = None
        secure = True
        for _ in range(MAX_CNAME_RESTARTS + 1):
            try:
                question = dnsmessage.build_query(current, qtype)
            except ValueError:
                return Answer(Status.NXDOMAIN, ttl=_smallest(chain_ttl, NEGATIVE_TTL))
            message = await self._exchange(question)
            if message is None:
                return Answer(Status.TEMPFAIL)
            secure = secure and message.ad
            chain = _chain(message, question.name, seen)
            if chain is None:
                return Answer(Status.TEMPFAIL)
            names, ttl = chain
            chain_ttl = _smallest(chain_ttl, ttl)
            end = names[-1]
            wanted = [
                r for r in message.answers if r.owner == end and r.rtype == qtype and r.rclass == 1
            ]
            negative_ttl = _smallest(chain_ttl, _soa_negative_ttl(message))
            if message.rcode == dnsmessage.RCODE_NXDOMAIN:
                return Answer(Status.NXDOMAIN, ttl=negative_ttl, secure=secure)
            if wanted:
                records = tuple(r.data for r in wanted)  # already in Answer's forms
                ttl_used = min(r.ttl for r in wanted)
                return Answer(
                    Status.OK,
                    records,
                    ttl=_smallest(chain_ttl, ttl_used),
                    secure=secure,
                    canonical=end if end != first else "",
                )
            if any(r.rtype not in COMPANION_TYPES for r in message.answers):
                return Answer(Status.TEMPFAIL)  # records of another type: broken DNS
            if end == question.name:
                return Answer(Status.NODATA, ttl=negative_ttl, secure=secure)
            current = end
        return Answer(Status.TEMPFAIL)

    # -- one question, every try ----------------------------------------------------------

    async def _exchange(self, question: Question) -> Message | None:
        """The answer to ``question``: ``tries`` rounds over the servers; None if none."""
        for _ in range(self._tries):
            for family, address in self._servers:
                message = await self._try(family, address, question)
                if message is None:
                    continue
                if message.rcode in (dnsmessage.RCODE_NOERROR, dnsmessage.RCODE_NXDOMAIN):
                    return message
                self._failed(address, _rcode_text(message))
                if message.rcode == dnsmessage.RCODE_SERVFAIL:
                    # A validating resolver's SERVFAIL is its verdict (bogus data): final.
                    # Asking on could find a server that does not validate and answers the
                    # same forgery as merely insecure, which would switch DANE off.
                    return None
        return None

    async def _try(
        self, family: int, address: tuple[str, int], question: Question
    ) -> Message | None:
        """One try at one server: UDP, then TCP when truncated; None when it failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            message = await self._udp(family, address, question, deadline)
            if message is not None and message.tc:
                message = await self._tcp(family, address, question, deadline)
        except (OSError, TimeoutError, EOFError, MalformedMessage) as error:
            self._failed(address, type(error).__name__ + (f": {error}" if str(error) else ""))
            return None
        if message is None:
            self._failed(address, "no answer")
        return message

    async def _udp(
        self, family: int, address: tuple[str, int], question: Question, deadline: float
    ) -> Message | None:
        loop = asyncio.get_running_loop()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(address)
            await loop.sock_sendall(sock, question.wire)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                async with asyncio.timeout(remaining):
                    data = await loop.sock_recv(sock, UDP_RECEIVE)
                try:
                    message = dnsmessage.parse(data)
                except MalformedMessage:
                    continue  # garbage: keep waiting for the answer
                if dnsmessage.answers_question(message, question):
                    return message

    async def _tcp(
        self, family: int, address: tuple[str, int], question: Question, deadline: float
    ) -> Message:
        loop = asyncio.get_running_loop()
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            async with asyncio.timeout_at(deadline):
                await loop.sock_connect(sock, address)
                wire = question.wire
                await loop.sock_sendall(sock, struct.pack("!H", len(wire)) + wire)
                (length,) = struct.unpack("!H", await _read_exactly(loop, sock, 2))
                message = dnsmessage.parse(await _read_exactly(loop, sock, length))
        if not dnsmessage.answers_question(message, question):
            raise MalformedMessage("the TCP answer is not for our question")
        return message

    def _failed(self, address: tuple[str, int], why: str) -> None:
        self.last_error = f"{address[0]}:{address[1]}: {why}"


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    """``size`` octets from a stream socket; EOFError when it closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise EOFError("the server closed the connection mid-answer")
        data += chunk
    return bytes(data)


def _rcode_text(message: Message) -> str:
    """``SERVFAIL EDE 6 (DNSSEC Bogus)``: the RCODE and its Extended DNS Errors."""
    text = dnsmessage.RCODE_NAMES.get(message.rcode, f"RCODE {message.rcode}")
    for code, extra in message.ede:
        text += f" EDE {code}" + (f" ({extra})" if extra else "")
    return text


def _chain(message: Message, name: str, seen: set[str]) -> tuple[list[str], int | None] | None:
    """The names of the CNAME chain from ``name`` and its smallest TTL; None for a loop.

    Only CNAMEs owned by the chain's names are followed (the first for each owner); every
    name reached is added to ``seen``, so a loop across follow-up questions is caught too.
    """
    aliases: dict[str, tuple[str, int]] = {}
    for record in message.answers:
        if record.rtype == dnsmessage.TYPE_CNAME and record.rclass == 1:
            aliases.setdefault(record.owner, (record.data, record.ttl))
    names = [name]
    ttl: int | None = None
    while names[-1] in aliases:
        target, record_ttl = aliases[names[-1]]
        ttl = _smallest(ttl, record_ttl)
        if target in seen:
            return None
        seen.add(target)
        names.append(target)
    return names, ttl


def _soa_negative_ttl(message: Message) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the authority's SOA; else ``NEGATIVE_TTL``."""
    for record in message.authority:
        if record.rtype == dnsmessage.TYPE_SOA and record.rclass == 1:
            soa: dnsmessage.Soa = record.data
            return min(record.ttl, soa.minimum)
    return NEGATIVE_TTL


def _smallest(first: int | None, second: int | None) -> int | None:
    """The smaller of two TTLs, either of which may be unknown (None)."""
    if first is None:
        return second
    return first if second is None else min(first, second)
