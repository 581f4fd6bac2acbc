"""Test helpers for the protocol clients: real processes, real sockets, qmail-rspawn's fold.

* ``run_client`` runs mxf-remote-smtpc or mxf-remote-qmtpc as a real process the way
  mxf-remote leaves it: the connection on fds 6 and 7, the message as a regular file on
  fd 0, the report pipe on fd 1 *and* fd 2, the UCSPI environment, a temporary qmail home.
* ``loopback_pair`` makes a real TCP connection on 127.0.0.1; ``Peer`` runs a scripted
  peer on its server end in a thread.
* ``fold`` is qmail-rspawn's ``report()`` (contract §1.3), to show what qmail-send gets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from tests.measured import measured
from tests.remotekit import AcceptLoop

CLIENT_MODULES = {
    "mxf-remote-smtpc": "mxf_remote.clients.smtp",
    "mxf-remote-qmtpc": "mxf_remote.clients.qmtp",
}


def client_command(program: str) -> list[str]:
    """The installed console script beside this interpreter, else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), program)
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", CLIENT_MODULES[program]]


def make_home(root: str, **control: str) -> str:
    """A qmail home under ``root`` with ``control/NAME`` files (``me`` by default)."""
    home = os.path.join(root, "qmail")
    os.makedirs(os.path.join(home, "control"), exist_ok=True)
    control.setdefault("me", "me.example\n")
    for name, text in control.items():
        if text is not None:
            with open(os.path.join(home, "control", name), "w") as file:
                file.write(text)
    return home


@dataclass
class Result:
    """What the client left: its fd 1 + fd 2 bytes, exit status, and elapsed time."""

    output: bytes
    returncode: int
    elapsed: float


