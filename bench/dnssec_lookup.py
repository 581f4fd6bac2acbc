"""CPU and wall per question: ``DnssecLookup`` (stdlib, AD=1) beside ``CaresLookup``.

One knotd serves a wildcard zone, so every question can ask a name never asked before
(c-ares' own cache cannot answer it).  The contenders ask the same number of questions,
one at a time, in interleaved blocks on one event loop, so that a busy machine slows
them alike.  A third contender is ``DnssecLookup`` with its UDP try done through
``loop.create_datagram_endpoint`` (a transport and protocol) instead of ``sock_recv`` on
a non-blocking socket: the choice ``dnssec.py`` made, measured.

    python bench/dnssec_lookup.py [questions per block] [blocks]     (as root)

Prints, per loop (asyncio, uvloop when installed) and contender: median CPU and wall per
question over the blocks, with the spread (min..max) of the block medians.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.infra.netns import enter_private_netns  # noqa: E402

NETNS_PROBLEM = enter_private_netns()

from machine import Watch  # noqa: E402

from mxf_remote import dnsmessage  # noqa: E402
from mxf_remote.cares import CaresLookup  # noqa: E402
from mxf_remote.dnsmessage import Message, Question  # noqa: E402
from mxf_remote.dnssec import DnssecLookup  # noqa: E402
from tests.infra.knot import KnotServer  # noqa: E402

Lookup = Callable[[str, str], Awaitable[Any]]


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, question: Question) -> None:
        self.question = question
        self.done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            message = dnsmessage.parse(data)
        except dnsmessage.MalformedMessage:
            return
        if dnsmessage.answers_question(message, self.question) and not self.done.done():
            self.done.set_result(message)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class EndpointLookup(DnssecLookup):
    """``DnssecLookup`` whose UDP try uses a datagram endpoint (the road not taken)."""

    async def _udp(  # type: ignore[override]
        self, family: int, address: tuple[str, int], question: Question, deadline: float
    ) -> Message | None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagram(question), remote_addr=address, family=family
        )
        try:
            transport.sendto(question.wire)
            async with asyncio.timeout_at(deadline):
                return await protocol.done
        finally:
            transport.close()


async def block(lookup: Lookup, prefix: str, count: int) -> tuple[float, float]:
    """``count`` questions for new names: (CPU µs, wall µs) per question."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(count):
        answer = await lookup(f"{prefix}{index}.wild.test", "A")
        if answer.records != ("192.0.2.1",):
            raise RuntimeError(f"unexpected answer {answer}")
    return (
        (time.process_time() - cpu) / count * 1e6,
        (time.perf_counter() - wall) / count * 1e6,
    )


async def contest(nameservers: list[str], count: int, blocks: int) -> dict[str, list[Any]]:
    """Each contender ``blocks`` times, interleaved; the per-block figures."""
    loop = asyncio.get_running_loop()
    contenders: dict[str, Any] = {
        "DnssecLookup (sock_recv)": DnssecLookup(nameservers),
        "DnssecLookup (datagram endpoint)": EndpointLookup(nameservers),
        "CaresLookup (c-ares)": CaresLookup(nameservers, loop),
    }
    figures: dict[str, list[Any]] = {name: [] for name in contenders}
    try:
        for round_ in range(blocks + 1):
            for number, (name, lookup) in enumerate(contenders.items()):
                result = await block(lookup, f"r{round_}c{number}q", count)
                if round_:  # the first round warms up
                    figures[name].append(result)
    finally:
        for lookup in contenders.values():
            await lookup.close()
    return figures


def report(loop_name: str, figures: dict[str, list[Any]]) -> None:
    """One table: median CPU and wall per question, spread of the block figures."""
    print(f"\n{loop_name}: µs per question (median of blocks, min..max)")
    for name, results in figures.items():
        cpus = [cpu for cpu, _ in results]
        walls = [wall for _, wall in results]
        print(
            f"  {name:34} CPU {statistics.median(cpus):6.0f} ({min(cpus):.0f}..{max(cpus):.0f})"
            f"   wall {statistics.median(walls):6.0f} ({min(walls):.0f}..{max(walls):.0f})"
        )


def main(argv: list[str]) -> int:
    """Run the contest on asyncio's loop and, when installed, uvloop."""
    if NETNS_PROBLEM is not None:
        print(f"no private network namespace: {NETNS_PROBLEM}")
        return 1
    count = int(argv[0]) if argv else 200
    blocks = int(argv[1]) if len(argv) > 1 else 7
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    try:
        import uvloop

        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass
    with KnotServer({"wild.test": "* A 192.0.2.1\n"}, listen=["127.0.0.1"]) as knot:
        for loop_name, new_loop in loops:
            loop = new_loop()
            try:
                with Watch() as watch:
                    figures = loop.run_until_complete(contest(knot.nameservers, count, blocks))
            finally:
                loop.close()
            report(loop_name, figures)
            print(f"  {watch.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
