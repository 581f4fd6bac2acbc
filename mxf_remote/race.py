"""The race: staggered connection attempts under one deadline (RFC 8305, spec §5).

qmail-remote tries one address at a time and gives each the whole ``timeoutconnect``:
a silent best exchanger costs every message a minute.  Opening every connection at
once would be rude to the exchangers and wasteful for us.  RFC 8305 ("Happy Eyeballs
v2") sits between the two: start attempts one after another, a *Connection Attempt
Delay* apart, keep the earlier ones running, and take whichever completes first.  We
apply it across the whole plan -- exchangers, addresses, protocols -- not just across
the two address families of one name.

The rules, each small on its own:

* **Stagger.**  The first attempt starts as soon as it exists.  The next starts when
  ``connectdelay`` (default 250 ms, RFC 8305 §5) has passed since the last start, or at
  once when an attempt fails: a refused port should not cost a quarter second.
* **Plan order.**  The next attempt is always the first one in plan order that has not
  started.  The plan is rebuilt whenever DNS answers, so attempts discovered late join
  at their plan position, ahead of later attempts that have not started.
* **Slow lookups are slow connections.**  A ``Waiting`` marker (an SRV or MX answer, or
  an exchanger's addresses, still outstanding) holds back the attempts planned after it,
  but for at most ``connectdelay`` from the moment they could otherwise start.  Waiting
  for it forever would let one broken DNS server stall the delivery; not waiting at all
  would send the message to a worse exchanger whenever the better one's A record is a
  millisecond late.
* **One budget.**  ``timeoutconnect`` counts from the first start and covers the whole
  race (qmail gives it to each address).  When it passes, or when every known attempt has
  failed and resolution is over, the race is lost -- unless a connection is parked for
  the self-check (next rule).
* **Only closer exchangers win.**  A connection to an MX (or implicit-MX) exchanger is
  parked until every exchanger at least as good is known not to be this machine
  (``plan.self_check_verdict``), and closed if one of them is.  When the budget passes
  while connections are parked, the lookups they still wait for count as temporary
  failures, as in qmail-remote, where an MX target whose A lookup soft-fails is skipped
  and the next one gets the message: the earliest parked connection that no known
  address forbids wins then, at the deadline (traced as ``attempt_won`` with
  ``at_deadline``), instead of being closed for a ``#4.4.1``.  One that the self-check
  forbids (a better exchanger is known to be us) is closed, before the deadline or at it.
* **Exactly one winner.**  The first handshake to complete wins; every other socket is
  closed, including one that completes in the same loop iteration as the winner
  (aiohappyeyeballs learnt this the hard way; its PR 143).

The 50 ms Resolution Delay (an A answer waiting for AAAA) is resolution's business and
lives in ``resolver.py``.  Everything here runs on the event loop's clock, so a test loop
with virtual time can check each rule to the millisecond.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from mxf_remote.plan import Attempt, Plan, Waiting
from mxf_remote.trace import Trace


class Connection(Protocol):
    """What an attempt produces: something with a descriptor that can be closed."""

    def close(self) -> None:
        """Close it (a loser, or a winner nobody will use)."""

    def fileno(self) -> int:
        """Its descriptor."""
        ...


Connector = Callable[[Attempt], Awaitable[Connection]]


class Won(NamedTuple):
    """The race produced a connection for ``attempt``."""

    attempt: Attempt
    connection: Connection


class Lost(NamedTuple):
    """No connection; ``started`` holds the (address, port) of every attempt made."""

    started: frozenset[tuple[str, int]]
    failures: tuple[tuple[Attempt, str], ...] = ()
    timed_out: bool = False


def first_unstarted(plan: Plan, started: set[tuple[str, int]]) -> tuple[Attempt | None, bool]:
    """The next attempt in plan order, and whether a ``Waiting`` marker stands before it."""
    behind_waiting = False
    for entry in plan.entries:
        if isinstance(entry, Waiting):
            behind_waiting = True
        elif entry.key not in started:
            return entry, behind_waiting
    return None, behind_waiting


def describe_error(error: BaseException) -> str:
    """An attempt's failure in a word or two (``ECONNREFUSED``, ``timeout``...)."""
    if isinstance(error, OSError) and error.errno is not None:
        return errno.errorcode.get(error.errno, str(error.errno))
    return type(error).__name__


