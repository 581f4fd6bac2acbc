"""Become the protocol client: the connection on fds 6 and 7, the signals, ``execve``.

The last step of every delivery that connected, shared by ``mxf-remote`` in process
(``handoff.py``) and by its launcher when ``mxf-remoted`` raced for it (``launcher.py``),
so it imports nothing but ``os``, ``fcntl``, ``_signal`` and our two smallest modules:
the launcher starts once per delivery.

* fds 6 (read) and 7 (write) become two descriptors of the connected socket, in blocking
  mode and inheritable; every other descriptor above 2 is closed.  fds 0, 1 and 2 are
  untouched, and fd 0 -- the queued message -- is never read or seeked;
* signals as qmail-rspawn gives them to qmail-remote: SIGPIPE ignored, every other signal
  at its default (Python itself ignores SIGXFSZ, and an embedding runtime may have set
  more), and the signal mask the process inherited;
* ``execve``; when it fails, qmail-remote's way of saying so (``report.cannot_run``) and
  exit 0.
"""

from __future__ import annotations

import _signal  # signal.py imports enum, 6 ms of every delivery's start-up
import fcntl
import os

from mxf_remote.output import finish
from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import NoReturn


def place_connection(fd: int, extra: Sequence[int] = ()) -> None:
    """Put the socket ``fd`` on fds 6 and 7 (blocking, inheritable), each of ``extra`` on
    8, 9, ... (inheritable); close every other descriptor above 2."""
    first_extra = NETWORK_WRITE_FD + 1
    high = first_extra + len(extra)  # everything is moved above where it will go first
    moved = [fcntl.fcntl(old, fcntl.F_DUPFD_CLOEXEC, high) for old in (fd, *extra)]
    for old in (fd, *extra):
        os.close(old)
    os.dup2(moved[0], NETWORK_READ_FD)
    os.dup2(moved[0], NETWORK_WRITE_FD)
    for target, source in enumerate(moved[1:], start=first_extra):
        os.dup2(source, target)
    for source in moved:
        os.close(source)
    os.set_blocking(NETWORK_READ_FD, True)
    os.closerange(3, NETWORK_READ_FD)
    os.closerange(high, _descriptor_limit())


def _descriptor_limit() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def restore_signals(inherited_mask: Iterable[int]) -> None:
    """SIGPIPE ignored, every other signal default, the inherited mask back in place."""
    for number in _signal.valid_signals():
        if number in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        handler = _signal.SIG_IGN if number == _signal.SIGPIPE else _signal.SIG_DFL
        try:
            _signal.signal(number, handler)
        except (OSError, ValueError, RuntimeError):
            continue
    _signal.pthread_sigmask(_signal.SIG_SETMASK, inherited_mask)


def exec_client(
    fd: int,
    argv: list[str],
    env: Mapping[str, str],
    inherited_mask: Iterable[int],
    extra: Sequence[int] = (),
) -> NoReturn:
    """Exec ``argv`` with the connection ``fd`` on fds 6/7 (and ``extra`` on 8...); a
    failed exec is a Z report."""
    place_connection(fd, extra)
    restore_signals(inherited_mask)
    try:
        os.execve(argv[0], argv, env)
    except OSError as error:
        from mxf_remote.report import cannot_run

        finish(cannot_run(argv[0], error.strerror or str(error)).encode())
