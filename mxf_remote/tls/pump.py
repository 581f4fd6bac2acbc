"""The engine's byte pump: a TLS client over raw descriptors, driven by one ``poll`` loop.

Why not ``SSLContext.wrap_socket``: the ciphertext side need not be a socket (s6-tlsc
accepts any two descriptors; tests use pipes), the two directions must be closed
separately, and neither side may ever block the other.  So the TLS state lives in an
``ssl.SSLObject`` between two ``MemoryBIO``\\s, and we move bytes ourselves:

    prog ──app_r──► SSLObject.write ──outgoing BIO──► net_out ──net_w──► peer
    prog ◄──app_w── app_out ◄── SSLObject.read ◄──incoming BIO◄──net_r── peer

Each arrow that can stall has a buffer with a high-water mark; a side is polled for input
only while the buffer it feeds is below the mark, and a descriptor we are not interested
in is *unregistered* (a registered descriptor in HUP state would wake ``poll`` forever).
No sleeps, no busy loop: ``poll`` blocks until a descriptor can move bytes or a deadline
passes.

Nobody else's view of a descriptor changes: sockets are read and written with
``MSG_DONTWAIT`` (in UCSPI-TLS prog still holds the same socket on fds 6/7, and a shared
``O_NONBLOCK`` would leak into it), pipes get ``O_NONBLOCK`` (ours alone).

Closing, one direction at a time (s6-tlsc-io's rules):

* EOF from prog → with ``-S`` a TLS close_notify, then the socket's write side is shut
  (``shutdown(SHUT_WR)``; a pipe is closed); with ``-s`` only the latter.  Reading goes on.
* EOF from the peer (close_notify, or a bare TCP FIN unless ``-J``) → once everything
  decrypted has reached prog, its read pipe is closed.  Writing goes on.
* prog closes its read end → what was meant for it is dropped; the peer is still read
  (and discarded) so that it never blocks on us.
* The pump ends when both directions are finished.  When prog itself dies (its pidfd
  becomes readable) the pump gets ``LINGER_SECONDS`` to flush what prog wrote, then ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import stat
import time

from mxf_remote.tls.certinfo import DERError, cert_hash, subject_oneline
from mxf_remote.tls.reports import timed_out

CHUNK = 64 * 1024
"""Bytes per read.  Measured with bench/tls_pump.py: 256 KiB reads cost ~1.7x the CPU per
megabyte of 64 KiB ones (every fresh 256 KiB bytes object from the outgoing BIO made
glibc grow and trim the heap, and the kernel zero new pages); 32 KiB gains nothing."""
HIGH_WATER = 256 * 1024
LINGER_SECONDS = 10.0
PIPE_SIZE = 1024 * 1024

EXIT_OK = 0
EXIT_TLS_ERROR = 98
"""s6-tlsc-io's exit code for a TLS error at run time (also -J's unclean EOF)."""

_IN = select.POLLIN
_OUT = select.POLLOUT


class HandshakeFailed(Exception):
    """The TLS handshake did not complete; ``str()`` is the reason, for a report."""


class ParentGone(Exception):
    """The process we serve died; there is nobody left to work for."""


def describe_tls_error(exc: BaseException) -> str:
    """A short one-line reason for a report, from an ssl or OS exception."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or exc.reason or "verification failed"
        return f"certificate rejected: {str(message).rstrip('.')}"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "connection closed by the server"  # ZeroReturn: a bare FIN under -j
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return str(reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def enlarge_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (fewer wake-ups per megabyte); harmless if refused."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError, ValueError):
        pass


class Endpoint:
    """One descriptor, read or written without ever blocking."""

    __slots__ = ("closed", "fd", "sock")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False
        self.sock: socket.socket | None = None
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            self.sock = socket.socket(fileno=fd)
        else:
            os.set_blocking(fd, False)

    def read_into(self, buffer: memoryview) -> int | None:
        """Bytes read into ``buffer``; 0 at EOF; None when nothing is there yet."""
        try:
            if self.sock is not None:
                return self.sock.recv_into(buffer, len(buffer), socket.MSG_DONTWAIT)
            return os.readv(self.fd, [buffer])
        except (BlockingIOError, InterruptedError):
            return None

    def write(self, data: bytes | bytearray) -> int | None:
        """Bytes written from ``data``; None when the descriptor is full."""
        try:
            if self.sock is not None:
                return self.sock.send(data, socket.MSG_DONTWAIT)
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return None

    def shutdown_write(self) -> None:
        """Half-close: FIN on a socket (other holders of it notwithstanding), close a pipe."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.sock is not None:
                self.sock.close()
            else:
                os.close(self.fd)
        except OSError:
            pass


class Session:
    """An ``SSLObject`` between two memory BIOs."""

    __slots__ = ("incoming", "obj", "outgoing", "servername")

    def __init__(self, context: ssl.SSLContext, servername: str | None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.servername = servername
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=servername)


def _remaining_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000) + 1)


def _flush_best_effort(session: Session, net_w: Endpoint, pending: bytearray) -> None:
    """Try once to send what is queued (e.g. the alert after a failed verification)."""
    pending += session.outgoing.read()
    try:
        if pending:
            net_w.write(pending)
    except OSError:
        pass


def handshake(
    session: Session,
    net_r: Endpoint,
    net_w: Endpoint,
    *,
    timeout_ms: int,
    watch: list[tuple[int, int]],
) -> bytearray:
    """Run the client handshake; return ciphertext still to be sent (the pump sends it).

    ``timeout_ms`` (0: none) bounds the whole handshake.  ``watch`` holds ``(fd, events)``
    pairs whose any event means the process we serve died (``ParentGone``).  Failure raises
    ``HandshakeFailed`` with a reason fit for a report.
    """
    deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
    pending = bytearray()
    buffer = bytearray(CHUNK)
    while True:
        try:
            session.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError) as exc:
            _flush_best_effort(session, net_w, pending)
            raise HandshakeFailed(describe_tls_error(exc)) from exc
        else:
            pending += session.outgoing.read()
            return pending
        pending += session.outgoing.read()
        if not _wait_one(net_w if pending else net_r, _OUT if pending else _IN, deadline, watch):
            raise HandshakeFailed(timed_out(timeout_ms))
        try:
            if pending:
                del pending[: net_w.write(pending) or 0]
            else:
                _feed(session, net_r, buffer)
        except OSError as exc:
            raise HandshakeFailed(describe_tls_error(exc)) from exc


def _wait_one(
    endpoint: Endpoint, events: int, deadline: float | None, watch: list[tuple[int, int]]
) -> bool:
    """Wait until ``endpoint`` is ready; False on timeout; ``ParentGone`` if a watch fires."""
    poller = select.poll()
    for fd, watch_events in watch:
        poller.register(fd, watch_events)
    poller.register(endpoint.fd, events)
    ready = poller.poll(_remaining_ms(deadline))
    if any(fd != endpoint.fd for fd, _ in ready):
        raise ParentGone
    return bool(ready)


def _feed(session: Session, net_r: Endpoint, buffer: bytearray) -> None:
    """Move what the peer sent into the incoming BIO (EOF included)."""
    view = memoryview(buffer)
    count = net_r.read_into(view)
    if count == 0:
        session.incoming.write_eof()
    elif count:
        session.incoming.write(view[:count])
    view.release()


def session_entries(session: Session) -> list[tuple[str, str | None]]:
    """The SSL_* variables, in s6's order; ``None`` means "unset"."""
    obj = session.obj
    der = obj.getpeercert(binary_form=True)
    cipher = obj.cipher()
    subject: str | None = None
    if der:
        try:
            subject = subject_oneline(der)
        except (DERError, IndexError, UnicodeError):
            subject = None
    return [
        ("SSL_PROTOCOL", obj.version() or ""),
        ("SSL_CIPHER", cipher[0] if cipher else ""),
        ("SSL_TLS_SNI_SERVERNAME", session.servername),
        ("SSL_PEER_CERT_HASH", cert_hash(der) if der else None),
        ("SSL_PEER_CERT_SUBJECT", subject),
    ]


class Pump:
    """Both directions between prog's cleartext pipes and the peer; see the module text."""

    def __init__(
        self,
        session: Session,
        net_r: Endpoint,
        net_w: Endpoint,
        app_r: Endpoint,
        app_w: Endpoint,
        *,
        pending: bytearray,
        close_notify: bool,
        strict_eof: bool,
        pidfd: int | None,
    ) -> None:
        self.session = session
        self.net_r, self.net_w, self.app_r, self.app_w = net_r, net_w, app_r, app_w
        self.close_notify = close_notify
        self.strict_eof = strict_eof
        self.pidfd = pidfd
        self.net_out = pending
        self.app_out = bytearray()
        self.reading_app = True  # prog → peer: prog has not sent EOF yet
        self.a_done = False  # prog → peer finished: our write side of the network is shut
        self.reading_net = True  # peer → prog: the peer has not sent EOF yet
        self.b_done = False  # peer → prog finished: prog's read pipe is closed
        self.linger_until: float | None = None
        self.status = EXIT_OK
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)
        self._plain = bytearray(CHUNK)
        self._plain_view = memoryview(self._plain)

    # -- what to wait for -------------------------------------------------------------

    def _interest(self) -> dict[int, int]:
        wanted: dict[int, int] = {}
        if self.reading_app and len(self.net_out) < HIGH_WATER:
            wanted[self.app_r.fd] = _IN
        if self.reading_net and (self.b_done or len(self.app_out) < HIGH_WATER):
            wanted[self.net_r.fd] = _IN
        if self.net_out and not self.a_done:
            wanted[self.net_w.fd] = _OUT
        if not self.b_done:
            # Events 0 still reports POLLERR: prog closed its read end.
            wanted[self.app_w.fd] = _OUT if self.app_out else 0
        if self.pidfd is not None and self.linger_until is None:
            wanted[self.pidfd] = _IN
        return wanted

    def run(self) -> int:
        """Pump until both directions are finished; the engine's exit status."""
        poller = select.poll()
        registered: dict[int, int] = {}
        while not (self.a_done and self.b_done):
            wanted = self._interest()
            for fd in [fd for fd in registered if fd not in wanted]:
                poller.unregister(fd)
                del registered[fd]
            for fd, events in wanted.items():
                if registered.get(fd) != events:
                    poller.register(fd, events)
                    registered[fd] = events
            timeout = _remaining_ms(self.linger_until)
            if timeout == 0 or not wanted:
                break
            for fd, revents in poller.poll(timeout):
                self._dispatch(fd, revents)
        self.close_all()
        return self.status

    def _dispatch(self, fd: int, revents: int) -> None:
        if fd == self.pidfd:
            self.linger_until = time.monotonic() + LINGER_SECONDS
        elif fd == self.app_r.fd and self.reading_app:
            self._from_app()
        elif fd == self.net_r.fd and self.reading_net:
            self._from_net()
        elif fd == self.net_w.fd and not self.a_done:
            self._to_net()
        elif fd == self.app_w.fd and not self.b_done:
            if revents & _OUT and self.app_out:
                self._to_app()
            elif revents & (select.POLLERR | select.POLLHUP):
                self._app_reader_gone()

    # -- prog → peer --------------------------------------------------------------------

    def _from_app(self) -> None:
        try:
            count = self.app_r.read_into(self._view)
        except OSError:
            count = 0
        if count is None:
            return
        if count == 0:
            self._app_eof()
            return
        try:
            self.session.obj.write(self._view[:count])
        except ssl.SSLError:
            self._fail()
            return
        self._collect_ciphertext()
        if self.net_out:
            self._to_net()  # usually writable: saves a poll round trip

    def _app_eof(self) -> None:
        self.reading_app = False
        self.app_r.close()
        if self.close_notify and not self.a_done:
            with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: no answer yet
                self.session.obj.unwrap()
            self._collect_ciphertext()
        if not self.net_out:
            self._shut_net_write()

    def _collect_ciphertext(self) -> None:
        data = self.session.outgoing.read()
        if data and not self.a_done:
            self.net_out += data

    def _to_net(self) -> None:
        try:
            written = self.net_w.write(self.net_out)
        except OSError:
            self._net_write_dead()
            return
        if written:
            del self.net_out[:written]
        if not self.net_out and not self.reading_app:
            self._shut_net_write()

    def _shut_net_write(self) -> None:
        self.a_done = True
        self.net_w.shutdown_write()

    def _net_write_dead(self) -> None:
        """The peer no longer takes data: prog's writes will fail (EPIPE) from now on."""
        self.net_out.clear()
        self.a_done = True
        self.reading_app = False
        self.app_r.close()
        self.net_w.close()

    # -- peer → prog --------------------------------------------------------------------

    def _from_net(self) -> None:
        try:
            count = self.net_r.read_into(self._view)
        except OSError:
            count = 0  # reset by peer: nothing more will come
        if count is None:
            return
        if count == 0:
            self.session.incoming.write_eof()
        else:
            self.session.incoming.write(self._view[:count])
        self._decrypt()
        self._collect_ciphertext()  # e.g. an answer to a TLS 1.3 KeyUpdate
        if self.app_out and not self.b_done:
            self._to_app()  # usually writable: saves a poll round trip

    def _decrypt(self) -> None:
        obj = self.session.obj
        while self.reading_net:
            try:
                count: int = obj.read(CHUNK, self._plain)  # type: ignore[assignment]
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                count = 0
            except ssl.SSLEOFError:
                if self.strict_eof:
                    self._fail()
                    return
                count = 0
            except ssl.SSLError:
                self._fail()
                return
            if count == 0:
                self._net_eof()
            elif not self.b_done:
                self.app_out += self._plain_view[:count]
                if len(self.app_out) >= HIGH_WATER:
                    self._to_app()
                    if len(self.app_out) >= HIGH_WATER:
                        return

    def _net_eof(self) -> None:
        self.reading_net = False
        self.net_r.close()
        if not self.app_out:
            self._close_app_w()

    def _to_app(self) -> None:
        try:
            written = self.app_w.write(self.app_out)
        except OSError:
            self._app_reader_gone()
            return
        if written:
            del self.app_out[:written]
        if not self.app_out and not self.reading_net:
            self._close_app_w()

    def _app_reader_gone(self) -> None:
        self.app_out.clear()
        self._close_app_w()

    def _close_app_w(self) -> None:
        self.b_done = True
        self.app_w.close()

    # -- the end ------------------------------------------------------------------------

    def _fail(self) -> None:
        """A TLS error (a fatal alert, a bad record, or with -J an EOF without close_notify).

        Nothing more can be sent or received; what was already decrypted was authenticated
        and still reaches prog, then prog sees EOF (and EPIPE on write).
        """
        self.status = EXIT_TLS_ERROR
        if not self.a_done:
            self._net_write_dead()
        if self.reading_net:
            self._net_eof()

    def close_all(self) -> None:
        for endpoint in (self.app_r, self.app_w, self.net_r, self.net_w):
            endpoint.close()
