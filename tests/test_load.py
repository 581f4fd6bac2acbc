"""Load: 100 concurrent deliveries against one DNS server and one SMTP server.

Each delivery is the real chain -- mxf-remote resolving through knot, racing, exec'ing
the real mxf-remote-smtpc -- against one aiosmtpd server on 127.0.6.40.  Every message
must arrive exactly once, every process must report success and exit 0 with nothing
else on fd 1/2, no process may be left behind, and the test process must not gain a
descriptor.  Bounded: the whole test gives up after 60 s.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.knot import KnotServer
from tests.remotekit import MXF_REMOTE, QmailHome

pytestmark = [pytest.mark.knot]

COUNT = 100
ADDRESS = "127.0.6.40"
PORT = 2525


class _Sink:
    """aiosmtpd handler keeping every message body it receives."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.bodies.append(bytes(envelope.content))
        return "250 queued"


@pytest.fixture
def smtp_server(netns: None) -> Iterator[_Sink]:
    """One aiosmtpd server on 127.0.6.40:2525."""
    from aiosmtpd.controller import Controller

    sink = _Sink()
    controller = Controller(sink, hostname=ADDRESS, port=PORT, ready_timeout=10)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            found.update(int(pid) for pid in listing.read().split())
    return found


class TestLoad:
    """Many deliveries at once: exactly once each, nothing left behind."""

    def test_a_hundred_concurrent_deliveries(self, smtp_server: _Sink, tmp_path: Path) -> None:
        """100 mxf-remote processes at once: 100 messages, each once, clean exits."""
        home = QmailHome(tmp_path / "qmail")
        home.control("protocols", f"smtp:{PORT}:0:N:N:mxf-remote-smtpc\n")
        home.control("me", "load.test\n")
        home.control("timeoutconnect", "20\n")
        home.control("timeoutdns", "20\n")
        home.control("timeoutremote", "30\n")
        fds_before = set(os.listdir("/proc/self/fd"))
        children_before = _children()  # under --warm, the session's mxf-remoted
        with KnotServer({"mxf.test": f"load MX 10 mx.load\nmx.load A {ADDRESS}\n"}) as knot:
            env = {"PATH": os.environ["PATH"], "MXF_QMAIL": str(home.root), **knot.env}
            processes = []
            messages = []
            deadline = time.monotonic() + 60
            for n in range(COUNT):
                path = tmp_path / f"m{n}"
                path.write_bytes(f"Message-ID: <{n}@load.test>\n\nbody {n}\n".encode())
                messages.append(path)
            for n, path in enumerate(messages):
                with path.open("rb") as stdin:
                    processes.append(
                        subprocess.Popen(
                            [MXF_REMOTE, "load.mxf.test", "s@load.test", f"r{n}@load.mxf.test"],
                            stdin=stdin,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=env,
                        )
                    )
            results = []
            for process in processes:
                stdout, stderr = process.communicate(timeout=max(1, deadline - time.monotonic()))
                results.append((stdout, stderr, process.returncode))
        for stdout, stderr, code in results:
            assert (stderr, code) == (b"", 0)
            assert stdout.startswith(b"r\0K" + ADDRESS.encode() + b" accepted message.")
            assert stdout.count(b"\0") == 2 and stdout.endswith(b"\n\0")
        ids = sorted(int(body.split(b"<", 1)[1].split(b"@", 1)[0]) for body in smtp_server.bodies)
        assert ids == list(range(COUNT))
        assert _children() - children_before == set()
        assert set(os.listdir("/proc/self/fd")) - fds_before == set()
