"""The only code that talks to c-ares: ``CaresLookup``, a ``Lookup`` over aiodns/pycares.

It asks one question, follows an unfinished CNAME chain as a recursive resolver would,
and maps c-ares' result to an ``Answer`` (records in our own plain types, names
normalised, addresses canonical).  It never raises for a DNS failure: that is a status.

Settings: c-ares keeps its own per-try timeouts (adaptive, down to 250 ms after a few
fast answers, see happy-eyeballs-and-dns.md §2.6), so it gets ``tries=3`` and a generous
first timeout; resolution's ``timeoutdns`` deadline is the real bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mxf_remote.addresses import canonical_address
from mxf_remote.knowledge import MX, SRV, Answer, Status, dns_name

CARES_FIRST_TIMEOUT = 2.0
"""Seconds c-ares waits for its first try (later tries adapt)."""
CARES_TRIES = 3

MAX_CNAME_RESTARTS = 8
"""Follow-up questions for one lookup whose answer ends in an unanswered CNAME."""

_CARES_HARD = {4: Status.NXDOMAIN, 1: Status.NODATA, 8: Status.NXDOMAIN}
"""c-ares error codes that mean "no such record", from c-ares' ``ares.h`` (the same numbers
as ``pycares.errno.ARES_*``; spelt out so that importing pycares is left to the first
query): ARES_ENODATA = 1 (the name exists, the type does not), ARES_ENOTFOUND = 4
(NXDOMAIN), ARES_EBADNAME = 8 (a name c-ares cannot even put in a question, which qmail's
resolver would have sent and got NXDOMAIN for).  Every other error -- SERVFAIL, REFUSED,
timeouts, a malformed answer -- is temporary."""


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
