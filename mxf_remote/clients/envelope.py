"""Envelope addresses as qmail-remote writes them into ``MAIL FROM:<…>`` and ``RCPT TO:<…>``.

qmail-smtpd takes the quotes off an address when it queues it (``"john doe"@x`` is
queued as ``john doe@x``), so the queue hands us addresses with spaces, ``<``, ``>``,
``"`` and ``\\`` in their local parts.  Written into a command as they are, such an
address changes the command: ``a> NOTIFY=NEVER@x`` would become an ESMTP parameter
chosen by whoever picked the address.  qmail-remote therefore runs every address
through ``addrmangle()`` and ``quote()`` (notqmail ``qmail-remote.c``, ``quote.c``;
contract §2.2), and so do we, byte for byte:

* split at the **last** ``@``; the domain goes out unchanged;
* the local part is quoted when ``quote_need`` says so: it is empty, has a byte of 128
  or more, has a byte outside RFC 5322 ``atext`` and ``.``, starts or ends with ``.``,
  or has ``..``;
* quoting is ``"`` + the local part with a backslash before each CR, LF, ``"`` and
  ``\\`` + ``"``; 8-bit bytes go inside the quotes as they are.

Where qmail-remote is unsafe we are safer, and say so in mxf-remote-smtpc(8):

* an address without ``@`` is sent raw by qmail-remote; we quote it by the same rule
  (``postmaster`` stays ``postmaster``, ``john doe`` becomes ``"john doe"``).  The empty
  address stays empty: ``MAIL FROM:<>`` is the bounce sender;
* an address with CR or LF is never sent at all (it would smuggle a command);
* a domain with a byte that can end the path or start a parameter -- a control byte,
  space, DEL, ``<`` or ``>`` -- cannot be quoted (SMTP has no quoting for domains) and
  is never sent either.  qmail-smtpd queues such a domain from ``<a@"b> X=1">``; no
  domain or address literal can contain those bytes, so no server could have taken it.

SMTPUTF8 (RFC 6531): when the server offers it and an address of the envelope is UTF-8
(``utf8_address``: a byte above 127, and valid UTF-8), mxf-remote-smtpc says ``SMTPUTF8``
on MAIL and writes such an address with ``smtp_path(address, smtputf8=True)``: by
RFC 6531 §3.3 UTF-8 characters are ``atext`` (and ``qtextSMTP``), so the local part is
quoted only for what would need quotes in ASCII (a space, ``"``, a leading dot, ...) or
for a character that is not printable (a Unicode space or control), never merely for its
8-bit bytes; the domain, U-labels and all, goes out as it is.  An address that is ASCII,
or not valid UTF-8, is written as above in any case: bytes that are not UTF-8 are no
SMTPUTF8 address, and go out as qmail-remote sends them.
"""

from __future__ import annotations

ATEXT_AND_DOT = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~."
)
"""The bytes a local part may have without quotes (quote.c's ``ok`` table)."""

PATH_BREAKERS = frozenset([*range(33), 127, *b"<>"])
"""Bytes a domain cannot have on the wire: they end the path or start a parameter."""

CR_OR_LF = "contains a carriage return or line feed"
BAD_DOMAIN = "has a domain that cannot be written in an SMTP command"


def quote_need(local: bytes, *, utf8: bool = False) -> bool:
    """quote.c's ``quote_need``: must this local part be quoted?

    With ``utf8`` (an SMTPUTF8 address, RFC 6531 §3.3) a UTF-8 character is ``atext``
    too -- unless it is not printable (a Unicode space, line or paragraph separator,
    control or format character, or a byte that is not UTF-8): quotes cost nothing there
    and keep a server that splits on Unicode white space from splitting the path.
    """
    if not local:
        return True
    if utf8:
        text = local.decode("utf-8", "surrogateescape")
        if any(ord(c) not in ATEXT_AND_DOT if c.isascii() else not c.isprintable() for c in text):
            return True
    elif any(byte not in ATEXT_AND_DOT for byte in local):
        return True
    return local.startswith(b".") or local.endswith(b".") or b".." in local


def quote(local: bytes, *, utf8: bool = False) -> bytes:
    """quote.c's ``quote``: the local part as it goes on the wire (``utf8``: SMTPUTF8)."""
    if not quote_need(local, utf8=utf8):
        return local
    escaped = bytearray(b'"')
    for byte in local:
        if byte in b'\r\n"\\':
            escaped += b"\\"
        escaped.append(byte)
    escaped += b'"'
    return bytes(escaped)


def utf8_address(address: bytes) -> bool:
    """True for an address that may go out as SMTPUTF8: not ASCII, and valid UTF-8."""
    if address.isascii():
        return False
    try:
        address.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def smtp_path(address: bytes, *, smtputf8: bool = False) -> bytes:
    """What goes between ``<`` and ``>``: qmail-remote's ``addrmangle``, plus the quoting
    of an address without ``@`` (see the module doc).  Check ``path_problem`` first.

    ``smtputf8``: the transaction is SMTPUTF8 (said on MAIL), so a UTF-8 address is
    quoted by RFC 6531's rules; an address that is ASCII or not UTF-8 is quoted as ever.
    """
    if not address:
        return b""
    utf8 = smtputf8 and utf8_address(address)
    local, at, domain = address.rpartition(b"@")
    if not at:
        return quote(address, utf8=utf8)
    return quote(local, utf8=utf8) + b"@" + domain


def path_problem(address: bytes) -> str | None:
    """Why ``address`` must not be sent at all (for the report), or None."""
    if b"\r" in address or b"\n" in address:
        return CR_OR_LF
    _, at, domain = address.rpartition(b"@")
    if at and any(byte in PATH_BREAKERS for byte in domain):
        return BAD_DOMAIN
    return None
