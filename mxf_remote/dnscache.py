"""A DNS cache across deliveries: ``CachingLookup``, a ``Lookup`` in front of another.

``mxf-remoted`` keeps one per nameserver set (``Server.lookup_for``), so answers from one
set of servers never answer a delivery that names another; the one-shot ``mxf-remote``
does not cache (its process ends with the delivery).  Entries are keyed by (name, type),
the name in ``dns_name`` form.

What is kept, and for how long:

* OK, NXDOMAIN and NODATA answers, for the ``ttl`` the inner lookup reports
  (``cares.CaresLookup``: the smallest TTL of the records and CNAMEs used; for a negative
  answer the RFC 2308 §5 SOA TTL when c-ares lets us see it, else ``cares.NEGATIVE_TTL``).
  Positive answers are kept at most ``MAX_TTL`` (a day), negative ones at most
  ``MAX_NEGATIVE_TTL`` (3 hours, the top of RFC 2308 §5's "one to three hours").  A TTL
  of 0 -- "use once" -- and an unknown TTL (None) are not kept.
* A hit returns the stored answer with ``cached=True`` and the TTL that remains (whole
  seconds, rounded down); an entry is expired from the moment its TTL has fully run out.
* Temporary failures (SERVFAIL, REFUSED, timeouts, an unreachable server: ``TEMPFAIL``)
  are never kept, not even for a few seconds, and never stand for NXDOMAIN: the next ask
  asks again.  Keeping them would buy little and cost a lot.  qmail-send retries a
  deferred message minutes later, far beyond any short negative cache; deliveries that
  ask *at the same time* already share one question (below), so a failing server is not
  asked once per delivery; and a failure is often our own -- one delivery's ``timeoutdns``
  cut, a packet lost -- which a cache would hand to deliveries that never met it.  c-ares
  does not keep them either.

Concurrent misses for the same key share one question to the inner lookup (no thundering
herd): the first miss starts it as a task of its own, later ones wait for the same task.
A delivery that stops waiting (its ``timeoutdns`` ran out, its race was won) does not stop
the question for the others; a question nobody waits for any more still finishes and
fills the cache.  Those waiters get the fresh answer (``cached`` false): they asked DNS,
if together.

Bounded: at most ``max_entries`` entries holding at most ``max_records`` records between
them, the least recently used evicted first (a hit counts as a use); an answer with more
records than that on its own is not kept.  Both bounds count, because one answer may hold
a whole 64 KiB DNS message's records (a thousand MX records: tests/test_hostile_dns.py)
and a domain's owner picks that size.  An expired entry is dropped when it is next looked
at or when it reaches the end of the LRU order.

The order of MX and SRV records is drawn per delivery by resolution, after the cache,
so equal preferences still spread the load across deliveries.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mxf_remote.knowledge import Answer, Status, dns_name

if TYPE_CHECKING:
    from mxf_remote.resolution import Lookup

MAX_ENTRIES = 10_000
"""Default bound on entries: several hundred destinations' worth (a delivery asks MX, a
few SRV, AAAA and A, then AAAA and A per exchanger)."""
MAX_RECORDS = 100_000
"""Default bound on the records held by all entries together: some 20 MB at most (an MX
record or an address in Python is 60 to 200 bytes)."""
MAX_TTL = 86_400
"""Seconds a positive answer is kept at most, whatever its TTL (a day)."""
MAX_NEGATIVE_TTL = 10_800
"""Seconds a NXDOMAIN or NODATA answer is kept at most (RFC 2308 §5's three hours)."""

_KEPT = {Status.OK: MAX_TTL, Status.NXDOMAIN: MAX_NEGATIVE_TTL, Status.NODATA: MAX_NEGATIVE_TTL}
"""The statuses kept, with the longest time each is kept."""

Key = tuple[str, str]


class CachingLookup:
    """``Lookup`` answering from a TTL-honouring LRU cache, asking ``inner`` on a miss."""

    def __init__(
        self,
        inner: Lookup,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        max_records: int = MAX_RECORDS,
    ) -> None:
        """``clock`` gives seconds (monotonic); ``max_entries`` is at least 1; negative
        answers (no records) are kept even when ``max_records`` is 0."""
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._inner = inner
        self._clock = clock
        self._max_entries = max_entries
        self._max_records = max_records
        self._entries: OrderedDict[Key, tuple[float, Answer[Any]]] = OrderedDict()
        """(expiry time on ``clock``, answer) by key, least recently used first."""
        self._records = 0
        """How many records the entries hold between them."""
        self._asking: dict[Key, asyncio.Task[Answer[Any]]] = {}
        """The question under way for each key that missed."""

    def __len__(self) -> int:
        """How many entries are held, expired ones not yet dropped included."""
        return len(self._entries)

    @property
    def records(self) -> int:
        """How many records the entries hold between them."""
        return self._records

    async def __call__(self, name: str, rtype: str) -> Answer[Any]:
        """The cached answer while its TTL lasts; otherwise the inner lookup's."""
        key = (dns_name(name), rtype)
        hit = self._fresh(key)
        if hit is not None:
            return hit
        task = self._asking.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._ask(key, name, rtype))
            self._asking[key] = task
            task.add_done_callback(lambda done: self._asked(key, done))
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Stop the questions under way, then close the inner lookup if it can be."""
        tasks = list(self._asking.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        close = getattr(self._inner, "close", None)
        if close is not None:
            await close()

    def _fresh(self, key: Key) -> Answer[Any] | None:
        """The entry for ``key`` as a cache hit, if there is one and it has not expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        now = self._clock()
        if now >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return answer._replace(ttl=int(expires - now), cached=True)

    async def _ask(self, key: Key, name: str, rtype: str) -> Answer[Any]:
        """Ask ``inner`` once for everyone waiting on ``key``; keep what may be kept."""
        try:
            answer = await self._inner(name, rtype)
        finally:
            self._forget(key, asyncio.current_task())  # from now on, a miss asks anew
        longest = _KEPT.get(answer.status)
        if longest is None or answer.ttl is None or answer.ttl <= 0:
            return answer
        if len(answer.records) > self._max_records:
            return answer
        self._drop(key)
        self._entries[key] = (self._clock() + min(answer.ttl, longest), answer)
        self._records += len(answer.records)
        while len(self._entries) > self._max_entries or self._records > self._max_records:
            self._drop(next(iter(self._entries)))
        return answer

    def _drop(self, key: Key) -> None:
        """Forget the entry for ``key``, if there is one."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._records -= len(entry[1].records)

    def _asked(self, key: Key, task: asyncio.Task[Answer[Any]]) -> None:
        """The question for ``key`` is over (cancelled before it began, too)."""
        self._forget(key, task)
        if not task.cancelled():
            task.exception()  # retrieved: a waiter re-raises it, and none may be left

    def _forget(self, key: Key, task: object) -> None:
        """``task`` no longer answers misses of ``key``."""
        if self._asking.get(key) is task:
            del self._asking[key]
