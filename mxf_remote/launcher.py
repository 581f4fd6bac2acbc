"""``mxf-remote``'s entry point: hand the race to ``mxf-remoted`` when one is configured.

qmail-rspawn starts ``mxf-remote`` once per delivery; most of what a cold start costs is
the interpreter importing asyncio, uvloop and aiodns.  With ``control/remotedsocket``,
that work is done once, in ``mxf-remoted``, and this process stays a small launcher:

1. It imports nothing but ``os``, ``_socket``, ``_signal`` and a few small modules of
   ours.  Without ``control/remotedsocket`` it goes straight to the in-process path
   (``remote.main``), exactly as before.
2. It connects to the socket the file names -- only a socket owned by us or by root --
   and sends its arguments, its environment and where it runs from
   (``remotedwire``).  The server reads the control files of *our* ``MXF_QMAIL``,
   resolves with *our* ``MXF_NAMESERVERS``, writes *our* ``MXF_TRACE``, and races.
3. The server must take the delivery (``A``) within ``ACK_SECONDS``.  If the socket is
   missing, refuses, belongs to someone else, says it is busy, or is silent, this
   process delivers in process instead: a server that is down costs a message at most
   ``ACK_SECONDS``, and never loses it.
4. The result is either a report, which this process prints, or the winning connection
   (SCM_RIGHTS) with the client's argv and environment, which this process execs
   exactly as ``mxf-remote`` in process would (``execclient``): the protocol client is
   this very process -- the pid qmail-rspawn waits for -- with our fds 0, 1 and 2, our
   signal mask, and the qmail home as working directory.  So a client killed by a
   signal is seen by qmail-rspawn as a crash, as always.
5. Once the server has taken the delivery, a server that dies, or says nothing within
   the bound it announced, ends the delivery with a Z report: the server never wrote to
   fd 1, so this process is the only writer of the report.

Why the connection comes back here rather than the server running the client: the
server's only business is the race, which touches no mail; nothing that could deliver a
message twice ever runs outside the process qmail-rspawn watches.
"""

from __future__ import annotations

import os
import sys
import time

from mxf_remote import remotedwire

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import _socket
    from typing import NoReturn

STARTED = time.monotonic()
ACK_SECONDS = 1.0
"""How long the server may take to accept a delivery before we deliver in process."""
DEFAULT_HOME = "/var/qmail"
READ_SIZE = 65536


class NotTaken(Exception):
    """The server did not take the delivery: deliver in process."""


def main() -> NoReturn:
    """Console entry point of ``mxf-remote``: the server when configured, else in process."""
    try:  # noqa: SIM105 - contextlib costs an import per delivery
        launch(sys.argv)
    except BaseException:  # noqa: S110 - NotTaken, or anything unexpected at all,
        pass  # means: deliver in process, as without the server.  Safe even after the
        # server took the delivery: it never speaks mail, so nothing can be doubled.
    from mxf_remote.remote import main as in_process

    in_process()


def launch(argv: list[str]) -> None:
    """Hand the delivery to mxf-remoted; returns (or raises NotTaken) to deliver in process."""
    if len(argv) < 4:
        return
    from mxf_remote.output import descriptor_open, plug_closed_outputs

    plug_closed_outputs()
    if not descriptor_open(0):
        return
    home = os.environ.get("MXF_QMAIL") or DEFAULT_HOME
    path = socket_path(home)
    if path is None:
        return
    import _signal  # not signal.py, which imports enum

    inherited_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [])
    connection = connect(path)
    bound, received = take(connection, argv)
    receive_result(connection, bound, received, inherited_mask)


def socket_path(home: str) -> str | None:
    """The first line of ``control/remotedsocket``, or None when there is no such file.

    A file that cannot be used is reported as any control file is (spec §2).
    """
    from mxf_remote.controlfile import ControlError, read_first_line

    try:
        path = read_first_line(home, "remotedsocket")
    except ControlError as error:
        _stop_control_error(error.detail())
    if path is None:
        return None
    if not path.startswith("/"):
        _stop_control_error(f"control/remotedsocket line 1: {path[:100]!r} is not an absolute path")
    return path


def connect(path: str) -> _socket.socket:
    """A connection to the server at ``path``: ours or root's socket, else NotTaken."""
    import _socket
    import stat

    try:
        info = os.stat(path)
    except OSError:
        raise NotTaken from None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid not in (os.geteuid(), 0):
        raise NotTaken
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    connection.settimeout(ACK_SECONDS)
    try:
        connection.connect(path)
    except OSError:
        connection.close()
        raise NotTaken from None
    return connection


