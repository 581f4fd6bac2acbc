"""The asynchronous phase: resolve and race, then leave nothing running.

``mxf-remote`` and ``mxf-remote-probe`` both call ``run_dispatch``; the first execs the
winner's protocol client, the second prints what happened.  The event loop is a phase,
not the program: ``run_dispatch`` creates it (uvloop when importable), runs one
coroutine, closes the c-ares resolver *before* the loop (otherwise c-ares' thread calls
back into a closed loop and writes noise on stderr, which is the report pipe), closes
the loop, and returns plain values.

The wiring, in one direction: resolution fills the knowledge and sets one ``changed``
event; ``LivePlan`` turns the knowledge into the current plan and the self-check's
verdicts; the race reads the ``LivePlan`` and wakes on ``changed``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Generic, NamedTuple, TypeVar

from mxf_remote.addresses import Sources
from mxf_remote.control import Control
from mxf_remote.destination import Destination
from mxf_remote.knowledge import Answer, Status
from mxf_remote.plan import Attempt, Plan, build_plan, self_check_verdict
from mxf_remote.race import Connection, Lost, Race, Won, tcp_connector
from mxf_remote.resolution import Lookup, Query, Resolution

C = TypeVar("C", bound=Connection)


class Dispatched(NamedTuple, Generic[C]):
    """What the asynchronous phase found: the outcome, the final plan, every question."""

    outcome: Won[C] | Lost
    plan: Plan
    queries: tuple[Query, ...] = ()
    delays_over: tuple[tuple[str, float], ...] = ()
    """(name, ms): an A answer held for the Resolution Delay was released."""
    dns_expired_at: float | None = None
    """When ``timeoutdns`` ran out, if it did (ms)."""
    sources: Sources = Sources()
    """The source addresses the attempts were bound to (``control/outgoingip``/``6``)."""


class LivePlan:
    """The plan as DNS answers arrive: what the race reads (``race.PlanSource``)."""

    def __init__(
        self,
        destination: Destination,
        resolution: Resolution,
        local: frozenset[str],
        penalized: Callable[[str, int], bool] | None = None,
    ) -> None:
        self._destination = destination
        self._resolution = resolution
        self._local = local
        self._penalized = penalized

    def current(self) -> Plan:
        """The plan for what DNS has answered so far."""
        return build_plan(
            self._destination, self._resolution.knowledge, self._local, self._penalized
        )

    @property
    def settled(self) -> bool:
        """True when no lookup is outstanding."""
        return self._resolution.over

    def may_win(self, attempt: Attempt) -> bool | None:
        """The self-check's verdict on a connected attempt."""
        return self_check_verdict(attempt, self._resolution.knowledge, self._local)


async def dispatch(
    destination: Destination,
    control: Control,
    lookup: Lookup,
    *,
    local: frozenset[str],
    connect: Callable[[Attempt], Awaitable[C]],
    clock: Callable[[], float] | None = None,
    penalized: Callable[[str, int], bool] | None = None,
) -> Dispatched[C]:
    """Resolve and race for ``destination``; every lookup is stopped on return.

    ``clock`` gives the milliseconds the outcome's and the queries' times are in (the
    trace's clock in production; the loop's, virtual in tests, by default).
    ``penalized``: mxf-remoted's connection history (``history.History.penalized``).
    ``connect`` binds to ``control.sources`` itself (``race.tcp_connector``); they are
    passed on in the result for the trace and the probe.
    """
    changed = asyncio.Event()
    resolution = Resolution(
        destination, lookup, timeout=control.timeout_dns, changed=changed.set, clock=clock
    )
    plan = LivePlan(destination, resolution, local, penalized)
    race: Race[C] = Race(
        plan,
        connect,
        changed=changed,
        connect_delay=control.connect_delay,
        timeout_connect=control.timeout_connect,
        clock=clock,
    )
    resolution.start()
    try:
        outcome = await race.run()
    finally:
        await resolution.close()
    return Dispatched(
        outcome,
        plan.current(),
        tuple(resolution.queries),
        tuple(resolution.delays_over),
        resolution.expired_at,
        control.sources,
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's default loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_dispatch(
    destination: Destination,
    control: Control,
    nameservers: list[str],
    *,
    local: frozenset[str],
    clock: Callable[[], float],
    penalized: Callable[[str, int], bool] | None = None,
) -> Dispatched[socket.socket]:
    """Run ``dispatch`` on a fresh loop with c-ares, and close everything before returning.

    ``penalized``: a connection history to order the plan by (the probe shows the
    server's).
    """
    loop = new_event_loop()
    try:
        return loop.run_until_complete(
            _dispatch_with_cares(
                destination, control, nameservers, local=local, clock=clock, penalized=penalized
            )
        )
    finally:
        loop.close()


async def no_lookup(name: str, rtype: str) -> Answer[object]:
    """The lookup of a destination that needs no DNS (never asked anything)."""
    return Answer(Status.TEMPFAIL)


async def _dispatch_with_cares(
    destination: Destination,
    control: Control,
    nameservers: list[str],
    *,
    local: frozenset[str],
    clock: Callable[[], float],
    penalized: Callable[[str, int], bool] | None,
) -> Dispatched[socket.socket]:
    if not destination.needs_dns:  # a literal: spare the c-ares import and channel
        return await dispatch(
            destination,
            control,
            no_lookup,
            local=local,
            connect=tcp_connector(control.sources),
            clock=clock,
            penalized=penalized,
        )
    from mxf_remote.cares import CaresLookup

    lookup = CaresLookup(nameservers, asyncio.get_running_loop())
    try:
        return await dispatch(
            destination,
            control,
            lookup,
            local=local,
            connect=tcp_connector(control.sources),
            clock=clock,
            penalized=penalized,
        )
    finally:
        await lookup.close()
