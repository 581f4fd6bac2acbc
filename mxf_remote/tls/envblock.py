"""The NUL-separated environment block of UCSPI-TLS (and of s6-tlsc-io's ``-d`` notification).

After a ``Y`` command the engine writes the TLS parameters to the control socket as
``KEY=value\\0`` entries, a bare ``KEY\\0`` meaning "unset KEY" (skalibs' env-modification
convention), and one extra ``\\0`` ending the block; then it closes the socket.  A block
that is cut short (EOF before the final ``\\0``) means the handshake failed.

s6 writes the entries in this order: SSL_PROTOCOL, SSL_CIPHER, SSL_TLS_SNI_SERVERNAME,
SSL_PEER_CERT_HASH, SSL_PEER_CERT_SUBJECT.  Consumers should not depend on the order.
"""

from __future__ import annotations

import os

Entries = list[tuple[str, str | None]]


class IncompleteBlock(ValueError):
    """The data ended before the extra NUL that closes an environment block."""


def encode_env_block(entries: Entries) -> bytes:
    """``[(key, value or None)]`` → ``KEY=value\\0`` / ``KEY\\0`` ... ``\\0``."""
    out = bytearray()
    for key, value in entries:
        if not key or "=" in key or "\0" in key:
            raise ValueError(f"bad variable name {key!r}")
        out += os.fsencode(key)
        if value is not None:
            if "\0" in value:
                raise ValueError(f"NUL in the value of {key}")
            out += b"=" + os.fsencode(value)
        out += b"\0"
    out += b"\0"
    return bytes(out)


def parse_env_block(data: bytes) -> Entries:
    """Parse one complete block; raise :class:`IncompleteBlock` if it is cut short.

    Bytes after the closing NUL are ignored (the engine sends none).
    """
    entries: Entries = []
    position = 0
    while True:
        end = data.find(b"\0", position)
        if end < 0:
            raise IncompleteBlock("environment block not terminated")
        if end == position:
            return entries
        item = data[position:end]
        key, sep, value = item.partition(b"=")
        if not key:
            raise ValueError(f"entry without a name: {item!r}")
        entries.append((os.fsdecode(key), os.fsdecode(value) if sep else None))
        position = end + 1


def apply_env_block(env: dict[str, str], entries: Entries) -> None:
    """Set or unset each entry of a parsed block in ``env``."""
    for key, value in entries:
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value


FAILURE_VARIABLE = "MXFTLSFAILURE"
"""The one entry of a failure block: ``<RFC 8460 result type> <reason>``."""

MAX_FAILURE = 400
"""Characters of a failure's reason kept (a reason is a sentence, not a document)."""


def encode_failure_block(result_type: str, reason: str) -> bytes:
    """``MXFTLSFAILURE=<type> <reason>\\0`` and *no* closing NUL: an incomplete block.

    The engine writes it after a failed handshake or policy check (``Y``, under MXFDANE
    or MXFWEBPKI).  To any UCSPI-TLS client it is a failed handshake (the block is cut
    short); mxf-remote-smtpc reads the reason from it (``parse_failure``).
    """
    text = "".join(ch if ch.isprintable() else " " for ch in f"{result_type} {reason}")
    raw = os.fsencode(text[:MAX_FAILURE])
    return FAILURE_VARIABLE.encode() + b"=" + raw + b"\0"


def parse_failure(data: bytes) -> tuple[str, str] | None:
    """``(result type, reason)`` from an incomplete block that is a failure block, else None.

    The bytes come from another process: only a first entry named MXFTLSFAILURE counts,
    at most MAX_FAILURE characters of it, decoded leniently (the caller sanitizes again).
    """
    prefix = FAILURE_VARIABLE.encode() + b"="
    if not data.startswith(prefix):
        return None
    value = data[len(prefix) :].partition(b"\0")[0][:MAX_FAILURE]
    result_type, _, reason = value.decode("ascii", "replace").partition(" ")
    if not result_type:
        return None
    return result_type, reason
