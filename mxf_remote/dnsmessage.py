"""DNS messages on the wire (RFC 1035 §4, RFC 6891, RFC 8914): pure functions, no I/O.

``dnssec.DnssecLookup`` needs what c-ares will not give (dane-mta-sts.md §1): a question
with AD=1, and the answer's AD bit, RCODE and Extended DNS Error.  This module builds that
question and takes an answer apart; the lookup does the sockets.

Every byte of an answer is hostile until checked.  The parser therefore

* checks every length against the buffer before it reads (header, question, record
  header, rdata, each name, each TXT character-string, each EDNS option);
* reads a compressed name only through pointers that point *backwards*, each before the
  previous one and past the header, so that a chain of pointers always ends (no loop, no
  pointer into itself, none forward), and stops any name at 255 octets (127 labels);
* requires the exact rdata length of A (4) and AAAA (16), and that MX, SRV, CNAME, SOA
  and TLSA rdata hold what they must and nothing more;
* bounds the record counts by what the message could hold (a record takes at least 11
  octets), so a header claiming 65535 records costs nothing;
* raises one exception, ``MalformedMessage``, for anything it cannot accept.  A message
  that fails here is a failed try for the lookup, never a crash.

Records of types the lookup does not use (NS, RRSIG, NSEC, ...) are stepped over with
their rdata unread.  Names come out as ``knowledge.dns_name`` stores them: lower case
(ASCII only, as DNS compares), no trailing dot; octets that are not printable ASCII, and
``.`` or ``\\`` inside a label, are written ``\\DDD`` / ``\\.`` as in a zone file, so that a
label holding a dot cannot pose as two labels.  ``encode_name`` reads the same escapes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from mxf_remote.knowledge import MX, SRV, TLSA

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_MX, TYPE_TXT = 1, 2, 5, 6, 15, 16
TYPE_AAAA, TYPE_SRV, TYPE_OPT, TYPE_TLSA = 28, 33, 41, 52
TYPES = {
    "A": TYPE_A,
    "MX": TYPE_MX,
    "TXT": TYPE_TXT,
    "AAAA": TYPE_AAAA,
    "SRV": TYPE_SRV,
    "TLSA": TYPE_TLSA,
}
"""The record types a lookup may ask for, by name."""
CLASS_IN = 1

RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 1, 2, 3
RCODE_NOTIMP, RCODE_REFUSED = 4, 5
RCODE_NAMES = {
    RCODE_NOERROR: "NOERROR",
    RCODE_FORMERR: "FORMERR",
    RCODE_SERVFAIL: "SERVFAIL",
    RCODE_NXDOMAIN: "NXDOMAIN",
    RCODE_NOTIMP: "NOTIMP",
    RCODE_REFUSED: "REFUSED",
}

FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD = 0x8000, 0x0400, 0x0200, 0x0100
FLAG_RA, FLAG_AD, FLAG_CD = 0x0080, 0x0020, 0x0010

EDNS_UDP_SIZE = 1232
"""The UDP payload size we offer (DNS Flag Day 2020: no IP fragmentation)."""
OPTION_EDE = 15
"""RFC 8914 Extended DNS Error."""

MAX_EDE_TEXT = 200
"""Octets of an EDE's text kept: it is for a log line, from a server we do not trust."""
MAX_NAME = 255
MAX_LABEL = 63
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_MIN_RR = 11  # a root owner name and the fixed fields


class MalformedMessage(ValueError):
    """The message is not well-formed DNS: the try that got it failed."""


class Soa(NamedTuple):
    """An SOA record's data (RFC 1035 §3.3.13); only the TTL rules use it."""

    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


class Record(NamedTuple):
    """One resource record: ``data`` parsed for the types the lookup uses, else raw bytes.

    A/AAAA: canonical address text; CNAME: a name; MX/SRV/TLSA: ``knowledge`` types;
    TXT: ``bytes``, the record's character-strings concatenated; SOA: ``Soa``.
    """

    owner: str
    rtype: int
    rclass: int
    ttl: int
    data: Any


class Question(NamedTuple):
    """What was asked: the wire, its ID, and the question as an answer must echo it."""

    qid: int
    name: str
    """``decode``d form of the name asked (lower case, no trailing dot)."""
    qtype: int
    wire: bytes


