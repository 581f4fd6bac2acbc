"""A DNS server that answers what each test scripts, byte for byte, on UDP and TCP.

``BadDns`` has a fixed repertoire; the AD-aware lookup (``mxf_remote/dnssec.py``) needs
answers spelt per test: the AD bit on or off, a wrong ID before the right answer, a
truncated UDP answer and a TCP one cut short, Extended DNS Errors, an SOA for the
negative TTL.  ``ScriptDns`` calls the test's ``script(query, transport)`` for every
question and sends what it returns:

* over UDP, a list of datagrams, sent in order (``[]``: stay silent);
* over TCP, the raw bytes to write, length prefix included (``frame`` adds it), so that a
  test can cut an answer short; ``b""`` closes the connection at once.

``reply`` builds a response to a query from plain parts, uncompressed.  One thread
serves; ``queries`` records (qname, qtype, transport) for every question received.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence

from .baddns import DnsSocketServer, _question, name_wire

__all__ = ["ScriptDns", "frame", "reply", "rr"]

_HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD, AD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0020

Script = Callable[[bytes, str], "Sequence[bytes] | bytes"]


def rr(owner: str, rtype: int, rdata: bytes, *, ttl: int = 300, rclass: int = 1) -> bytes:
    """One resource record in wire form, its owner uncompressed."""
    return name_wire(owner.encode()) + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def reply(
    query: bytes,
    *,
    rcode: int = 0,
    ad: bool = False,
    tc: bool = False,
    answers: Sequence[bytes] = (),
    authority: Sequence[bytes] = (),
    ede: Sequence[tuple[int, bytes]] = (),
    qid: int | None = None,
    question: bytes | None = None,
    flags: int | None = None,
) -> bytes:
    """A response to ``query``: its ID and question echoed unless overridden; an OPT
    record (carrying the extended RCODE bits and the ``ede`` options) always."""
    query_id, query_flags, _, _, end = _question(query)
    if flags is None:
        flags = QR | (query_flags & RD) | (AD if ad else 0) | (TC if tc else 0) | (rcode & 0xF)
    echo = query[_HEADER.size : end] if question is None else question
    options = b"".join(struct.pack("!HHH", 15, 2 + len(text), code) + text for code, text in ede)
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, (rcode >> 4) << 24, len(options)) + options
    header = _HEADER.pack(
        query_id if qid is None else qid, flags, 1, len(answers), len(authority), 1
    )
    return header + echo + b"".join(answers) + b"".join(authority) + opt


def frame(message: bytes) -> bytes:
    """``message`` with the two-octet length TCP carries it with."""
    return struct.pack("!H", len(message)) + message


class ScriptDns(DnsSocketServer):
    """A scripted DNS server on ``address`` (UDP and TCP, one free port)."""

    thread_name = "scriptdns"
    _ignored = (OSError, struct.error)

    def __init__(self, script: Script, *, address: str = "127.0.7.53") -> None:
        super().__init__(address)
        self.script = script
        self.queries: list[tuple[bytes, int, str]] = []

    @property
    def nameserver(self) -> str:
        """This server as ``nameservers`` spells it."""
        return f"{self.address}:{self.port}"

    def _record(self, query: bytes, transport: str) -> None:
        _, _, qname, qtype, _ = _question(query)
        self.queries.append((qname, qtype, transport))

    def _udp(self, sock: socket.socket) -> None:
        query, peer = sock.recvfrom(4096)
        self._record(query, "udp")
        datagrams = self.script(query, "udp")
        for datagram in [datagrams] if isinstance(datagrams, bytes) else datagrams:
            sock.sendto(datagram, peer)

    def _tcp(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            (length,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
            query = conn.recv(length, socket.MSG_WAITALL)
            self._record(query, "tcp")
            answer = self.script(query, "tcp")
            conn.sendall(answer if isinstance(answer, bytes) else b"".join(answer))
