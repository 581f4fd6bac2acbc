"""What both protocol clients do around the protocol: arguments, control files, the guard.

The rules come from qmail-rspawn, which will read whatever we print (contract §1):

* only reports reach fd 1, all in one write at the end (qmail-remote flushes once, in
  ``zerodie``); a client killed half-way prints nothing, which rspawn defers;
* nothing reaches fd 2 -- it is the same pipe, and a stray byte before the first report
  turns the delivery into a bounce.  fd 2 is pointed at ``/dev/null`` first thing;
* the exit status is 0, always: a traceback exits 1, which rspawn turns into
  ``DUnable to run qmail-remote.`` -- a bounce.  ``run_guarded`` makes any exception a
  ``Z...internal error`` report instead.
"""

from __future__ import annotations

import os
import sys

from mxf_remote.clients import reports
from mxf_remote.controlfile import ControlError, qmail_home, read_first_line, read_number
from mxf_remote.output import finish
from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

DEFAULT_TIMEOUT_REMOTE = 1200


class Finished(Exception):
    """The run is over; ``data`` is every report to print."""

    def __init__(self, data: bytes) -> None:
        super().__init__("finished")
        self.data = data


def run_guarded(program: str, body: Callable[[list[str]], bytes]) -> NoReturn:
    """Run ``body(argv)``, print the reports it returns, exit 0 -- whatever happens."""
    try:
        _silence_stderr()
        try:
            data = body(sys.argv)
        except Finished as finished:
            data = finished.data
    except BaseException as error:
        data = reports.internal_error(program, error)
    finish(data)


def _silence_stderr() -> None:
    """Point fd 2 at /dev/null, so no warning can ever reach the report pipe."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    if null != 2:
        os.dup2(null, 2)
        os.close(null)


def check_arguments(argv: list[str]) -> tuple[bytes, list[bytes]]:
    """``(sender, recipients)`` from ``program host sender recip...`` as bytes."""
    if len(argv) < 4:
        raise Finished(reports.usage())
    return os.fsencode(argv[2]), [os.fsencode(recipient) for recipient in argv[3:]]


def read_timeout(home: str) -> int:
    """``control/timeoutremote``: seconds each wait for the peer may take."""
    try:
        return read_number(
            home, "timeoutremote", DEFAULT_TIMEOUT_REMOTE, low=1, high=86400, unit="seconds"
        )
    except ControlError as error:
        raise Finished(reports.control_files(error.detail())) from None


def read_helohost(home: str) -> bytes:
    """``control/helohost``, else ``control/me``; both missing is qmail's #4.3.0."""
    try:
        for name in ("helohost", "me"):
            value = read_first_line(home, name)
            if value is not None:
                if not value:
                    raise ControlError(name, 1, "empty, expected a host name")
                return os.fsencode(value)
    except ControlError as error:
        raise Finished(reports.control_files(error.detail())) from None
    raise Finished(reports.control_files())


def check_network() -> None:
    """fds 6 and 7 must be open (we run under mxf-remote or a UCSPI client)."""
    for fd in (NETWORK_READ_FD, NETWORK_WRITE_FD):
        try:
            os.fstat(fd)
        except OSError:
            raise Finished(reports.no_network()) from None


def remote_ip() -> str:
    """The peer as reports name it: ``TCPREMOTEIP`` (set by mxf-remote and tcpclient)."""
    return os.environ.get("TCPREMOTEIP") or os.environ.get("MXFHOST") or "unknown"


__all__ = [
    "Finished",
    "check_arguments",
    "check_network",
    "qmail_home",
    "read_helohost",
    "read_timeout",
    "remote_ip",
    "run_guarded",
]