def run_client(
    program: str,
    args: list[str],
    message: bytes | None,
    *,
    home: str,
    connection: socket.socket | None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    remote_ip: str = "127.0.0.1",
) -> Result:
    """Run ``program args...`` under a mxf-remote-like hand-off and collect its reports.

    ``message`` None leaves fd 0 a pipe (not a regular file).  ``connection`` None runs
    without fds 6 and 7.  fds 1 and 2 are one pipe, as qmail-rspawn arranges it.
    """
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "MXF_QMAIL": home,
        "PROTO": "TCP",
        "TCPREMOTEIP": remote_ip,
        "TCPREMOTEPORT": "25",
        "TCPLOCALIP": "127.0.0.1",
        "MXFHOST": "mx.example",
        "MXFPROTOCOL": "smtp" if program.endswith("smtpc") else "qmtp",
    }
    if "PYTHONPATH" in os.environ:
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    environment.update(env or {})
    connection_fd = connection.fileno() if connection is not None else -1

    def hand_off() -> None:
        # In the child, between fork and exec: what mxf-remote's handoff does.
        if connection_fd >= 0:
            os.dup2(connection_fd, 6)
            os.dup2(connection_fd, 7)
        else:
            for fd in (6, 7):
                with suppress(OSError):
                    os.close(fd)
        os.dup2(1, 2)

    with tempfile.TemporaryFile() as message_file:
        if message is not None:
            message_file.write(message)
            message_file.seek(0)
            stdin: int = message_file.fileno()
        else:
            stdin = subprocess.DEVNULL
        started = time.monotonic()
        completed = subprocess.run(
            [*client_command(program), *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            env=measured(environment),
            preexec_fn=hand_off,
            close_fds=False,
            timeout=timeout,
            check=False,
        )
    return Result(completed.stdout, completed.returncode, time.monotonic() - started)


@contextmanager
def loopback_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(client_end, server_end)`` of a real TCP connection over 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


class Peer:
    """A scripted peer in a thread on the server end of a connection.

    ``script(peer)`` runs in the thread; ``line()``, ``send()``, ``expect()`` and friends
    are for it.  ``received`` keeps every byte read, and ``join()`` re-raises whatever
    went wrong in the thread (a failed ``expect`` included).
    """

    def __init__(self, sock: socket.socket, script: Callable[[Peer], None]) -> None:
        self.sock = sock
        self.received = bytearray()
        self._buffer = bytearray()
        self._error: BaseException | None = None
        self._script = script
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.join()

    def _run(self) -> None:
        try:
            self._script(self)
        except BaseException as error:  # reported by join()
            self._error = error

    def join(self, timeout: float = 60) -> None:
        """Wait for the script; raise what it raised."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the scripted peer did not finish"
        if self._error is not None:
            raise self._error

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:  # the client exited with our bytes unread
            return False
        if not data:
            return False
        self.received += data
        self._buffer += data
        return True

    def line(self) -> bytes | None:
        """The next line with its line end, or None at EOF."""
        while b"\n" not in self._buffer:
            if not self._fill():
                return None
        end = self._buffer.index(b"\n") + 1
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def expect(self, wanted: bytes) -> bytes:
        """Read one line; it must be ``wanted`` + CRLF."""
        line = self.line()
        assert line == wanted + b"\r\n", f"expected {wanted!r}, got {line!r}"
        return line

    def read_exact(self, count: int) -> bytes:
        """Exactly ``count`` bytes (AssertionError at EOF)."""
        while len(self._buffer) < count:
            assert self._fill(), "EOF before the expected bytes"
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def read_data(self) -> bytes | None:
        """The DATA lines up to (not including) the final ``.``; None at EOF."""
        lines = []
        while True:
            line = self.line()
            if line is None:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line)

    def read_to_eof(self, limit: float = 30) -> bytes:
        """Everything until the client closes (at most ``limit`` seconds)."""
        self.sock.settimeout(limit)
        while self._fill():
            pass
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def reply(self, *lines: str) -> None:
        """Send reply lines, each with CRLF."""
        self.sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))

    def close(self) -> None:
        """Close our end (the client sees EOF)."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# -- qmail-rspawn ---------------------------------------------------------------------


def _c_string(data: bytes, start: int) -> bytes:
    end = data.find(b"\0", start)
    return data[start:] if end < 0 else data[start:end]


def fold(output: bytes, exit_code: int = 0) -> bytes:
    """qmail-rspawn's ``report()``: the one line qmail-send gets for this delivery.

    A transliteration of notqmail ``qmail-rspawn.c`` as described in contract §1.3:
    result from the first NUL-terminated report starting with K/Z/D (permanent if none),
    outcome forced by a leading ``s``/``h``, the first report's text, and the second
    report's text when the result is no better than the outcome.
    """
    if exit_code == 111:
        return b"ZUnable to run qmail-remote.\n"
    if exit_code != 0:
        return b"DUnable to run qmail-remote.\n"
    if not output:
        return b"Zqmail-remote produced no output.\n"
    result = -1
    start = 0
    for index, byte in enumerate(output):
        if byte == 0:
            first = output[start : start + 1]
            if first == b"K":
                result = 1
                break
            if first == b"Z":
                result = 0
                break
            if first == b"D":
                break
            start = index + 1
    outcome = {b"s": 0, b"h": -1}.get(output[:1], result)
    line = {1: b"K", 0: b"Z", -1: b"D"}[outcome]
    index = 1
    while index < len(output):
        byte = output[index]
        index += 1
        if byte == 0:
            line += _c_string(output, 1)
            if (
                result <= outcome
                and index < len(output)
                and output[index : index + 1]
                in (
                    b"K",
                    b"Z",
                    b"D",
                )
            ):
                line += _c_string(output, index + 1)
            break
    return line


def reports_of(output: bytes) -> list[bytes]:
    """The NUL-terminated reports in ``output`` (AssertionError if the last has no NUL)."""
    assert output.endswith(b"\0"), f"output does not end in NUL: {output!r}"
    return [report + b"\0" for report in output[:-1].split(b"\0")]


def postfix_binaries() -> tuple[str, str] | None:
    """``(postfix, master)`` paths when Debian's postfix is installed, else None."""
    postfix = shutil.which("postfix") or (
        "/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None
    )
    master = "/usr/lib/postfix/sbin/master"
    if postfix and os.access(master, os.X_OK):
        return postfix, master
    return None


def converse(
    program: str,
    script: Callable[[Peer], None],
    args: list[str],
    message: bytes | None,
    *,
    home: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[Result, Peer]:
    """Run the client against ``script`` on a real loopback TCP connection."""
    with loopback_pair() as (client, server):
        peer = Peer(server, script)
        with peer:
            try:
                result = run_client(
                    program,
                    args,
                    message,
                    home=home,
                    connection=client,
                    env=env,
                    timeout=timeout,
                )
            finally:
                client.close()  # the peer sees EOF once the client has exited too
    return result, peer


# -- QMTP -----------------------------------------------------------------------------


def netstring(data: bytes) -> bytes:
    """``len:data,``."""
    return b"%d:%s," % (len(data), data)


def read_netstring(peer: Peer) -> bytes:
    """One netstring from the client (AssertionError when it is not one)."""
    digits = b""
    while True:
        byte = peer.read_exact(1)
        if byte == b":":
            break
        assert byte.isdigit(), f"not a netstring length: {digits + byte!r}"
        digits += byte
    data = peer.read_exact(int(digits))
    assert peer.read_exact(1) == b",", "netstring without its comma"
    return data


def read_qmtp_package(peer: Peer) -> tuple[bytes, bytes, list[bytes]]:
    """A QMTP sink's parser: ``(message, sender, recipients)`` of one package."""
    message = read_netstring(peer)
    sender = read_netstring(peer)
    packed = read_netstring(peer)
    recipients = []
    while packed:
        length, _, rest = packed.partition(b":")
        recipients.append(rest[: int(length)])
        assert rest[int(length) : int(length) + 1] == b","
        packed = rest[int(length) + 1 :]
    return message, sender, recipients


# -- Postfix --------------------------------------------------------------------------

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_header_rewrite_clients =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD
smtpd_tls_security_level = none
maillog_file = /dev/stdout
biff = no
"""


class PostfixServer:
    """Debian's postfix in the foreground from a private directory; mail goes on hold.

    Every accepted message stays in ``spool/hold`` (``static:HOLD``), where ``postcat``
    shows its envelope and its content as Postfix stored them.  Pitfalls from
    test-infra.md: the directory must be traversable by the postfix user, the config
    files must not be from the current second, the listener is bound in master.cf.
    """

    def __init__(self, postfix: str, master: str, port: int, address: str = "127.0.0.1") -> None:
        import pwd

        self.port = port
        self.address = address
        self.postfix = postfix
        self.root = tempfile.mkdtemp(prefix="mxf-postfix-")
        os.chmod(self.root, 0o755)
        self.config = os.path.join(self.root, "etc")
        for name in ("etc", "spool", "data"):
            os.mkdir(os.path.join(self.root, name))
        owner = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.root, "data"), owner.pw_uid, owner.pw_gid)
        with open(os.path.join(self.config, "main.cf"), "w") as file:
            file.write(POSTFIX_MAIN_CF.format(root=self.root))
        with open("/etc/postfix/master.cf") as file:
            lines = file.read().splitlines()
        lines = [
            f"{address}:{port} inet n - n - - smtpd" if ln.startswith("smtp ") else ln
            for ln in lines
        ]
        with open(os.path.join(self.config, "master.cf"), "w") as file:
            file.write("\n".join(lines) + "\n")
        past = time.time() - 120
        for name in os.listdir(self.config):
            os.utime(os.path.join(self.config, name), (past, past))
        subprocess.run(
            [postfix, "-c", self.config, "check"], capture_output=True, check=True, timeout=60
        )
        self.log = open(os.path.join(self.root, "master.log"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [master, "-c", self.config, "-s"],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((address, port), timeout=5) as probe:
                    if probe.recv(100).startswith(b"220"):
                        probe.sendall(b"QUIT\r\n")
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("postfix did not start: " + self.log_text())
            time.sleep(0.05)

    def log_text(self) -> str:
        """The master's log so far."""
        with open(os.path.join(self.root, "master.log"), errors="replace") as file:
            return file.read()

    def held(self, queue_id: str) -> tuple[str, bytes]:
        """``(envelope, content)`` of a held message, from ``postcat``."""
        path = os.path.join(self.root, "spool", "hold", queue_id)
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        postcat = os.path.join(os.path.dirname(self.postfix), "postcat")
        envelope = subprocess.run(
            [postcat, "-c", self.config, "-e", path], capture_output=True, check=True
        ).stdout.decode(errors="replace")
        content = subprocess.run(
            [postcat, "-c", self.config, "-bh", path], capture_output=True, check=True
        ).stdout
        return envelope, content

    def stop(self) -> None:
        """Stop the master (it takes its children down) and remove the directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- Exchangers for end-to-end deliveries through mxf-remote --------------------------
# (the SMTP sink, aiosmtpd, is ``tests.sinkkit.SmtpSink``)


class ScriptedServer(AcceptLoop):
    """Listening sockets whose connections are served, one at a time, by a script.

    ``script(peer, (address, port))`` runs in the server's thread for each accepted
    connection; ``accepted`` lists where connections came in, and ``check()`` re-raises
    the first thing a script raised.
    """

    thread_name = "scripted-server"

    def __init__(self, script: Callable[[Peer, tuple[str, int]], None]) -> None:
        self._script = script
        self.accepted: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        super().__init__()

    def handle(self, conn: socket.socket, where: tuple[str, int]) -> None:
        """Run the script on the connection; what it raises is kept for ``check()``."""
        self.accepted.append(where)
        conn.settimeout(30)
        try:
            self._script(Peer(conn, lambda _: None), where)
        except BaseException as error:  # re-raised by check()
            self.errors.append(error)

    def check(self) -> None:
        """Raise the first error a script raised."""
        if self.errors:
            raise self.errors[0]


@dataclass
class QmtpArrival:
    """One QMTP package a sink read (whatever it answered): where, and its contents."""

    exchanger: str
    message: bytes
    sender: bytes
    recipients: list[bytes]


QMTP_SINK_ANSWERS = {
    b"busy": b"Zmailbox busy, try later",
    b"nobody": b"Dno such user",
    b"garbage": b"Xthis is not QMTP",
}
"""``qmtp_sink`` answers by the recipient's local part; anything else is accepted."""

QMTP_SINK_ACCEPTED = b"Kok 1764072000 qp 4242"


def qmtp_sink(arrivals: list[QmtpArrival]) -> Callable[[Peer, tuple[str, int]], None]:
    """A ``ScriptedServer`` script: a QMTP server answering by ``QMTP_SINK_ANSWERS``."""

    def script(peer: Peer, where: tuple[str, int]) -> None:
        message, sender, recipients = read_qmtp_package(peer)
        answers = [
            QMTP_SINK_ANSWERS.get(recipient.partition(b"@")[0], QMTP_SINK_ACCEPTED)
            for recipient in recipients
        ]
        arrivals.append(QmtpArrival(where[0], message, sender, recipients))
        peer.send(b"".join(netstring(answer) for answer in answers))
        peer.read_to_eof(30)

    return script


def converse_records(
    program: str,
    script: Callable[[socket.socket], None],
    args: list[str],
    message: bytes,
    *,
    home: str,
) -> Result:
    """Run the client on an AF_UNIX SOCK_SEQPACKET pair: each of its writes is one record.

    ``script(server_end)`` runs in a thread and sees the client's write boundaries, which
    TCP hides (and which decide whether Nagle's algorithm holds a segment back).
    """
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.settimeout(30)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            script(server)
        except BaseException as error:  # re-raised below
            errors.append(error)

    thread = threading.Thread(target=serve, name="records-peer", daemon=True)
    thread.start()
    try:
        result = run_client(program, args, message, home=home, connection=client)
    finally:
        client.close()
        thread.join(30)
        server.close()
    assert not thread.is_alive(), "the peer script did not finish"
    if errors:
        raise errors[0]
    return result
