"""The only code that talks to c-ares: ``CaresLookup``, a ``Lookup`` over aiodns/pycares.

It asks one question, follows an unfinished CNAME chain as a recursive resolver would,
and maps c-ares' result to an ``Answer`` (records in our own plain types, names
normalised, addresses canonical).  It never raises for a DNS failure: that is a status.

Settings: c-ares keeps its own per-try timeouts (adaptive, down to 250 ms after a few
fast answers, see happy-eyeballs-and-dns.md §2.6), so it gets ``tries=3`` and a generous
first timeout; resolution's ``timeoutdns`` deadline is the real bound.

TTLs (for ``dnscache``): an OK answer's ``ttl`` is the smallest TTL of the records it was
built from, the CNAMEs of the chain included, across follow-up questions too (every CNAME
in an answer counts: a stray one can only shorten the time).  A negative answer's TTL is,
by RFC 2308 §5, min(SOA TTL, SOA MINIMUM) of the SOA in its authority section -- and c-ares
does not let us see it.  c-ares hands its callback the whole response, SOA included, with
status ENOTFOUND or ENODATA; pycares 5 (``_query_dnsrec_cb``) drops the response whenever
the status is not success, so aiodns' ``query_dns`` raises ``DNSError(4)`` or
``DNSError(1)`` with nothing else (measured against knot, pycares 5.2.1, c-ares 1.34.9;
reaching the response would take a cffi callback on pycares' private ``_lib``).  The SOA
is seen in one case only: a NOERROR answer holding a CNAME chain and the SOA (a recursive
resolver saying the chain's end has no record of the type); when the follow-up question
for that end then comes back NODATA or NXDOMAIN, that SOA gives its TTL.  Every other
negative answer gets ``NEGATIVE_TTL``; either way no more than the chain's CNAMEs allow.

Beware that c-ares also caches inside the channel (its qcache, on in pycares with no way
to turn it off), measured here: positive answers for their smallest TTL (counting down),
NXDOMAIN for the SOA's negative TTL, a negative answer without SOA not at all -- but
NODATA still from the qcache 40 s after knot stopped, with a negative TTL of 2 s.  (Its
code takes the SOA only for NXDOMAIN; for NODATA it takes the smallest TTL of the other
records, of which there are none, so its cap: an hour by default.)  A long-lived channel,
as in ``mxf-remoted``, therefore re-serves NODATA past its time whatever caches above it.

International names (RFC 5890): c-ares asks in ASCII, so a name with a label that is not
ASCII is asked by its A-labels, converted here (``ascii_name``) by IDNA 2008 with the
UTS #46 mapping, non-transitional (upper case folded, ``ß`` kept: ``FAß.example`` is asked
as ``xn--fa-hia.example``, never IDNA 2003's ``fass.example``), through the ``idna``
package.  Every name goes through here -- the host, MX and SRV targets, relays -- and the
callers keep the name as given (reports name the host as given).  A name that cannot be
converted is decided here, without a question (see ``ascii_name``).  ``idna`` is imported
for the first name that is not ASCII, never at start-up: pycares would import it with
itself when it is installed (to convert names itself, which it now never has to), so
``_import_aiodns`` keeps it from doing so.
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

NEGATIVE_TTL = 60
"""Seconds a NXDOMAIN or NODATA answer is good for when its SOA is out of sight (nearly
always, see above).  Short on purpose: most zones ask for 5 minutes to a day (SOA
MINIMUM), so 60 s keeps a negative answer no longer than its zone wants except in zones
asking for less, and then by under a minute -- a name created since is seen at most a
minute late, on top of what the recursive resolver itself caches.  It still spares the
questions that fail on every delivery (``_qmtp._tcp`` SRV names that do not exist, MX
NODATA for the implicit MX) while a busy queue sends to the same domain."""


NONCHARACTERS = frozenset(
    [
        *range(0xFDD0, 0xFDF0),
        *(plane << 16 | low for plane in range(17) for low in (0xFFFE, 0xFFFF)),
    ]
)
"""Unicode's 66 noncharacters: never assigned, in any version."""


def ascii_name(name: str) -> str | Status:
    """The name to ask c-ares for ``name``: as it is when ASCII, else by its A-labels.

    Each label that is not ASCII becomes its A-label by IDNA 2008 (RFC 5891) after the
    UTS #46 mapping (non-transitional: ``ß`` and ``ς`` stay, upper case is folded, the
    ideographic full stop separates labels); ASCII labels are left for c-ares to ask as
    they are (``_smtp``, an A-label written out).  When that is impossible, the answer
    without a question -- hard only where no such name can be in the DNS:

    * NXDOMAIN: bytes that are not UTF-8 (``os.fsdecode``'s surrogates), a code point
      IDNA 2008 disallows, a broken bidi or joiner rule, a label over 63 octets, an empty
      label.  No IDN can be spelt so; qmail-remote asks the raw bytes and gets NXDOMAIN
      too, and c-ares refuses a malformed ASCII name the same way (``_CARES_HARD``).
    * TEMPFAIL: a code point this Python's Unicode database does not know yet (assigned
      in a newer Unicode): a newer ``idna`` and Python may convert it, so it is deferred,
      never bounced.
    """
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return Status.NXDOMAIN  # a lone surrogate: bytes that are not UTF-8
    import idna

    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
    except ValueError:  # idna.IDNAError and punycode's errors are UnicodeErrors
        return Status.TEMPFAIL if _unknown_code_point(name) else Status.NXDOMAIN
    if not mapped.strip("."):
        return Status.NXDOMAIN  # nothing but characters UTS #46 ignores (soft hyphens)
    return ".".join(labels)


