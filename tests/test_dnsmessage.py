"""Tests for mxf_remote/dnsmessage.py: the query we send, and answers taken apart.

Pure: no sockets.  Well-formed messages round-trip; the hostile catalogue (compression
loops, pointers that go forward or into themselves, names and labels too long, every
kind of truncation, rdata of the wrong length, counts the message cannot hold) raises
``MalformedMessage`` and nothing else; hypothesis checks that for random bytes and for
mutations of a real answer.
"""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxf_remote import dnsmessage
from mxf_remote.dnsmessage import (
    MalformedMessage,
    Message,
    Record,
    Soa,
    build_query,
    encode_name,
    parse,
    read_name,
)
from mxf_remote.knowledge import MX, SRV, TLSA

HEADER = struct.Struct("!HHHHHH")
QUESTION = encode_name("h.test") + struct.pack("!HH", 1, 1)


def message(
    *records: bytes,
    an: int | None = None,
    ns: int = 0,
    ar: int = 0,
    flags: int = 0x8180,
    question: bytes = QUESTION,
    qd: int = 1,
) -> bytes:
    """A response with ID 7 and the given (wire) records, counts as given or counted."""
    count = len(records) - ns - ar if an is None else an
    return HEADER.pack(7, flags, qd, count, ns, ar) + question + b"".join(records)


def rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    """A record; ``owner`` in wire form (so pointers can be spelt)."""
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


OWNER = encode_name("h.test")
POINTER_TO_QNAME = b"\xc0\x0c"


def opt(options: bytes = b"", ext_rcode: int = 0) -> bytes:
    """An OPT record carrying ``options``."""
    return b"\0" + struct.pack("!HHIH", 41, 1232, ext_rcode << 24, len(options)) + options


def ede(code: int, text: bytes) -> bytes:
    """An Extended DNS Error option."""
    return struct.pack("!HHH", 15, 2 + len(text), code) + text


class TestQuery:
    """The question: RD=1, AD=1, CD=0, EDNS0 1232, DO=0, random ID."""

    def test_layout(self) -> None:
        """Header, name, type, class and the OPT record, octet for octet."""
        question = build_query("Mx.Example.", 15, qid=0x1234)
        assert question.wire == (
            HEADER.pack(0x1234, 0x0120, 1, 0, 0, 1)
            + b"\x02Mx\x07Example\x00"
            + b"\x00\x0f\x00\x01"
            + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        )
        assert (question.qid, question.name, question.qtype) == (0x1234, "mx.example", 15)

    def test_the_id_is_random(self) -> None:
        """Without an ID given, each query draws one (64 draws are not all equal)."""
        assert len({build_query("h.test", 1).qid for _ in range(64)}) > 1

    @pytest.mark.parametrize(
        "name",
        [
            "a b.test",
            "x" * 64 + ".test",
            ".".join(["abcdefg"] * 40) + ".test",
            "a..b.test",
            ".test",
            "caf\u00e9.test",
            "tab\t.test",
            "bad\\2.test",
            "end\\",
        ],
    )
    def test_names_no_question_can_carry(self, name: str) -> None:
        """Empty or long labels, long names, spaces, controls, non-ASCII, bad escapes."""
        with pytest.raises(ValueError):
            encode_name(name)

    def test_limits_are_inclusive(self) -> None:
        """A 63-octet label and a 255-octet name are fine."""
        assert len(encode_name("x" * 63 + ".test")) == 63 + 1 + 5 + 1
        name = ".".join(["x" * 63] * 3 + ["y" * 61])
        assert len(encode_name(name)) == 255
        with pytest.raises(ValueError):
            encode_name(name + "y")

    @pytest.mark.parametrize(
        ("name", "wire"),
        [
            ("a\\.b.test", b"\x03a.b\x04test\x00"),
            ("a\\\\b", b"\x03a\\b\x00"),
            ("\\200x", b"\x02\xc8x\x00"),
            (".", b"\x00"),
            ("", b"\x00"),
            ("test.", b"\x04test\x00"),
            ("_25._tcp.mx", b"\x03_25\x04_tcp\x02mx\x00"),
        ],
    )
    def test_escapes_and_the_root(self, name: str, wire: bytes) -> None:
        """Zone-file escapes, the root, a trailing dot, underscores."""
        assert encode_name(name) == wire

    @given(st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=3))
    def test_names_round_trip(self, labels: list[bytes]) -> None:
        """Any labels: decoded, then encoded again, give the same wire (lower-cased)."""
        wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
        text, end = read_name(b"\0" * 12 + wire, 12)
        assert end == 12 + len(wire)
        assert encode_name(text) == wire.lower()