class Race:
    """One race over a plan that grows as DNS answers."""

    def __init__(
        self,
        plan: Callable[[], Plan],
        connect: Connector,
        *,
        resolution_over: Callable[[], bool],
        connect_delay: float,
        timeout_connect: float,
        trace: Trace,
        may_win: Callable[[Attempt], bool | None] = lambda attempt: True,
    ) -> None:
        self._plan = plan
        self._may_win = may_win
        self._parked: list[Won] = []
        self._connect = connect
        self._resolution_over = resolution_over
        self._delay = connect_delay
        self._timeout = timeout_connect
        self._trace = trace
        self._wake = asyncio.Event()
        self._started: set[tuple[str, int]] = set()
        self._in_flight: dict[asyncio.Task[Connection], Attempt] = {}
        self._failures: list[tuple[Attempt, str]] = []
        self._first_start: float | None = None
        self._next_allowed = 0.0
        self._hold_since: float | None = None
        self._winner: Won | None = None
        self._finished = False

    def wake(self) -> None:
        """Something changed (a DNS answer, an attempt ended): look at the plan again."""
        self._wake.set()

    async def run(self) -> Won | Lost:
        """Race until a winner, a lost race, or the deadline; losers are closed."""
        try:
            return await self._conduct()
        finally:
            self._finished = True
            for parked in self._parked:
                parked.connection.close()
            tasks = list(self._in_flight)
            for task in tasks:
                attempt = self._in_flight[task]
                self._trace.event("attempt_abandoned", address=attempt.address, port=attempt.port)
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _conduct(self) -> Won | Lost:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            deadline = None if self._first_start is None else self._first_start + self._timeout
            out_of_time = deadline is not None and now >= deadline
            self._settle_parked(out_of_time)
            if self._winner is not None:
                return self._winner
            if out_of_time:
                self._trace.event("race_timeout")
                return Lost(frozenset(self._started), tuple(self._failures), timed_out=True)
            candidate, behind_waiting = first_unstarted(self._plan(), self._started)
            wake_at: float | None = None
            if candidate is not None:
                if now < self._next_allowed:
                    wake_at = self._next_allowed
                elif not behind_waiting:
                    self._start(candidate, now)
                    continue
                else:
                    if self._hold_since is None:
                        self._hold_since = now
                    if now >= self._hold_since + self._delay:
                        self._start(candidate, now)
                        continue
                    wake_at = self._hold_since + self._delay
            elif not self._in_flight and not self._parked and self._resolution_over():
                return Lost(frozenset(self._started), tuple(self._failures))
            if deadline is not None:
                wake_at = deadline if wake_at is None else min(wake_at, deadline)
            await self._sleep_until(loop, wake_at)

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        self._wake.clear()
        timer = None if when is None else loop.call_at(when, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def _settle_parked(self, out_of_time: bool = False) -> None:
        """Connections wait here until the self-check allows or forbids them to win.

        ``out_of_time``: the budget is spent, so the lookups the self-check still waits
        for count as temporary failures, and the earliest connection not forbidden wins.
        """
        waiting: list[Won] = []
        for parked in self._parked:
            verdict = self._may_win(parked.attempt) if self._winner is None else False
            where = {"address": parked.attempt.address, "port": parked.attempt.port}
            unresolved = verdict is None
            if unresolved and out_of_time:
                verdict = True
            if verdict is None:
                if not waiting:
                    self._trace.event("attempt_waits_for_self_check", **where)
                waiting.append(parked)
            elif verdict:
                self._winner = parked
                why = {"at_deadline": True} if unresolved else {}
                self._trace.event(
                    "attempt_won", protocol=parked.attempt.protocol.service, **where, **why
                )
            else:
                parked.connection.close()
                if self._winner is None:
                    self._failures.append((parked.attempt, "self-check"))
                    self._trace.event("attempt_cut_by_self_check", **where)
        self._parked = waiting

    def _start(self, attempt: Attempt, now: float) -> None:
        self._started.add(attempt.key)
        if self._first_start is None:
            self._first_start = now
        self._next_allowed = now + self._delay
        self._hold_since = None
        self._trace.event(
            "attempt",
            protocol=attempt.protocol.service,
            exchanger=attempt.exchanger,
            address=attempt.address,
            port=attempt.port,
            source=attempt.source,
        )
        task: asyncio.Task[Connection] = asyncio.ensure_future(self._connect(attempt))
        self._in_flight[task] = attempt
        task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[Connection]) -> None:
        attempt = self._in_flight.pop(task)
        if task.cancelled():
            return
        error = task.exception()
        where = {"address": attempt.address, "port": attempt.port}
        if error is not None:
            reason = describe_error(error)
            self._failures.append((attempt, reason))
            self._trace.event("attempt_failed", error=reason, **where)
            self._next_allowed = min(self._next_allowed, asyncio.get_running_loop().time())
        elif self._winner is None and not self._finished:
            self._parked.append(Won(attempt, task.result()))
        else:
            task.result().close()
            self._trace.event("attempt_closed_runner_up", **where)
        self._wake.set()


async def connect_tcp(attempt: Attempt) -> socket.socket:
    """A real TCP connect on the running loop; the socket is closed on any failure."""
    family = socket.AF_INET6 if ":" in attempt.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (attempt.address, attempt.port))
    except BaseException:
        sock.close()
        raise
    return sock