class Message(NamedTuple):
    """A parsed response: header fields, the echoed question, answer and authority records."""

    qid: int
    flags: int
    rcode: int
    """With RFC 6891's extended bits from the OPT record."""
    question: tuple[str, int, int] | None
    """(name, type, class), None when the message has no question."""
    answers: tuple[Record, ...]
    authority: tuple[Record, ...]
    ede: tuple[tuple[int, str], ...]
    """RFC 8914 (info-code, extra text) pairs, for diagnostics only (text made printable)."""

    @property
    def qr(self) -> bool:
        """A response, not a query."""
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        """0 for a standard query."""
        return (self.flags >> 11) & 0xF

    @property
    def tc(self) -> bool:
        """Truncated: ask again over TCP."""
        return bool(self.flags & FLAG_TC)

    @property
    def ad(self) -> bool:
        """Authentic Data: the resolver validated everything in the answer (RFC 4035)."""
        return bool(self.flags & FLAG_AD)


# -- names ----------------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """``name`` (ASCII, zone-file escapes allowed, trailing dot optional) in wire form.

    ValueError for a name no question can carry: an empty label, a label over 63 octets,
    a name over 255, a space, a control or non-ASCII character, a bad escape.
    """
    if name in ("", "."):
        return b"\0"
    if not name.isascii():
        raise ValueError(f"{name!r} is not ASCII")
    out = bytearray()
    label = bytearray()
    index = 0
    while index < len(name):
        char = name[index]
        if char == ".":
            _append_label(out, label, name)
            label = bytearray()
            if index == len(name) - 1:
                break  # the trailing dot: the root follows
        elif char == "\\":
            index = _unescape(name, index, label)
        elif 0x21 <= ord(char) <= 0x7E:
            label.append(ord(char))
        else:
            raise ValueError(f"{name!r} has a character no name may hold")
        index += 1
    else:
        _append_label(out, label, name)
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"{name!r} is over {MAX_NAME} octets")
    return bytes(out)


def _unescape(name: str, index: int, label: bytearray) -> int:
    """Append the octet of the escape at ``name[index]`` (``\\DDD`` or ``\\X``) to ``label``;
    the index of the escape's last character."""
    digits = name[index + 1 : index + 4]
    if len(digits) == 3 and digits.isdigit() and int(digits) < 256:
        label.append(int(digits))
        return index + 3
    if index + 1 < len(name) and not name[index + 1].isdigit():
        label += name[index + 1].encode("ascii")
        return index + 1
    raise ValueError(f"{name!r} has a bad escape")


def _append_label(out: bytearray, label: bytearray, name: str) -> None:
    if not 0 < len(label) <= MAX_LABEL:
        raise ValueError(f"{name!r} has an empty label or one over {MAX_LABEL} octets")
    out.append(len(label))
    out += label


def _label_text(raw: bytes) -> str:
    """A label in presentation form, lower case: ``\\.``, ``\\\\``, ``\\DDD`` escapes."""
    if raw.isalnum() or all(0x21 <= octet <= 0x7E and octet not in b".\\" for octet in raw):
        return raw.decode("ascii").lower()
    parts = []
    for octet in raw.lower():
        if octet in b".\\":
            parts.append("\\" + chr(octet))
        elif 0x21 <= octet <= 0x7E:
            parts.append(chr(octet))
        else:
            parts.append(f"\\{octet:03d}")
    return "".join(parts)


