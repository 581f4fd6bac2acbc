"""A stdlib UDP+TCP DNS forwarder that delays, drops or rewrites answers per name/type.

Why: knot answers everything at once and correctly; resolver timeouts, retries, slow
answers, REFUSED and slow TCP streams are not knot features. This proxy sits in front of a
real server (typically a KnotServer), forwards each query to it over the same transport
(so TC=1 from knot stays TC=1), and applies the first matching rule. Every query is handled
in its own thread, so a delayed or dropped query never holds up another one. Every query
is logged with a monotonic timestamp, so tests can assert on what the client asked, when,
and over which transport.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import dnswire
from .knot import ServesDns, ipv6_loopback_available, pick_free_port

__all__ = ["DnsProxy", "QueryLogEntry", "Rule"]

_UPSTREAM_TIMEOUT = 2.0
_CLIENT_IO_TIMEOUT = 5.0
_POLL = 0.05


class QueryLogEntry(NamedTuple):
    """One query seen by the proxy: monotonic time, name, type mnemonic, "udp" or "tcp"."""

    t: float
    qname: str
    qtype: str
    transport: str


@dataclass
class Rule:
    """What to do with matching queries; the methods set the action and return the rule.

    A rule matches a query name (case-insensitive, trailing dot ignored), a type (None for
    any) and optionally one transport; `times` limits it to the first N matching queries.
    Actions combine: a delay applies before any answer, `drip` only to TCP answers and
    `truncate` only to UDP answers.
    """

    qname: str
    qtype: int | None = None
    transport: str | None = None
    times: int | None = None
    delay_ms: float = 0.0
    dropped: bool = False
    rcode_value: int | None = None
    drip_bytes: int | None = None
    drip_interval_ms: float = 0.0
    truncated: bool = False
    hits: int = 0

    def delay(self, ms: float) -> Rule:
        """Answer `ms` milliseconds after the query arrived."""
        self.delay_ms = float(ms)
        return self

    def drop(self) -> Rule:
        """Never answer."""
        self.dropped = True
        return self

    def rcode(self, n: int) -> Rule:
        """Answer with response code `n` and no records (without asking upstream)."""
        self.rcode_value = n
        return self

    def drip(self, bytes_per_chunk: int, interval_ms: float) -> Rule:
        """Over TCP, write the answer (length prefix included) in chunks with pauses."""
        if bytes_per_chunk < 1:
            raise ValueError("bytes_per_chunk must be >= 1")
        self.drip_bytes = bytes_per_chunk
        self.drip_interval_ms = float(interval_ms)
        return self

    def truncate(self) -> Rule:
        """Over UDP, answer with an empty TC=1 message so the client retries over TCP."""
        self.truncated = True
        return self

    def matches(self, qname: str, qtype: int, transport: str) -> bool:
        """True when this rule applies to the query (ignores the `times` budget)."""
        return (
            self.qname == qname
            and (self.qtype is None or self.qtype == qtype)
            and (self.transport is None or self.transport == transport)
        )


class _Stopped(Exception):
    """The proxy is shutting down."""


class DnsProxy(ServesDns):
    """DNS forwarder on 127.0.0.1 (and ::1) in front of `upstream` (host, port)."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen: Sequence[str] = ("127.0.0.1", "::1"),
    ) -> None:
        self.upstream = upstream
        have_v6 = ipv6_loopback_available()
        self.listen = [a for a in listen if ":" not in a or have_v6]
        if not self.listen:
            raise ValueError(f"none of the listen addresses is usable: {list(listen)}")
        self.port = 0
        self._rules: list[Rule] = []
        self._log: list[QueryLogEntry] = []
        self._lock = threading.Lock()
        self._log_cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._selector: selectors.BaseSelector | None = None
        self._errors: list[BaseException] = []

    # -- public view --------------------------------------------------------------------
    @property
    def log(self) -> list[QueryLogEntry]:
        """A snapshot of every query seen so far, in arrival order."""
        with self._lock:
            return list(self._log)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions from handler threads (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def queries(
        self, qname: str | None = None, qtype: str | int | None = None
    ) -> list[QueryLogEntry]:
        """Logged queries, optionally filtered by name and type."""
        name = None if qname is None else _norm(qname)
        tname = None if qtype is None else dnswire.qtype_name(dnswire.qtype_code(qtype))
        return [
            e
            for e in self.log
            if (name is None or e.qname == name) and (tname is None or e.qtype == tname)
        ]

    def wait_for_queries(self, count: int, *, timeout: float = 5.0) -> list[QueryLogEntry]:
        """Wait until at least `count` queries were logged (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while len(self._log) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._log)} of {count} queries seen")
                self._log_cond.wait(remaining)
            return list(self._log)

    def clear_log(self) -> None:
        """Forget the logged queries."""
        with self._lock:
            self._log.clear()

    # -- rules --------------------------------------------------------------------------
    def rule(
        self,
        qname: str,
        qtype: str | int | None = None,
        *,
        transport: str | None = None,
        times: int | None = None,
    ) -> Rule:
        """Add a rule (checked in the order added, first match wins) and return it."""
        if transport not in (None, "udp", "tcp"):
            raise ValueError(f"transport must be 'udp', 'tcp' or None, not {transport!r}")
        code = None if qtype is None else dnswire.qtype_code(qtype)
        new = Rule(_norm(qname), code, transport, times)
        with self._lock:
            self._rules.append(new)
        return new

    def delay(self, qname: str, qtype: str | int | None, ms: float) -> Rule:
        """Shorthand: answer this name/type `ms` milliseconds late."""
        return self.rule(qname, qtype).delay(ms)

    def drop(self, qname: str, qtype: str | int | None = None) -> Rule:
        """Shorthand: never answer this name/type."""
        return self.rule(qname, qtype).drop()

    def rcode(self, qname: str, qtype: str | int | None, n: int) -> Rule:
        """Shorthand: answer this name/type with rcode `n` and no records."""
        return self.rule(qname, qtype).rcode(n)

    def drip(
        self, qname: str, qtype: str | int | None, bytes_per_chunk: int, interval_ms: float
    ) -> Rule:
        """Shorthand: drip TCP answers for this name/type."""
        return self.rule(qname, qtype).drip(bytes_per_chunk, interval_ms)

    def clear_rules(self) -> None:
        """Remove every rule: everything passes through again."""
        with self._lock:
            self._rules.clear()

    def _match(self, qname: str, qtype: int, transport: str) -> Rule | None:
        with self._lock:
            for r in self._rules:
                if r.matches(qname, qtype, transport) and (r.times is None or r.hits < r.times):
                    r.hits += 1
                    return r
        return None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Bind UDP and TCP sockets on a common free port and start the server thread."""
        if self._selector is not None:
            raise RuntimeError("DnsProxy already started")
        for _attempt in range(10):
            self.port = pick_free_port(self.listen)
            try:
                self._bind_all()
            except OSError as exc:
                self._close_listeners()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            break
        else:
            raise OSError(errno.EADDRINUSE, "DnsProxy found no free port")
        self._stop.clear()
        sel = selectors.DefaultSelector()
        for s in self._socks:
            sel.register(s, selectors.EVENT_READ)
        self._selector = sel
        self._spawn(self._serve, "dnsproxy-serve")

    def _bind_all(self) -> None:
        for addr in self.listen:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            udp = socket.socket(fam, socket.SOCK_DGRAM)
            self._socks.append(udp)
            udp.bind((addr, self.port))
            udp.setblocking(False)
            tcp = socket.socket(fam, socket.SOCK_STREAM)
            self._socks.append(tcp)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((addr, self.port))
            tcp.listen(64)
            tcp.setblocking(False)

    def _close_listeners(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()

    def stop(self) -> None:
        """Stop serving: join every thread and close every socket (bounded wait)."""
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5.0
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
                self._threads = threads
            if not threads:
                break
            threads[0].join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise RuntimeError(f"DnsProxy threads did not stop: {threads}")
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._close_listeners()

    # -- serving ------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            except _Stopped:
                pass
            except Exception as exc:  # recorded for tests; a thread must not die silently
                if not self._stop.is_set():
                    with self._lock:
                        self._errors.append(exc)

        t = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _serve(self) -> None:
        sel = self._selector
        assert sel is not None
        while not self._stop.is_set():
            for key, _ in sel.select(_POLL):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock.type == socket.SOCK_DGRAM:
                    try:
                        data, peer = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        continue
                    self._spawn(self._handle_udp, "dnsproxy-udp", sock, data, peer)
                else:
                    try:
                        conn, _peer = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    conn.setblocking(True)
                    with self._lock:
                        self._conns.add(conn)
                    self._spawn(self._handle_tcp_conn, "dnsproxy-tcp", conn)

    def _record(self, qname: str, qtype: int, transport: str) -> float:
        t = time.monotonic()
        with self._log_cond:
            self._log.append(QueryLogEntry(t, qname, dnswire.qtype_name(qtype), transport))
            self._log_cond.notify_all()
        return t

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0 and self._stop.wait(remaining):
            raise _Stopped

    def _answer(self, query: bytes, transport: str) -> tuple[bytes | None, Rule | None]:
        """Apply the rules to one query; return (answer or None to stay silent, rule)."""
        try:
            _qid, qname, qtype, _end = dnswire.parse_question(query)
        except dnswire.DnsWireError:
            return None, None
        t0 = self._record(qname, qtype, transport)
        rule = self._match(qname, qtype, transport)
        if rule is not None and rule.dropped:
            return None, rule
        answer: bytes | None
        if rule is not None and rule.rcode_value is not None:
            answer = dnswire.make_error_response(query, rule.rcode_value)
        elif rule is not None and rule.truncated and transport == "udp":
            answer = dnswire.make_truncated_response(query)
        else:
            answer = self._forward(query, transport)
        if rule is not None and rule.delay_ms:
            self._sleep_until(t0 + rule.delay_ms / 1000.0)
        return answer, rule

    def _forward(self, query: bytes, transport: str) -> bytes | None:
        host, port = self.upstream
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            if transport == "udp":
                with socket.socket(fam, socket.SOCK_DGRAM) as up:
                    up.settimeout(_UPSTREAM_TIMEOUT)
                    up.connect((host, port))
                    up.send(query)
                    return up.recv(65535)
            with socket.create_connection((host, port), timeout=_UPSTREAM_TIMEOUT) as up:
                up.sendall(struct.pack("!H", len(query)) + query)
                (length,) = struct.unpack("!H", dnswire.recv_exact(up, 2))
                return dnswire.recv_exact(up, length)
        except OSError:
            return None  # upstream silent or gone: the client sees a timeout

    def _handle_udp(self, sock: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        answer, _rule = self._answer(data, "udp")
        if answer is not None and not self._stop.is_set():
            with contextlib.suppress(OSError):
                sock.sendto(answer, peer)

    def _handle_tcp_conn(self, conn: socket.socket) -> None:
        write_lock = threading.Lock()
        try:
            conn.settimeout(_POLL)
            while not self._stop.is_set():
                header = self._read_exact(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                query = self._read_exact(conn, length)
                if query is None:
                    return
                # Pipelined queries on one connection are answered independently.
                self._spawn(self._handle_tcp_query, "dnsproxy-tcpq", conn, query, write_lock)
        finally:
            with self._lock:
                self._conns.discard(conn)
            # Wait for in-flight answers on this connection before closing it.
            with write_lock:
                conn.close()

    def _read_exact(self, conn: socket.socket, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            if self._stop.is_set():
                return None
            try:
                chunk = conn.recv(n - len(buf))
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _handle_tcp_query(
        self, conn: socket.socket, query: bytes, write_lock: threading.Lock
    ) -> None:
        answer, rule = self._answer(query, "tcp")
        if answer is None:
            return
        wire = struct.pack("!H", len(answer)) + answer
        with write_lock:
            if conn.fileno() < 0:
                return
            try:
                conn.settimeout(_CLIENT_IO_TIMEOUT)
                if rule is not None and rule.drip_bytes:
                    step = rule.drip_bytes
                    for i in range(0, len(wire), step):
                        if i:
                            self._sleep_until(time.monotonic() + rule.drip_interval_ms / 1000)
                        conn.sendall(wire[i : i + step])
                else:
                    conn.sendall(wire)
            except OSError:
                return
            finally:
                with contextlib.suppress(OSError):
                    conn.settimeout(_POLL)


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()
