"""Test helpers for the TLS clients: loopback TLS servers, fd 6/7 launching, a scripted prog.

Everything is real: servers are threads on 127.0.0.1 with trustme certificates, the
clients run as processes, prog is a Python script.  Every blocking call has a timeout.

* :class:`Server` — a listener whose connections are handled by one of the ``serve_*``
  functions; the handler's outcome lands in ``server.results`` (a queue).
* :func:`launch` — runs a command with chosen descriptors moved onto chosen numbers
  (fds 6/7 = the connection), the way mxf-remote's handoff does.
* :data:`PROG` — the scripted program the TLS clients exec (tests/programs/tls_prog.py);
  it records what it sees (environment, open descriptors, its engine's pid and
  descriptors) as JSON in ``$PROG_OUT`` and exercises the connection in one of several
  modes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from tests.measured import measured
from tests.sinkkit import SmtpSink

TIMEOUT = 20.0
SERVER_NAME = "mx.example.test"

# --------------------------------------------------------------------------------------
# Certificates


class Certs:
    """A throwaway CA, a server certificate for SERVER_NAME, and an untrusted one."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert(SERVER_NAME, organization_name="mxf test")
        self.cafile = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cafile))
        self.other_ca = trustme.CA()
        self.untrusted = self.other_ca.issue_cert("self.example.test")
        self.client = self.ca.issue_cert("client.example.test")
        self.client_pem = directory / "client.pem"
        self.client.private_key_and_cert_chain_pem.write_to_path(str(self.client_pem))

    def server_context(self, *, untrusted: bool = False, tls12: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (self.untrusted if untrusted else self.leaf).configure_cert(context)
        if tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    def named_context(self, *names: str) -> ssl.SSLContext:
        """A server context with a certificate for ``names`` from this CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*names, organization_name="mxf test").configure_cert(context)
        return context

    def named_files(self, directory: Path, *names: str) -> tuple[Path, Path]:
        """``(certfile, keyfile)`` PEM files for ``names`` from this CA (for Postfix)."""
        leaf = self.ca.issue_cert(*names, organization_name="mxf test")
        certfile, keyfile = directory / f"{names[0]}.crt", directory / f"{names[0]}.key"
        certfile.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        keyfile.write_bytes(leaf.private_key_pem.bytes())
        keyfile.chmod(0o600)
        return certfile, keyfile

    def leaf_der(self, *, untrusted: bool = False) -> bytes:
        pem = (self.untrusted if untrusted else self.leaf).cert_chain_pems[0].bytes()
        return ssl.PEM_cert_to_DER_cert(pem.decode())


# --------------------------------------------------------------------------------------
# A blocking TLS server connection over memory BIOs (full control over close_notify)


class ServerTLS:
    """The server side of one connection; ``recv`` returns b"" on close_notify and raises
    ``ssl.SSLEOFError`` on a bare TCP EOF."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.raw = bytearray()  # every ciphertext byte received, for record inspection

    def last_record_type(self) -> int | None:
        """Content type of the last TLS record received (21 = alert, visible in TLS 1.2)."""
        position, last = 0, None
        while position + 5 <= len(self.raw):
            last = self.raw[position]
            position += 5 + int.from_bytes(self.raw[position + 3 : position + 5], "big")
        return last

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if data:
            if len(self.raw) < 1 << 20:
                self.raw += data
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            else:
                self._flush()
                return

    def recv(self, size: int = 262144) -> bytes:
        while True:
            try:
                data = self.obj.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except ssl.SSLZeroReturnError:
                return b""
            else:
                self._flush()
                return data

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def close_notify(self) -> None:
        # SSLWantReadError is the normal case; other errors: the peer already broke it.
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        self._flush()


# --------------------------------------------------------------------------------------
# Servers

Handler = Callable[["Server", socket.socket], Any]


class Server:
    """A loopback listener; each connection runs ``handler`` in its own thread."""

    def __init__(
        self,
        handler: Handler,
        context: ssl.SSLContext | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        self.handler = handler
        self.context = context
        self.results: queue.Queue[Any] = queue.Queue()
        self.sni: list[str | None] = []
        if context is not None:
            context.sni_callback = self._record_sni
        self.listener = listener or socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.address, self.port = self.listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _record_sni(self, obj: Any, name: str | None, context: ssl.SSLContext) -> None:
        self.sni.append(name)

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue  # a long-lived server (module fixture) between connections
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.results.put(self.handler(self, conn))
        except Exception as exc:
            self.results.put(exc)
        finally:
            conn.close()

    def connect(self) -> socket.socket:
        """A client connection to this server (blocking, as after mxf-remote's handoff)."""
        return socket.create_connection((self.address, self.port), timeout=TIMEOUT)

    def result(self, timeout: float = TIMEOUT) -> Any:
        outcome = self.results.get(timeout=timeout)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (Linux)
        self._acceptor.join(TIMEOUT)
        self.listener.close()
        for thread in self._threads:
            thread.join(TIMEOUT)


def _tls(server: Server, conn: socket.socket) -> ServerTLS:
    assert server.context is not None
    tls = ServerTLS(conn, server.context)
    tls.handshake()
    return tls


def serve_echo(server: Server, conn: socket.socket) -> dict[str, Any]:
    """TLS, echo every byte until EOF, then close_notify; report the byte count."""
    tls = _tls(server, conn)
    total = 0
    clean = True
    while True:
        try:
            data = tls.recv()
        except ssl.SSLEOFError:
            clean = False
            break
        if not data:
            break
        total += len(data)
        tls.send(data)
    tls.close_notify()
    return {"bytes": total, "clean": clean}


def serve_count(server: Server, conn: socket.socket) -> dict[str, Any]:
    """TLS, read until EOF; answer "<bytes> <clean|ragged>\\n", then close_notify."""
    tls = _tls(server, conn)
    total = 0
    digest = hashlib.sha256()
    clean = True
    while True:
        try:
            data = tls.recv()
        except ssl.SSLEOFError:
            clean = False
            break
        if not data:
            break
        total += len(data)
        digest.update(data)
    tls.send(f"{total} {'clean' if clean else 'ragged'}\n".encode())
    tls.close_notify()
    return {"bytes": total, "clean": clean, "sha256": digest.hexdigest()}


def serve_half_close(server: Server, conn: socket.socket) -> dict[str, Any]:
    """TLS 1.2 (alerts in clear) ignoring unexpected EOFs: read to EOF, tell whether it came
    with a close_notify, answer "<bytes> <clean|ragged>\n" on the half-open session."""
    assert server.context is not None
    server.context.maximum_version = ssl.TLSVersion.TLSv1_2
    server.context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    tls = _tls(server, conn)
    total = 0
    while data := tls.recv():
        total += len(data)
    clean = tls.last_record_type() == 21
    tls.send(f"{total} {'clean' if clean else 'ragged'}\n".encode())
    tls.close_notify()
    return {"bytes": total, "clean": clean}


def serve_bye(server: Server, conn: socket.socket) -> dict[str, Any]:
    """TLS, send "bye\\n" and close_notify at once, then collect what prog still sends."""
    tls = _tls(server, conn)
    tls.send(b"bye\n")
    tls.close_notify()
    received = b""
    clean = True
    while True:
        try:
            data = tls.recv()
        except ssl.SSLEOFError:
            clean = False
            break
        if not data:
            break
        received += data
    return {"received": received.decode(), "clean": clean}


def serve_bye_ragged(server: Server, conn: socket.socket) -> dict[str, Any]:
    """TLS, send "bye\n", then a bare TCP FIN (no close_notify); collect what still comes."""
    tls = _tls(server, conn)
    tls.send(b"bye\n")
    conn.shutdown(socket.SHUT_WR)
    received = b""
    with contextlib.suppress(ssl.SSLError):
        while data := tls.recv():
            received += data
    return {"received": received.decode()}


def serve_stall(server: Server, conn: socket.socket) -> dict[str, Any]:
    """Take the ClientHello and never answer; wait for the client to give up."""
    hello = conn.recv(65536)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    return {"hello": len(hello)}


def serve_banner(server: Server, conn: socket.socket) -> dict[str, Any]:
    """Not TLS: greet like an SMTP server and wait for the client to leave."""
    conn.sendall(b"220 mx.example.test ESMTP\r\n")
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    return {"banner": True}


def _readline(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


def serve_starttls(server: Server, conn: socket.socket) -> dict[str, Any]:
    """A STARTTLS-like dialogue: banner; ``STARTTLS`` → TLS echo; ``PLAIN`` → clear echo;
    ``BROKEN`` → "220 go ahead" and then garbage instead of a ServerHello."""
    conn.sendall(b"220 ready\r\n")
    command = _readline(conn).strip()
    if command == b"PLAIN":
        conn.sendall(b"250 plain\r\n")
        total = 0
        while data := conn.recv(65536):
            total += len(data)
            conn.sendall(data)
        return {"mode": "plain", "bytes": total}
    conn.sendall(b"220 go ahead\r\n")
    if command == b"BROKEN":
        conn.recv(65536)
        conn.sendall(b"500 this is not TLS\r\n")
        return {"mode": "broken"}
    result = serve_echo(server, conn)
    result["mode"] = "tls"
    return result


def _tls_netstring(tls: ServerTLS, buffer: bytearray) -> bytes:
    """One netstring from a TLS session (``buffer`` keeps what was read beyond it)."""
    while b":" not in buffer[:12]:
        data = tls.recv()
        if not data:
            raise EOFError("EOF inside a netstring length")
        buffer += data
    digits, _, _ = bytes(buffer[:12]).partition(b":")
    if not digits.isdigit():
        raise ValueError(f"not a netstring length: {digits!r}")
    start = len(digits) + 1
    end = start + int(digits)
    while len(buffer) < end + 1:
        data = tls.recv()
        if not data:
            raise EOFError("EOF inside a netstring")
        buffer += data
    if buffer[end : end + 1] != b",":
        raise ValueError("netstring without its comma")
    value = bytes(buffer[start:end])
    del buffer[: end + 1]
    return value


def serve_qmtps(server: Server, conn: socket.socket) -> dict[str, Any]:
    """A QMTPS sink (QMTP over TLS from the first byte): one package, K for each recipient,
    then wait for the client to leave.  Returns message, sender, recipients, TLS version."""
    tls = _tls(server, conn)
    buffer = bytearray()
    message = _tls_netstring(tls, buffer)
    sender = _tls_netstring(tls, buffer)
    packed = _tls_netstring(tls, buffer)
    recipients = []
    while packed:
        length, _, rest = packed.partition(b":")
        recipients.append(rest[: int(length)])
        packed = rest[int(length) + 1 :]
    answer = b"K" + b"queued over " + (tls.obj.version() or "?").encode()
    tls.send(b"".join(b"%d:%s," % (len(answer), answer) for _ in recipients))
    with contextlib.suppress(ssl.SSLError, OSError):
        while tls.recv():
            pass
        tls.close_notify()
    return {
        "message": message,
        "sender": sender,
        "recipients": recipients,
        "version": tls.obj.version(),
        "sni": server.sni[-1] if server.sni else None,
    }


# --------------------------------------------------------------------------------------
# Launching with descriptors on fixed numbers

PROGRAMS = Path(__file__).resolve().parent / "programs"
LAUNCHER = PROGRAMS / "launcher.py"
"""Moves descriptors onto fixed numbers, then execs the program (see its docstring)."""


def client_command(name: str) -> list[str]:
    """How to run one of our console scripts (beside this Python, else ``-m``)."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = {"mxf-remote-tlsc": "tlsc", "mxf-remote-ucspitlsc": "ucspitlsc"}[name]
    return [sys.executable, "-m", f"mxf_remote.tls.{module}"]


def launch(
    argv: list[str],
    fds: dict[int, int],
    env: dict[str, str],
    *,
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with each ``fds[target] = source`` descriptor moved to ``target``;
    stdout and stderr are one pipe (the report pipe, as qmail-rspawn gives it)."""
    pairs = [f"{src}:{dst}" for dst, src in fds.items()]
    command = [sys.executable, "-S", str(LAUNCHER), str(len(pairs)), *pairs, *argv]
    return subprocess.Popen(
        command,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=list(fds.values()),
        env=measured(env),
    )


def read_to_eof(proc: subprocess.Popen[bytes], timeout: float = TIMEOUT) -> bytes:
    """Everything on the report pipe until EOF (every holder closed it), bounded."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    out = bytearray()
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"report pipe still open after {timeout} s; got {bytes(out)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(out)
            out += chunk


def run_client(
    argv: list[str],
    conn: socket.socket,
    env: dict[str, str],
    timeout: float = TIMEOUT,
) -> tuple[int, bytes]:
    """Run a client with ``conn`` on fds 6/7 (one socket, twice); (exit status, fd 1+2)."""
    conn.setblocking(True)  # as mxf-remote's handoff leaves it
    proc = launch(argv, {6: conn.fileno(), 7: conn.fileno()}, env)
    conn.close()
    try:
        output = read_to_eof(proc, timeout)
        status = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()
    return status, output


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the clients: PATH, TCPREMOTEIP, PROG_OUT, and ``extra``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TCPREMOTEIP": "127.0.0.1",
        "PROG_OUT": str(tmp / "prog.json"),
    }
    env.update(extra)
    return env


def prog_result(tmp: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / "prog.json").read_text())
    return data


# --------------------------------------------------------------------------------------
# The scripted prog

PROG = PROGRAMS / "tls_prog.py"
"""The scripted program the TLS clients exec: it records what it sees (environment, open
descriptors, its engine's pid and descriptors) as JSON in ``$PROG_OUT`` and exercises the
connection in one of several modes (see its docstring)."""


# --------------------------------------------------------------------------------------
# One object per test: certificates, the prog script, servers closed at the end


class Kit:
    """Everything a TLS client test needs, in ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.certs = Certs(tmp)
        self.prog = PROG
        self.servers: list[Server] = []

    def server(
        self, handler: Handler, *, tls: bool = True, untrusted: bool = False, tls12: bool = False
    ) -> Server:
        context = self.certs.server_context(untrusted=untrusted, tls12=tls12) if tls else None
        server = Server(handler, context)
        self.servers.append(server)
        return server

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(self.tmp, **extra)

    def prog_argv(self, mode: str, *args: str) -> list[str]:
        return [sys.executable, str(self.prog), mode, *args]

    def run(
        self,
        client: str,
        options: list[str],
        server: Server,
        mode: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, Any] | None]:
        """Run ``client options -- prog mode args`` on a fresh connection to ``server``;
        (exit status, everything on fd 1/2, prog's record or None if prog did not run)."""
        out = self.tmp / "prog.json"
        out.unlink(missing_ok=True)
        argv = [*client_command(client), *options, "--", *self.prog_argv(mode, *args)]
        status, output = run_client(argv, server.connect(), env or self.env())
        record = prog_result(self.tmp) if out.exists() else None
        return status, output, record

    def close(self) -> None:
        for server in self.servers:
            server.close()


class PipeRelay:
    """Ciphertext on two pipes instead of a socket (s6-tlsc allows any two descriptors):
    threads copy between ``conn`` and the pipes; the client gets ``rfd``/``wfd``."""

    def __init__(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        self.conn = conn
        self.rfd, self._to_client = os.pipe()
        self._from_client, self.wfd = os.pipe()
        self._threads = [
            threading.Thread(target=self._down, daemon=True),
            threading.Thread(target=self._up, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _down(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.conn.recv(262144):
                view = memoryview(data)
                while view:
                    view = view[os.write(self._to_client, view) :]
        os.close(self._to_client)

    def _up(self) -> None:
        with contextlib.suppress(OSError):
            while data := os.read(self._from_client, 262144):
                self.conn.sendall(data)
            self.conn.shutdown(socket.SHUT_WR)
        os.close(self._from_client)

    def close(self) -> None:
        for thread in self._threads:
            thread.join(TIMEOUT)
        self.conn.close()


# --------------------------------------------------------------------------------------
# SMTP servers with STARTTLS, for mxf-remote-smtpc and end-to-end deliveries


AiosmtpdServer = SmtpSink
"""``AiosmtpdServer(address, port, context)``: the suite's one SMTP sink
(``tests.sinkkit.SmtpSink``) on one address, offering STARTTLS when given a context;
``arrival()`` takes the next message, with its TLS version in ``Arrival.tls``."""


def postfix_with_starttls(
    postfix: str, master: str, port: int, *, address: str, certfile: Path, keyfile: Path
) -> Any:
    """``clientkit.PostfixServer`` switched to ``smtpd_tls_security_level = may`` with this
    certificate: main.cf rewritten, the master told to reload (SIGHUP), and a bounded wait
    until its EHLO offers STARTTLS."""
    import signal

    from tests.clientkit import PostfixServer

    server = PostfixServer(postfix, master, port, address)
    try:
        main_cf = Path(server.config) / "main.cf"
        text = main_cf.read_text().replace(
            "smtpd_tls_security_level = none\n",
            "smtpd_tls_security_level = may\n"
            f"smtpd_tls_chain_files = {keyfile}, {certfile}\n"
            "smtpd_tls_received_header = yes\n",
        )
        assert "smtpd_tls_security_level = may" in text
        main_cf.write_text(text)
        past = time.time() - 120
        os.utime(main_cf, (past, past))
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while b"STARTTLS" not in _ehlo_keywords(address, port):
            if time.monotonic() > deadline:
                raise RuntimeError("postfix does not offer STARTTLS: " + server.log_text())
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    return server


def _ehlo_keywords(address: str, port: int) -> bytes:
    """What the server at ``address``:``port`` answers to EHLO (b"" on any failure)."""
    try:
        with socket.create_connection((address, port), timeout=5) as probe:
            reader = probe.makefile("rb")
            with reader:
                reader.readline()
                probe.sendall(b"EHLO probe.test\r\n")
                answer = b""
                while True:
                    line = reader.readline()
                    answer += line
                    if len(line) < 4 or line[3:4] != b"-":
                        break
                probe.sendall(b"QUIT\r\n")
                return answer
    except OSError:
        return b""
