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


def quote_need(local: bytes) -> bool:
    """quote.c's ``quote_need``: must this local part be quoted?"""
    if not local:
        return True
    if any(byte not in ATEXT_AND_DOT for byte in local):
        return True
    return local.startswith(b".") or local.endswith(b".") or b".." in local


def quote(local: bytes) -> bytes:
    """quote.c's ``quote``: the local part as it goes on the wire."""
    if not quote_need(local):
        return local
    escaped = bytearray(b'"')
    for byte in local:
        if byte in b'\r\n"\\':
            escaped += b"\\"
        escaped.append(byte)
    escaped += b'"'
    return bytes(escaped)


def smtp_path(address: bytes) -> bytes:
    """What goes between ``<`` and ``>``: qmail-remote's ``addrmangle``, plus the quoting
    of an address without ``@`` (see the module doc).  Check ``path_problem`` first."""
    if not address:
        return b""
    local, at, domain = address.rpartition(b"@")
    if not at:
        return quote(address)
    return quote(local) + b"@" + domain


def path_problem(address: bytes) -> str | None:
    """Why ``address`` must not be sent at all (for the report), or None."""
    if b"\r" in address or b"\n" in address:
        return CR_OR_LF
    _, at, domain = address.rpartition(b"@")
    if at and any(byte in PATH_BREAKERS for byte in domain):
        return BAD_DOMAIN
    return None