def take(connection: _socket.socket, argv: list[str]) -> tuple[float, Received]:
    """Send the request; the seconds the server gives itself and what has come after its
    answer already (the start of the result, perhaps with the connection), or NotTaken."""
    from mxf_remote.controlfile import program_directory

    request = remotedwire.encode_request(
        STARTED,
        os.fsencode(program_directory(argv[0])),
        [os.fsencode(argument) for argument in argv[1:]],
        [os.fsencode(key) + b"=" + os.fsencode(value) for key, value in os.environ.items()],
    )
    received = Received()
    try:
        connection.sendall(request)
        while (length := remotedwire.complete_length(received.data[1:])) is None:
            received.more(connection)
            if received.data[:1] != remotedwire.ACCEPTED:
                raise NotTaken
        bound = float(remotedwire.unwrap(received.data[1 : 1 + length]))
    except (OSError, ValueError, remotedwire.Malformed):
        received.close()
        connection.close()
        raise NotTaken from None
    received.data = received.data[1 + length :]
    return bound, received


class Received:
    """Bytes and descriptors read from the server so far."""

    def __init__(self) -> None:
        self.data = b""
        self.descriptors: list[int] = []

    def more(self, connection: _socket.socket) -> None:
        """One read (with room for descriptors); Malformed at end of file."""
        import _socket

        data, ancillary, _, _ = connection.recvmsg(READ_SIZE, _socket.CMSG_SPACE(4 * 4))
        for level, message_type, fds in ancillary:
            if level == _socket.SOL_SOCKET and message_type == _socket.SCM_RIGHTS:
                self.descriptors += [
                    int.from_bytes(fds[i : i + 4], sys.byteorder)
                    for i in range(0, len(fds) - len(fds) % 4, 4)
                ]
        if not data:
            raise remotedwire.Malformed("the server closed the connection")
        self.data += data

    def close(self) -> None:
        """Close every descriptor received."""
        for fd in self.descriptors:
            os.close(fd)
        self.descriptors = []


def receive_result(
    connection: _socket.socket, bound: float, received: Received, inherited_mask: object
) -> NoReturn:
    """Wait for the result and act on it: print the report, or exec the client."""
    from mxf_remote.output import finish

    connection.settimeout(bound)
    try:
        while (length := remotedwire.complete_length(received.data)) is None:
            received.more(connection)
        result = remotedwire.unwrap(received.data[:length])
    except (OSError, remotedwire.Malformed) as error:
        received.close()
        from mxf_remote.report import server_gone

        finish(server_gone(str(error) or type(error).__name__).encode())
    connection.close()
    kind, payload = result[:1], result[1:]
    if kind == remotedwire.HANDOFF and 1 <= len(received.descriptors) <= 4:
        fd, *extra = received.descriptors
        _hand_off(payload, fd, extra, inherited_mask)
    received.close()
    if kind == remotedwire.REPORT:
        finish(payload)
    from mxf_remote.report import server_gone

    finish(server_gone("an answer that is not an mxf-remoted result").encode())


def _hand_off(payload: bytes, fd: int, extra: list[int], inherited_mask: object) -> NoReturn:
    """Exec the client on the connection ``fd`` (and ``extra`` on fds 8...), or run ours."""
    from mxf_remote.execclient import exec_client
    from mxf_remote.output import finish

    try:
        home, argv, environ, in_process = remotedwire.decode_handoff(payload)
    except remotedwire.Malformed:
        for unused in (fd, *extra):
            os.close(unused)
        from mxf_remote.report import server_gone

        finish(server_gone("a handoff that cannot be read").encode())
    try:
        os.chdir(home)
    except OSError:
        for unused in (fd, *extra):
            os.close(unused)
        from mxf_remote.report import NO_HOME

        finish(NO_HOME.encode())
    env = dict(entry.split(b"=", 1) for entry in environ if b"=" in entry)
    client_argv = [os.fsdecode(argument) for argument in argv]
    client_env = {os.fsdecode(key): os.fsdecode(value) for key, value in env.items()}
    if in_process:
        _run_in_process(
            in_process.decode(),
            fd,
            extra,
            client_argv,
            env=client_env,
            inherited_mask=inherited_mask,
        )
    exec_client(fd, client_argv, client_env, inherited_mask, extra)  # type: ignore[arg-type]


def _run_in_process(
    name: str,
    fd: int,
    extra: list[int],
    argv: list[str],
    *,
    env: dict[str, str],
    inherited_mask: object,
) -> NoReturn:
    """Run our client ``name`` in this process, as exec would have started it.

    The same fds (0, 1, 2, and the connection on 6 and 7, nothing else), the same
    environment, argv, signal dispositions and mask, the same report and exit status --
    without a second interpreter start.  The client's own guard (``run_guarded``) makes
    any exception a Z report, as in its own process.
    """
    from mxf_remote.execclient import place_connection, restore_signals

    place_connection(fd, extra)
    restore_signals(inherited_mask)  # type: ignore[arg-type]
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    if name == "smtp":
        from mxf_remote.clients.smtp import main as client_main
    else:
        from mxf_remote.clients.qmtp import main as client_main
    client_main()


def _stop_control_error(detail: str) -> NoReturn:
    from mxf_remote.output import finish
    from mxf_remote.report import control_error

    finish(control_error(detail).encode())
