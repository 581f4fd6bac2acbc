"""mxf-remote-tlsc: implicit TLS in front of a UCSPI client, with s6-tlsc's interface.

    mxf-remote-tlsc [-S|-s] [-J|-j] [-Y|-y] [-Z|-z] [-v n] [-K ms] [-k servername]
                    [-6 rfd] [-7 wfd] [--] prog...

As s6-tlsc: the ciphertext connection is on fds 6/7; we fork the engine, wait for the
handshake (the engine reports on a notification pipe), then exec ``prog`` in this very
process — same pid, so prog's exit status is what qmail-rspawn sees — with fds 6/7
replaced by the cleartext pipes and SSL_PROTOCOL, SSL_CIPHER, SSL_TLS_SNI_SERVERNAME,
SSL_PEER_CERT_HASH and SSL_PEER_CERT_SUBJECT set.

Unlike s6-tlsc, we sit where qmail-rspawn expects a qmail-remote report, so every way of
not running prog ends in a report on fd 1 and exit 0 (s6 exits 96/98/100/111, which
qmail-rspawn would turn into a bounce): the guard, the command line and the exec are
:mod:`mxf_remote.tls.program`'s, the texts :mod:`mxf_remote.tls.reports`'.  This module
adds what only implicit TLS needs: waiting for the engine's word on the handshake, and
turning it into a report or into prog's fds 6/7 and SSL_* variables.

This module is on the path of every implicit-TLS delivery: it imports ``os`` and
``select`` only; ``ssl`` is loaded in the engine.
"""

from __future__ import annotations

import os
import select

from mxf_remote.output import finish
from mxf_remote.tls import reports
from mxf_remote.tls.options import cleaned_environment
from mxf_remote.tls.program import checked_options, exec_prog, run_guarded
from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings
if TYPE_CHECKING:
    from typing import NoReturn

PROGRAM = "mxf-remote-tlsc"
BACKSTOP_SECONDS = 10.0
"""How much longer than -K the parent waits for the engine's word before giving up."""

_REAP_SECONDS = 2.0


def _peer_name(servername: str | None) -> str | None:
    """The peer as reports name it: ``TCPREMOTEIP``, else the ``-k`` name."""
    return os.environ.get("TCPREMOTEIP") or servername


def _read_notification(fd: int, timeout_ms: int) -> bytes | None:
    """Everything the engine writes on the notification pipe; None on timeout."""
    limit = timeout_ms / 1000 + BACKSTOP_SECONDS if timeout_ms else None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = bytearray()
    import time

    deadline = time.monotonic() + limit if limit is not None else None
    while True:
        wait = None
        if deadline is not None:
            wait = max(0, int((deadline - time.monotonic()) * 1000) + 1)
        if not poller.poll(wait):
            return None
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def _reap(pid: int, *, kill: bool) -> None:
    """Collect the engine after a failure (it exits at once); never wait long."""
    import signal
    import time

    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
    deadline = time.monotonic() + _REAP_SECONDS
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _move_to(fd_read: int, fd_write: int) -> None:
    """Put ``fd_read`` on fd 6 and ``fd_write`` on fd 7, whatever numbers they have now."""
    import fcntl

    high_read = fcntl.fcntl(fd_read, fcntl.F_DUPFD_CLOEXEC, 10)
    high_write = fcntl.fcntl(fd_write, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd_read)
    os.close(fd_write)
    os.dup2(high_read, NETWORK_READ_FD)
    os.dup2(high_write, NETWORK_WRITE_FD)
    os.close(high_read)
    os.close(high_write)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of mxf-remote-tlsc."""
    run_guarded(PROGRAM, _main, argv)


def _main(args: list[str]) -> NoReturn:
    options = checked_options(PROGRAM, args)
    env = dict(os.environ)
    to_prog_r, to_prog_w = os.pipe()
    from_prog_r, from_prog_w = os.pipe()
    notify_r, notify_w = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        from mxf_remote.tls.engine import tlsc_engine

        tlsc_engine(
            options,
            env,
            parent_pid=parent,
            app_r=from_prog_r,
            app_w=to_prog_w,
            notify_fd=notify_w,
        )
    for fd in (to_prog_w, from_prog_r, notify_w):
        os.close(fd)
    message = _read_notification(notify_r, options.handshake_ms)
    os.close(notify_r)
    peer = _peer_name(options.servername)
    if message is None:
        _reap(child, kill=True)
        finish(reports.handshake_timed_out(peer, options.handshake_ms))
    status, body = message[:1], message[1:]
    if status != b"+":
        _reap(child, kill=False)
        reason = reports.engine_reason(body)
        if status == b"C":
            finish(reports.configuration_error(reason))
        finish(reports.handshake_failed(peer, reason))
    from mxf_remote.tls.envblock import IncompleteBlock, apply_env_block, parse_env_block

    prog_env = cleaned_environment(options)
    try:
        apply_env_block(prog_env, parse_env_block(body))
    except (IncompleteBlock, ValueError):
        _reap(child, kill=True)
        finish(reports.engine_died(peer))
    for fd in (options.rfd, options.wfd):
        if fd not in (NETWORK_READ_FD, NETWORK_WRITE_FD):
            os.close(fd)
    _move_to(to_prog_r, from_prog_w)
    exec_prog(options.prog, prog_env)


if __name__ == "__main__":
    main()
