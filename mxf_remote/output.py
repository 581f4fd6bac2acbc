"""Writing qmail-remote reports: the one way any of our programs talks to qmail-rspawn.

qmail-rspawn reads the child's fd 1 (and fd 2, the same pipe) until EOF and folds the
NUL-terminated reports it finds there (qmail-remote-contract.md §1.3).  Three rules
follow, and every program in this package obeys them through this module:

* a report is a letter, a text, and exactly one NUL; the text never contains a NUL;
* nothing else is ever written to fd 1 or fd 2 (a stray byte first turns the whole
  delivery into a bounce);
* the process exits 0 after its reports, also when the write fails (qmail-remote
  ``_exit(0)``s silently on a write error).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings here
if TYPE_CHECKING:
    from typing import NoReturn

REPORT_FD = 1


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
