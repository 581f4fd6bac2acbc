"""What mxf-remote's launcher and mxf-remoted say to each other on the Unix socket.

Everything is netstrings (``len:bytes,``), so no byte of an argument or an environment
variable needs escaping, and a reader always knows how much is still to come.

The launcher sends one **request**, a netstring holding netstrings::

    "mxf-remoted 1", started, beside, argv, environ

``started`` is the launcher's CLOCK_MONOTONIC at start (seconds, as text): the server's
trace counts from it. ``beside`` is the directory of the running mxf-remote (symlinks
resolved), where programs named by a bare name are looked up first. ``argv`` and
``environ`` are netstrings of netstrings (the arguments after the program name;
``NAME=value`` entries), bytes as the kernel gave them.

The server answers at once with ``A`` and a netstring: the seconds the delivery may
take before the launcher gives up on it (timeoutdns + timeoutconnect and a margin), or
with ``B`` when it is at its limit (the launcher then delivers in process).  Then comes
one **result**, a netstring whose first byte says what it is:

* ``R`` + the report bytes, which the launcher writes on fd 1;
* ``H`` + netstrings of the qmail home, the client's argv, its environment and how to
  run it, with the winning connection attached (SCM_RIGHTS): the launcher execs the
  client on it -- or, when "how" names one of our own clients (``smtp``, ``qmtp``),
  runs that client's code in its own process instead of a new interpreter.

This module is imported by the launcher, which starts once per delivery: it imports
nothing.
"""

from __future__ import annotations

MAGIC = b"mxf-remoted 1"
STATUS = b"mxf-remoted status 1"
"""A request for the server's state (``mxf-remote-probe``): answered with one netstring of
JSON, the connection history."""
MAX_MESSAGE = 64 * 1024 * 1024
"""A request or a result larger than this is refused (argv and environ of a delivery are
a few KB; 5,000 recipients are 250 KB)."""

ACCEPTED = b"A"
BUSY = b"B"
REPORT = b"R"
HANDOFF = b"H"


class Malformed(Exception):
    """Bytes that are not the netstrings expected."""


def netstring(data: bytes) -> bytes:
    """``len:data,``."""
    return b"%d:%s," % (len(data), data)


def netstrings(items: list[bytes]) -> bytes:
    """A netstring of netstrings."""
    return netstring(b"".join(netstring(item) for item in items))


def complete_length(buffer: bytes) -> int | None:
    """The length of the first netstring in ``buffer`` when it is all there, else None.

    Malformed when the buffer cannot start a netstring of at most MAX_MESSAGE bytes.
    """
    colon = buffer.find(b":", 0, 12)
    if colon < 0:
        if len(buffer) >= 12 or (buffer and not buffer.isdigit()):
            raise Malformed("no length")
        return None
    digits = buffer[:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        raise Malformed("bad length")
    size = int(digits)
    if size > MAX_MESSAGE:
        raise Malformed("too long")
    end = colon + 1 + size
    if len(buffer) <= end:
        return None
    if buffer[end : end + 1] != b",":
        raise Malformed("no comma")
    return end + 1


def split(data: bytes) -> list[bytes]:
    """The netstrings ``data`` is made of, in order."""
    items = []
    position = 0
    while position < len(data):
        length = complete_length(data[position:])
        if length is None:
            raise Malformed("cut short")
        colon = data.index(b":", position)
        items.append(data[colon + 1 : position + length - 1])
        position += length
    return items


def unwrap(message: bytes) -> bytes:
    """The contents of the single netstring ``message``."""
    length = complete_length(message)
    if length != len(message):
        raise Malformed("not one netstring")
    return message[message.index(b":") + 1 : -1]


def encode_request(started: float, beside: bytes, argv: list[bytes], environ: list[bytes]) -> bytes:
    """The launcher's request."""
    return netstring(
        netstring(MAGIC)
        + netstring(repr(started).encode())
        + netstring(beside)
        + netstrings(argv)
        + netstrings(environ)
    )


def decode_request(message: bytes) -> tuple[float, bytes, list[bytes], list[bytes]]:
    """``(started, beside, argv, environ)`` of a request; Malformed when it is not one."""
    parts = split(unwrap(message))
    if len(parts) != 5 or parts[0] != MAGIC:
        raise Malformed("not an mxf-remoted request")
    try:
        started = float(parts[1])
    except ValueError:
        raise Malformed("bad start time") from None
    return started, parts[2], split(parts[3]), split(parts[4])


IN_PROCESS_CLIENTS = (b"smtp", b"qmtp")
"""Our clients the launcher may run without a new interpreter (``clients/<name>.py``)."""


def encode_handoff(
    home: bytes, argv: list[bytes], environ: list[bytes], in_process: bytes = b""
) -> bytes:
    """The result that hands the connection over."""
    return netstring(
        HANDOFF + netstring(home) + netstrings(argv) + netstrings(environ) + netstring(in_process)
    )


def decode_handoff(payload: bytes) -> tuple[bytes, list[bytes], list[bytes], bytes]:
    """``(home, argv, environ, in_process)`` of a handoff result's payload (after ``H``)."""
    parts = split(payload)
    if len(parts) != 4 or parts[3] not in (b"", *IN_PROCESS_CLIENTS):
        raise Malformed("not a handoff")
    return parts[0], split(parts[1]), split(parts[2]), parts[3]


def encode_status_request() -> bytes:
    """The probe's question for the server's state."""
    return netstring(netstring(STATUS))


def is_status_request(message: bytes) -> bool:
    """True for ``encode_status_request``'s message."""
    try:
        return split(unwrap(message)) == [STATUS]
    except Malformed:
        return False
