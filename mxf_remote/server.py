"""``mxf-remoted``: the warm race server behind ``mxf-remote``'s launcher.

A busy qmail starts ``mxf-remote`` hundreds of times a minute, and each cold start pays
for importing asyncio, uvloop and aiodns before it asks its first DNS question.  This
server pays that once.  It runs in the foreground under a supervisor (daemontools, s6,
runit, systemd), logs to stderr, and serves deliveries on the Unix socket named by the
first line of ``control/remotedsocket`` in its qmail home (``MXF_QMAIL``, else
``/var/qmail``), replacing a stale socket file left by an earlier run.  It is ready when
the socket accepts.

**What a delivery is here.**  The launcher (``launcher.py``) sends its arguments and
environment; the server prepares the delivery exactly as mxf-remote in process would
(``prelude.prepare``, with the *launcher's* ``MXF_QMAIL``, ``PATH`` and
``MXF_NAMESERVERS``, control files re-read every time), runs resolution and the race as
one task on its shared event loop, and sends back either the report or the winning
connection, which the launcher execs the protocol client on.  The server never speaks
a mail protocol and never writes to a launcher's descriptors: if it dies, no message is
half delivered, and the launcher reports a Z.

**Why a task of one loop, not a fork per delivery.**  The race is mostly waiting; one
loop waits for hundreds of races at a cost of a few hundred microseconds of CPU each,
while a fork costs the page tables of a process that has imported half the standard
library and needs its state handed back.  One loop also shares the c-ares channels (one
per nameserver set, kept open) among deliveries.

**Who may use it.**  The socket is made mode 0600 and only a peer whose SO_PEERCRED uid
is ours or root's is served; the launcher, for its part, only talks to a socket owned by
its own uid or root.

**Stopping.**  SIGTERM or SIGINT: stop accepting, remove the socket file, let the
deliveries in progress finish, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any, NoReturn

from mxf_remote import remotedwire
from mxf_remote.controlfile import ControlError, qmail_home, read_first_line
from mxf_remote.history import History
from mxf_remote.output import outsafe

MAX_DELIVERIES = 1000
"""Deliveries served at once; beyond that the launcher is told to deliver in process."""
REQUEST_SECONDS = 5.0
"""How long a launcher may take to send its request."""
MARGIN_SECONDS = 15.0
"""Added to timeoutdns + timeoutconnect for the bound announced to the launcher."""
PEERCRED = struct.Struct("3i")


def log(message: str) -> None:
    """One line on stderr (the supervisor's log)."""
    sys.stderr.write(f"mxf-remoted: {message}\n")
    sys.stderr.flush()


class Server:
    """The listening socket, the shared c-ares channels, the deliveries in progress."""

    def __init__(
        self, path: str, *, exec_clients: bool = False, tls_jobs: socket.socket | None = None
    ) -> None:
        self.path = path
        self.exec_clients = exec_clients
        self.tls_jobs = tls_jobs
        """The job socket of ``tlsforker`` (None: every TLS client is exec'd)."""
        """True: the launcher execs every client; False: it runs our own SMTP and QMTP
        clients in its process (no second interpreter start)."""
        self.listener: socket.socket | None = None
        self.inode: tuple[int, int] | None = None
        self.deliveries: set[asyncio.Task[None]] = set()
        self.lookups: dict[tuple[object, ...], Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        """MTA-STS fetches that outlived their delivery: they finish into the cache."""
        from mxf_remote.stsrefresh import PolicyRefresher

        self.policies = PolicyRefresher(
            lambda nameservers, dane: self.lookup_for(nameservers, dane=dane)
        )
        """The MTA-STS policies deliveries used, renewed before they expire."""
        self.stopping = asyncio.Event()
        self.served = 0
        self.history = History()
        """Recent connection failures, shared by every delivery (``history.py``)."""

    # -- the socket ------------------------------------------------------------------

    def listen(self) -> None:
        """Bind the socket (mode 0600), replacing a stale socket file; ready on return."""
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        listener.listen(256)
        listener.setblocking(False)
        info = os.stat(self.path)
        self.inode = (info.st_dev, info.st_ino)
        self.listener = listener
        directory = os.path.dirname(self.path) or "."
        if os.stat(directory).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log(f"warning: {directory} is writable by others, who could replace the socket")

    def _remove_stale(self) -> None:
        """Remove a socket file nobody listens on; refuse anything else in the way."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise SystemExit(f"mxf-remoted: {self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)
            return
        finally:
            probe.close()
        raise SystemExit(f"mxf-remoted: another server is listening on {self.path}")

    def close(self) -> None:
        """Stop listening and remove the socket file, if it is still ours."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self.inode:
                os.unlink(self.path)
        except OSError:
            pass

    # -- serving ---------------------------------------------------------------------

    async def serve(self) -> None:
        """Accept until stopped, then let the deliveries in progress finish."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self.stopping.set)
        assert self.listener is not None
        accepting = loop.create_task(self._accept(self.listener))
        refreshing = loop.create_task(self.policies.run())
        await self.stopping.wait()
        accepting.cancel()
        refreshing.cancel()
        await asyncio.gather(accepting, refreshing, return_exceptions=True)
        self.close()
        log(f"stopping: {len(self.deliveries)} deliveries in progress")
        if self.deliveries:
            await asyncio.gather(*self.deliveries, return_exceptions=True)
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        for lookup in self.lookups.values():
            await lookup.close()
        log(f"stopped after {self.served} deliveries")

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(listener)
            peer = self._peer(connection)
            if peer is None:
                connection.close()
                continue
            if len(self.deliveries) >= MAX_DELIVERIES:
                await _send_quietly(connection, remotedwire.BUSY)
                connection.close()
                continue
            task = loop.create_task(self._serve_one(connection, peer))
            self.deliveries.add(task)
            task.add_done_callback(self.deliveries.discard)

    @staticmethod
    def _peer(connection: socket.socket) -> int | None:
        """The peer's pid when its uid may use the socket (ours or root's), else None."""
        try:
            raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
        except OSError:
            return None
        pid, uid, _ = PEERCRED.unpack(raw)
        if uid in (os.geteuid(), 0):
            return int(pid)
        log(f"refused a connection from uid {uid}")
        return None

    async def _serve_one(self, connection: socket.socket, pid: int) -> None:
        from mxf_remote.delivery import Request, serve_delivery

        try:
            message = await asyncio.wait_for(_read_message(connection), REQUEST_SECONDS)
            if remotedwire.is_status_request(message):
                status = json.dumps({"history": self.history.snapshot()}).encode()
                await _send_quietly(connection, remotedwire.netstring(status))
                return
            request = Request.from_wire(message)._replace(pid=pid)
            await serve_delivery(self, connection, request)
            self.served += 1
        except (OSError, TimeoutError, remotedwire.Malformed, asyncio.IncompleteReadError):
            pass  # the launcher went away or is no launcher: it delivers in process
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must cost one delivery a Z, never the server
            log(f"internal error: {type(error).__name__}: {error}")
            from mxf_remote.report import internal_error

            await _send_quietly(
                connection,
                remotedwire.netstring(remotedwire.REPORT + internal_error(error).encode()),
            )
        finally:
            connection.close()

    def lookup_for(self, nameservers: list[str], *, dane: bool = False) -> Any:
        """The lookup for this nameserver set (made once, kept open), behind its cache.

        One DNS cache per nameserver set, and per kind of lookup: what one set of servers
        said never answers a delivery that names another, and an answer c-ares got (never
        secure) never answers a delivery with ``control/dane`` on, nor the reverse.
        """
        key = (*nameservers, dane)
        lookup = self.lookups.get(key)
        if lookup is None:
            from mxf_remote.dnscache import CachingLookup

            if dane:
                from mxf_remote.dnssec import DnssecLookup

                lookup = CachingLookup(DnssecLookup(nameservers))
            else:
                from mxf_remote.cares import CaresLookup

                lookup = CachingLookup(CaresLookup(nameservers, asyncio.get_running_loop()))
            self.lookups[key] = lookup
        return lookup


async def _read_message(connection: socket.socket) -> bytes:
    """One netstring from ``connection``."""
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        chunk = await loop.sock_recv(connection, 65536)
        if not chunk:
            raise asyncio.IncompleteReadError(buffer, None)
        buffer += chunk
        length = remotedwire.complete_length(buffer)
        if length is not None:
            return buffer[:length]


async def _send_quietly(connection: socket.socket, data: bytes) -> None:
    """Send ``data``; a launcher that is gone is no error."""
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(connection, data)


def socket_path_of(environ: Mapping[str, str]) -> str:
    """The path ``control/remotedsocket`` names; SystemExit with the reason when unusable."""
    home = qmail_home(environ)
    try:
        path = read_first_line(home, "remotedsocket")
    except ControlError as error:
        raise SystemExit(f"mxf-remoted: {error.detail()}") from None
    if path is None:
        raise SystemExit(f"mxf-remoted: {home}/control/remotedsocket does not exist")
    if not path.startswith("/"):
        raise SystemExit(
            f"mxf-remoted: control/remotedsocket line 1: {outsafe(path[:100]).decode()!r} "
            "is not an absolute path"
        )
    return path


def run(options: list[str], tls_jobs: socket.socket | None) -> NoReturn:
    """Serve until SIGTERM, exit 0 (``remoted.main`` has started the TLS forker)."""
    from mxf_remote.dispatch import new_event_loop

    server = Server(
        socket_path_of(os.environ),
        exec_clients="--exec-clients" in options,
        tls_jobs=tls_jobs,
    )
    loop = new_event_loop()
    try:
        server.listen()
        clients = "exec'd" if server.exec_clients else "ours in the launcher's process"
        log(f"ready on {server.path} (pid {os.getpid()}; clients: {clients})")
        loop.run_until_complete(server.serve())
    finally:
        server.close()
        loop.close()
    sys.exit(0)


def now_since(started: float) -> float:
    """Milliseconds since the launcher's start (CLOCK_MONOTONIC is machine-wide)."""
    return (time.monotonic() - started) * 1000
