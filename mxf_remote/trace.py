"""The timeline: what happened when, for ``MXF_TRACE`` and ``mxf-remote-probe``.

Events are kept in memory (a dict each, with ``t`` = milliseconds on the monotonic clock
since the process's main module was loaded): marks as they happen, and the dispatch's
events from its outcome once it is over (``timeline.py``).  They are written once, at the end,
as JSON lines appended to ``$MXF_TRACE``.  Writing once keeps the race free of file I/O,
and appending with a single ``write`` keeps lines of concurrent deliveries whole.  A trace
that cannot be written is dropped silently: fd 1 and fd 2 are the report pipe, and a
trace is never worth a delivery.  The file is opened without blocking: a FIFO nobody
reads is a failure (ENXIO) like any other, not a delivery that hangs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

PROCESS_START = time.monotonic()
"""Set when this module is first imported, which ``remote.main`` does first of all."""


def now_ms() -> float:
    """Milliseconds since ``PROCESS_START``."""
    return (time.monotonic() - PROCESS_START) * 1000


class Trace:
    """An in-memory timeline; ``enabled`` False makes ``event`` a no-op."""

    def __init__(self, enabled: bool = True, clock: Callable[[], float] = now_ms) -> None:
        self.enabled = enabled
        self.events: list[dict[str, Any]] = []
        self.clock = clock
        """Milliseconds since the delivery started: this process's start, or in
        mxf-remoted the launcher's."""

    def event(self, kind: str, **fields: Any) -> None:
        """Record ``kind`` with ``fields`` at the current time."""
        if self.enabled:
            self.events.append({"t": round(self.clock(), 3), "event": kind, **fields})

    def merge(self, events: list[dict[str, Any]]) -> None:
        """Add events recorded elsewhere (each with its own ``t``), keeping time order."""
        if self.enabled:
            self.events = sorted([*self.events, *events], key=lambda event: event["t"])

    def mark(self, kind: str, **fields: Any) -> None:
        """An event that also carries the raw monotonic clock (``mono``, seconds).

        CLOCK_MONOTONIC is the same for every process on the machine, so a parent that
        notes the time before starting mxf-remote can compute the latency to this event.
        """
        self.event(kind, mono=time.monotonic(), **fields)

    def append_to(self, path: str) -> None:
        """Append every event as one JSON line to ``path``; failures are ignored."""
        if not self.events:
            return
        import json

        data = "".join(json.dumps(e, default=str) + "\n" for e in self.events).encode()
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
            fd = os.open(path, flags, 0o600)
        except OSError:
            return
        try:
            os.write(fd, data)
        except OSError:
            pass
        finally:
            os.close(fd)
