"""A DNS server that misbehaves on purpose, on real UDP and TCP sockets.

knot answers correctly or not at all; ``DnsProxy`` delays, drops and rewrites rcodes.
What neither does is answer *wrongly*: records of a type nobody asked for, a TCP answer
cut off in the middle, a server that dies between receiving a question and answering it,
or raw bytes in a name.  ``BadDns`` does exactly one such thing per instance (``mode``):

* ``wrong-type``: every question gets NOERROR with one TXT record for the asked name;
* ``tcp-cut``: UDP answers are empty with TC=1; over TCP the length prefix promises an
  answer and half of it arrives before the connection closes;
* ``die``: the first question received closes every listening socket (the server "died
  mid-query"); later questions meet a closed port;
* ``answer``: answers from ``records`` (qname -> list of (type, rdata bytes)), owner names
  given as raw bytes so that 8-bit and upper-case names can be served; NXDOMAIN otherwise.

One thread serves everything; ``queries`` counts what arrived.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from .dnswire import qtype_code
from .knot import pick_free_port

__all__ = ["BadDns", "DnsSocketServer", "name_wire"]

_HEADER = struct.Struct("!HHHHHH")
_QR, _AA, _TC, _RD = 0x8000, 0x0400, 0x0200, 0x0100


def name_wire(name: bytes) -> bytes:
    """``name`` (dotted, raw bytes, no escapes) in DNS wire format, uncompressed."""
    out = bytearray()
    for label in name.rstrip(b".").split(b"."):
        if label:
            out.append(len(label))
            out += label
    out.append(0)
    return bytes(out)


def _question(query: bytes) -> tuple[int, int, bytes, int, int]:
    """(id, flags, qname raw bytes lower-cased, qtype, end of the question section)."""
    qid, flags = struct.unpack_from("!HH", query, 0)
    offset = _HEADER.size
    labels = []
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length])
        offset += 1 + length
    offset += 1
    (qtype,) = struct.unpack_from("!H", query, offset)
    return qid, flags, b".".join(labels).lower(), qtype, offset + 4


class DnsSocketServer:
    """UDP and TCP on one free port of ``address``, served by one thread.

    Subclasses answer in ``_udp(sock)`` (a datagram is waiting) and ``_tcp(listener)`` (a
    connection is waiting); an error of the types in ``_ignored`` drops that question.
    Closing every socket (``_close_listeners``) from inside stops the thread.
    """

    thread_name = "dns"
    _ignored: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = 0
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def env(self) -> dict[str, str]:
        """``MXF_NAMESERVERS`` naming this server."""
        return {"MXF_NAMESERVERS": f"{self.address}:{self.port}"}

    def __enter__(self) -> Self:
        from .netns import listen_tcp

        self.port = pick_free_port([self.address])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((self.address, self.port))
        tcp = listen_tcp(self.address, self.port)
        for sock in (udp, tcp):
            sock.setblocking(False)
            self._sockets.append(sock)
            self._selector.register(sock, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._close_listeners()
        self._selector.close()

    def _close_listeners(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._sockets = []

    def _serve(self) -> None:
        while not self._stop.is_set() and self._sockets:
            for key, _ in self._selector.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    if sock.type == socket.SOCK_DGRAM:
                        self._udp(sock)
                    else:
                        self._tcp(sock)
                except self._ignored:
                    continue
                if not self._sockets:
                    return

    def _udp(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _tcp(self, listener: socket.socket) -> None:
        raise NotImplementedError


class BadDns(DnsSocketServer):
    """A misbehaving DNS server on ``address`` (UDP and TCP, one free port)."""

    thread_name = "baddns"

    def __init__(
        self,
        mode: str,
        *,
        address: str = "127.0.6.53",
        records: Mapping[bytes, Sequence[tuple[str, bytes]]] | None = None,
    ) -> None:
        super().__init__(address)
        self.mode = mode
        self.records = {k.lower().rstrip(b"."): v for k, v in (records or {}).items()}
        self.queries: list[tuple[bytes, int, str]] = []

    # -- serving -------------------------------------------------------------------------

    def _udp(self, sock: socket.socket) -> None:
        query, peer = sock.recvfrom(4096)
        answer = self._answer(query, "udp")
        if answer is not None:
            sock.sendto(answer, peer)

    def _tcp(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            try:
                head = conn.recv(2, socket.MSG_WAITALL)
                (length,) = struct.unpack("!H", head)
                query = conn.recv(length, socket.MSG_WAITALL)
                answer = self._answer(query, "tcp")
                if answer is None:
                    return
                if self.mode == "tcp-cut":
                    conn.sendall(struct.pack("!H", len(answer)) + answer[: len(answer) // 2])
                    return
                conn.sendall(struct.pack("!H", len(answer)) + answer)
            except (OSError, struct.error):
                return

    def _answer(self, query: bytes, transport: str) -> bytes | None:
        qid, flags, qname, qtype, end = _question(query)
        self.queries.append((qname, qtype, transport))
        if self.mode == "die":
            self._close_listeners()
            return None
        header_flags = _QR | _AA | (flags & _RD)
        question = query[_HEADER.size : end]
        if self.mode == "tcp-cut" and transport == "udp":
            return _HEADER.pack(qid, header_flags | _TC, 1, 0, 0, 0) + question
        if self.mode in ("wrong-type", "tcp-cut"):
            rdata = b"\x0bhello there"
            records = [(qtype_code("TXT"), rdata)] * (20 if self.mode == "tcp-cut" else 1)
            return self._message(qid, header_flags, question, qname, records)
        found = self.records.get(qname)
        if found is None:
            return _HEADER.pack(qid, header_flags | 3, 1, 0, 0, 0) + question
        wanted = [(qtype_code(t), d) for t, d in found if qtype_code(t) in (qtype, 5)]
        return self._message(qid, header_flags, question, qname, wanted)

    @staticmethod
    def _message(
        qid: int, flags: int, question: bytes, qname: bytes, records: list[tuple[int, bytes]]
    ) -> bytes:
        out = _HEADER.pack(qid, flags, 1, len(records), 0, 0) + question
        for rtype, rdata in records:
            out += name_wire(qname) + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
        return out