class TestParse:
    """Well-formed answers."""

    def test_header_fields(self) -> None:
        """ID, QR, opcode, TC, AD, RCODE and the echoed question."""
        parsed = parse(message(flags=0x8000 | (0 << 11) | 0x0200 | 0x0020 | 3))
        assert (parsed.qid, parsed.qr, parsed.opcode, parsed.tc, parsed.ad) == (
            7,
            True,
            0,
            True,
            True,
        )
        assert parsed.rcode == 3
        assert parsed.question == ("h.test", 1, 1)

    def test_every_record_type(self) -> None:
        """A, AAAA, CNAME, MX, SRV, TLSA, TXT, SOA parsed; other types kept raw."""
        records = [
            rr(POINTER_TO_QNAME, 1, socket.inet_aton("192.0.2.1")),
            rr(POINTER_TO_QNAME, 28, socket.inet_pton(socket.AF_INET6, "2001:db8:0::1")),
            rr(POINTER_TO_QNAME, 5, b"\x03End" + POINTER_TO_QNAME),
            rr(POINTER_TO_QNAME, 15, b"\0\x0a\x02Mx" + POINTER_TO_QNAME),
            rr(POINTER_TO_QNAME, 15, b"\0\0\0"),
            rr(POINTER_TO_QNAME, 33, struct.pack("!HHH", 1, 2, 25) + b"\0"),
            rr(POINTER_TO_QNAME, 52, b"\3\1\1\xaa\xbb"),
            rr(POINTER_TO_QNAME, 16, b"\2ab\0\1c"),
            rr(POINTER_TO_QNAME, 99, b"\x01\x02"),
        ]
        parsed = parse(message(*records))
        assert [record.data for record in parsed.answers] == [
            "192.0.2.1",
            "2001:db8::1",
            "end.h.test",
            MX(10, "mx.h.test"),
            MX(0, ""),
            SRV(1, 2, 25, ""),
            TLSA(3, 1, 1, b"\xaa\xbb"),
            b"abc",
            b"\x01\x02",
        ]
        assert {record.owner for record in parsed.answers} == {"h.test"}

    def test_authority_soa(self) -> None:
        """An SOA in the authority section, TTL and all."""
        soa = encode_name("ns.test") + encode_name("host.test") + struct.pack("!5I", 1, 2, 3, 4, 5)
        parsed = parse(message(rr(encode_name("test"), 6, soa, ttl=30), ns=1))
        assert parsed.authority == (
            Record("test", 6, 1, 30, Soa("ns.test", "host.test", 1, 2, 3, 4, 5)),
        )

    def test_a_ttl_with_the_top_bit_is_zero(self) -> None:
        """RFC 2181 §8: TTL 2**31 or more counts as 0."""
        parsed = parse(message(rr(OWNER, 1, b"\0\0\0\0", ttl=0x80000000)))
        assert parsed.answers[0].ttl == 0

    def test_extended_dns_errors_and_rcode(self) -> None:
        """EDE info-codes and texts, the extended RCODE bits; other options skipped."""
        options = struct.pack("!HH", 10, 8) + b"cookie!!" + ede(6, b"DNSSEC Bogus") + ede(22, b"")
        parsed = parse(message(opt(options, ext_rcode=1), ar=1, flags=0x8000 | 2))
        assert parsed.ede == ((6, "DNSSEC Bogus"), (22, ""))
        assert parsed.rcode == 16 + 2

    def test_ede_text_is_made_printable_and_bounded(self) -> None:
        """Control characters become ``?``, bad UTF-8 the replacement character, 200 max."""
        parsed = parse(message(opt(ede(0, b"\x1b[31mred\xff" + b"x" * 300)), ar=1))
        ((code, text),) = parsed.ede
        assert code == 0
        assert text.startswith("?[31mred\ufffd")
        assert len(text) <= 200

    def test_names_with_odd_octets_are_escaped(self) -> None:
        """A dot, a backslash, a space or a high octet inside a label: escaped, lower case."""
        owner = b"\x05A.B\\\xff\x03x Y\x00"
        parsed = parse(message(rr(owner, 1, b"\0\0\0\0")))
        assert parsed.answers[0].owner == "a\\.b\\\\\\255.x\\032y"
        assert encode_name(parsed.answers[0].owner) == owner.lower()

    def test_no_question(self) -> None:
        """QDCOUNT 0 (a FORMERR answer may echo nothing): question None."""
        assert parse(message(question=b"", qd=0)).question is None

    def test_answers_question(self) -> None:
        """ID, QR, opcode and the question (case-insensitive) must match."""
        question = build_query("H.Test", 1, qid=7)
        assert dnsmessage.answers_question(parse(message()), question)
        other = build_query("h.test", 28, qid=7)
        assert not dnsmessage.answers_question(parse(message()), other)
        assert not dnsmessage.answers_question(parse(message(flags=0x0100)), question)
        assert not dnsmessage.answers_question(parse(message(flags=0x8000 | 1 << 11)), question)


