"""The bench's world: a private network namespace, knot, listeners, silent hosts, homes.

Everything runs on loopback inside a network namespace this process makes for itself
(``tests/infra/netns.py``), so the benchmarks touch nothing outside it.  Exchangers are
SMTP sinks on 127.0.3.x and fd6d:7866::3xx (loopback-routed, not interface addresses, so
mxf-remote's self-check lets them through), on the real ports 25 and 209; silent ones
drop SYNs (nftables).  The zone is served by a real knotd; the late-AAAA scenario goes
through the test suite's DNS proxy, which holds one answer back.

Import this module first: the namespace can only be entered while the process has a
single thread.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.infra.netns import enter_private_netns  # noqa: E402

NETNS_PROBLEM = enter_private_netns()

from tests.infra.netns import listen_tcp, nft_available, silence  # noqa: E402

SMTP, QMTP = 25, 209
BIN = os.path.dirname(sys.executable)
MXF_REMOTE = os.path.join(BIN, "mxf-remote")
MXF_SMTPC = os.path.join(BIN, "mxf-remote-smtpc")

ZONE = """
healthy          MX    10 mx.healthy
mx.healthy       AAAA  fd6d:7866::301
mx.healthy       A     127.0.3.1
silent6          MX    10 mx.silent6
mx.silent6       AAAA  fd6d:7866::302
mx.silent6       A     127.0.3.2
late             MX    10 mx.late
mx.late          AAAA  fd6d:7866::303
mx.late          A     127.0.3.3
silentbest       MX    10 mx1.silentbest
silentbest       MX    20 mx2.silentbest
mx1.silentbest   A     127.0.3.4
mx2.silentbest   A     127.0.3.5
mxps             MX    12801 mx.mxps
mx.mxps          A     127.0.3.6
allsilent        MX    10 mx.allsilent
mx.allsilent     AAAA  fd6d:7866::307
mx.allsilent     A     127.0.3.7
"""
DOMAIN = "bench.test"

LISTENING = [
    ("fd6d:7866::301", SMTP),
    ("127.0.3.1", SMTP),
    ("127.0.3.2", SMTP),
    ("fd6d:7866::303", SMTP),
    ("127.0.3.3", SMTP),
    ("127.0.3.5", SMTP),
    ("127.0.3.6", SMTP),
]
SILENT = [
    ("fd6d:7866::302", SMTP),
    ("127.0.3.4", SMTP),
    ("127.0.3.6", QMTP),
    ("fd6d:7866::307", SMTP),
    ("127.0.3.7", SMTP),
]

LATE_AAAA_MS = 300
CONNECT_DELAY = 0.250
"""mxf-remote's default connectdelay, which the bench leaves in place."""
ALL_SILENT_TIMEOUT = 2
SEQUENTIAL_TIMEOUT = 5


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario."""

    key: str
    title: str
    host: str
    race_list: tuple[tuple[str, int], ...]
    """The addresses mxf-remote's plan holds, in plan order: what (b) and (c) race."""
    extra_ms: float = 0.0
    """What the ideal adds to the import floor: 0, one connectdelay, or timeoutconnect."""
    late_dns: bool = False
    all_silent: bool = False
    silent: bool = False
    """A scenario with something silent: the sequential baseline waits 5 s in it."""


SCENARIOS = [
    Scenario(
        "healthy",
        "healthy exchanger, AAAA and A",
        "healthy",
        (("fd6d:7866::301", SMTP), ("127.0.3.1", SMTP)),
    ),
    Scenario(
        "silent6",
        "IPv6 silent, IPv4 healthy",
        "silent6",
        (("fd6d:7866::302", SMTP), ("127.0.3.2", SMTP)),
        extra_ms=CONNECT_DELAY * 1000,
        silent=True,
    ),
    Scenario(
        "late",
        f"AAAA answer {LATE_AAAA_MS} ms late, A at once",
        "late",
        (("fd6d:7866::303", SMTP), ("127.0.3.3", SMTP)),
        late_dns=True,
    ),
    Scenario(
        "silentbest",
        "best MX silent, second MX healthy",
        "silentbest",
        (("127.0.3.4", SMTP), ("127.0.3.5", SMTP)),
        extra_ms=CONNECT_DELAY * 1000,
        silent=True,
    ),
    Scenario(
        "mxps",
        "MXPS slice 1, QMTP port 209 silent (SMTP fallback)",
        "mxps",
        (("127.0.3.6", QMTP), ("127.0.3.6", SMTP)),
        extra_ms=CONNECT_DELAY * 1000,
        silent=True,
    ),
    Scenario(
        "allsilent",
        f"everything silent (timeoutconnect {ALL_SILENT_TIMEOUT}): time to the Z report",
        "allsilent",
        (("fd6d:7866::307", SMTP), ("127.0.3.7", SMTP)),
        extra_ms=ALL_SILENT_TIMEOUT * 1000,
        all_silent=True,
        silent=True,
    ),
]


