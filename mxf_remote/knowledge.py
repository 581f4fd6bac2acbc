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
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Status(enum.Enum):
    """Where one lookup stands."""

    PENDING = "pending"
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TEMPFAIL = "tempfail"


HARD = (Status.NXDOMAIN, Status.NODATA)


@dataclass(frozen=True, slots=True)
class Answer(Generic[T_co]):
    """One lookup's state and, once OK, its records (already in plan order for MX/SRV)."""

    status: Status
    records: tuple[T_co, ...] = ()

    @property
    def pending(self) -> bool:
        """True while the query is outstanding."""
        return self.status is Status.PENDING


@dataclass(frozen=True, slots=True)
class MX:
    """An MX record: preference and exchanger name (empty for a null MX)."""

    preference: int
    exchange: str


@dataclass(frozen=True, slots=True)
class SRV:
    """An SRV record (RFC 2782); an empty target is the "." of "service not offered"."""

    priority: int
    weight: int
    port: int
    target: str


def dns_name(name: str) -> str:
    """The form names are stored and compared in: lower case, no trailing dot."""
    return name.rstrip(".").lower() if name != "." else ""


@dataclass
class Knowledge:
    """Everything resolved so far for one delivery."""

    mx: Answer[MX] | None = None
    """None when MX is not asked (a literal or a routed host)."""
    srv: dict[str, Answer[SRV]] = field(default_factory=dict)
    """By protocol service label."""
    ipv6: dict[str, Answer[str]] = field(default_factory=dict)
    """AAAA answers by name (canonical addresses)."""
    ipv4: dict[str, Answer[str]] = field(default_factory=dict)
    """A answers by name, as released to the planner (after the Resolution Delay)."""

    def address_answers(self, name: str) -> tuple[Answer[str], Answer[str]]:
        """The (AAAA, A) answers for ``name``; pending when never asked."""
        pending: Answer[str] = Answer(Status.PENDING)
        return self.ipv6.get(name, pending), self.ipv4.get(name, pending)

    def outstanding(self) -> int:
        """How many lookups that were started have no answer yet."""
        answers: list[Answer[object]] = [*self.srv.values(), *self.ipv6.values()]
        answers += [*self.ipv4.values(), *([self.mx] if self.mx else [])]
        return sum(1 for answer in answers if answer.pending)
