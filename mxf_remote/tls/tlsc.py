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
qmail-rspawn would turn into a bounce):

    ZTLS handshake with <TCPREMOTEIP> failed: <reason>. (#4.4.2)
    ZTLS client configuration error: <reason>. (#4.3.0)
    ZUnable to run <prog>: <reason>. (#4.3.0)

This module is on the path of every implicit-TLS delivery: it imports ``os`` and
``select`` only; ``ssl`` is loaded in the engine.
"""

from __future__ import annotations

import os
import select
import sys

from mxf_remote.output import finish, report_bytes
from mxf_remote.tls.options import Options, UsageError, cleaned_environment, parse_options

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

PROGRAM = "mxf-remote-tlsc"
BACKSTOP_SECONDS = 10.0
"""How much longer than -K the parent waits for the engine's word before giving up."""

_REAP_SECONDS = 2.0


def report_temporary(text: str) -> NoReturn:
    """Print one Z report (``text`` gets its trailing LF here) and exit 0."""
    finish(report_bytes("Z", os.fsencode(text + "\n")))


def _peer_name(servername: str | None) -> str:
    return os.environ.get("TCPREMOTEIP") or servername or "the remote host"


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


def exec_prog(prog: list[str], env: dict[str, str]) -> NoReturn:
    """execvp ``prog``; if that fails, the qmail-remote way of saying so."""
    try:
        os.execvpe(prog[0], prog, env)
    except OSError as exc:
        report_temporary(f"Unable to run {prog[0]}: {exc.strerror or exc}. (#4.3.0)")


def _move_to(fd_read: int, fd_write: int) -> None:
    """Put ``fd_read`` on fd 6 and ``fd_write`` on fd 7, whatever numbers they have now."""
    import fcntl

    high_read = fcntl.fcntl(fd_read, fcntl.F_DUPFD_CLOEXEC, 10)
    high_write = fcntl.fcntl(fd_write, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd_read)
    os.close(fd_write)
    os.dup2(high_read, 6)
    os.dup2(high_write, 7)
    os.close(high_read)
    os.close(high_write)


def run_guarded(
    program: str, body: Callable[[list[str]], NoReturn], argv: list[str] | None
) -> NoReturn:
    """Run ``body`` on the arguments; any unexpected exception is a Z report, never a trace."""
    try:
        body(sys.argv[1:] if argv is None else argv)
    except Exception as exc:
        report_temporary(f"{program} internal error: {type(exc).__name__}: {exc} (#4.3.0)")


def checked_options(program: str, args: list[str]) -> Options:
    """The options, with the ciphertext descriptors known to be open; else a Z report."""
    try:
        options = parse_options(args)
    except UsageError as exc:
        report_temporary(f"Unable to run {program}: {exc}. (#4.3.0)")
    for fd in (options.rfd, options.wfd):
        try:
            os.fstat(fd)
        except OSError:
            report_temporary(f"Unable to run {program}: descriptor {fd} is not open. (#4.3.0)")
    return options


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
        report_temporary(
            f"TLS handshake with {peer} failed: timed out after {options.handshake_ms} ms. (#4.4.2)"
        )
    status, body = message[:1], message[1:]
    if status != b"+":
        _reap(child, kill=False)
        reason = _one_line(body) or "the TLS engine died"
        if status == b"C":
            report_temporary(f"TLS client configuration error: {reason}. (#4.3.0)")
        report_temporary(f"TLS handshake with {peer} failed: {reason}. (#4.4.2)")
    from mxf_remote.tls.envblock import IncompleteBlock, apply_env_block, parse_env_block

    prog_env = cleaned_environment(options)
    try:
        apply_env_block(prog_env, parse_env_block(body))
    except (IncompleteBlock, ValueError):
        _reap(child, kill=True)
        report_temporary(f"TLS handshake with {peer} failed: the TLS engine died. (#4.4.2)")
    for fd in (options.rfd, options.wfd):
        if fd not in (6, 7):
            os.close(fd)
    _move_to(to_prog_r, from_prog_w)
    exec_prog(options.prog, prog_env)


def _one_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:400].rstrip(".")


if __name__ == "__main__":
    main()