HOSTILE = {
    "empty": b"",
    "short header": b"\0" * 11,
    "two questions": message(qd=2, question=QUESTION * 2),
    "question cut in name": HEADER.pack(7, 0x8000, 1, 0, 0, 0) + b"\x01h",
    "question cut in type": HEADER.pack(7, 0x8000, 1, 0, 0, 0) + encode_name("h") + b"\0",
    "compression loop": message(
        rr(b"\x01a\xc0\x2a", 1, b"\0\0\0\0"), rr(b"\xc0\x18", 1, b"\0\0\0\0")
    ),
    "a name pointing back to its own start": message(rr(b"\x01a\xc0\x18", 1, b"\0\0\0\0")),
    "pointer into itself": message(rr(b"\xc0\x18", 1, b"\0\0\0\0")),
    "forward pointer": message(rr(b"\xc0\x30", 1, b"\0\0\0\0"), b"\0" * 8),
    "pointer into the header": message(rr(b"\xc0\x02", 1, b"\0\0\0\0")),
    "pointer cut short": HEADER.pack(7, 0x8000, 1, 0, 0, 0) + b"\x01h\xc0",
    "reserved label type": message(rr(b"\x81a\x00", 1, b"\0\0\0\0")),
    "name over 255": message(rr((b"\x3f" + b"x" * 63) * 4 + b"\0", 1, b"\0\0\0\0")),
    "name over 255 through pointers": message(
        rr((b"\x3f" + b"x" * 63) * 3 + b"\0", 1, b"\0\0\0\0"),
        rr(b"\x3f" + b"y" * 63 + b"\xc0\x18", 1, b"\0\0\0\0"),  # the first name at 0x18
    ),
    "label over 63 (0x40 is a reserved type)": message(rr(b"\x40" + b"x" * 64 + b"\0", 1, b"")),
    "label past the end": HEADER.pack(7, 0x8000, 1, 0, 0, 0) + b"\x05ab",
    "record header cut": message(OWNER + b"\0\1\0\1\0"),
    "rdlength beyond the buffer": message(OWNER + struct.pack("!HHIH", 1, 1, 0, 400) + b"\0" * 4),
    "A of 5": message(rr(OWNER, 1, b"\0" * 5)),
    "A of 3": message(rr(OWNER, 1, b"\0" * 3)),
    "AAAA of 4": message(rr(OWNER, 28, b"\0" * 4)),
    "MX of 2": message(rr(OWNER, 15, b"\0\1")),
    "MX with octets after its name": message(rr(OWNER, 15, b"\0\1\0\0")),
    "MX name past its rdata": message(rr(OWNER, 15, b"\0\1\x05ab"), b"cde\0"),
    "SRV too short": message(rr(OWNER, 33, b"\0" * 6)),
    "CNAME empty": message(rr(OWNER, 5, b"")),
    "TLSA of 2": message(rr(OWNER, 52, b"\3\1")),
    "TXT without a string": message(rr(OWNER, 16, b"")),
    "TXT string past its record": message(rr(OWNER, 16, b"\5ab"), b"cde"),
    "SOA too short": message(rr(OWNER, 6, b"\0\0" + b"\0" * 19), ns=1),
    "huge counts": message(an=65535),
    "huge additional count": message(an=0, ar=65535),
    "octets after the last record": message(b"\0", an=0),
    "two OPT records": message(opt(), opt(), ar=2),
    "OPT not at the root": message(OWNER + opt()[1:], ar=1),
    "EDNS option header cut": message(opt(b"\0\x0f\0"), ar=1),
    "EDNS option past its record": message(opt(b"\0\x0f\0\x09\0\6"), ar=1),
    "EDE without info-code": message(opt(b"\0\x0f\0\1\0"), ar=1),
}


