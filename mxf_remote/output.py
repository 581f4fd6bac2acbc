"""Writing qmail-remote reports: the one way any of our programs talks to qmail-rspawn.

qmail-rspawn reads the child's fd 1 (and fd 2, the same pipe) until EOF and folds the
NUL-terminated reports it finds there (qmail-remote-contract.md §1.3).  Three rules
follow, and every program in this package obeys them through this module:

* a report is a letter, a text, and exactly one NUL; the text never contains a NUL;
* nothing else is ever written to fd 1 or fd 2 (a stray byte first turns the whole
  delivery into a bounce);
* the process exits 0 after its reports, also when the write fails (qmail-remote
  ``_exit(0)``s silently on a write error).

It also holds the two rules that make foreign bytes printable inside a report, because
both the dispatcher's and the clients' reports need them and both import this module:

* ``outsafe``: a host or address, qmail-remote's ``outsafe()`` -- every byte below 33 or
  above 126 becomes ``?`` (a space too: a host name never has one);
* ``printable_ascii``: free text (a server's QMTP description, an explanation of ours)
  -- every byte below 32 or above 126 becomes ``?``, so spaces stay spaces.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings here
if TYPE_CHECKING:
    from typing import NoReturn

REPORT_FD = 1


def outsafe(host: str) -> bytes:
    """``host`` as qmail-remote's ``outsafe`` prints it: bytes outside 33..126 become ``?``."""
    raw = host.encode("utf-8", "surrogateescape")
    return bytes(b if 33 <= b <= 126 else 63 for b in raw)


def printable_ascii(raw: bytes) -> bytes:
    """``raw`` with every byte outside 32..126 as ``?`` (unlike ``outsafe``, 32 is kept)."""
    return bytes(b if 32 <= b <= 126 else 63 for b in raw)


def report_bytes(letter: str, text: bytes) -> bytes:
    """One report: ``letter``, ``text`` with every NUL made ``?``, and one NUL."""
    return letter.encode("ascii") + text.replace(b"\0", b"?") + b"\0"


def write_all(fd: int, data: bytes) -> bool:
    """Write every byte of ``data`` to ``fd``; False when the descriptor refuses."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return False
        view = view[written:]
    return True


def finish(data: bytes) -> NoReturn:
    """Write the reports in ``data`` to fd 1 and exit 0 at once, whatever happens.

    ``os._exit`` skips interpreter shutdown, so no late warning or thread can add a
    byte to the report pipe after the reports are out.
    """
    write_all(REPORT_FD, data)
    os._exit(0)


def descriptor_open(fd: int) -> bool:
    """True when ``fd`` is an open descriptor."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def plug_closed_outputs() -> None:
    """Open ``/dev/null`` on fd 1 and fd 2 where they are closed.

    Before anything else opens a descriptor: otherwise the next socket would get that
    number, a report could be written into a DNS or SMTP connection, and libuv aborts on
    a socket below 3.  A report then goes nowhere, as qmail-remote's write to a closed
    fd 1 does.
    """
    for fd in (1, 2):
        if not descriptor_open(fd):
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd, inheritable=True)
                os.close(null)
            else:
                os.set_inheritable(fd, True)
