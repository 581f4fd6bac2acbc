"""Reading one control file: the primitives every program of the package shares.

qmail's ``control.c`` rules: a file that does not exist takes its default; a
single-value file is its first line with trailing space, tab and LF stripped.  A file
that exists but cannot be read or parsed raises ``ControlError`` naming the file, the
line and the problem.  A line ending in CR (a CRLF file) is such an error: qmail would
keep the CR in the value and fail somewhere obscure later.  So is anything but a regular
file (a directory, a FIFO, a device): it is opened without blocking, as qmail's
``open_read`` does, so that a FIFO nobody writes cannot hang the delivery.

Kept apart from ``control.py`` (the protocols table and routes, for mxf-remote) and free
of heavy imports: the protocol clients start once per delivery and read ``me``,
``helohost`` and ``timeoutremote`` through this module alone.
"""

from __future__ import annotations

import os
from stat import S_ISDIR, S_ISREG

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOME = "/var/qmail"
MAX_CONTROL_FILE_BYTES = 16 * 1024 * 1024


class ControlError(Exception):
    """A control file exists but cannot be used: names the file, the line and the problem."""

    def __init__(self, name: str, line: int | None, problem: str) -> None:
        self.name = name
        self.line = line
        self.problem = problem
        super().__init__(self.detail())

    def detail(self) -> str:
        """``control/NAME line N: problem`` (without a line number when none applies)."""
        where = f"control/{self.name}" + (f" line {self.line}" if self.line else "")
        return f"{where}: {self.problem}"


def program_directory(argv0: str) -> str:
    """The directory of the running program, symlinks resolved: where its clients are.

    Admins install mxf-remote as a link named ``qmail-remote``; the clients it looks up by
    bare name are beside the real program (a virtual environment's ``bin``), not beside
    the link.
    """
    return os.path.dirname(os.path.realpath(argv0))


def qmail_home(environ: Mapping[str, str] | None = None) -> str:
    """The qmail home: ``$MXF_QMAIL`` when set and not empty, else ``/var/qmail``."""
    return (os.environ if environ is None else environ).get("MXF_QMAIL") or DEFAULT_HOME


def read_lines(home: str, name: str) -> list[str] | None:
    """Every line of ``control/NAME`` with trailing space/tab stripped; None if absent.

    Bytes are decoded as UTF-8 with surrogate escapes (as the OS decodes argv), so no
    byte sequence makes this fail.  A line ending in CR is an error (see module doc).
    """
    path = os.path.join(home, "control", name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ControlError(name, None, f"cannot read: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not S_ISREG(mode):
            problem = "Is a directory" if S_ISDIR(mode) else "not a regular file"
            raise ControlError(name, None, f"cannot read: {problem}")
        with open(fd, "rb", closefd=False) as file:
            data = file.read(MAX_CONTROL_FILE_BYTES + 1)
    except OSError as error:
        raise ControlError(name, None, f"cannot read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONTROL_FILE_BYTES:
        raise ControlError(name, None, f"larger than {MAX_CONTROL_FILE_BYTES} bytes")
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    stripped = []
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip(" \t")
        if line.endswith("\r"):
            raise ControlError(name, number, "line ends in a carriage return (CRLF line ends?)")
        stripped.append(line)
    return stripped


def read_first_line(home: str, name: str) -> str | None:
    """The first line of ``control/NAME`` (qmail's ``control_readline``); None if absent."""
    lines = read_lines(home, name)
    if lines is None:
        return None
    return lines[0] if lines else ""


def parse_decimal(name: str, line: int, text: str, *, low: int, high: int, unit: str) -> int:
    """A whole number in ``low..high`` written in plain decimal, or a ControlError."""
    if not text:
        raise ControlError(name, line, f"empty, expected a whole number of {unit}")
    if not (text.isascii() and text.isdigit()):
        raise ControlError(name, line, f"{text[:40]!r} is not a whole number of {unit}")
    if len(text) > 12 or not low <= int(text) <= high:
        raise ControlError(name, line, f"{text[:40]} is outside {low}..{high} {unit}")
    return int(text)


def read_number(home: str, name: str, default: int, *, low: int, high: int, unit: str) -> int:
    """A single-number control file (``timeoutconnect``, ``timeoutremote``...)."""
    text = read_first_line(home, name)
    if text is None:
        return default
    return parse_decimal(name, 1, text, low=low, high=high, unit=unit)
