"""Every report the TLS clients print, in one place.

mxf-remote-tlsc and mxf-remote-ucspitlsc sit where qmail-rspawn expects qmail-remote, so
each way of not running prog ends in one report on fd 1 and exit 0 -- where s6-tlsc and
s6-ucspitlsc print a diagnostic on fd 2 and exit 96, 98, 100 or 111, which qmail-rspawn
would turn into a bounce.  A report is ``Z``, a text ending in LF and one NUL
(``output.report_bytes``); the text is made of the program's own strings (arguments,
environment, the engine's words) in the file-system encoding, as they came in.  Every
report is a deferral: nothing a TLS client sees proves that the message can never go.

The texts and where they come from (man/mxf-remote-tlsc.8, DIAGNOSTICS):

* ``ZUnable to run PROGRAM: REASON. (#4.3.0)`` -- the words of mxf-remote's own report
  for a failed exec (spec §6, ``report.cannot_run``), so that a program that cannot be
  run reads the same whoever tried to run it.  Used for prog's failed exec, for a command
  line s6-tlsc would refuse (PROGRAM is then the TLS client itself) and for a ``-6``/``-7``
  descriptor that is not open.
* ``ZTLS handshake with PEER failed: REASON. (#4.4.2)`` -- ours (s6-tlsc exits 98).  The
  status is qmail-remote's for a connection that died, as for the protocol clients'
  ``TLS handshake with <ip> failed after STARTTLS``.  PEER is ``TCPREMOTEIP`` as the
  UCSPI client set it, else the ``-k`` name; it is printed as it is, not through
  ``output.outsafe`` as the protocol clients print ``<ip>`` (mxf-remote always sets a
  numeric address there).  mxf-remote-tlsc only: mxf-remote-ucspitlsc never reports a
  handshake, its prog sees end of file and reports it.
* ``ZTLS client configuration error: REASON. (#4.3.0)`` -- ours (s6-tlsc exits 96): a
  CAFILE, CADIR, CERTFILE, KEYFILE, TLS_UID or TLS_GID that cannot be used.
* ``ZPROGRAM internal error: TYPE: MESSAGE (#4.3.0)`` -- spec §7's text with the
  program's name, as the protocol clients print it; unlike theirs
  (``clients.reports.internal_error``) MESSAGE is neither squeezed onto one line nor cut.

REASON after a handshake is the engine's own words (``pump.describe_tls_error``,
``context.ConfigError``), which reach the parent through the notification pipe and are
put on one line here (``engine_reason``).
"""

from __future__ import annotations

import os

from mxf_remote.output import report_bytes

ENGINE_DIED = "the TLS engine died"
"""The reason when the engine ended without a word, or with a garbled one."""

UNKNOWN_PEER = "the remote host"
"""PEER when neither ``TCPREMOTEIP`` nor ``-k`` names it."""

MAX_ENGINE_REASON = 400
"""How many characters of the engine's reason a report keeps."""


def _temporary(text: str) -> bytes:
    """One Z report of ``text`` and LF, encoded as the file system encodes arguments."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate in an exception message: still a report
        raw = text.encode("utf-8", "backslashreplace")
    return report_bytes("Z", raw + b"\n")


def _cannot_run(program: str, reason: str) -> bytes:
    """``ZUnable to run PROGRAM: REASON. (#4.3.0)``, the texts below share."""
    return _temporary(f"Unable to run {program}: {reason}. (#4.3.0)")


def bad_command_line(program: str, problem: str) -> bytes:
    """The command line is not one s6-tlsc would accept (``options.UsageError``)."""
    return _cannot_run(program, problem)


def descriptor_not_open(program: str, fd: int) -> bytes:
    """The ciphertext descriptor ``fd`` (``-6``/``-7``, fds 6/7 by default) is not open."""
    return _cannot_run(program, f"descriptor {fd} is not open")


def exec_failed(path: str, error: OSError) -> bytes:
    """``execvp`` of prog failed."""
    return _cannot_run(path, f"{error.strerror or error}")


def timed_out(timeout_ms: int) -> str:
    """The reason for a handshake that outlasted ``-K``, in the engine's and the parent's words."""
    return f"timed out after {timeout_ms} ms"


def engine_reason(raw: bytes) -> str:
    """The engine's reason on one line (control characters as spaces), else ENGINE_DIED."""
    text = raw.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:MAX_ENGINE_REASON].rstrip(".") or ENGINE_DIED


def handshake_failed(peer: str | None, reason: str) -> bytes:
    """The handshake failed, or the certificate was rejected; ``reason`` says how."""
    return _temporary(f"TLS handshake with {peer or UNKNOWN_PEER} failed: {reason}. (#4.4.2)")


def handshake_timed_out(peer: str | None, timeout_ms: int) -> bytes:
    """The engine said nothing for ``-K`` milliseconds and a grace period."""
    return handshake_failed(peer, timed_out(timeout_ms))


def engine_died(peer: str | None) -> bytes:
    """The engine said the handshake worked, but its environment block was cut or garbled."""
    return handshake_failed(peer, ENGINE_DIED)


def configuration_error(reason: str) -> bytes:
    """The TLS configuration in the environment cannot be used (``context.ConfigError``)."""
    return _temporary(f"TLS client configuration error: {reason}. (#4.3.0)")


def internal_error(program: str, error: BaseException) -> bytes:
    """Anything unexpected: deferred, never a traceback (spec §7)."""
    return _temporary(f"{program} internal error: {type(error).__name__}: {error} (#4.3.0)")
