"""Connection history: recently silent addresses go behind their siblings (qmail's tcpto).

qmail-remote remembers, in ``queue/lock/tcpto``, the IPv4 addresses whose connections
timed out: after a second timeout at least two minutes after the first, with no success
in between, the address is skipped for about an hour (contract §3.5).  A process that
lives for one delivery can only share that memory through a file; ``mxf-remoted`` lives
for all of them, so it keeps the same memory in its own process, for IPv4 and IPv6, per
(address, port):

* a **failure** -- a connect that timed out (still pending when timeoutconnect ran out,
  or ETIMEDOUT), an unreachable network or host, or a refusal (which s/qmail counts as
  well) -- counts one, unless the previous one is less than ``TOLERANCE`` seconds old
  (tcpto's two minutes: one silent minute is one failure, not sixty);
* a **success** (the handshake completed, whether it won or not) forgets the address;
* an attempt abandoned because another won says nothing: it may have been about to
  connect;
* an address with ``PENALIZED_AT`` failures or more, the last less than ``PENALTY``
  seconds ago, is **penalized**.

Where tcpto skips a penalized address, we only move it behind its siblings -- the other
addresses of the same exchanger for the same protocol -- so a penalty can never make a
message undeliverable: the address is still tried, later.  When the penalty expires the
address takes its place again; one success clears it.

The table is bounded (``MAX_ENTRIES``; the oldest failures go first) and lives only in
the server's memory: a restart forgets it, as qmail-rspawn's ``tcpto_clean`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from mxf_remote.race import AttemptFate, Fate

TOLERANCE = 120.0
"""Seconds: a failure this soon after the previous one of the same address is not counted."""
PENALIZED_AT = 2
PENALTY = 3600.0
"""Seconds a penalty lasts after the last failure (tcpto: about an hour)."""
MAX_COUNT = 10
MAX_ENTRIES = 4096

FAILURES = frozenset({"ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNREFUSED", "TimeoutError"})
"""Connect errors that count: the address did not answer, or said no."""


class Record(NamedTuple):
    """What is remembered about one (address, port)."""

    failures: int
    """Failures counted (at most MAX_COUNT)."""
    last: float
    """When the last counted failure happened (the history's clock, seconds)."""


class History:
    """Failures per (address, port), and which are penalized now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[tuple[str, int], Record] = {}

    def learn(self, fates: Iterable[AttemptFate]) -> None:
        """Take in how the attempts of one race ended."""
        now = self._clock()
        for fate in fates:
            key = fate.attempt.key
            if fate.fate in (Fate.WON, Fate.WON_AT_DEADLINE, Fate.RUNNER_UP_CLOSED,
                             Fate.CUT_BY_SELF_CHECK, Fate.CUT_BY_TLS_POLICY):  # fmt: skip
                self._records.pop(key, None)
            elif fate.fate is Fate.TIMED_OUT or (
                fate.fate is Fate.FAILED and fate.error in FAILURES
            ):
                self._fail(key, now)

    def _fail(self, key: tuple[str, int], now: float) -> None:
        record = self._records.get(key)
        if record is not None and now - record.last < TOLERANCE:
            return
        count = 1 if record is None else min(record.failures + 1, MAX_COUNT)
        self._records.pop(key, None)
        self._records[key] = Record(count, now)  # newest last: the dict is in failure order
        while len(self._records) > MAX_ENTRIES:
            del self._records[next(iter(self._records))]

    def penalized(self, address: str, port: int) -> bool:
        """True when (address, port) failed often and lately enough to go behind."""
        record = self._records.get((address, port))
        return (
            record is not None
            and record.failures >= PENALIZED_AT
            and self._clock() - record.last < PENALTY
        )

    def records(self) -> dict[tuple[str, int], Record]:
        """A copy of the table (for the trace and tests)."""
        return dict(self._records)

    def snapshot(self) -> list[dict[str, object]]:
        """The table as JSON shows it: address, port, failures, seconds since the last,
        and whether it is penalized now."""
        now = self._clock()
        return [
            {
                "address": address,
                "port": port,
                "failures": record.failures,
                "seconds_ago": round(now - record.last, 1),
                "penalized": self.penalized(address, port),
            }
            for (address, port), record in self._records.items()
        ]
