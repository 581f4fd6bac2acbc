"""A scripted world on a virtual clock, to pin the race's timing rules to the millisecond.

Real sockets and a real DNS server prove the whole path (see test_remote_*.py); they
cannot prove that the second attempt starts at exactly 250 ms.  Here, as in trio's
happy-eyeballs tests, the resolver and the connector follow a script, and the event loop
runs on virtual time: whenever it would sleep, the clock jumps to its next timer.  A test
then asserts exact times, ``0.250 + 0.250``, not "about half a second".
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mxf_remote.control import Control, Protocol
from mxf_remote.knowledge import MX, SRV, Answer, Status
from mxf_remote.plan import Attempt


class _AdvancingSelector(selectors.BaseSelector):
    """A selector that, instead of sleeping, moves the loop's virtual clock forward."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("virtual clock: nothing scheduled, the loop would wait forever")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` only moves when the loop would otherwise sleep."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(selector=_AdvancingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Jump the clock forward (called by the selector instead of sleeping)."""
        self._virtual_now += seconds

    def close(self) -> None:
        """Close, and fail if a task or a timer was left on the loop: the loop is a phase.

        Whatever the dispatch started -- lookups, attempts, the Resolution Delay's and
        timeoutdns's timers, the race's wake-up -- must be over or cancelled when it
        returns, as it must be before mxf-remote execs the client.
        """
        tasks = [task for task in asyncio.all_tasks(self) if not task.done()]
        timers = [timer for timer in self._scheduled if not timer.cancelled()]
        for task in tasks:
            task.cancel()
        super().close()
        if tasks or timers:
            raise AssertionError(f"left on the loop: tasks {tasks}, timers {timers}")


SILENT = float("inf")


@dataclass
class ScriptedLookup:
    """Answers DNS questions from a script: ``(name, type) -> (delay, answer)``.

    A question the script does not name gets NXDOMAIN at once; ``SILENT`` delays never
    answer.  ``asked`` records ``(time, name, type)``.
    """

    script: dict[tuple[str, str], tuple[float, Answer[Any]]]
    asked: list[tuple[float, str, str]] = field(default_factory=list)

    async def __call__(self, name: str, rtype: str) -> Answer[Any]:
        loop = asyncio.get_running_loop()
        self.asked.append((loop.time(), name, rtype))
        delay, answer = self.script.get((name, rtype), (0.0, Answer(Status.NXDOMAIN)))
        if delay == SILENT:
            await loop.create_future()
        await asyncio.sleep(delay)
        return answer


@dataclass
class FakeConnection:
    """What a scripted connect produces; remembers whether it was closed."""

    address: str
    port: int
    closed: bool = False

    def close(self) -> None:
        self.closed = True

    def fileno(self) -> int:
        return -1


@dataclass
class ScriptedConnector:
    """Connects by script: ``(address, port) -> (delay, "ok" | "refused")``; default silent.

    ``starts`` records ``(time, address, port)`` of every attempt, ``made`` every
    connection produced (winner or not).
    """

    script: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    starts: list[tuple[float, str, int]] = field(default_factory=list)
    made: list[FakeConnection] = field(default_factory=list)

    async def __call__(self, attempt: Attempt) -> FakeConnection:
        loop = asyncio.get_running_loop()
        self.starts.append((round(loop.time(), 6), attempt.address, attempt.port))
        delay, result = self.script.get((attempt.address, attempt.port), (SILENT, "silent"))
        if delay == SILENT:
            await loop.create_future()
        await asyncio.sleep(delay)
        if result == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        connection = FakeConnection(attempt.address, attempt.port)
        self.made.append(connection)
        return connection


def protocol(service: str, port: int, mxps_slice: int, **tls: bool) -> Protocol:
    """A usable protocol whose program is "installed" (a made-up path)."""
    return Protocol(
        service,
        port,
        mxps_slice,
        tls.get("implicit", False),
        tls.get("explicit", False),
        f"prog-{service}",
        program_path=f"/bin/prog-{service}",
    )


SMTP = protocol("smtp", 25, 0)
QMTP = protocol("qmtp", 209, 1)


def control(
    *protocols: Protocol, delay: float = 0.25, timeout: float = 60.0, dns: float = 30.0
) -> Control:
    """Control values as read from files, without files."""
    return Control(
        home="/nonexistent",
        timeout_connect=timeout,
        connect_delay=delay,
        timeout_dns=dns,
        protocols=protocols or (SMTP,),
    )


def ok(*records: Any) -> Answer[Any]:
    """An answer with records."""
    return Answer(Status.OK, tuple(records))


NXDOMAIN: Answer[Any] = Answer(Status.NXDOMAIN)
NODATA: Answer[Any] = Answer(Status.NODATA)
SERVFAIL: Answer[Any] = Answer(Status.TEMPFAIL)


def mx(*pairs: tuple[int, str]) -> Answer[Any]:
    """An MX answer from ``(preference, exchange)`` pairs."""
    return ok(*(MX(p, name) for p, name in pairs))


def srv(*records: tuple[int, int, int, str]) -> Answer[Any]:
    """An SRV answer from ``(priority, weight, port, target)`` tuples."""
    return ok(*(SRV(*r) for r in records))
