"""The TLS engine: the forked child that owns the ciphertext connection.

Both programs fork once; the parent becomes (execs) prog, so prog keeps the pid
qmail-rspawn waits for, and the engine is a child of prog — as with s6-tlsc.

Hygiene, because qmail-rspawn reads the report pipe until *every* holder has closed it
(qmail-remote contract §1.3): the engine's fds 0, 1 and 2 point at ``/dev/null`` and every
descriptor it does not need is closed, at once after the fork.  Lifetime, because an
engine must never outlive its delivery: it watches prog through a pidfd (and the ends of
its pipes); see :mod:`mxf_remote.tls.pump` for how it winds down.  It never writes a
diagnostic anywhere and always leaves through ``os._exit``.

Exit statuses follow s6-tlsc-io (nobody normally sees them, prog rarely reaps us):
0 done or declined, 96 bad TLS configuration, 98 TLS failure, 100 bad UCSPI-TLS
command, 111 system error or prog vanished.
"""

from __future__ import annotations

import contextlib
import os
import select
from typing import TYPE_CHECKING, NoReturn

from mxf_remote.tls.options import Options

if TYPE_CHECKING:
    from mxf_remote.tls import pump

EXIT_OK = 0
EXIT_CONFIG = 96
EXIT_TLS = 98
EXIT_PROTOCOL = 100
EXIT_SYSTEM = 111

NOTIFY_OK = b"+"
NOTIFY_HANDSHAKE_FAILED = b"-"
NOTIFY_CONFIG_ERROR = b"C"


class _Gone(Exception):
    """prog (our parent) died before we could watch it."""


def detach_from_parent(keep: set[int]) -> None:
    """Point fds 0/1/2 at /dev/null and close every other descriptor not in ``keep``."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != devnull:
            os.dup2(devnull, fd)
    if devnull > 2 and devnull not in keep:
        os.close(devnull)
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def watch_parent(parent_pid: int, *, is_parent: bool = True) -> int | None:
    """A pidfd that becomes readable when prog (our parent) exits; None if unsupported.

    ``is_parent`` False: prog is not our parent (mxf-remoted forked us for a launcher's
    client), so only the pidfd tells whether it is still there.
    """
    try:
        pidfd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        raise _Gone from None
    except (OSError, AttributeError):
        return None
    if is_parent and os.getppid() != parent_pid:  # it died before we opened it
        os.close(pidfd)
        raise _Gone
    return pidfd


def _notify(fd: int, data: bytes) -> None:
    view = memoryview(data)
    with contextlib.suppress(OSError):
        while view:
            view = view[os.write(fd, view) :]
    with contextlib.suppress(OSError):
        os.close(fd)


def tlsc_engine(
    options: Options,
    env: dict[str, str],
    *,
    parent_pid: int,
    app_r: int,
    app_w: int,
    notify_fd: int,
) -> NoReturn:
    """mxf-remote-tlsc's child: handshake, tell the parent, then pump. Never returns."""
    status = EXIT_SYSTEM
    with contextlib.suppress(BaseException):  # the engine has nowhere to report, ever
        status = _tlsc_engine(
            options, env, parent_pid=parent_pid, app_r=app_r, app_w=app_w, notify_fd=notify_fd
        )
    os._exit(status)


def _tlsc_engine(
    options: Options,
    env: dict[str, str],
    *,
    parent_pid: int,
    app_r: int,
    app_w: int,
    notify_fd: int,
) -> int:
    detach_from_parent({options.rfd, options.wfd, app_r, app_w, notify_fd})
    try:
        pidfd = watch_parent(parent_pid)
    except _Gone:
        return EXIT_SYSTEM
    from mxf_remote.tls import pump
    from mxf_remote.tls.context import ConfigError, build_context, drop_privileges
    from mxf_remote.tls.envblock import encode_env_block

    try:
        context = build_context(options, env)
        # The session encodes the server name (a lazy import of encodings.idna): make it
        # before dropping privileges, which may lose read access to the Python library.
        session = pump.Session(context, options.servername)
        drop_privileges(env)
    except ConfigError as exc:
        _notify(notify_fd, NOTIFY_CONFIG_ERROR + os.fsencode(str(exc)))
        return EXIT_CONFIG
    net_r = pump.Endpoint(options.rfd)
    net_w = pump.Endpoint(options.wfd)
    watch = [(notify_fd, 0)]  # POLLERR when the parent (still waiting for us) dies
    if pidfd is not None:
        watch.append((pidfd, select.POLLIN))
    try:
        pending = pump.handshake(
            session, net_r, net_w, timeout_ms=options.handshake_ms, watch=watch
        )
    except pump.HandshakeFailed as exc:
        _notify(notify_fd, NOTIFY_HANDSHAKE_FAILED + os.fsencode(str(exc)))
        return EXIT_TLS
    except pump.ParentGone:
        return EXIT_SYSTEM
    _notify(notify_fd, NOTIFY_OK + encode_env_block(pump.session_entries(session)))
    return _pump(options, session, net_r, net_w, pending, app_r=app_r, app_w=app_w, pidfd=pidfd)


