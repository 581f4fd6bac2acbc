"""Race only, in one process: mxf-remote's ``Race`` against (b) and (c) on the same list.

The process-level figures of ``race_only.py`` carry process noise; here the three races
run back to back in one process and one event loop (asyncio's, since (b) cannot run on
uvloop; mxf-remote's race is also timed on uvloop, which it uses in production), over a
fixed address list, from the call to the connected socket.  mxf-remote's plan is fixed
and resolution is over, so its self-check has nothing to wait for: this is the race
machinery alone.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from race_only import DELAY, addr_infos

from mxf_remote.control import Protocol
from mxf_remote.plan import Attempt, Facts, Plan
from mxf_remote.race import Race, Won, connect_tcp

PROTOCOL = Protocol("smtp", 25, 0, False, False, "/bin/true")


class FixedPlan:
    """A plan that DNS can no longer change (``race.PlanSource``)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.settled = True

    def current(self) -> Plan:
        return self.plan

    def may_win(self, attempt: Attempt) -> bool:
        return True

    def refuses(self, attempt: Attempt) -> bool:
        return False


async def mxf_race(targets: list[tuple[str, int]]) -> None:
    """mxf-remote's race over a fixed plan."""
    plan = Plan(
        tuple(Attempt(PROTOCOL, "x", a, p, "mx", 10) for a, p in targets), Facts("dns", "x")
    )
    race = Race(
        FixedPlan(plan),
        connect_tcp,
        changed=asyncio.Event(),
        connect_delay=DELAY,
        timeout_connect=60,
    )
    outcome = await race.run()
    assert isinstance(outcome, Won)
    outcome.connection.close()


async def asyncio_race(targets: list[tuple[str, int]]) -> None:
    """(b): create_connection(happy_eyeballs_delay=0.25) over the list."""
    infos = addr_infos([f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in targets])
    loop = asyncio.get_running_loop()

    async def fixed(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return infos

    loop.getaddrinfo = fixed  # type: ignore[method-assign]
    transport, _ = await loop.create_connection(
        asyncio.Protocol, "exchanger.invalid", 25, happy_eyeballs_delay=DELAY
    )
    transport.abort()


async def aiohappyeyeballs_race(targets: list[tuple[str, int]]) -> None:
    """(c): aiohappyeyeballs.start_connection over the list."""
    import aiohappyeyeballs

    infos = addr_infos([f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in targets])
    sock: socket.socket = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=DELAY)
    sock.close()


RACES: dict[str, Callable[[list[tuple[str, int]]], Awaitable[None]]] = {
    "mxf-remote (asyncio loop)": mxf_race,
    "(b) asyncio HE": asyncio_race,
    "(c) aiohappyeyeballs": aiohappyeyeballs_race,
}


def measure(targets: list[tuple[str, int]], runs: int) -> dict[str, list[float]]:
    """Seconds per race, each contender ``runs`` times, interleaved; plus mxf on uvloop."""
    import uvloop

    results: dict[str, list[float]] = {name: [] for name in RACES}
    results["mxf-remote (uvloop)"] = []
    loops = {name: asyncio.new_event_loop() for name in RACES}
    loops["mxf-remote (uvloop)"] = uvloop.new_event_loop()
    functions = {**RACES, "mxf-remote (uvloop)": mxf_race}
    try:
        for run in range(runs + 1):
            for name, function in functions.items():
                loop = loops[name]
                started = time.perf_counter()
                loop.run_until_complete(function(targets))
                if run:  # the first run warms up
                    results[name].append(time.perf_counter() - started)
    finally:
        for loop in loops.values():
            loop.close()
    return results
