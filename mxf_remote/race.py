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
lives in ``resolution.py``.  Everything here runs on the event loop's clock, so a test
loop with virtual time can check each rule to the millisecond.

What happened is a value, not a log: the outcome (``Won`` or ``Lost``) carries one
``AttemptFate`` per attempt started -- when it started and ended, and why it ended --
so the report choice, the probe and the trace all read the same facts.  The race reads
the plan through a ``PlanSource`` (the current plan, whether resolution is over, the
self-check's verdict) and wakes up on one ``changed`` event that resolution sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import socket
from collections.abc import Awaitable, Callable, Container
from typing import Generic, NamedTuple, Protocol, TypeVar

from mxf_remote.addresses import Sources
from mxf_remote.plan import Attempt, Plan, Waiting


class Connection(Protocol):
    """What an attempt produces: something with a descriptor that can be closed."""

    def close(self) -> None:
        """Close it (a loser, or a winner nobody will use)."""

    def fileno(self) -> int:
        """Its descriptor."""
        ...


C = TypeVar("C", bound=Connection)


class Fate(enum.Enum):
    """How one attempt ended."""

    WON = "won"
    WON_AT_DEADLINE = "won at deadline"
    """Parked for the self-check until timeoutconnect ran out (see the rules above)."""
    FAILED = "failed"
    """The connect failed: refused, unreachable... (``error`` says which)."""
    TIMED_OUT = "timed out"
    """Still connecting when timeoutconnect ran out and nothing won."""
    RUNNER_UP_CLOSED = "runner-up closed"
    """Connected, but another attempt had won: closed."""
    CUT_BY_SELF_CHECK = "cut by self-check"
    """Connected to an exchanger no closer than we are: closed."""
    CUT_BY_TLS_POLICY = "cut by TLS policy"
    """Connected, but DANE or MTA-STS turned out to refuse it (``tlspolicy.py``): closed."""
    ABANDONED = "abandoned"
    """Still connecting when another attempt won: cancelled."""


class AttemptFate(NamedTuple):
    """One attempt of the race: when it started and ended (ms on the race's clock), and how."""

    attempt: Attempt
    start: float
    end: float
    fate: Fate
    error: str | None = None
    """For ``FAILED``: the errno name (``ECONNREFUSED``...) or the exception's type."""
    parked: float | None = None
    """When its handshake completed, if it then had to wait for the self-check."""


class Won(NamedTuple, Generic[C]):
    """The race produced a connection for ``attempt``."""

    attempt: Attempt
    connection: C
    fates: tuple[AttemptFate, ...] = ()
    ended: float = 0.0
    """When the race ended (ms on the race's clock)."""


class Lost(NamedTuple):
    """No connection: every attempt started, and how each ended."""

    fates: tuple[AttemptFate, ...] = ()
    timed_out: bool = False
    """timeoutconnect ran out (rather than every attempt failing)."""
    ended: float = 0.0

    @property
    def started(self) -> frozenset[tuple[str, int]]:
        """The (address, port) of every attempt made."""
        return frozenset(f.attempt.key for f in self.fates)

    @property
    def failures(self) -> tuple[tuple[Attempt, str], ...]:
        """Attempts that failed or were cut, with the reason, in the order they ended."""
        ended = sorted(
            (f for f in self.fates if f.fate in CUT_OR_FAILED),
            key=lambda f: f.end,
        )
        return tuple((f.attempt, f.error or _CUT_REASONS.get(f.fate, "")) for f in ended)


CUT_OR_FAILED = (Fate.FAILED, Fate.CUT_BY_SELF_CHECK, Fate.CUT_BY_TLS_POLICY)
_CUT_REASONS = {Fate.CUT_BY_SELF_CHECK: "self-check", Fate.CUT_BY_TLS_POLICY: "TLS policy"}


class PlanSource(Protocol):
    """What the race reads: the plan as DNS answers arrive, and the self-check."""

    def current(self) -> Plan:
        """The plan for what DNS has answered so far."""
        ...

    @property
    def settled(self) -> bool:
        """True when resolution is over: no lookup can add an attempt any more."""
        ...

    def may_win(self, attempt: Attempt) -> bool | None:
        """The self-check's verdict on a connected attempt: True, False, or None (not yet)."""
        ...

    def refuses(self, attempt: Attempt) -> bool:
        """True when the attempt's TLS policy (DANE, MTA-STS) now refuses it."""
        ...


def first_unstarted(plan: Plan, started: Container[tuple[str, int]]) -> tuple[Attempt | None, bool]:
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


class _Parked(NamedTuple, Generic[C]):
    attempt: Attempt
    connection: C
    since: float


class Race(Generic[C]):
    """One race over a plan that grows as DNS answers."""

    def __init__(
        self,
        source: PlanSource,
        connect: Callable[[Attempt], Awaitable[C]],
        *,
        changed: asyncio.Event,
        connect_delay: float,
        timeout_connect: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._source = source
        self._connect = connect
        self._changed = changed
        self._delay = connect_delay
        self._timeout = timeout_connect
        self._clock = clock
        self._parked: list[_Parked[C]] = []
        self._starts: list[tuple[Attempt, float]] = []
        self._start_times: dict[tuple[str, int], float] = {}
        self._waited: set[tuple[str, int]] = set()
        self._ends: dict[tuple[str, int], AttemptFate] = {}
        self._in_flight: dict[asyncio.Task[C], Attempt] = {}
        self._first_start: float | None = None
        self._next_allowed = 0.0
        self._hold_since: float | None = None
        self._winner: tuple[Attempt, C] | None = None
        self._finished = False

    def _now_ms(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time() * 1000

    async def run(self) -> Won[C] | Lost:
        """Race until a winner, a lost race, or the deadline; losers are closed."""
        timed_out = False
        try:
            timed_out = await self._conduct()
        finally:
            self._finished = True
            for parked in self._parked:
                parked.connection.close()
                self._end(parked.attempt, Fate.RUNNER_UP_CLOSED, parked=self._waited_since(parked))
            self._parked = []
            tasks = list(self._in_flight)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        ended = self._now_ms()
        unfinished = Fate.TIMED_OUT if timed_out else Fate.ABANDONED
        fates = tuple(
            self._ends.get(attempt.key) or AttemptFate(attempt, start, ended, unfinished)
            for attempt, start in self._starts
        )
        if self._winner is not None:
            attempt, connection = self._winner
            return Won(attempt, connection, fates, ended)
        return Lost(fates, timed_out, ended)

    async def _conduct(self) -> bool:
        """Run the race; True when timeoutconnect ended it without a winner."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            deadline = None if self._first_start is None else self._first_start + self._timeout
            out_of_time = deadline is not None and now >= deadline
            self._settle_parked(out_of_time)
            if self._winner is not None:
                return False
            if out_of_time:
                return True
            candidate, behind_waiting = first_unstarted(self._source.current(), self._start_times)
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
            elif not self._in_flight and not self._parked and self._source.settled:
                return False
            if deadline is not None:
                wake_at = deadline if wake_at is None else min(wake_at, deadline)
            await self._sleep_until(loop, wake_at)

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        self._changed.clear()
        timer = None if when is None else loop.call_at(when, self._changed.set)
        try:
            await self._changed.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def _end(
        self, attempt: Attempt, fate: Fate, *, error: str | None = None, parked: float | None = None
    ) -> None:
        start = self._start_times[attempt.key]
        self._ends[attempt.key] = AttemptFate(attempt, start, self._now_ms(), fate, error, parked)

    def _settle_parked(self, out_of_time: bool) -> None:
        """Connections wait here until the self-check allows or forbids them to win.

        ``out_of_time``: the budget is spent, so the lookups the self-check still waits
        for count as temporary failures, and the earliest connection not forbidden wins.
        """
        waiting: list[_Parked[C]] = []
        for parked in self._parked:
            if self._winner is None and self._source.refuses(parked.attempt):
                parked.connection.close()
                self._end(parked.attempt, Fate.CUT_BY_TLS_POLICY, parked=self._waited_since(parked))
                continue
            verdict = self._source.may_win(parked.attempt) if self._winner is None else False
            unresolved = verdict is None
            if unresolved and out_of_time:
                verdict = True
            if verdict is None:
                self._waited.add(parked.attempt.key)
                waiting.append(parked)
            elif verdict:
                self._winner = (parked.attempt, parked.connection)
                fate = Fate.WON_AT_DEADLINE if unresolved else Fate.WON
                self._end(parked.attempt, fate, parked=self._waited_since(parked))
            else:
                parked.connection.close()
                fate = Fate.RUNNER_UP_CLOSED if self._winner else Fate.CUT_BY_SELF_CHECK
                self._end(parked.attempt, fate, parked=self._waited_since(parked))
        self._parked = waiting

    def _waited_since(self, parked: _Parked[C]) -> float | None:
        """When ``parked`` began to wait for the self-check, if it ever had to."""
        return parked.since if parked.attempt.key in self._waited else None

    def _start(self, attempt: Attempt, now: float) -> None:
        started = self._now_ms()
        self._starts.append((attempt, started))
        self._start_times[attempt.key] = started
        if self._first_start is None:
            self._first_start = now
        self._next_allowed = now + self._delay
        self._hold_since = None
        task: asyncio.Task[C] = asyncio.ensure_future(self._connect(attempt))
        self._in_flight[task] = attempt
        task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[C]) -> None:
        attempt = self._in_flight.pop(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._end(attempt, Fate.FAILED, error=describe_error(error))
            self._next_allowed = min(self._next_allowed, asyncio.get_running_loop().time())
        elif self._winner is None and not self._finished:
            self._parked.append(_Parked(attempt, task.result(), self._now_ms()))
        else:
            task.result().close()
            self._end(attempt, Fate.RUNNER_UP_CLOSED)
        self._changed.set()


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Linux: a bind before connect picks the local port at connect time, from the whole
4-tuple, so binding every connection to one source address does not use up the ports."""


async def connect_tcp(attempt: Attempt, source: str | None = None) -> socket.socket:
    """A real TCP connect on the running loop; the socket is closed on any failure.

    ``source``: the local address to bind to first (``control/outgoingip``/``outgoingip6``
    for the attempt's family); None leaves the choice to the system.  A bind that fails
    fails the attempt like a refused connect.
    """
    family = socket.AF_INET6 if ":" in attempt.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            with contextlib.suppress(OSError):  # elsewhere the port is taken at bind time
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (attempt.address, attempt.port))
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_connector(sources: Sources) -> Callable[[Attempt], Awaitable[socket.socket]]:
    """``connect_tcp`` with each attempt bound to its family's source address, if any."""

    async def connect(attempt: Attempt) -> socket.socket:
        return await connect_tcp(attempt, sources.for_address(attempt.address))

    return connect