def read_name(msg: bytes, pos: int, limit: int | None = None) -> tuple[str, int]:
    """The name at ``pos`` (``dns_name`` form) and the offset just after it.

    ``limit``: where the name's own octets must end (the end of an rdata); pointers may
    still lead anywhere earlier in the message.  Each pointer must point before the
    previous one (so a chain of them ends) and past the header.
    """
    end_limit = len(msg) if limit is None else limit
    labels: list[str] = []
    octets = 1  # the root label
    after: int | None = None
    floor = pos  # a pointer must point before this
    bound = end_limit
    while True:
        if pos >= bound:
            raise MalformedMessage("a name runs past its end")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= bound:
                raise MalformedMessage("a compression pointer is cut short")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if after is None:
                after = pos + 2
            if target >= floor or target < _HEADER.size:
                raise MalformedMessage("a compression pointer does not point backwards")
            floor = pos = target
            bound = len(msg)
            continue
        if length & 0xC0:
            raise MalformedMessage("an unknown label type")
        if length == 0:
            break
        octets += length + 1
        if octets > MAX_NAME:
            raise MalformedMessage(f"a name over {MAX_NAME} octets")
        if pos + 1 + length > bound:
            raise MalformedMessage("a label runs past its end")
        labels.append(_label_text(msg[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    return ".".join(labels), (pos + 1 if after is None else after)


# -- the question ---------------------------------------------------------------------------


def build_query(name: str, qtype: int, qid: int | None = None) -> Question:
    """A query for ``name``/``qtype``: RD=1, AD=1, CD=0, EDNS0 with 1232 octets, DO=0.

    The ID is random (``os.urandom``) unless given.  ValueError when ``name`` cannot be
    asked (``encode_name``).
    """
    wire_name = encode_name(name)
    if qid is None:
        qid = int.from_bytes(os.urandom(2), "big")
    header = _HEADER.pack(qid, FLAG_RD | FLAG_AD, 1, 0, 0, 1)
    opt = b"\0" + _RR.pack(TYPE_OPT, EDNS_UDP_SIZE, 0, 0)
    wire = header + wire_name + struct.pack("!HH", qtype, CLASS_IN) + opt
    decoded, _ = read_name(wire, _HEADER.size)
    return Question(qid, decoded, qtype, wire)


def answers_question(message: Message, question: Question) -> bool:
    """True when ``message`` is a response to ``question``: ID, QR, opcode and question echo."""
    return (
        message.qid == question.qid
        and message.qr
        and message.opcode == 0
        and message.question == (question.name, question.qtype, CLASS_IN)
    )


# -- the answer -----------------------------------------------------------------------------


def parse(msg: bytes) -> Message:
    """Take a response apart; ``MalformedMessage`` for anything malformed."""
    if len(msg) < _HEADER.size:
        raise MalformedMessage("shorter than a header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(msg)
    pos = _HEADER.size
    question: tuple[str, int, int] | None = None
    if qdcount > 1:
        raise MalformedMessage("more than one question")
    if qdcount == 1:
        qname, pos = read_name(msg, pos)
        if pos + 4 > len(msg):
            raise MalformedMessage("the question is cut short")
        qtype, qclass = struct.unpack_from("!HH", msg, pos)
        pos += 4
        question = (qname, qtype, qclass)
    if (ancount + nscount + arcount) * _MIN_RR > len(msg) - pos:
        raise MalformedMessage("more records counted than the message can hold")
    answers, pos = _section(msg, pos, ancount)
    authority, pos = _section(msg, pos, nscount)
    rcode = flags & 0xF
    ede: list[tuple[int, str]] = []
    seen_opt = False
    for _ in range(arcount):
        owner, rtype, _rclass, ttl, start, end = _record_header(msg, pos)
        if rtype == TYPE_OPT:
            if seen_opt or owner:
                raise MalformedMessage("a second OPT record, or one not at the root")
            seen_opt = True
            rcode |= (ttl >> 24) << 4
            ede += _edns_errors(msg[start:end])
        pos = end
    if pos != len(msg):
        raise MalformedMessage("octets after the last record")
    return Message(qid, flags, rcode, question, answers, authority, tuple(ede))


def _section(msg: bytes, pos: int, count: int) -> tuple[tuple[Record, ...], int]:
    records = []
    for _ in range(count):
        owner, rtype, rclass, ttl, start, end = _record_header(msg, pos)
        if ttl > 0x7FFFFFFF:
            ttl = 0  # RFC 2181 §8: a TTL with the top bit set is zero
        records.append(Record(owner, rtype, rclass, ttl, _rdata(msg, rtype, start, end)))
        pos = end
    return tuple(records), pos


def _record_header(msg: bytes, pos: int) -> tuple[str, int, int, int, int, int]:
    """(owner, type, class, ttl, rdata start, rdata end) of the record at ``pos``."""
    owner, pos = read_name(msg, pos)
    if pos + _RR.size > len(msg):
        raise MalformedMessage("a record is cut short")
    rtype, rclass, ttl, rdlength = _RR.unpack_from(msg, pos)
    start = pos + _RR.size
    if start + rdlength > len(msg):
        raise MalformedMessage("rdata runs past the message")
    return owner, rtype, rclass, ttl, start, start + rdlength


def _rdata(msg: bytes, rtype: int, start: int, end: int) -> Any:
    """The parsed rdata of the types the lookup uses; raw bytes for the others."""
    parser = _RDATA_PARSERS.get(rtype)
    return msg[start:end] if parser is None else parser(msg, start, end)


def _address(family: socket.AddressFamily, size: int) -> Callable[[bytes, int, int], str]:
    def parse_address(msg: bytes, start: int, end: int) -> str:
        if end - start != size:
            raise MalformedMessage(f"an address record that is not {size} octets")
        return socket.inet_ntop(family, msg[start:end])

    return parse_address


def _mx(msg: bytes, start: int, end: int) -> MX:
    if end - start < 3:
        raise MalformedMessage("an MX record too short")
    (preference,) = struct.unpack_from("!H", msg, start)
    return MX(preference, _name_exactly(msg, start + 2, end))


def _srv(msg: bytes, start: int, end: int) -> SRV:
    if end - start < 7:
        raise MalformedMessage("an SRV record too short")
    priority, weight, port = struct.unpack_from("!HHH", msg, start)
    return SRV(priority, weight, port, _name_exactly(msg, start + 6, end))


def _tlsa(msg: bytes, start: int, end: int) -> TLSA:
    if end - start < 3:
        raise MalformedMessage("a TLSA record too short")
    return TLSA(msg[start], msg[start + 1], msg[start + 2], msg[start + 3 : end])


def _soa(msg: bytes, start: int, end: int) -> Soa:
    mname, pos = read_name(msg, start, end)
    rname, pos = read_name(msg, pos, end)
    if end - pos != 20:
        raise MalformedMessage("an SOA record of the wrong length")
    return Soa(mname, rname, *struct.unpack_from("!5I", msg, pos))


def _name_exactly(msg: bytes, start: int, end: int) -> str:
    """A name that fills the rdata from ``start`` to ``end``, no more, no less."""
    name, after = read_name(msg, start, end)
    if after != end:
        raise MalformedMessage("octets after the name in rdata")
    return name


def _txt(msg: bytes, start: int, end: int) -> bytes:
    """A TXT record's character-strings (one or more, RFC 1035 §3.3.14) concatenated."""
    if start == end:
        raise MalformedMessage("a TXT record without a character-string")
    chunks = []
    pos = start
    while pos < end:
        length = msg[pos]
        if pos + 1 + length > end:
            raise MalformedMessage("a TXT character-string runs past its record")
        chunks.append(msg[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return b"".join(chunks)


_RDATA_PARSERS: dict[int, Callable[[bytes, int, int], Any]] = {
    TYPE_A: _address(socket.AF_INET, 4),
    TYPE_AAAA: _address(socket.AF_INET6, 16),
    TYPE_CNAME: _name_exactly,
    TYPE_MX: _mx,
    TYPE_SRV: _srv,
    TYPE_TLSA: _tlsa,
    TYPE_TXT: _txt,
    TYPE_SOA: _soa,
}


def _edns_errors(rdata: bytes) -> list[tuple[int, str]]:
    """The Extended DNS Errors among an OPT record's options (others are stepped over)."""
    errors = []
    pos = 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise MalformedMessage("an EDNS option header is cut short")
        code, length = struct.unpack_from("!HH", rdata, pos)
        body = rdata[pos + 4 : pos + 4 + length]
        if len(body) != length:
            raise MalformedMessage("an EDNS option runs past its record")
        if code == OPTION_EDE:
            if length < 2:
                raise MalformedMessage("an Extended DNS Error without its info-code")
            text = body[2 : 2 + MAX_EDE_TEXT].decode("utf-8", "replace")
            text = "".join(char if char.isprintable() else "?" for char in text)
            errors.append((int.from_bytes(body[:2], "big"), text))
        pos += 4 + length
    return errors
