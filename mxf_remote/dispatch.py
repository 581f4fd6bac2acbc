"""The asynchronous phase: resolve and race, then leave nothing running.

``mxf-remote`` and ``mxf-remote-probe`` both call ``run_dispatch``; the first execs the
winner's protocol client, the second prints what happened.  The event loop is a phase,
not the program: ``run_dispatch`` creates it (uvloop when importable), runs one
coroutine, closes the c-ares resolver *before* the loop (otherwise c-ares' thread calls
back into a closed loop and writes noise on stderr, which is the report pipe), closes
the loop, and returns plain values.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from mxf_remote.control import Control
from mxf_remote.knowledge import Answer, Knowledge, Status
from mxf_remote.plan import Destination, Plan, build_plan, self_check_verdict
from mxf_remote.race import Connector, Lost, Race, Won, connect_tcp
from mxf_remote.resolver import CaresLookup, Lookup, Resolution
from mxf_remote.trace import Trace


class Dispatched(NamedTuple):
    """What the asynchronous phase found: the outcome, and the final plan and knowledge."""

    outcome: Won | Lost
    plan: Plan
    knowledge: Knowledge


async def dispatch(
    destination: Destination,
    control: Control,
    lookup: Lookup,
    *,
    local: frozenset[str],
    trace: Trace,
    connect: Connector = connect_tcp,
) -> Dispatched:
    """Resolve and race for ``destination``; every lookup is stopped on return."""
    resolution: Resolution

    def current_plan() -> Plan:
        return build_plan(destination, resolution.knowledge, local)

    race = Race(
        current_plan,
        connect,
        resolution_over=lambda: resolution.over,
        connect_delay=control.connect_delay,
        timeout_connect=control.timeout_connect,
        trace=trace,
        may_win=lambda attempt: self_check_verdict(attempt, resolution.knowledge, local),
    )
    resolution = Resolution(
        destination, lookup, timeout=control.timeout_dns, on_change=race.wake, trace=trace
    )
    resolution.start()
    try:
        outcome = await race.run()
    finally:
        await resolution.close()
    return Dispatched(outcome, current_plan(), resolution.knowledge)


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
    trace: Trace,
) -> Dispatched:
    """Run ``dispatch`` on a fresh loop with c-ares, and close everything before returning."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(
            _dispatch_with_cares(destination, control, nameservers, local, trace)
        )
    finally:
        loop.close()


async def _no_lookup(name: str, rtype: str) -> Answer[object]:
    """The lookup of a destination that needs no DNS (never asked anything)."""
    return Answer(Status.TEMPFAIL)


async def _dispatch_with_cares(
    destination: Destination,
    control: Control,
    nameservers: list[str],
    local: frozenset[str],
    trace: Trace,
) -> Dispatched:
    if not destination.needs_dns:  # a literal: spare the c-ares import and channel
        return await dispatch(destination, control, _no_lookup, local=local, trace=trace)
    lookup = CaresLookup(nameservers, asyncio.get_running_loop())
    try:
        return await dispatch(destination, control, lookup, local=local, trace=trace)
    finally:
        await lookup.close()