def _pump(
    options: Options,
    session: pump.Session,
    net_r: pump.Endpoint,
    net_w: pump.Endpoint,
    pending: bytearray,
    *,
    app_r: int,
    app_w: int,
    pidfd: int | None,
) -> int:
    from mxf_remote.tls import pump

    for fd in (app_r, app_w):
        pump.enlarge_pipe(fd)
    return pump.Pump(
        session,
        net_r,
        net_w,
        pump.Endpoint(app_r),
        pump.Endpoint(app_w),
        pending=pending,
        close_notify=options.close_notify,
        strict_eof=options.strict_eof,
        pidfd=pidfd,
    ).run()


def ucspitlsc_engine(
    options: Options,
    env: dict[str, str],
    *,
    parent_pid: int,
    ctl: int,
    app_r: int,
    app_w: int,
    prog_is_parent: bool = True,
) -> NoReturn:
    """mxf-remote-ucspitlsc's child: wait for y/Y on ``ctl``, then as tlsc. Never returns.

    ``parent_pid`` is prog's pid; ``prog_is_parent`` False when mxf-remoted forked the
    engine for a launcher's client (prog is then the launcher, not our parent).
    """
    status = EXIT_SYSTEM
    with contextlib.suppress(BaseException):  # the engine has nowhere to report, ever
        status = _ucspitlsc_engine(
            options,
            env,
            parent_pid=parent_pid,
            ctl=ctl,
            app_r=app_r,
            app_w=app_w,
            prog_is_parent=prog_is_parent,
        )
    os._exit(status)


def _wait_for_command(ctl: int, pidfd: int | None) -> bytes:
    """The one command byte prog writes to SSLCTLFD; b"" if it closes it (or dies)."""
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == ctl:
                try:
                    return os.read(ctl, 1)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return b""
            return b""  # prog died without a word


def _ucspitlsc_engine(
    options: Options,
    env: dict[str, str],
    *,
    parent_pid: int,
    ctl: int,
    app_r: int,
    app_w: int,
    prog_is_parent: bool,
) -> int:
    detach_from_parent({options.rfd, options.wfd, ctl, app_r, app_w})
    try:
        pidfd = watch_parent(parent_pid, is_parent=prog_is_parent)
    except _Gone:
        return EXIT_SYSTEM
    # Load ssl and the trust anchors while prog talks in clear (banner, EHLO, STARTTLS).
    from mxf_remote.tls import pump
    from mxf_remote.tls.context import ConfigError, build_context, drop_privileges
    from mxf_remote.tls.envblock import encode_env_block

    context = None
    with contextlib.suppress(ConfigError):
        context = build_context(options, env)
    command = _wait_for_command(ctl, pidfd)
    if command == b"":
        return EXIT_OK  # declined: prog goes on in clear on fds 6/7
    if command not in (b"y", b"Y"):
        return EXIT_PROTOCOL
    import socket

    if context is None:
        return EXIT_CONFIG
    session = pump.Session(context, options.servername)  # before dropping privileges
    try:
        drop_privileges(env)
    except ConfigError:
        return EXIT_CONFIG
    control = socket.socket(fileno=ctl)
    if command == b"y":
        control.close()
    else:
        with contextlib.suppress(OSError):
            control.shutdown(socket.SHUT_RD)
    net_r = pump.Endpoint(options.rfd)
    net_w = pump.Endpoint(options.wfd)
    watch = [(pidfd, select.POLLIN)] if pidfd is not None else []
    try:
        pending = pump.handshake(
            session, net_r, net_w, timeout_ms=options.handshake_ms, watch=watch
        )
    except (pump.HandshakeFailed, pump.ParentGone):
        return EXIT_TLS
    if command == b"Y":
        with contextlib.suppress(OSError):
            control.sendall(encode_env_block(pump.session_entries(session)))
        control.close()
    return _pump(options, session, net_r, net_w, pending, app_r=app_r, app_w=app_w, pidfd=pidfd)
