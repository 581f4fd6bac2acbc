"""Running the real ``mxf-remote`` as qmail-rspawn would, and seeing what its child got.

* ``QmailHome``: a temporary qmail home with control files.
* ``write_recorder``: a protocol program for the handoff.  It is a ``/bin/sh`` script so
  that its signal dispositions and mask are exactly what mxf-remote left (a Python
  program would ignore SIGPIPE and SIGXFSZ itself before we could look); it then execs
  Python (``tests/programs/recorder.py``) to record argv, environment, open descriptors,
  fd 0's offset and the blocking mode of fds 6/7, talks to the listener over fds 6/7, and
  prints a K report.
* ``Listeners``: TCP listeners on test addresses that greet whoever connects.
* ``run_remote``: one delivery, with the message on fd 0 from a real file.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.netns import listen_tcp
from tests.measured import measured

MXF_REMOTE = os.path.join(os.path.dirname(sys.executable), "mxf-remote")
if not os.path.exists(MXF_REMOTE):
    MXF_REMOTE = shutil.which("mxf-remote") or MXF_REMOTE

WARM_SOCKET: str | None = None
"""Set by conftest.py under ``pytest --warm``: every QmailHome then uses this server."""

SERVER_GREETING = b"hello from the server\n"
CLIENT_GREETING = b"hello from the client\n"

RECORDER = Path(__file__).resolve().parent / "programs" / "recorder.py"
"""The Python part of the recording protocol program (``write_recorder`` copies it)."""


def write_recorder(directory: Path) -> Path:
    """Write the recording protocol program into ``directory``; its path.

    ``recorder.py`` beside it is the Python part, executable on its own: use it directly
    to see the signal *mask* (dash clears the mask at start-up; Python keeps it).
    """
    python_part = directory / "recorder.py"
    python_part.write_text(f"#!{sys.executable}\n{RECORDER.read_text()}")
    python_part.chmod(0o755)
    script = directory / "recorder"
    script.write_text(
        "#!/bin/sh\n"
        'grep -E "^Sig(Ign|Blk)" /proc/self/status > "$MXF_TEST_RECORD.signals"\n'
        f'exec {sys.executable} {python_part} "$@"\n'
    )
    script.chmod(0o755)
    return script


@dataclass
class QmailHome:
    """A qmail home in a temporary directory."""

    root: Path

    def __post_init__(self) -> None:
        (self.root / "control").mkdir(parents=True, exist_ok=True)
        if WARM_SOCKET is not None:
            self.use_remoted(WARM_SOCKET)

    def use_remoted(self, socket_path: str) -> None:
        """Deliveries from this home go through the mxf-remoted listening on ``socket_path``."""
        self.control("remotedsocket", socket_path + "\n")

    def control(self, name: str, text: str) -> None:
        """Write ``control/NAME``."""
        (self.root / "control" / name).write_text(text)


@dataclass
class Delivery:
    """What one run of mxf-remote produced."""

    stdout: bytes
    stderr: bytes
    returncode: int
    seconds: float
    record: dict[str, Any] | None
    signals: dict[str, int] | None
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def handed_off(self) -> bool:
        """True when the recorder ran (mxf-remote exec'd the protocol program)."""
        return self.record is not None


def run_remote(
    home: QmailHome,
    host: str,
    *,
    env: dict[str, str],
    recipients: tuple[str, ...] = ("rcpt@example.test",),
    sender: str = "sender@example.org",
    timeout: float = 30.0,
    message: bytes = b"Subject: test\n\nbody\n",
    extra_args: tuple[str, ...] = (),
) -> Delivery:
    """Run mxf-remote once for ``host``, as qmail-rspawn would, and collect the evidence."""
    record_path = home.root / "record.json"
    trace_path = home.root / "trace.jsonl"
    for path in (record_path, Path(f"{record_path}.signals"), trace_path):
        path.unlink(missing_ok=True)
    message_path = home.root / "message"
    message_path.write_bytes(message)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MXF_QMAIL": str(home.root),
        "MXF_TEST_RECORD": str(record_path),
        "MXF_TRACE": str(trace_path),
        **env,
    }
    argv = [MXF_REMOTE, host, sender, *recipients, *extra_args]
    with open(message_path, "rb") as message_file:
        started = time.monotonic()
        done = subprocess.run(
            argv,
            stdin=message_file,
            capture_output=True,
            env=measured(full_env),
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - started
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    signals = None
    signal_path = Path(f"{record_path}.signals")
    if signal_path.exists():
        signals = {
            key: int(value, 16)
            for key, value in (
                line.split(":\t") for line in signal_path.read_text().split("\n") if line
            )
        }
    trace = []
    if trace_path.exists():
        trace = [json.loads(line) for line in trace_path.read_text().splitlines()]
    return Delivery(done.stdout, done.stderr, done.returncode, seconds, record, signals, trace)


class AcceptLoop:
    """Listening sockets whose connections one thread serves, one at a time, by ``handle``."""

    thread_name = "accept-loop"
    join_seconds = 30.0

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()

    def listen(self, address: str, port: int) -> None:
        """Start listening on ``address``:``port``."""
        sock = listen_tcp(address, port)
        sock.setblocking(False)
        self._sockets.append(sock)
        self._selector.register(sock, selectors.EVENT_READ, (address, port))

    def handle(self, conn: socket.socket, where: tuple[str, int]) -> None:
        """Serve one accepted connection (blocking); it is closed afterwards."""
        raise NotImplementedError

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                with conn:
                    conn.setblocking(True)
                    self.handle(conn, key.data)

    def close(self) -> None:
        """Stop serving and close every socket."""
        self._stop.set()
        self._thread.join(self.join_seconds)
        for sock in self._sockets:
            self._selector.unregister(sock)
            sock.close()
        self._selector.close()


class Listeners(AcceptLoop):
    """Listening sockets that greet each connection: read a line, answer, close.

    One thread serves them all; ``accepted`` counts connections per (address, port).
    """

    thread_name = "listeners"
    join_seconds = 5.0

    def __init__(self) -> None:
        self.accepted: dict[tuple[str, int], int] = {}
        self.heard: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket, where: tuple[str, int]) -> None:
        """Count the connection, read a line, answer with the greeting."""
        self.accepted[where] = self.accepted.get(where, 0) + 1
        self._greet(conn)

    def _greet(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        heard = b""
        try:
            while not heard.endswith(b"\n"):
                chunk = conn.recv(100)
                if not chunk:
                    break
                heard += chunk
            self.heard.append(heard)
            conn.sendall(SERVER_GREETING)
        except OSError:
            return
