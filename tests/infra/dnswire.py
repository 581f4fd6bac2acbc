"""A tiny stdlib DNS wire-format helper for tests.

Why: the test infrastructure must check that a real DNS server answers (readiness polls),
the DNS proxy must read question names and forge error answers, and tests want to look at
raw answers (TC bit, rcode, AA) that resolver libraries hide. Only what those uses need is
here: building a query, parsing a message (with name compression) and decoding the rdata
of the common record types; anything else stays raw bytes.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import time
from dataclasses import dataclass, field

__all__ = [
    "QTYPES",
    "RCODE_FORMERR",
    "RCODE_NOERROR",
    "RCODE_NOTIMP",
    "RCODE_NXDOMAIN",
    "RCODE_REFUSED",
    "RCODE_SERVFAIL",
    "DnsWireError",
    "Message",
    "Question",
    "Record",
    "build_query",
    "make_error_response",
    "make_truncated_response",
    "parse_message",
    "parse_question",
    "qtype_code",
    "qtype_name",
    "query_tcp",
    "query_udp",
    "recv_exact",
]

QTYPES: dict[str, int] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
    "OPT": 41,
    "DS": 43,
    "RRSIG": 46,
    "NSEC": 47,
    "DNSKEY": 48,
    "TLSA": 52,
    "ANY": 255,
}
_QTYPE_NAMES = {v: k for k, v in QTYPES.items()}

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
_FLAG_RA = 0x0080
_FLAG_AD = 0x0020
_HEADER = struct.Struct("!HHHHHH")
_MAX_POINTER_HOPS = 64


class DnsWireError(ValueError):
    """A DNS message could not be parsed."""


def qtype_code(qtype: str | int) -> int:
    """Return the numeric type for a mnemonic ("MX"), a "TYPEnnn" string or an int."""
    if isinstance(qtype, int):
        return qtype
    upper = qtype.upper()
    if upper in QTYPES:
        return QTYPES[upper]
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return int(upper[4:])
    raise ValueError(f"unknown DNS type {qtype!r}")


def qtype_name(code: int) -> str:
    """Return the mnemonic for a numeric type ("TYPEnnn" when unknown)."""
    return _QTYPE_NAMES.get(code, f"TYPE{code}")


def _normalize_name(name: str) -> str:
    return name.rstrip(".").lower()


def _encode_name(name: str) -> bytes:
    out = bytearray()
    stripped = name.rstrip(".")
    if stripped:
        for label in stripped.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad DNS label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"DNS name too long: {name!r}")
    return bytes(out)


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name; return (name without trailing dot, next offset)."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    while True:
        if offset >= len(msg):
            raise DnsWireError("name runs past the end of the message")
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(msg):
                raise DnsWireError("truncated compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            hops += 1
            if hops > _MAX_POINTER_HOPS:
                raise DnsWireError("compression pointer loop")
            continue
        if length & 0xC0:
            raise DnsWireError(f"bad label length byte {length:#x}")
        offset += 1
        if length == 0:
            break
        if offset + length > len(msg):
            raise DnsWireError("label runs past the end of the message")
        labels.append(msg[offset : offset + length].decode("ascii", "backslashreplace"))
        offset += length
    return ".".join(labels), (end if end is not None else offset)


@dataclass(frozen=True)
class Question:
    """One question: name (lower case, no trailing dot), numeric type and class."""

    name: str
    qtype: int
    qclass: int = 1

    @property
    def type_name(self) -> str:
        """The mnemonic of the question type."""
        return qtype_name(self.qtype)


@dataclass(frozen=True)
class Record:
    """One resource record; `data` is decoded for common types, raw bytes otherwise.

    Names (owner and in rdata) are lower case without a trailing dot.

    Decoded forms: A/AAAA -> address str; NS/CNAME/PTR -> name str; MX -> (pref, name);
    SRV -> (priority, weight, port, target); SOA -> (mname, rname, serial, refresh, retry,
    expire, minimum); TXT -> tuple of bytes strings.
    """

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: object

    @property
    def type_name(self) -> str:
        """The mnemonic of the record type."""
        return qtype_name(self.rtype)


@dataclass(frozen=True)
class Message:
    """A parsed DNS message."""

    id: int
    flags: int
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = field(default=())

    @property
    def rcode(self) -> int:
        """The (non-extended) response code."""
        return self.flags & 0x000F

    @property
    def qr(self) -> bool:
        """True for a response."""
        return bool(self.flags & _FLAG_QR)

    @property
    def aa(self) -> bool:
        """The authoritative-answer bit."""
        return bool(self.flags & _FLAG_AA)

    @property
    def tc(self) -> bool:
        """The truncation bit."""
        return bool(self.flags & _FLAG_TC)

    @property
    def ad(self) -> bool:
        """The authentic-data bit (a validating resolver vouches for the answer)."""
        return bool(self.flags & _FLAG_AD)

    def answer_data(self, rtype: str | int) -> list[object]:
        """The decoded data of every answer record of that type, in order."""
        code = qtype_code(rtype)
        return [r.data for r in self.answers if r.rtype == code]


def build_query(
    qname: str,
    qtype: str | int,
    *,
    qid: int | None = None,
    rd: bool = True,
    edns_payload: int | None = None,
    ad: bool = False,
) -> bytes:
    """Build a query message; `edns_payload` adds an OPT record with that UDP size.

    `ad` sets AD=1, asking a validating resolver to report whether it validated the answer
    (RFC 6840 5.7); without it resolvers answer AD=0 even for secure data.
    """
    if qid is None:
        qid = random.randrange(0x10000)
    flags = (_FLAG_RD if rd else 0) | (_FLAG_AD if ad else 0)
    arcount = 1 if edns_payload is not None else 0
    out = _HEADER.pack(qid, flags, 1, 0, 0, arcount)
    out += _encode_name(qname) + struct.pack("!HH", qtype_code(qtype), 1)
    if edns_payload is not None:
        out += b"\x00" + struct.pack("!HHIH", QTYPES["OPT"], edns_payload, 0, 0)
    return out


def _decode_rdata(msg: bytes, rtype: int, start: int, rdlen: int) -> object:
    """Decode rdata; names are lower-cased (compression may copy the query's case)."""
    rdata = msg[start : start + rdlen]
    result: object = rdata
    if rtype == QTYPES["A"] and rdlen == 4:
        result = str(ipaddress.IPv4Address(rdata))
    elif rtype == QTYPES["AAAA"] and rdlen == 16:
        result = str(ipaddress.IPv6Address(rdata))
    elif rtype in (QTYPES["NS"], QTYPES["CNAME"], QTYPES["PTR"]):
        result = _decode_name(msg, start)[0].lower()
    elif rtype == QTYPES["MX"]:
        (pref,) = struct.unpack_from("!H", msg, start)
        result = (pref, _decode_name(msg, start + 2)[0].lower())
    elif rtype == QTYPES["SRV"]:
        prio, weight, port = struct.unpack_from("!HHH", msg, start)
        result = (prio, weight, port, _decode_name(msg, start + 6)[0].lower())
    elif rtype == QTYPES["SOA"]:
        mname, off = _decode_name(msg, start)
        rname, off = _decode_name(msg, off)
        result = (mname.lower(), rname.lower(), *struct.unpack_from("!IIIII", msg, off))
    elif rtype == QTYPES["TXT"]:
        parts: list[bytes] = []
        off = 0
        while off < rdlen:
            n = rdata[off]
            parts.append(rdata[off + 1 : off + 1 + n])
            off += 1 + n
        result = tuple(parts)
    return result


def parse_message(msg: bytes) -> Message:
    """Parse a whole DNS message (raises DnsWireError when malformed)."""
    if len(msg) < _HEADER.size:
        raise DnsWireError("message shorter than a DNS header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(msg, 0)
    offset = _HEADER.size
    questions: list[Question] = []
    try:
        for _ in range(qd):
            name, offset = _decode_name(msg, offset)
            qtype, qclass = struct.unpack_from("!HH", msg, offset)
            offset += 4
            questions.append(Question(name.lower(), qtype, qclass))
        sections: list[list[Record]] = [[], [], []]
        for section, count in zip(sections, (an, ns, ar), strict=True):
            for _ in range(count):
                name, offset = _decode_name(msg, offset)
                rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, offset)
                offset += 10
                if offset + rdlen > len(msg):
                    raise DnsWireError("rdata runs past the end of the message")
                data = _decode_rdata(msg, rtype, offset, rdlen)
                offset += rdlen
                section.append(Record(name.lower(), rtype, rclass, ttl, data))
    except struct.error as exc:
        raise DnsWireError(f"truncated message: {exc}") from exc
    return Message(
        qid, flags, tuple(questions), tuple(sections[0]), tuple(sections[1]), tuple(sections[2])
    )


def parse_question(msg: bytes) -> tuple[int, str, int, int]:
    """Return (id, qname lower case without trailing dot, qtype, end of question) of a query."""
    if len(msg) < _HEADER.size:
        raise DnsWireError("message shorter than a DNS header")
    qid, _flags, qd = struct.unpack_from("!HHH", msg, 0)
    if qd < 1:
        raise DnsWireError("no question")
    try:
        name, offset = _decode_name(msg, _HEADER.size)
        (qtype,) = struct.unpack_from("!H", msg, offset)
    except struct.error as exc:
        raise DnsWireError(f"truncated question: {exc}") from exc
    return qid, _normalize_name(name), qtype, offset + 4


def _response_header(query: bytes, rcode: int, *, tc: bool = False) -> bytes:
    """A response to `query` with only its question echoed back."""
    _qid, _name, _qtype, end = parse_question(query)
    qid, qflags = struct.unpack_from("!HH", query, 0)
    flags = _FLAG_QR | (qflags & (_FLAG_RD | 0x7800)) | _FLAG_RA | (rcode & 0xF)
    if tc:
        flags |= _FLAG_TC
    return _HEADER.pack(qid, flags, 1, 0, 0, 0) + query[_HEADER.size : end]


def make_error_response(query: bytes, rcode: int) -> bytes:
    """An answer to `query` carrying `rcode` and no records (e.g. REFUSED=5)."""
    return _response_header(query, rcode)


def make_truncated_response(query: bytes) -> bytes:
    """An empty NOERROR answer with TC=1, telling the client to retry over TCP."""
    return _response_header(query, RCODE_NOERROR, tc=True)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def query_udp(
    host: str, port: int, qname: str, qtype: str | int, *, timeout: float = 1.0, ad: bool = False
) -> Message:
    """Send one query over UDP and return the parsed answer with the same id.

    Raises TimeoutError (socket.timeout) when nothing matching arrives within `timeout`.
    """
    query = build_query(qname, qtype, edns_payload=1232, ad=ad)
    qid = struct.unpack_from("!H", query, 0)[0]
    deadline = time.monotonic() + timeout
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.send(query)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no UDP answer from {host}:{port} for {qname} {qtype}")
            sock.settimeout(remaining)
            data = sock.recv(65535)
            if len(data) >= 2 and struct.unpack_from("!H", data, 0)[0] == qid:
                return parse_message(data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes from a stream socket (ConnectionError on early EOF)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def query_tcp(
    host: str, port: int, qname: str, qtype: str | int, *, timeout: float = 1.0, ad: bool = False
) -> Message:
    """Send one query over TCP (2-byte length framing) and return the parsed answer."""
    query = build_query(qname, qtype, ad=ad)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("!H", len(query)) + query)
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        return parse_message(recv_exact(sock, length))
