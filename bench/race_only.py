"""Contenders (b) and (c): a ready-made Happy Eyeballs race over a fixed address list.

``python bench/race_only.py asyncio|aiohappyeyeballs TIMEOUT ADDRESS:PORT...``

* ``asyncio``: CPython's ``loop.create_connection(happy_eyeballs_delay=0.25)`` (asyncio's
  own loop: uvloop does not take the argument).  It resolves through ``getaddrinfo``;
  here the loop's ``getaddrinfo`` returns the given list, in the given order, so the
  race runs over exactly mxf-remote's plan (ports may differ per address).
* ``aiohappyeyeballs``: ``start_connection(addr_infos, happy_eyeballs_delay=0.25)``.

No DNS: this is the race alone.  Prints ``{"start": s, "handoff": s}`` (CLOCK_MONOTONIC
seconds: the race's start, and the moment a connected socket is in hand) and exits 0,
or ``{"failed": s}`` and exits 1 after TIMEOUT seconds or when every address failed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

DELAY = 0.25


def addr_infos(targets: list[str]) -> list[tuple[Any, ...]]:
    """``ADDRESS:PORT`` / ``[V6]:PORT`` as getaddrinfo tuples, in order."""
    infos = []
    for target in targets:
        if target.startswith("["):
            host, _, port = target[1:].partition("]:")
            infos.append(
                (
                    socket.AF_INET6,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (host, int(port), 0, 0),
                )
            )
        else:
            host, _, port = target.rpartition(":")
            infos.append(
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, int(port)))
            )
    return infos


async def with_asyncio(infos: list[tuple[Any, ...]]) -> None:
    loop = asyncio.get_running_loop()

    async def fixed_getaddrinfo(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return infos

    loop.getaddrinfo = fixed_getaddrinfo  # type: ignore[method-assign]
    transport, _ = await loop.create_connection(
        asyncio.Protocol, "exchanger.invalid", 25, happy_eyeballs_delay=DELAY
    )
    transport.abort()


async def with_aiohappyeyeballs(infos: list[tuple[Any, ...]]) -> None:
    import aiohappyeyeballs

    sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=DELAY)
    sock.close()


async def race(mode: str, timeout: float, infos: list[tuple[Any, ...]]) -> dict[str, float]:
    contender = with_asyncio if mode == "asyncio" else with_aiohappyeyeballs
    start = time.monotonic()
    try:
        await asyncio.wait_for(contender(infos), timeout)
    except (OSError, TimeoutError):
        return {"start": start, "failed": time.monotonic()}
    return {"start": start, "handoff": time.monotonic()}


def main() -> int:
    mode, timeout, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    if mode == "aiohappyeyeballs":
        import aiohappyeyeballs  # noqa: F401  (imported before the clock starts, like aiodns)
    result = asyncio.run(race(mode, timeout, addr_infos(targets)))
    print(json.dumps(result))
    return 0 if "handoff" in result else 1


if __name__ == "__main__":
    sys.exit(main())
