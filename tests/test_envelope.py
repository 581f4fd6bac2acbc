"""Envelope quoting (clients/envelope.py) against a transliteration of qmail's quote.c."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxf_remote.clients.envelope import (
    BAD_DOMAIN,
    CR_OR_LF,
    path_problem,
    quote,
    quote_need,
    smtp_path,
    utf8_address,
)

# quote.c's table, row by row as notqmail spells it (0 = must quote, 7 = fine).
QUOTE_C_OK = [
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,7,0,7,7,7,7,7,0,0,7,7,0,7,7,7, 7,7,7,7,7,7,7,7,7,7,0,0,0,7,0,7,
    0,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7, 7,7,7,7,7,7,7,7,7,7,7,0,0,0,7,7,
    7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7, 7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,0,
]  # fmt: skip


def c_quote_need(s: bytes) -> bool:
    """quote.c ``quote_need``, line by line."""
    n = len(s)
    if not n:
        return True
    for i in range(n):
        uch = s[i]
        if uch >= 128:
            return True
        if not QUOTE_C_OK[uch]:
            return True
    if s[0] == ord("."):
        return True
    if s[n - 1] == ord("."):
        return True
    return any(s[i] == ord(".") and s[i + 1] == ord(".") for i in range(n - 1))


def c_doit(s: bytes) -> bytes:
    """quote.c ``doit``."""
    out = bytearray(b'"')
    for ch in s:
        if ch in (ord("\r"), ord("\n"), ord('"'), ord("\\")):
            out.append(ord("\\"))
        out.append(ch)
    out.append(ord('"'))
    return bytes(out)


def c_addrmangle(s: bytes) -> bytes:
    """qmail-remote.c ``addrmangle`` (notqmail): the last @ splits; no @ is copied raw."""
    j = s.rfind(b"@")
    if j < 0:
        return s
    box = s[:j]
    return (c_doit(box) if c_quote_need(box) else box) + b"@" + s[j + 1 :]


TABLE = [
    # (queued address, on the wire between < and >)
    (b"alice@example.org", b"alice@example.org"),
    (b"john doe@x.org", b'"john doe"@x.org'),
    (b"a> NOTIFY=NEVER@x", b'"a> NOTIFY=NEVER"@x'),
    (
        b"a> NOTIFY=NEVER ORCPT=rfc822;x@example.org",
        b'"a> NOTIFY=NEVER ORCPT=rfc822;x"@example.org',
    ),
    (b"postmaster> XFOO=1@example.org", b'"postmaster> XFOO=1"@example.org'),
    (b'x"y\\z@x', b'"x\\"y\\\\z"@x'),
    (b".a@x", b'".a"@x'),
    (b"a.@x", b'"a."@x'),
    (b"a..b@x", b'"a..b"@x'),
    (b"a.b.c@x", b"a.b.c@x"),
    (b"@x", b'""@x'),
    (b"a@b@x", b'"a@b"@x'),
    (b"caf\xc3\xa9@x", b'"caf\xc3\xa9"@x'),
    (b"\x7f@x", b'"\x7f"@x'),
    (b"a\tb@x", b'"a\tb"@x'),
    (b"a\x00b@x", b'"a\x00b"@x'),
    (b"!#$%&'*+-/=?^_`{|}~@x", b"!#$%&'*+-/=?^_`{|}~@x"),
    (b"#@[]", b"#@[]"),
    (b"a@[IPv6:::1]", b"a@[IPv6:::1]"),
    (b"a@caf\xc3\xa9.example", b"a@caf\xc3\xa9.example"),
    (b"postmaster", b"postmaster"),
]
SPECIALS = b' "(),:;<>@[\\]'


def outside_the_quotes(address: bytes, wire: bytes) -> bytes:
    """The bytes of ``wire`` outside its local part's quotes (the domain counts as outside).

    The domain goes out as it is (it may hold a ``"`` inside an address literal), so only
    the local part is read as quoted text; the quotes there must be balanced.
    """
    _, at, domain = address.rpartition(b"@")
    local_wire = wire[: len(wire) - len(domain)] if at else wire
    outside = bytearray()
    quoted = escaped = False
    for byte in local_wire:
        if escaped:
            escaped = False
        elif quoted and byte == ord("\\"):
            escaped = True
        elif byte == ord('"'):
            quoted = not quoted
        elif not quoted:
            outside.append(byte)
    assert not quoted
    return bytes(outside) + (domain if at else b"")


class TestQuoteNeed:
    """quote_need is quote.c's, byte for byte."""

    @pytest.mark.parametrize("byte", range(256))
    def test_every_single_byte(self, byte: int) -> None:
        """Each byte alone, and inside a word, needs quoting exactly when quote.c says so."""
        for local in (bytes([byte]), b"a" + bytes([byte]) + b"b"):
            assert quote_need(local) == c_quote_need(local)

    @pytest.mark.parametrize("special", list(SPECIALS))
    def test_specials_force_quoting(self, special: int) -> None:
        """Space and each of "(),:;<>@[\\] force quotes."""
        assert quote_need(b"a" + bytes([special]))

    @pytest.mark.parametrize(
        "local", [b"", b".", b".a", b"a.", b"a..b", b"\x80", b"\xff", b"\x7f", b"\x01"]
    )
    def test_odd_locals_are_quoted(self, local: bytes) -> None:
        """Empty, leading/trailing/double dots, 8-bit bytes, DEL and controls are quoted."""
        assert quote_need(local)

    def test_plain_atoms_are_not_quoted(self) -> None:
        """An ordinary dot-atom goes out as it is."""
        assert quote(b"first.last+tag") == b"first.last+tag"

    @given(st.binary(max_size=40))
    def test_quote_matches_quote_c(self, local: bytes) -> None:
        """For any local part, quote() is quote.c's quote()."""
        expected = c_doit(local) if c_quote_need(local) else local
        assert quote(local) == expected


class TestSmtpPath:
    """addrmangle: what goes between < and >."""

    @pytest.mark.parametrize(("address", "wire"), TABLE)
    def test_table(self, address: bytes, wire: bytes) -> None:
        """Each queued address becomes exactly these wire bytes."""
        assert smtp_path(address) == wire

    @given(st.binary(max_size=30), st.binary(max_size=12).filter(lambda d: b"@" not in d))
    def test_with_at_is_qmail_remote_byte_for_byte(self, local: bytes, domain: bytes) -> None:
        """Every address with an @ goes out exactly as qmail-remote sends it."""
        address = local + b"@" + domain
        assert smtp_path(address) == c_addrmangle(address)

    def test_without_at_is_quoted_where_qmail_remote_is_unsafe(self) -> None:
        """No @: quoted by the same rule (qmail-remote sends it raw)."""
        assert smtp_path(b"john doe") == b'"john doe"'
        assert smtp_path(b"a>X=1") == b'"a>X=1"'
        assert c_addrmangle(b"john doe") == b"john doe"

    def test_empty_address_stays_empty(self) -> None:
        """The null sender is <>, never <"">."""
        assert smtp_path(b"") == b""

    @given(st.binary(max_size=40))
    def test_a_sendable_path_never_leaves_the_brackets(self, address: bytes) -> None:
        """Whatever the address, a sendable one cannot end the path or add a parameter."""
        if path_problem(address) is not None:
            return
        outside_quotes = outside_the_quotes(address, smtp_path(address))
        assert not any(b in b"<> \r\n" or b < 32 for b in outside_quotes)


class TestPathProblem:
    """Addresses that are never sent at all."""

    @pytest.mark.parametrize("address", [b"a\r@x", b"a@x\n", b"a\r\nRSET", b"\n"])
    def test_cr_or_lf(self, address: bytes) -> None:
        """CR or LF anywhere: never sent."""
        assert path_problem(address) == CR_OR_LF

    @pytest.mark.parametrize(
        "address", [b"a@b> X=1", b"a@b c", b"a@b<", b"a@\x00", b"a@b\t", b"a@b\x7f"]
    )
    def test_domain_that_ends_the_path(self, address: bytes) -> None:
        """A domain with a control byte, space, DEL, < or > cannot be written."""
        assert path_problem(address) == BAD_DOMAIN

    @pytest.mark.parametrize(
        "address", [b"", b"a b@x", b"a>b@x", b"x", b"a@[IPv6:::1]", b"a@caf\xc3\xa9", b"@"]
    )
    def test_sendable(self, address: bytes) -> None:
        """Hostile local parts are quoted, not refused; 8-bit domains go as they are."""
        assert path_problem(address) is None


class TestUtf8Address:
    """Which addresses may go out as SMTPUTF8: not ASCII, and valid UTF-8."""

    @pytest.mark.parametrize(
        "address",
        [b"j\xc3\xb6rg@x", b"a@fa\xc3\x9f.example", "\u7528\u6237@\u4f8b\u5b50".encode()],
    )
    def test_utf8(self, address: bytes) -> None:
        """A UTF-8 local part or domain: an SMTPUTF8 address."""
        assert utf8_address(address)

    @pytest.mark.parametrize(
        "address",
        [
            b"",
            b"plain@x",
            b"caf\xe9@x",  # Latin-1
            b"a@\xff",
            b"\xc3@x",  # a truncated sequence
            b"\xc0\xaf@x",  # an overlong '/'
            b"\xed\xa0\x80@x",  # an encoded surrogate
            b"\xf4\x90\x80\x80@x",  # above U+10FFFF
        ],
    )
    def test_not_utf8(self, address: bytes) -> None:
        """ASCII, or bytes that are not valid UTF-8: never SMTPUTF8."""
        assert not utf8_address(address)


class TestSmtputf8Path:
    """RFC 6531 §3.3: UTF-8 is atext; ASCII specials and dots are quoted as ever."""

    @pytest.mark.parametrize(
        ("address", "wire"),
        [
            (b"j\xc3\xb6rg@fa\xc3\x9f.example", b"j\xc3\xb6rg@fa\xc3\x9f.example"),
            (b"j\xc3\xb6rg doe@x", b'"j\xc3\xb6rg doe"@x'),
            (b'\xc3\xa9"@x', b'"\xc3\xa9\\""@x'),
            (b".\xc3\xa9@x", b'".\xc3\xa9"@x'),
            (b"\xc3\xa9..a@x", b'"\xc3\xa9..a"@x'),
            (b"\xc3\xa9>X=1@x", b'"\xc3\xa9>X=1"@x'),
            (b"a\xc2\x85b@x", b'"a\xc2\x85b"@x'),  # NEL, a C1 control
            (b"a\xe2\x80\xa8b@x", b'"a\xe2\x80\xa8b"@x'),  # LINE SEPARATOR
            (b"a\xc2\xa0b@x", b'"a\xc2\xa0b"@x'),  # NO-BREAK SPACE
            (b"a@b@fa\xc3\x9f", b'"a@b"@fa\xc3\x9f'),
            (b"plain@fa\xc3\x9f.example", b"plain@fa\xc3\x9f.example"),
            (b"\xc3\xa9", b"\xc3\xa9"),
            (b"", b""),
        ],
    )
    def test_table(self, address: bytes, wire: bytes) -> None:
        """Each UTF-8 address in an SMTPUTF8 transaction becomes exactly these bytes."""
        assert smtp_path(address, smtputf8=True) == wire

    @pytest.mark.parametrize("address", [b"caf\xe9@x", b"\xc3\xa9\xff@x", b"a b@x", b"x"])
    def test_not_utf8_is_written_as_qmail_remote_does(self, address: bytes) -> None:
        """Bytes that are not UTF-8, and ASCII: as addrmangle, SMTPUTF8 or not."""
        assert smtp_path(address, smtputf8=True) == smtp_path(address)

    def test_without_the_extension_utf8_is_quoted_as_ever(self) -> None:
        """No SMTPUTF8: a UTF-8 local part is quoted, its bytes as they are (qmail-remote)."""
        assert smtp_path(b"j\xc3\xb6rg@fa\xc3\x9f") == b'"j\xc3\xb6rg"@fa\xc3\x9f'

    def test_eight_bit_alone_never_forces_quotes(self) -> None:
        """Printable UTF-8 characters of many scripts need no quotes."""
        for local in (
            "j\u00f6rg",
            "\u7528\u6237",
            "\u0430\u0434\u043c\u0438\u043d",
            "\u05d0\u05d1",
        ):
            assert not quote_need(local.encode(), utf8=True)
            assert quote_need(local.encode())

    @given(st.text(max_size=20), st.text(max_size=10).filter(lambda d: "@" not in d))
    def test_a_utf8_path_never_leaves_the_brackets(self, local: str, domain: str) -> None:
        """Any UTF-8 address: outside quotes, no <, >, space, control or Unicode space."""
        address = (local + "@" + domain).encode("utf-8", "surrogatepass")
        if path_problem(address) is not None:
            return
        wire = smtp_path(address, smtputf8=True)
        outside_quotes = outside_the_quotes(address, wire)
        assert not any(b in b"<> \r\n" or b < 32 for b in outside_quotes)
        local_outside = outside_quotes.rpartition(b"@")[0] if b"@" in wire else outside_quotes
        text = bytes(local_outside).decode("utf-8", "surrogateescape")
        assert all(c.isprintable() and not c.isspace() for c in text)