def _unknown_code_point(name: str) -> bool:
    """True when ``name`` has a code point this Python's Unicode does not assign (yet)."""
    import unicodedata

    return any(
        unicodedata.category(char) == "Cn" and ord(char) not in NONCHARACTERS for char in name
    )


def _import_aiodns() -> Any:
    """aiodns, imported without pycares importing ``idna`` along with it.

    pycares imports ``idna`` at its own import when it is installed (about 2 ms at every
    start-up, measured with ``python -X importtime``), to convert names that are not
    ASCII; ``ascii_name`` converts them before c-ares sees them.  While aiodns (and so
    pycares) is imported, ``sys.modules["idna"] = None`` makes that import fail, as
    Python documents; pycares then does without, and ``idna`` is free to be imported by
    ``ascii_name`` later.  Once pycares or ``idna`` is loaded, nothing is changed.
    """
    import sys

    if "pycares" in sys.modules or "idna" in sys.modules:
        import aiodns

        return aiodns
    sys.modules["idna"] = None  # type: ignore[assignment]
    try:
        import aiodns
    finally:
        if sys.modules.get("idna", 0) is None:
            del sys.modules["idna"]
    return aiodns


class CaresLookup:
    """``Lookup`` over one aiodns resolver with explicit nameservers."""

    def __init__(self, nameservers: list[str], loop: asyncio.AbstractEventLoop) -> None:
        aiodns = _import_aiodns()
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

        A name that is not ASCII is asked by its A-labels (``ascii_name``), and the chain
        is followed in that form, as the answers spell it.
        """
        asked = ascii_name(name)
        if isinstance(asked, Status):
            return Answer(asked, ttl=None if asked is Status.TEMPFAIL else NEGATIVE_TTL)
        name = asked
        seen = {dns_name(name)}
        chain_ttl: int | None = None  # the smallest TTL of the answers so far (their CNAMEs)
        negative_ttl = NEGATIVE_TTL  # the TTL of a hard failure of the name asked next
        for _ in range(MAX_CNAME_RESTARTS + 1):
            try:
                result = await self._resolver.query_dns(name, rtype)
            except self._aiodns.error.DNSError as error:
                code = error.args[0] if error.args and isinstance(error.args[0], int) else -1
                status = _CARES_HARD.get(code, Status.TEMPFAIL)
                if status is Status.TEMPFAIL:
                    return Answer(Status.TEMPFAIL)
                return Answer(status, ttl=_smallest(chain_ttl, negative_ttl))
            except (ValueError, UnicodeError):
                return Answer(Status.NXDOMAIN, ttl=_smallest(chain_ttl, negative_ttl))
            chain_ttl = _smallest(chain_ttl, _answer_ttl(result, rtype))
            records = _records(result, rtype)
            if records:
                return Answer(Status.OK, records, ttl=chain_ttl)
            end = _chain_end(result, name, seen)
            if end is None:
                return Answer(Status.TEMPFAIL)
            soa_ttl = _soa_negative_ttl(result)
            negative_ttl = NEGATIVE_TTL if soa_ttl is None else soa_ttl
            if end == dns_name(name):
                return Answer(Status.NODATA, ttl=_smallest(chain_ttl, negative_ttl))
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


def _smallest(first: int | None, second: int | None) -> int | None:
    """The smaller of two TTLs, either of which may be unknown (None)."""
    if first is None:
        return second
    return first if second is None else min(first, second)


def _answer_ttl(result: Any, rtype: str) -> int | None:
    """The smallest TTL of the answer section's CNAMEs and records of ``rtype``; None if none."""
    import pycares

    used = (pycares.QUERY_TYPE_CNAME, _wanted(rtype))
    ttls = [int(record.ttl) for record in result.answer if record.type in used]
    return min(ttls) if ttls else None


def _soa_negative_ttl(result: Any) -> int | None:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the authority section's SOA; None if none."""
    import pycares

    for record in result.authority:
        if record.type == pycares.QUERY_TYPE_SOA:
            return min(int(record.ttl), int(record.data.minimum))
    return None


def _wanted(rtype: str) -> int:
    """pycares' number for the record type ``rtype``."""
    import pycares

    wanted: dict[str, int] = {
        "MX": pycares.QUERY_TYPE_MX,
        "SRV": pycares.QUERY_TYPE_SRV,
        "A": pycares.QUERY_TYPE_A,
        "AAAA": pycares.QUERY_TYPE_AAAA,
        "TXT": pycares.QUERY_TYPE_TXT,
    }
    return wanted[rtype]


def _records(result: Any, rtype: str) -> tuple[Any, ...]:
    wanted = _wanted(rtype)
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
        elif rtype == "TXT":
            records.append(bytes(data.data))  # pycares 5 joins the character-strings
        else:
            address = canonical_address(data.addr)
            if address is not None and (":" in address) == (rtype == "AAAA"):
                records.append(address)
    return tuple(records)
