"""The TLS engine: the forked child that owns the ciphertext connection.

Both programs fork once; the parent becomes (execs) prog, so prog keeps the pid
qmail-rspawn waits for, and the engine is a child of prog — as with s6-tlsc.

Hygiene, because qmail-rspawn reads the report pipe until *every* holder has closed it
(qmail-remote contract §1.3): the engine's fds 0, 1 and 2 point at ``/dev/null`` and every
descriptor it does not need is closed, at once after the fork.  Lifetime, because an
engine must never outlive its delivery: it watches prog through a pidfd (and the ends of
its pipes); see :mod:`mxf_remote.tls.pump` for how it winds down.  It never writes a
diagnostic anywhere and always leaves through ``os._exit``.

Under a policy (``MXFDANE``, ``MXFWEBPKI``: ``context.read_policy``) the peer is checked
after the handshake and before prog hears of it (``check_peer``): a failure is a failed
handshake whose reason names the policy (``DANE: …``, ``MTA-STS: …``) and, after ``Y``,
reaches prog as an incomplete environment block holding only ``MXFTLSFAILURE=<RFC 8460
result type> <reason>`` (``envblock.encode_failure_block``).  Nothing is ever sent under TLS
before the check passed: the engine completes the handshake, sends close_notify, and stops.

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
    import socket
    import ssl

    from mxf_remote.tls import pump
    from mxf_remote.tls.context import Policy

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


_VERIFY_RESULT_TYPES = {
    10: "certificate-expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    62: "certificate-host-mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    2: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: "certificate-not-trusted",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate-not-trusted",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
}
"""OpenSSL verification errors as RFC 8460 §4.3 result types (else validation-failure)."""


class PeerRejected(Exception):
    """The handshake or the policy check failed under a policy: ``str()`` is the reason,
    ``result_type`` its RFC 8460 §4.3 result type."""

    def __init__(self, result_type: str, reason: str) -> None:
        super().__init__(reason)
        self.result_type = result_type


def classify_handshake_failure(
    policy: Policy, failure: pump.HandshakeFailed, servername: str | None
) -> PeerRejected:
    """A failed handshake under ``policy``, with its result type and the policy's name."""
    import ssl

    cause = failure.__cause__
    result_type, reason = "validation-failure", str(failure)
    if isinstance(cause, ssl.SSLCertVerificationError):
        result_type = _VERIFY_RESULT_TYPES.get(cause.verify_code, result_type)
        message = str(cause.verify_message or cause.reason or "verification failed")
        if result_type == "certificate-host-mismatch":
            reason = f"certificate not valid for {servername}"
        elif result_type == "certificate-expired":
            reason = "certificate has expired"
        elif result_type == "certificate-not-trusted":
            reason = f"certificate not trusted ({message.rstrip('.')})"
    return PeerRejected(result_type, f"{policy.label}: {reason}")


def peer_chain(obj: ssl.SSLObject) -> list[bytes]:
    """The certificates the peer sent, DER, leaf first (also under CERT_NONE).

    Python 3.13 made ``get_unverified_chain`` public (DER bytes); 3.10-3.12 have it on the
    private ``_sslobj`` (``_ssl.Certificate`` objects).
    """
    import sys

    if sys.version_info >= (3, 13):
        return list(obj.get_unverified_chain() or [])
    import _ssl

    chain = obj._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain or []]


def check_peer(session: pump.Session, policy: Policy | None) -> list[tuple[str, str | None]]:
    """Entries the policy adds to the environment block; PeerRejected if the peer fails it.

    WebPKI was checked inside the handshake; DANE is checked here, and so is WebPKI for
    ``MXFWEBPKI=report`` (MTA-STS ``testing``), whose verdict only goes in ``SSL_MTASTS``.
    """
    if policy is not None and policy.report:
        from mxf_remote.tls import webpki

        try:
            chain = peer_chain(session.obj)
        except (AttributeError, ValueError, TypeError):
            chain = []
        result, reason = webpki.verdict(chain, policy.names[0], policy.trust)
        return [("SSL_MTASTS", f"{result} {reason}".rstrip())]
    if policy is None or not policy.records:
        return []
    from mxf_remote.tls import dane

    try:
        chain = peer_chain(session.obj)
    except (AttributeError, ValueError, TypeError):
        chain = []
    try:
        verdict = dane.check(policy.records, chain, policy.names)
    except Exception as error:  # a hostile certificate costs a failed check, not the engine
        raise PeerRejected("validation-failure", f"DANE: unusable certificate: {error}") from None
    if not verdict.ok:
        raise PeerRejected(verdict.result_type, f"DANE: {verdict.reason}")
    return [("SSL_DANE", verdict.entry)]


