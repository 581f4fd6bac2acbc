"""What DNS has told us so far: plain data, filled in by the resolver as answers arrive.

Each lookup is an ``Answer``: pending until c-ares calls back, then OK with records, or
one of the failure kinds that matter to qmail's vocabulary:

* ``NXDOMAIN`` and ``NODATA`` are *hard*: the name or the record type does not exist;
* ``TEMPFAIL`` is everything else (SERVFAIL, REFUSED, timeout, an unreachable server, a
  malformed answer, our own ``timeoutdns`` running out): the answer may exist.

The planner (``plan.py``) reads this; only the resolver writes it.  Names are stored
lower-cased and without a trailing dot.
"""

from __future__ import annotations

import enum
from typing import Generic, NamedTuple, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Status(enum.Enum):
    """Where one lookup stands."""

    PENDING = "pending"
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TEMPFAIL = "tempfail"


HARD = (Status.NXDOMAIN, Status.NODATA)


class Answer(NamedTuple, Generic[T_co]):
    """One lookup's state and, once OK, its records (already in plan order for MX/SRV).

    ``ttl`` and ``cached`` say how long the answer may be kept and where it came from, not
    what DNS said: two answers are equal when their status, records and ``secure`` are,
    however and whenever they were obtained.
    """

    status: Status
    records: tuple[T_co, ...] = ()
    ttl: int | None = None
    """Seconds the answer may be kept (RFC 1035 TTL; RFC 2308 §5 for NXDOMAIN/NODATA); None
    when unknown (a temporary failure, a scripted answer).  ``cares.CaresLookup`` sets it."""
    cached: bool = False
    """True when ``dnscache.CachingLookup`` answered from its cache instead of asking."""
    secure: bool = False
    """DNSSEC: the validating resolver authenticated the answer (its AD bit, RFC 4035
    §3.2.3), through a CNAME chain too.  Only ``dnssec.DnssecLookup`` (``control/dane``
    on) ever sets it; an answer from c-ares is never secure.  Part of what DNS said, so
    it counts for equality."""
    canonical: str = ""
    """Where a CNAME chain led: the name the records were found at, when that is not the
    name asked ("" otherwise).  Only ``dnssec.DnssecLookup`` sets it (DANE's TLSA base
    domain, RFC 7672 §2.2.2).  Said by DNS, but which alias a resolver reports is not
    compared: it does not count for equality."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Answer):
            return (
                self.status is other.status
                and self.records == other.records
                and self.secure == other.secure
            )
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.status, self.records, self.secure))

    @property
    def pending(self) -> bool:
        """True while the query is outstanding."""
        return self.status is Status.PENDING


class MX(NamedTuple):
    """An MX record: preference and exchanger name (empty for a null MX)."""

    preference: int
    exchange: str


class SRV(NamedTuple):
    """An SRV record (RFC 2782); an empty target is the "." of "service not offered"."""

    priority: int
    weight: int
    port: int
    target: str


class TLSA(NamedTuple):
    """A TLSA record (RFC 6698 §2.1): how the server's certificate is to be matched."""

    usage: int
    """0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (only 2 and 3 are usable for SMTP,
    RFC 7672 §3.1.3)."""
    selector: int
    """0 the whole certificate, 1 its SubjectPublicKeyInfo."""
    mtype: int
    """0 the data itself, 1 SHA-256, 2 SHA-512."""
    data: bytes
    """The certificate association data."""

    def text(self) -> str:
        """Presentation form: ``3 1 1 <hex>`` (lower-case hex)."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def dns_name(name: str) -> str:
    """The form names are stored and compared in: lower case, no trailing dot."""
    return name.rstrip(".").lower() if name != "." else ""


class Knowledge:
    """Everything resolved so far for one delivery."""

    __slots__ = ("aliases", "ipv4", "ipv6", "mx", "srv", "tlsa")

    def __init__(
        self,
        mx: Answer[MX] | None = None,
        srv: dict[str, Answer[SRV]] | None = None,
        ipv6: dict[str, Answer[str]] | None = None,
        ipv4: dict[str, Answer[str]] | None = None,
        tlsa: dict[tuple[str, int], Answer[TLSA]] | None = None,
    ) -> None:
        self.mx = mx
        """None when MX is not asked (a literal or a routed host)."""
        self.srv: dict[str, Answer[SRV]] = srv if srv is not None else {}
        """By protocol service label."""
        self.ipv6: dict[str, Answer[str]] = ipv6 if ipv6 is not None else {}
        """AAAA answers by name (canonical addresses), as released to the planner (when
        IPv4 leads, after the Resolution Delay)."""
        self.ipv4: dict[str, Answer[str]] = ipv4 if ipv4 is not None else {}
        """A answers by name, as released to the planner (after the Resolution Delay)."""
        self.tlsa: dict[tuple[str, int], Answer[TLSA]] = tlsa if tlsa is not None else {}
        """``TLSA _<port>._tcp.<name>`` answers by (name, port); asked only with
        ``control/dane`` on, for the ports of the STARTTLS protocols."""
        self.aliases: dict[str, str] = {}
        """Exchanger name → the name its addresses were found at, when a *secure* CNAME
        chain led there (RFC 7672 §2.2.2: the TLSA base domain is then that name first)."""

    def address_answers(self, name: str) -> tuple[Answer[str], Answer[str]]:
        """The (AAAA, A) answers for ``name``; pending when never asked."""
        pending: Answer[str] = Answer(Status.PENDING)
        return self.ipv6.get(name, pending), self.ipv4.get(name, pending)

    def outstanding(self) -> int:
        """How many lookups that were started have no answer yet."""
        answers: list[Answer[object]] = [*self.srv.values(), *self.ipv6.values()]
        answers += [*self.ipv4.values(), *([self.mx] if self.mx else [])]
        answers += self.tlsa.values()
        return sum(1 for answer in answers if answer.pending)