class SmtpSink:
    """SMTP servers that accept everything: one accept thread per socket, one per client.

    Just enough SMTP for mxf-remote-smtpc (220, 250 to EHLO/MAIL/RCPT, 354, the data up
    to the dot, 250, 221); a client that closes at once (the handoff benchmark's protocol
    program, the race-only contenders) costs one greeting.  ``messages`` counts the
    messages accepted.
    """

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.messages = 0
        self._stopping = False

    def listen(self, address: str, port: int) -> None:
        """Serve ``address``:``port``."""
        sock = listen_tcp(address, port, backlog=128)
        sock.settimeout(0.2)
        self._sockets.append(sock)
        thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, sock: socket.socket) -> None:
        while not self._stopping:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            with conn, conn.makefile("rb") as reader:
                conn.sendall(b"220 sink ESMTP\r\n")
                for line in reader:
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        for data_line in reader:
                            if data_line == b".\r\n":
                                break
                        with self._lock:
                            self.messages += 1
                        conn.sendall(b"250 ok\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    elif verb == b"EHLO":
                        conn.sendall(b"250-sink\r\n250 8BITMIME\r\n")
                    else:
                        conn.sendall(b"250 ok\r\n")
        except OSError:
            return

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        self._stopping = True
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


PROGRAM = """#!/bin/sh
# The protocol program of the handoff benchmark: notes the CPU time the process had
# used when it was exec'd (/proc/self/schedstat, ns; read by a builtin, so no fork),
# prints a K report and exits without a word to the server.
read -r cpu rest < /proc/self/schedstat
[ -n "$BENCH_CPU_FILE" ] && echo "$cpu" > "$BENCH_CPU_FILE"
printf 'Kok\\n\\0'
"""


@dataclass
class World:
    """The homes, the message file and the helper paths of one bench run."""

    root: Path
    homes: dict[str, Path] = field(default_factory=dict)

    @property
    def message(self) -> Path:
        """A small message file (fd 0 of every delivery)."""
        return self.root / "message"


def make_world(root: Path) -> World:
    """Qmail homes: ``handoff`` (QMTP slice 1 + SMTP, the trivial program),
    ``allsilent`` (the same with timeoutconnect 2), ``delivery`` (SMTP by smtpc)."""
    world = World(root)
    program = root / "program"
    program.write_text(PROGRAM)
    program.chmod(0o755)
    world.message.write_bytes(b"Subject: bench\n\nThe benchmark's message.\n" * 20)
    for name in ("handoff", "allsilent", "delivery"):
        home = root / name
        (home / "control").mkdir(parents=True)
        world.homes[name] = home
        (home / "control" / "me").write_text("bench.example\n")
        if name == "delivery":
            protocols = f"smtp:{SMTP}:0:N:N:{MXF_SMTPC}\n"
        else:
            protocols = f"qmtp:{QMTP}:1:N:N:{program}\nsmtp:{SMTP}:0:N:N:{program}\n"
        (home / "control" / "protocols").write_text(protocols)
    (world.homes["allsilent"] / "control" / "timeoutconnect").write_text(f"{ALL_SILENT_TIMEOUT}\n")
    return world


def network_problem() -> str | None:
    """Why the bench cannot run here, or None."""
    if NETNS_PROBLEM is not None:
        return f"no private network namespace: {NETNS_PROBLEM}"
    return nft_available()


def start_sinks() -> SmtpSink:
    """Listeners on every healthy address, SYN drops on every silent one."""
    for address, port in SILENT:
        silence(address, port)
    sink = SmtpSink()
    for address, port in LISTENING:
        sink.listen(address, port)
    return sink