def _verified_handshake(
    session: pump.Session,
    policy: Policy | None,
    net_r: pump.Endpoint,
    net_w: pump.Endpoint,
    *,
    timeout_ms: int,
    watch: list[tuple[int, int]],
) -> tuple[bytearray, list[tuple[str, str | None]]]:
    """Handshake, then the policy's check: (ciphertext to send, extra block entries).

    Raises ``pump.HandshakeFailed`` without a policy, PeerRejected under one (after a
    best-effort close_notify to the peer), ``pump.ParentGone``.
    """
    from mxf_remote.tls import pump

    try:
        pending = pump.handshake(session, net_r, net_w, timeout_ms=timeout_ms, watch=watch)
    except pump.HandshakeFailed as exc:
        if policy is None or policy.report:  # testing: a failure as without a policy
            raise
        raise classify_handshake_failure(policy, exc, session.servername) from exc
    try:
        return pending, check_peer(session, policy)
    except PeerRejected:
        _close_notify(session, net_w, pending)
        raise


def _close_notify(session: pump.Session, net_w: pump.Endpoint, pending: bytearray) -> None:
    """Finish the handshake on the wire and say goodbye: no application byte is sent."""
    import ssl

    with contextlib.suppress(ssl.SSLError, ValueError):
        session.obj.unwrap()
    pending += session.outgoing.read()
    with contextlib.suppress(OSError):
        if pending:
            net_w.write(pending)


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
    from mxf_remote.tls.context import ConfigError, build_context, drop_privileges, read_policy
    from mxf_remote.tls.envblock import encode_env_block

    try:
        policy = read_policy(options, env)
        context = build_context(options, env, policy)
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
        pending, extra = _verified_handshake(
            session, policy, net_r, net_w, timeout_ms=options.handshake_ms, watch=watch
        )
    except (pump.HandshakeFailed, PeerRejected) as exc:
        _notify(notify_fd, NOTIFY_HANDSHAKE_FAILED + os.fsencode(str(exc)))
        return EXIT_TLS
    except pump.ParentGone:
        return EXIT_SYSTEM
    _notify(notify_fd, NOTIFY_OK + encode_env_block(pump.session_entries(session) + extra))
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
    from mxf_remote.tls.context import ConfigError, drop_privileges, policy_requested
    from mxf_remote.tls.envblock import encode_env_block, encode_failure_block

    context, policy, problem = _configure(options, env)
    command = _wait_for_command(ctl, pidfd)
    if command == b"":
        return EXIT_OK  # declined: prog goes on in clear on fds 6/7
    if command not in (b"y", b"Y"):
        return EXIT_PROTOCOL
    import socket

    control = socket.socket(fileno=ctl)
    if context is None:
        if command == b"Y" and policy_requested(env):
            _send_and_close(control, encode_failure_block("validation-failure", problem))
        control.close()
        return EXIT_CONFIG
    session = pump.Session(context, options.servername)  # before dropping privileges
    try:
        drop_privileges(env)
    except ConfigError:
        control.close()
        return EXIT_CONFIG
    if command == b"y":
        control.close()
    else:
        with contextlib.suppress(OSError):
            control.shutdown(socket.SHUT_RD)
    net_r = pump.Endpoint(options.rfd)
    net_w = pump.Endpoint(options.wfd)
    watch = [(pidfd, select.POLLIN)] if pidfd is not None else []
    try:
        pending, extra = _verified_handshake(
            session, policy, net_r, net_w, timeout_ms=options.handshake_ms, watch=watch
        )
    except PeerRejected as exc:
        if command == b"Y":
            _send_and_close(control, encode_failure_block(exc.result_type, str(exc)))
        return EXIT_TLS
    except (pump.HandshakeFailed, pump.ParentGone):
        control.close()
        return EXIT_TLS
    if command == b"Y":
        _send_and_close(control, encode_env_block(pump.session_entries(session) + extra))
    return _pump(options, session, net_r, net_w, pending, app_r=app_r, app_w=app_w, pidfd=pidfd)


def _configure(
    options: Options, env: dict[str, str]
) -> tuple[ssl.SSLContext | None, Policy | None, str]:
    """(context, policy, "") or (None, None, why the configuration is unusable)."""
    from mxf_remote.tls.context import ConfigError, build_context, read_policy

    try:
        policy = read_policy(options, env)
        return build_context(options, env, policy), policy, ""
    except ConfigError as exc:
        return None, None, f"TLS client configuration error: {exc}"


def _send_and_close(control: socket.socket, data: bytes) -> None:
    """Write ``data`` to the control socket (best effort: prog may be gone), then close it."""
    with contextlib.suppress(OSError):
        control.sendall(data)
    control.close()