class TestHostile:
    """Every malformation is ``MalformedMessage``, and nothing else."""

    @pytest.mark.parametrize("wire", HOSTILE.values(), ids=HOSTILE.keys())
    def test_rejected(self, wire: bytes) -> None:
        """The catalogue: each one rejected."""
        with pytest.raises(MalformedMessage):
            parse(wire)

    def test_a_pointer_chain_going_backwards_is_fine(self) -> None:
        """Pointers to earlier names, which point further back: accepted."""
        first = rr(b"\x03www" + POINTER_TO_QNAME, 1, b"\0\0\0\0")  # at 0x18
        second = rr(b"\x02mx\xc0\x18", 1, b"\0\0\0\1")
        parsed = parse(message(first, second))
        assert [r.owner for r in parsed.answers] == ["www.h.test", "mx.www.h.test"]

    def test_a_name_of_exactly_255_octets(self) -> None:
        """The longest legal name parses."""
        name = ".".join(["x" * 63] * 3 + ["y" * 61])
        parsed = parse(message(rr(encode_name(name), 1, b"\0\0\0\0")))
        assert parsed.answers[0].owner == name

    @settings(max_examples=2000)
    @given(st.binary(max_size=600))
    def test_random_bytes(self, wire: bytes) -> None:
        """Random bytes: parsed or ``MalformedMessage``, never another exception."""
        try:
            result = parse(wire)
        except MalformedMessage:
            return
        assert isinstance(result, Message)

    @settings(max_examples=2000)
    @given(st.data())
    def test_mutated_answers(self, data: st.DataObject) -> None:
        """A real answer with octets changed, cut or inserted: never another exception."""
        soa = encode_name("ns.test") + POINTER_TO_QNAME + struct.pack("!5I", 1, 2, 3, 4, 5)
        base = bytearray(
            message(
                rr(POINTER_TO_QNAME, 5, b"\x03end" + POINTER_TO_QNAME),
                rr(b"\x03end" + POINTER_TO_QNAME, 15, b"\0\x0a\x02mx\xc0\x0c"),
                rr(POINTER_TO_QNAME, 16, b"\2ab\0\1c"),
                rr(POINTER_TO_QNAME, 52, b"\3\1\1\xaa"),
                rr(POINTER_TO_QNAME, 6, soa),
                opt(ede(6, b"bogus")),
                ns=1,
                ar=1,
            )
        )
        for _ in range(data.draw(st.integers(1, 4))):
            where = data.draw(st.integers(0, len(base)))
            action = data.draw(st.sampled_from(["set", "cut", "insert"]))
            if action == "set" and where < len(base):
                base[where] = data.draw(st.integers(0, 255))
            elif action == "cut":
                del base[where:]
            else:
                base[where:where] = data.draw(st.binary(min_size=1, max_size=4))
        with contextlib.suppress(MalformedMessage):
            parse(bytes(base))
